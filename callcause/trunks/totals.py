"""Counting legs and deriving the figures: attempts, ASR, NER, SEER, ACD, PDD, category mix.

`Totals` is a mergeable set of counters (a window is the sum of its buckets); `Figures` is what
an operator reads. A ratio without a denominator is None, never 0: "no calls" is not "all
calls failed". Counting sits on the pipeline's hot path, so categories are a fixed list of
ints and the NER classes are derived from them when figures are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import add, sub
from typing import Any

from callcause.record import CATEGORIES
from callcause.trunks.classes import ClassTable, load_classes
from callcause.trunks.legs import Cause, Leg

MAX_CAUSES = 32                       # distinct causes kept per bucket; the rest count as one
OVERFLOW_CAUSE = (None, None, "other")
TOP = 5
CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_UNKNOWN = CATEGORY_INDEX["unknown"]
_N = len(CATEGORIES)


class Totals:
    """Counters of one group over one stretch of time."""

    __slots__ = ("answered", "attempts", "cats", "causes", "first", "last", "pdd_n", "pdd_s", "seer_counted",
                 "seer_effective", "talk_n", "talk_s")

    def __init__(self) -> None:
        self.attempts = 0
        self.answered = 0
        self.cats = [0] * _N                        # legs per category, in CATEGORIES order
        self.seer_counted = 0
        self.seer_effective = 0
        self.talk_s = 0.0
        self.talk_n = 0
        self.pdd_s = 0.0
        self.pdd_n = 0
        self.causes: dict[tuple, int] = {}          # (sip, q850, category) -> legs
        self.first: float | None = None
        self.last: float | None = None

    def add(self, leg: Leg, table: ClassTable) -> None:
        self.count(leg.category, leg.answered, leg.sip, leg.q850, 1, table)
        if leg.duration_s is not None:
            self.talk_s += leg.duration_s
            self.talk_n += 1
        if leg.pdd_s is not None:
            self.pdd_s += leg.pdd_s
            self.pdd_n += 1
        self.seen(leg.time)

    def count(self, category: str, answered: bool, sip: int | None, q850: int | None, n: int,
              table: ClassTable) -> None:
        """`n` legs alike in everything but time, talk time and PDD: the live pipeline counts
        a batch's legs per such key at once (see `batch.py`), everything else one by one."""
        self.attempts += n
        if answered:
            self.answered += n
        self.cats[CATEGORY_INDEX.get(category, _UNKNOWN)] += n
        if sip is None:
            if answered:
                self.seer_counted += n
                self.seer_effective += n
        elif sip // 100 not in table.seer_excluded_classes:
            self.seer_counted += n
            if sip in table.seer_effective:
                self.seer_effective += n
        key = (sip, q850, category)
        causes = self.causes
        have = causes.get(key)
        if have is not None:
            causes[key] = have + n
        elif len(causes) < MAX_CAUSES:
            causes[key] = n
        else:
            causes[OVERFLOW_CAUSE] = causes.get(OVERFLOW_CAUSE, 0) + n

    def seen(self, t: float) -> None:
        if self.last is None or t > self.last:
            self.last = t
            if self.first is None:
                self.first = t
        elif self.first is None or t < self.first:
            self.first = t

    def copy(self, causes: bool = True) -> Totals:
        """A copy to add to (a window starts from a running sum): cheaper than merging into a
        new `Totals`, and the rules read a window of every group at every evaluation."""
        out = Totals.__new__(Totals)
        out.attempts, out.answered, out.cats = self.attempts, self.answered, self.cats.copy()
        out.seer_counted, out.seer_effective = self.seer_counted, self.seer_effective
        out.talk_s, out.talk_n, out.pdd_s, out.pdd_n = self.talk_s, self.talk_n, self.pdd_s, self.pdd_n
        out.causes = self.causes.copy() if causes else {}
        out.first, out.last = self.first, self.last
        return out

    def merge(self, other: Totals, causes: bool = True) -> Totals:
        """Add `other` into this; `causes=False` skips the cause counts (a rule that only
        needs the ratios reads windows that way, which is several times cheaper)."""
        self.attempts += other.attempts
        self.answered += other.answered
        self.cats = list(map(add, self.cats, other.cats))
        self.seer_counted += other.seer_counted
        self.seer_effective += other.seer_effective
        self.talk_s += other.talk_s
        self.talk_n += other.talk_n
        self.pdd_s += other.pdd_s
        self.pdd_n += other.pdd_n
        if causes:
            mine = self.causes
            if mine:
                for key, n in other.causes.items():
                    mine[key] = mine.get(key, 0) + n
            else:
                mine.update(other.causes)
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last
        return self

    def subtract(self, other: Totals) -> Totals:
        """Take `other` (a bucket earlier merged in) out again: a running window sum slides."""
        self.attempts -= other.attempts
        self.answered -= other.answered
        self.cats = list(map(sub, self.cats, other.cats))
        self.seer_counted -= other.seer_counted
        self.seer_effective -= other.seer_effective
        self.talk_s = max(0.0, self.talk_s - other.talk_s)
        self.talk_n -= other.talk_n
        self.pdd_s = max(0.0, self.pdd_s - other.pdd_s)
        self.pdd_n -= other.pdd_n
        mine = self.causes
        for key, n in other.causes.items():
            left = mine.get(key, 0) - n
            if left > 0:
                mine[key] = left
            else:
                mine.pop(key, None)
        return self

    @property
    def categories(self) -> dict[str, int]:
        return {CATEGORIES[i]: n for i, n in enumerate(self.cats) if n}

    def classes(self, table: ClassTable) -> dict[str, int]:
        """Legs per NER class (effective, network, caller, excluded), the classes with legs."""
        out = {}
        for cls in table.positions:
            n = self.in_class(cls, table)
            if n:
                out[cls] = n
        return out

    def in_class(self, cls: str, table: ClassTable) -> int:
        return sum(map(self.cats.__getitem__, table.positions[cls]))

    def share(self, categories: frozenset[str] | set[str]) -> float | None:
        """The share of attempts that ended in one of `categories`."""
        if not self.attempts:
            return None
        return sum(self.cats[CATEGORY_INDEX[c]] for c in categories if c in CATEGORY_INDEX) / self.attempts

    def count_sip(self, code: int) -> int:
        return sum(n for (sip, _q, _c), n in self.causes.items() if sip == code)

    def top_causes(self, n: int = TOP, wanted: Any = None) -> list[tuple[Cause, int]]:
        items = [(Cause(*k), v) for k, v in self.causes.items()]
        if wanted is not None:
            items = [(c, v) for c, v in items if wanted(c)]
        return sorted(items, key=lambda item: -item[1])[:n]

    def figures(self, table: ClassTable | None = None) -> Figures:
        return Figures.of(self, table)

    def value(self, figure: str, table: ClassTable) -> float | None:
        """One figure by its name in the rules, without building all of them (rules read
        one figure of every group at every evaluation)."""
        if figure == "ner":
            effective = self.in_class("effective", table)
            return _ratio(effective, effective + self.in_class("network", table))
        if figure == "asr":
            return _ratio(self.answered, self.attempts)
        if figure == "seer":
            return _ratio(self.seer_effective, self.seer_counted)
        if figure == "acd":
            return _ratio(self.talk_s, self.talk_n)
        if figure == "pdd":
            return _ratio(self.pdd_s, self.pdd_n)
        return float(self.attempts)


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
    def of(cls, t: Totals, table: ClassTable | None = None) -> Figures:
        classes = t.classes(table or load_classes())
        effective, network = classes.get("effective", 0), classes.get("network", 0)
        return cls(
            attempts=t.attempts, answered=t.answered,
            asr=_ratio(t.answered, t.attempts),
            ner=_ratio(effective, effective + network),
            seer=_ratio(t.seer_effective, t.seer_counted),
            acd_s=_ratio(t.talk_s, t.talk_n),
            pdd_s=_ratio(t.pdd_s, t.pdd_n),
            caller_share=_ratio(classes.get("caller", 0), t.attempts),
            categories=dict(sorted(t.categories.items(), key=lambda kv: -kv[1])),
            top_causes=t.top_causes(),
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
