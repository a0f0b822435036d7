"""Alert rules: what to watch, how long it must hold, and when it is over.

A rule compares one figure of a group over a window with a threshold (`below` or `above`),
or with the group's own trailing value (`baseline`). `for` is how long the condition must hold
before the alert fires, `clear` the value that ends it (hysteresis: between the two the alert
keeps its state), `cooldown` the quiet time after a resolve before the same alert may fire
again, and `min_attempts` keeps five calls from paging anyone. Rules come from the config's
`trunks.rules`, or a file given to `callcause replay --alerts --rules`; the two defaults are on
unless `trunks.default_rules: false`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from callcause.config import LinedDict, Section
from callcause.record import CATEGORIES
from callcause.trunks.legs import GroupKey

RATIO_FIGURES = ("asr", "ner", "seer")
FIGURES = (*RATIO_FIGURES, "acd", "pdd", "share", "sip_count", "attempts")


@dataclass(slots=True, frozen=True)
class Scope:
    """Globs a group must match on each part; empty means any."""

    source: tuple[str, ...] = ()
    trunk: tuple[str, ...] = ()
    direction: tuple[str, ...] = ()

    def matches(self, key: GroupKey) -> bool:
        if not (self.source or self.trunk or self.direction):
            return True          # the usual case, checked for every group at every evaluation
        return all(not globs or any(fnmatch.fnmatchcase(value, g) for g in globs)
                   for globs, value in ((self.source, key.source), (self.trunk, key.trunk),
                                        (self.direction, key.direction)))


@dataclass(slots=True, frozen=True)
class Rule:
    name: str
    figure: str
    op: str                         # "below" | "above"
    threshold: float                # fires beyond it (a difference when `baseline_s` is set)
    clear: float                    # resolves once back past it
    window_s: float
    min_attempts: int = 30
    for_s: float = 0.0
    cooldown_s: float = 0.0
    scope: Scope = field(default_factory=Scope)
    categories: frozenset[str] = frozenset()    # figure share
    sip: int | None = None                      # figure sip_count
    baseline_s: float | None = None             # compare with the group's own value over this span
    where: str = ""                             # file:line, for messages

    def breached(self, value: float, limit: float) -> bool:
        return value < limit if self.op == "below" else value > limit

    def cleared(self, value: float, limit: float) -> bool:
        return value >= limit if self.op == "below" else value <= limit

    def limits(self, baseline: float | None) -> tuple[float, float] | None:
        """(fire, clear) thresholds; relative to the baseline when the rule has one."""
        if self.baseline_s is None:
            return self.threshold, self.clear
        if baseline is None:
            return None
        sign = -1 if self.op == "below" else 1
        return baseline + sign * self.threshold, baseline + sign * self.clear

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "figure": self.figure, self.op: self.threshold, "clear": self.clear,
                "window_s": self.window_s, "min_attempts": self.min_attempts, "for_s": self.for_s,
                "cooldown_s": self.cooldown_s, "baseline_s": self.baseline_s}


FAILURE_CATEGORIES = frozenset({"congestion", "network", "system"})
DEFAULT_RULES = (
    Rule("carrier-outage", "ner", "below", 0.85, 0.90, 300.0, min_attempts=30, for_s=120.0, cooldown_s=600.0,
         where="built-in"),
    Rule("failure-share", "share", "above", 0.20, 0.10, 300.0, min_attempts=30, for_s=120.0, cooldown_s=600.0,
         categories=FAILURE_CATEGORIES, where="built-in"),
)


def parse_rule(sec: Section, names: dict[str, str]) -> Rule:
    name = sec.str("name")
    where = f"{sec.file}:{sec.line}"
    if name in names:
        raise sec.error("name", f"rule name {name!r} is used twice (also at {names[name]})",
                        fix="give every rule its own name")
    names[name] = where
    figure = sec.str("figure", choices=FIGURES)
    has_below, has_above = sec.has("below"), sec.has("above")
    if has_below == has_above:
        raise sec.error("below" if has_below else "figure", "a rule needs exactly one of `below:` and `above:`",
                        fix="write e.g. `below: 0.85` (fires under it) or `above: 0.2` (fires over it)")
    op = "below" if has_below else "above"
    threshold = sec.float(op)
    baseline_s = sec.duration("baseline", 0.0, minimum=0.0) or None
    clear = sec.float("clear", threshold)
    if baseline_s is None and figure in (*RATIO_FIGURES, "share") and not 0 <= threshold <= 1:
        raise sec.error(op, f"{threshold} is not a ratio", fix="write a value from 0 to 1, e.g. 0.85 for 85 %")
    # with a baseline both are distances from it, so a smaller clear is the healthier side
    worse = clear > threshold if (baseline_s is not None or op == "above") else clear < threshold
    if worse:
        raise sec.error("clear", f"clear {clear} lies on the firing side of {op} {threshold}",
                        fix=f"the clear value must be {'at or above' if op == 'below' else 'at or below'} the "
                            f"threshold (e.g. below: 0.85, clear: 0.90)" if baseline_s is None else
                            "with a baseline, clear is a smaller difference than the threshold (e.g. 0.30, 0.20)")
    window_s = sec.duration("window", 300.0, minimum=10.0)
    if baseline_s is not None and baseline_s <= window_s:
        raise sec.error("baseline", f"the baseline ({baseline_s:g} s) is not longer than the window ({window_s:g} s)",
                        fix="use a longer baseline, e.g. 24h, against a window of 5m")
    categories = frozenset(sec.str_list("categories", [], choices=CATEGORIES))
    if figure == "share" and not categories:
        raise sec.error("categories", "figure share needs the categories whose share to watch",
                        fix="add e.g. `categories: [congestion, network, system]`")
    sip = sec.int("sip", None, min=100, max=699)
    if figure == "sip_count" and sip is None:
        raise sec.error("sip", "figure sip_count needs the SIP code to count", fix="add e.g. `sip: 503`")
    scope_sec = sec.section("scope")
    scope = Scope(tuple(scope_sec.str_list("source", [])), tuple(scope_sec.str_list("trunk", [])),
                  tuple(scope_sec.str_list("direction", [])))
    scope_sec.finish()
    rule = Rule(name, figure, op, threshold, clear, window_s,
                min_attempts=sec.int("min_attempts", 30, min=1),
                for_s=sec.duration("for", 0.0), cooldown_s=sec.duration("cooldown", 0.0),
                scope=scope, categories=categories, sip=sip, baseline_s=baseline_s, where=where)
    sec.finish()
    return rule


def parse_rules(sec: Section, *, defaults: bool) -> list[Rule]:
    """The `rules:` list of a section, after the built-in ones when `defaults` (a configured
    rule with a built-in rule's name replaces it)."""
    names: dict[str, str] = {}
    own = [parse_rule(item, names) for item in sec.sections("rules")]
    built_in = [r for r in DEFAULT_RULES if r.name not in names] if defaults else []
    return built_in + own


def load_rules_file(path: str) -> list[Rule]:
    """`callcause replay --alerts --rules FILE`: a file with `rules:` (and `default_rules:`)."""
    from callcause.config import load_yaml

    data = load_yaml(path)
    if data is None:
        data = LinedDict()
        data.line, data.key_lines = 1, {}
    sec = Section(data, file=str(path), path="", line=1)
    defaults = sec.bool("default_rules", False)
    rules = parse_rules(sec, defaults=defaults)
    sec.finish()
    return rules
