"""Trunk health in the running pipeline: counts each record, evaluates the alert rules on a
clock, sends alert events to the sinks that take them, and keeps the metrics.

The clock is injected: the daemon evaluates on the wall clock every `evaluate_every`; a replay
(and the tests) use event time (`event_time=True`), evaluating whenever the records' own times
cross the next tick, so a back-test decides exactly what the daemon would have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from callcause import metrics
from callcause.record import CauseRecord, HangupClues, iso_time
from callcause.trunks.alerts import AlertEngine, AlertEvent
from callcause.trunks.batch import BatchCounter
from callcause.trunks.classes import load_classes
from callcause.trunks.destinations import Destinations
from callcause.trunks.exporter import TrunkCounts
from callcause.trunks.legs import Cause, Leg
from callcause.trunks.rolling import RollingStats
from callcause.trunks.settings import TrunksConfig

log = logging.getLogger("callcause.trunks")

MAX_QUEUED = 10_000      # alert events waiting for a failing sink, at most


def cause_texts(translator_of: Callable[[], Any]) -> Callable[[Cause, str], str | None]:
    """A cause's summary in a language, explained by the current translator (overrides
    included) from its SIP code and Q.850 value."""

    @lru_cache(maxsize=1024)
    def describe(cause: Cause, lang: str, _translator: Any) -> str | None:
        if cause.sip is None and cause.q850 is None:
            return None
        clues = HangupClues(source_name="", source_kind="asterisk", leg_id="", sip_code=cause.sip, q850=cause.q850)
        explanation = _translator.explain(clues)
        return _translator.texts(explanation, lang).summary

    return lambda cause, lang: describe(cause, lang, translator_of())


class TrunkMonitor:
    def __init__(self, cfg: TrunksConfig, *, sinks: Sequence[Any] = (), translator_of: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.time, event_time: bool = False, count_metrics: bool = True,
                 log_events: bool | None = None, instance: str | None = None) -> None:
        self.cfg = cfg
        self.instance = instance
        self.event_time = event_time
        self._latest = 0.0
        self.clock = (lambda: self._latest) if event_time else clock
        destinations = Destinations(cfg.destinations) if cfg.destinations.enabled else None
        self.stats = RollingStats(load_classes(cfg.classes), windows=self._windows(cfg), max_groups=cfg.max_groups,
                                  destinations=destinations, clock=self.clock,
                                  resolution=cfg.resolution_s, read_often=self._rule_windows(cfg),
                                  roll_by_legs=event_time, trunk_names=cfg.trunk_names)
        self.stats.on_overflow = lambda _key: metrics.TRUNK_OVERFLOW.inc()
        describe = cause_texts(translator_of) if translator_of is not None else None
        self.engine = AlertEngine(cfg.rules, self.stats, describe=describe, clock=self.clock, instance=instance)
        self.sinks = [s for s in sinks if getattr(s, "wants_alerts", False) and hasattr(s, "write_alerts")]
        # the daemon's own log repeats an alert only when no sink writes it
        self.log_events = not self.sinks if log_events is None else log_events
        self.pending: deque[AlertEvent] = deque(maxlen=MAX_QUEUED)
        self.events: list[AlertEvent] = []     # every event decided (replay, tests, demo read it)
        self.on_event: Callable[[AlertEvent], None] | None = None
        self._next_eval: float | None = None
        self._count_metrics = count_metrics
        self.counts = TrunkCounts(self.stats.classes, cfg.max_groups)
        self.batch = BatchCounter(self)

    @staticmethod
    def _rule_windows(cfg: TrunksConfig) -> set[float]:
        spans = set()
        for rule in cfg.rules:
            spans.add(rule.window_s)
            if rule.baseline_s:
                spans.add(rule.baseline_s)
        return spans

    @classmethod
    def _windows(cls, cfg: TrunksConfig) -> tuple[float, ...]:
        return tuple(sorted(set(cfg.windows) | cls._rule_windows(cfg)))

    # --- counting ------------------------------------------------------------------------

    def observe(self, records: Sequence[CauseRecord]) -> None:
        """Count a batch of records (the pipeline calls this with every batch it produced)."""
        self.batch.observe(records)

    def observe_one(self, leg: Leg) -> None:
        """Count one live leg, leg by leg: what `observe` does for the legs it cannot
        count in bulk (and what it must give the same figures as)."""
        self.batch.apply()          # legs gathered in bulk go first; the bulk path's slots may change
        if self.event_time:
            if self._next_eval is None or leg.time >= self._next_eval:
                self.advance(leg.time)
            elif leg.time > self._latest:
                self._latest = leg.time
        key = self.stats.add(leg)
        if self._count_metrics:
            self.counts.count(key, leg.category, leg.answered, leg.sip, leg.pdd_s, leg.duration_s)

    def observe_leg(self, leg: Leg) -> None:
        """Count one leg read from a record file (`callcause report --alerts` back-tests rules on
        them in event time); not counted in the metrics."""
        self.batch.apply()
        if self.event_time and (self._next_eval is None or leg.time >= self._next_eval):
            self.advance(leg.time)
        elif leg.time > self._latest:
            self._latest = leg.time
        self.stats.add(leg)

    def advance(self, t: float) -> None:
        """Event time: make every evaluation due before `t`, before a leg of time `t` counts."""
        if self._next_eval is None:
            self._next_eval = t + self.cfg.evaluate_every_s
        while t >= self._next_eval:
            self._latest = self._next_eval
            self._decide(self._next_eval)
            self._next_eval += self.cfg.evaluate_every_s
        self._latest = max(self._latest, t)

    def flush_metrics(self) -> None:
        metrics.TRUNK_GROUPS.set(len(self.stats.groups))

    # --- deciding ------------------------------------------------------------------------

    def _decide(self, now: float) -> list[AlertEvent]:
        events = self.engine.evaluate(now)
        self.flush_metrics()
        for event in events:
            labels = (event.rule.name, event.key.source, event.key.trunk)
            metrics.ALERT_FIRING.labels(*labels).set(1 if event.state == "firing" else 0)
            metrics.ALERT_EVENTS.labels(event.rule.name, event.state).inc()
            if self.log_events:
                log.log(logging.WARNING if event.state == "firing" else logging.INFO, "%s", event.text_line())
            self.events.append(event)
            self.pending.append(event)
            if self.on_event is not None:
                self.on_event(event)
        return events

    def finish(self) -> None:
        """Event time: evaluate up to the last record (end of a replay)."""
        if self.event_time and self._next_eval is not None:
            while self._next_eval <= self._latest + self.cfg.evaluate_every_s:
                self._decide(self._next_eval)
                self._next_eval += self.cfg.evaluate_every_s

    async def evaluate(self, now: float | None = None) -> list[AlertEvent]:
        """Wall clock: decide now and deliver."""
        events = self._decide(self.clock() if now is None else now)
        await self.flush()
        return events

    async def flush(self) -> None:
        """Hand decided events to the sinks that take alerts; a failing sink gets them again
        at the next flush (nothing is dropped unless MAX_QUEUED events pile up)."""
        if not self.pending:
            return
        batch = list(self.pending)
        for sink in self.sinks:
            try:
                await sink.write_alerts(batch)
            except Exception as exc:   # a sink's failure must not stop the others or the daemon
                log.error("sink %s: cannot write %d alert event(s): %s; retrying at the next evaluation",
                          getattr(sink, "name", sink), len(batch), exc)
                return
        self.pending.clear()

    async def run(self) -> None:
        """The daemon's evaluation loop, until cancelled."""
        while True:
            await asyncio.sleep(self.cfg.evaluate_every_s)
            try:
                await self.evaluate()
            except Exception:      # a bug here must not take the pipeline down
                log.exception("trunk health: evaluation failed")

    # --- reading -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The `/trunks` body: figures per group and window, and the alerts firing now."""
        now = self.clock()
        return {
            "time": iso_time(now),
            "windows_s": list(self.cfg.windows),
            "max_groups": self.cfg.max_groups,
            "overflow_legs": self.stats.overflow_legs,
            "groups": self.stats.snapshot(now, self.cfg.windows),
            "firing": [e.data() for e in self.engine.firing()],
            "rules": [r.as_dict() for r in self.engine.rules],
        }
