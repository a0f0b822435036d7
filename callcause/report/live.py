"""The report of a running daemon, served at `/report` on the metrics listener.

The daemon keeps the little a report needs of each recent leg (the trunk-health `Leg` and the
report's `Extras`, a few hundred bytes) for two windows: the last `window` and the one before,
for the change column. At most `max_legs` are kept; beyond that the oldest go first and the
report says so. A request builds the same report as `callcause report` from them, in a worker
thread so that the pipeline keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from callcause.config import Section
from callcause.pii import PiiPolicy, parse_pii
from callcause.record import CauseRecord
from callcause.report.collect import Collector, Extras, Filters, extras_from_record, report_destinations
from callcause.trunks import Leg, leg_from_record


@dataclass(slots=True)
class ReportConfig:
    enabled: bool = True
    window_s: float = 86400.0
    max_legs: int = 100_000
    language: str | None = None             # default: the config's top-level language
    pii: PiiPolicy = field(default_factory=lambda: PiiPolicy(to="mask"))


def parse_report(sec: Section) -> ReportConfig:
    """`report: {enabled, window, max_legs, language, pii}` (every key optional)."""
    from callcause.config import parse_language

    cfg = ReportConfig(enabled=sec.bool("enabled", True),
                       window_s=sec.duration("window", 86400.0, minimum=60.0),
                       max_legs=sec.int("max_legs", 100_000, min=1000),
                       language=parse_language(sec, "language", None))
    if sec.has("pii"):
        cfg.pii = parse_pii(sec.section("pii"))
    sec.finish()
    return cfg


class LiveReport:
    def __init__(self, cfg: ReportConfig, *, language: str, translator_of: Callable[[], Any],
                 trunks: Any = None, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.trunks = trunks                  # the config's TrunksConfig: destination groups, classes
        self.destinations = report_destinations(trunks.destinations if trunks is not None else None)
        self.language = cfg.language or language
        self.translator_of = translator_of
        self.clock = clock
        self.legs: deque[tuple[Leg, Extras]] = deque(maxlen=cfg.max_legs)
        self.dropped = 0            # legs pushed out by max_legs before they left the windows

    def observe(self, records: Sequence[CauseRecord]) -> None:
        """Keep a batch of records (a pipeline observer)."""
        horizon = self.clock() - 2 * self.cfg.window_s
        for record in records:
            leg = leg_from_record(record)
            if leg is None:
                continue
            if len(self.legs) == self.legs.maxlen and self.legs[0][0].time >= horizon:
                self.dropped += 1
            self.legs.append((leg, extras_from_record(record)))

    def render(self, legs: list[tuple[Leg, Extras]], now: float) -> str:
        from callcause.report.render import Options, build_view, render_html
        from callcause.trunks import load_classes

        collector = Collector(Filters(since=now - self.cfg.window_s, until=now), destinations=self.destinations,
                              classes=load_classes(self.trunks.classes if self.trunks is not None else None))
        for leg, extras in legs:
            collector.add_leg(leg, extras)
        opts = Options(lang=self.language, pii=self.cfg.pii, dropped=self.dropped)
        return render_html(build_view(collector, opts, self.translator_of()))

    async def html(self) -> str:
        now = self.clock()
        horizon = now - 2 * self.cfg.window_s
        while self.legs and self.legs[0][0].time < horizon:   # older than both windows: forget
            self.legs.popleft()
        snapshot = list(self.legs)     # on the loop's thread: the deque changes only here
        return await asyncio.to_thread(self.render, snapshot, now)
