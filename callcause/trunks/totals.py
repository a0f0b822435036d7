"""Counting legs and deriving the figures: attempts, ASR, NER, SEER, ACD, PDD, category mix.

`Totals` is a mergeable set of counters (a window is the sum of its buckets); `Figures` is what
an operator reads. A ratio without a denominator is None, never 0: "no calls" is not "all
calls failed".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from callcause.trunks.classes import ClassTable
from callcause.trunks.legs import Cause, Leg

MAX_CAUSES = 32                       # distinct causes kept per bucket; the rest count as one
OVERFLOW_CAUSE = Cause(None, None, "other")
TOP = 5


class Totals:
    """Counters of one group over one stretch of time."""

    __slots__ = ("answered", "attempts", "categories", "causes", "classes", "first", "last", "pdd_n", "pdd_s",
                 "seer_counted", "seer_effective", "talk_n", "talk_s")

    def __init__(self) -> None:
        self.attempts = 0
        self.answered = 0
        self.classes: Counter[str] = Counter()      # NER class -> legs
        self.seer_counted = 0
        self.seer_effective = 0
        self.talk_s = 0.0
        self.talk_n = 0
        self.pdd_s = 0.0
        self.pdd_n = 0
        self.categories: Counter[str] = Counter()
        self.causes: Counter[Cause] = Counter()
        self.first: float | None = None
        self.last: float | None = None

    def add(self, leg: Leg, table: ClassTable) -> None:
        self.attempts += 1
        if leg.answered:
            self.answered += 1
        self.classes[table.ner_class(leg.category)] += 1
        seer = table.seer(leg.sip, leg.answered)
        if seer is not None:
            self.seer_counted += 1
            self.seer_effective += seer[1]
        if leg.duration_s is not None:
            self.talk_s += leg.duration_s
            self.talk_n += 1
        if leg.pdd_s is not None:
            self.pdd_s += leg.pdd_s
            self.pdd_n += 1
        self.categories[leg.category] += 1
        cause = leg.cause
        if cause in self.causes or len(self.causes) < MAX_CAUSES:
            self.causes[cause] += 1
        else:
            self.causes[OVERFLOW_CAUSE] += 1
        self.first = leg.time if self.first is None else min(self.first, leg.time)
        self.last = leg.time if self.last is None else max(self.last, leg.time)

    def merge(self, other: Totals) -> Totals:
        self.attempts += other.attempts
        self.answered += other.answered
        self.classes.update(other.classes)
        self.seer_counted += other.seer_counted
        self.seer_effective += other.seer_effective
        self.talk_s += other.talk_s
        self.talk_n += other.talk_n
        self.pdd_s += other.pdd_s
        self.pdd_n += other.pdd_n
        self.categories.update(other.categories)
        self.causes.update(other.causes)
        if other.first is not None:
            self.first = other.first if self.first is None else min(self.first, other.first)
        if other.last is not None:
            self.last = other.last if self.last is None else max(self.last, other.last)
        return self

    def share(self, categories: frozenset[str] | set[str]) -> float | None:
        """The share of attempts that ended in one of `categories`."""
        if not self.attempts:
            return None
        return sum(n for c, n in self.categories.items() if c in categories) / self.attempts

    def count_sip(self, code: int) -> int:
        return sum(n for cause, n in self.causes.items() if cause.sip == code)

    def figures(self) -> Figures:
        return Figures.of(self)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass(slots=True)
class Figures:
    """The figures of one group over one window, ready to print or serialise."""

    attempts: int
    answered: int
    asr: float | None
    ner: float | None
    seer: float | None
    acd_s: float | None
    pdd_s: float | None
    caller_share: float | None
    categories: dict[str, int] = field(default_factory=dict)
    top_causes: list[tuple[Cause, int]] = field(default_factory=list)

    @classmethod
    def of(cls, t: Totals) -> Figures:
        effective, network = t.classes.get("effective", 0), t.classes.get("network", 0)
        return cls(
            attempts=t.attempts, answered=t.answered,
            asr=_ratio(t.answered, t.attempts),
            ner=_ratio(effective, effective + network),
            seer=_ratio(t.seer_effective, t.seer_counted),
            acd_s=_ratio(t.talk_s, t.talk_n),
            pdd_s=_ratio(t.pdd_s, t.pdd_n),
            caller_share=_ratio(t.classes.get("caller", 0), t.attempts),
            categories=dict(t.categories.most_common()),
            top_causes=t.causes.most_common(TOP),
        )

    def value(self, figure: str) -> float | None:
        """A figure by its name in the rules (`asr`, `ner`, `seer`, `acd`, `pdd`, `attempts`)."""
        return {"asr": self.asr, "ner": self.ner, "seer": self.seer, "acd": self.acd_s, "pdd": self.pdd_s,
                "attempts": float(self.attempts)}[figure]

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None, n: int = 4) -> float | None:
            return None if x is None else round(x, n)

        return {
            "attempts": self.attempts, "answered": self.answered, "asr": r(self.asr), "ner": r(self.ner),
            "seer": r(self.seer), "acd_s": r(self.acd_s, 2), "pdd_s": r(self.pdd_s, 3),
            "caller_share": r(self.caller_share), "categories": self.categories,
            "top_causes": [{"sip": c.sip, "q850": c.q850, "category": c.category, "count": n}
                           for c, n in self.top_causes],
        }
