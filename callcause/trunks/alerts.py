"""The alert engine: rules evaluated over rolling figures, episodes that fire and resolve.

An episode starts when a rule's condition begins to hold for a group and keeps that start
(`since`) as its identity: the event id `al_...` is derived from rule, group and start, so
the firing and the resolved event of one episode share it, a replay of the same traffic gives
the same ids, and a consumer can de-duplicate. State is kept only for groups that are in
breach, firing or cooling down, so it is bounded by what is actually wrong.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from callcause.record import iso_time
from callcause.trunks.classes import ClassTable
from callcause.trunks.legs import Cause, GroupKey
from callcause.trunks.rolling import Group, RollingStats
from callcause.trunks.rules import Rule
from callcause.trunks.totals import Totals

ALERT_TYPE = "trunk.alert"
Describe = Callable[[Cause, str], "str | None"]     # a cause's summary in a language


def _seconds(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def episode_id(rule: str, key: GroupKey, since: float) -> str:
    digest = hashlib.sha256("\x00".join((rule, *key, f"{since:.3f}")).encode()).digest()
    return "al_" + base64.b32encode(digest[:16]).decode().rstrip("=")


def measure(rule: Rule, totals: Totals, table: ClassTable) -> float | None:
    if rule.figure == "share":
        return totals.share(rule.categories)
    if rule.figure == "sip_count":
        return float(totals.count_sip(rule.sip or 0))
    return totals.value(rule.figure, table)


def behind(rule: Rule, totals: Totals, classes: ClassTable, top: int = 5) -> list[tuple[Cause, int]]:
    """The causes that drove a rule's figure: the watched categories or SIP code, the legs not
    answered (ASR), else the legs the network did not deliver."""
    if rule.figure == "share":
        wanted = lambda c: c.category in rule.categories      # noqa: E731
    elif rule.figure == "sip_count":
        wanted = lambda c: c.sip == rule.sip                  # noqa: E731
    elif rule.figure == "asr":
        wanted = lambda c: c.category != "answered"           # noqa: E731
    else:
        wanted = lambda c: classes.ner_class(c.category) != "effective"   # noqa: E731
    return totals.top_causes(top, wanted)


@dataclass(slots=True)
class AlertEvent:
    """One firing or resolved event of an episode."""

    id: str
    rule: Rule
    key: GroupKey
    state: str                        # "firing" | "resolved"
    at: float                         # when it was decided (event time when replaying)
    since: float                      # when the condition began to hold
    value: float | None
    threshold: float
    clear: float
    baseline: float | None
    attempts: int
    top_causes: list[tuple[Cause, int]] = field(default_factory=list)
    describe: Describe | None = None
    instance: str | None = None       # the daemon that decided it (config `instance`), as on records

    @property
    def message_id(self) -> str:
        """The delivery id: one per event, while `id` is one per episode."""
        return f"{self.id}.{self.state}"

    def data(self, lang: str = "en") -> dict[str, Any]:
        scope = {"source": self.key.source, "trunk": self.key.trunk, "direction": self.key.direction}
        if self.key.destination:
            scope["destination"] = self.key.destination
        r = self.rule
        out: dict[str, Any] = {
            "id": self.id, "type": ALERT_TYPE, "instance": self.instance, "rule": r.name, "state": self.state,
            "scope": scope,
            "figure": r.figure, "op": r.op,
            "value": None if self.value is None else round(self.value, 4),
            "threshold": round(self.threshold, 4), "clear": round(self.clear, 4),
            "window_s": _seconds(r.window_s), "attempts": self.attempts, "min_attempts": r.min_attempts,
            "since": iso_time(self.since), "time": iso_time(self.at),
        }
        if r.baseline_s is not None:
            out["baseline"] = None if self.baseline is None else round(self.baseline, 4)
            out["baseline_s"] = _seconds(r.baseline_s)
        if r.figure == "share":
            out["categories"] = sorted(r.categories)
        if r.figure == "sip_count":
            out["sip"] = r.sip
        out["top_causes"] = [
            {"sip": c.sip, "q850": c.q850, "category": c.category, "count": n,
             "summary": self.describe(c, lang) if self.describe is not None else None}
            for c, n in self.top_causes]
        return out

    def document(self, lang: str = "en") -> dict[str, Any]:
        """The webhook body shape: `{"type": "trunk.alert", "timestamp": ..., "data": {...}}`."""
        return {"type": ALERT_TYPE, "timestamp": iso_time(self.at), "data": self.data(lang)}

    def text_line(self, lang: str = "en") -> str:
        r = self.rule
        value = "n/a" if self.value is None else f"{self.value:.3g}"
        sign = "<" if r.op == "below" else ">"
        causes = "; ".join(f"{c.sip or '-'}/{c.q850 if c.q850 is not None else '-'} {c.category} x{n}"
                           for c, n in self.top_causes[:3])
        return (f"{iso_time(self.at)} ALERT {self.state} {r.name} {self.key.label()}: {r.figure} {value} "
                f"({sign} {self.threshold:.3g}, clears at {self.clear:.3g}) over {r.window_s:g} s, "
                f"{self.attempts} attempts, since {iso_time(self.since)}" + (f"; top: {causes}" if causes else ""))


@dataclass(slots=True)
class _State:
    pending_since: float | None = None
    firing: AlertEvent | None = None
    resolved_at: float | None = None


class AlertEngine:
    """Evaluates `rules` against `stats`; `evaluate()` returns the events it decided."""

    def __init__(self, rules: Iterable[Rule], stats: RollingStats, *, describe: Describe | None = None,
                 clock: Callable[[], float] | None = None, instance: str | None = None) -> None:
        self.rules = list(rules)
        self.stats = stats
        self.instance = instance
        self.describe = describe
        self.clock = clock or stats.clock or time.time
        self.states: dict[tuple[str, GroupKey], _State] = {}

    def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        now = self.clock() if now is None else now
        self.stats.roll(now)
        events: list[AlertEvent] = []
        windows: dict[tuple, Totals] = {}      # rules with the same window share its sum
        for rule in self.rules:
            for key, group in list(self.stats.groups.items()):
                # a group with no leg in the window and no episode cannot change state
                if group.last <= now - rule.window_s and (rule.name, key) not in self.states:
                    continue
                if rule.scope.matches(key):
                    event = self._check(rule, key, group, now, windows)
                    if event is not None:
                        events.append(event)
        # a group the stats forgot cannot resolve by itself: end its episodes
        for (name, key), st in list(self.states.items()):
            if key not in self.stats.groups:
                if st.firing is not None:
                    events.append(self._event(st.firing.rule, key, "resolved", now, st.firing.since,
                                              None, st.firing.threshold, st.firing.clear, None, Totals()))
                del self.states[(name, key)]
        return events

    def firing(self) -> list[AlertEvent]:
        return [st.firing for st in self.states.values() if st.firing is not None]

    def _event(self, rule: Rule, key: GroupKey, state: str, now: float, since: float, value: float | None,
               threshold: float, clear: float, baseline: float | None, totals: Totals) -> AlertEvent:
        event = AlertEvent(episode_id(rule.name, key, since), rule, key, state, now, since, value, threshold,
                           clear, baseline, totals.attempts, behind(rule, totals, self.stats.classes), self.describe)
        event.instance = self.instance     # the episode firing now, as /trunks shows it, names it too
        return event

    @staticmethod
    def _window(group: Group, span: float, now: float, causes: bool, memo: dict[tuple, Totals]) -> Totals:
        # straight from the group: `evaluate` rolled the stats, so every leg is in its bucket
        found = memo.get((group.key, span, True)) or memo.get((group.key, span, causes))
        if found is None:
            found = memo[(group.key, span, causes)] = group.window(now, span, causes)
        return found

    def _check(self, rule: Rule, key: GroupKey, group: Group, now: float,
               memo: dict[tuple, Totals]) -> AlertEvent | None:
        table = self.stats.classes
        st_key = (rule.name, key)
        st = self.states.get(st_key)
        # the causes are only read for a sip_count rule, or to report an episode's state
        totals = self._window(group, rule.window_s, now, rule.figure == "sip_count" or st is not None, memo)
        value = measure(rule, totals, table)
        baseline = (measure(rule, self._window(group, rule.baseline_s, now, rule.figure == "sip_count", memo), table)
                    if rule.baseline_s else None)
        limits = rule.limits(baseline)
        if st is not None and st.firing is not None:
            episode = st.firing
            if totals.attempts == 0 or (value is not None and limits is not None and rule.cleared(value, limits[1])):
                st.firing, st.pending_since, st.resolved_at = None, None, now
                return self._event(rule, key, "resolved", now, episode.since, value, episode.threshold,
                                   episode.clear, baseline, totals)
            # still firing: keep the latest figures for /trunks and the metrics
            episode.value, episode.attempts, episode.at = value, totals.attempts, now
            episode.top_causes = behind(rule, totals, self.stats.classes)
            return None
        breach = (totals.attempts >= rule.min_attempts and value is not None and limits is not None
                  and rule.breached(value, limits[0]))
        if not breach:
            if st is not None:
                st.pending_since = None
                if st.resolved_at is None or now - st.resolved_at >= rule.cooldown_s:
                    del self.states[st_key]
            return None
        if st is None:
            st = self.states[st_key] = _State()
        if st.pending_since is None:
            st.pending_since = now
        if now - st.pending_since < rule.for_s:
            return None
        if st.resolved_at is not None and now - st.resolved_at < rule.cooldown_s:
            return None
        assert limits is not None
        if not totals.causes and totals.attempts:
            totals = self._window(group, rule.window_s, now, True, memo)
        st.firing = self._event(rule, key, "firing", now, st.pending_since, value, limits[0], limits[1],
                                baseline, totals)
        return replace(st.firing)     # the event as decided; st.firing keeps moving with the figures
