"""Figures over rolling windows, for the daemon: bounded memory, an injected clock.

Each leg is counted once, into a 10-second bucket of its group. A bucket older than what the
finest series must cover (the 5-minute window) is folded into the next, coarser series (2-minute
buckets for the hour), and so on, so a window of any length is the sum of a few dozen buckets
and adding a leg costs one `Totals.add`, whatever the windows.
Groups beyond `max_groups` count as one `other` group; a group with no leg for longer than
the longest window is forgotten.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from callcause.record import CauseRecord
from callcause.trunks.classes import ClassTable, load_classes
from callcause.trunks.destinations import Destinations
from callcause.trunks.legs import OTHER, GroupKey, Leg, leg_from_document, leg_from_record
from callcause.trunks.totals import Figures, Totals

log = logging.getLogger("callcause.trunks")

DEFAULT_WINDOWS = (60, 300, 3600)
BASE_WIDTH = 10            # seconds of the finest bucket
BUCKETS = 30               # a window is served by buckets at most 1/30 of its length
OTHER_KEY = GroupKey(OTHER, OTHER, OTHER)


def series_plan(windows: Iterable[float], base: int = BASE_WIDTH) -> list[tuple[int, float]]:
    """(bucket width, horizon) per series: a window of W seconds is served by buckets at most
    W/30 wide, so it is exact to a thirtieth; each width is a multiple of the one before, so a
    bucket folds into exactly one coarser bucket. 1 min, 5 min, 1 h -> 10 s for 5 min, 120 s
    for 1 h."""
    plan: list[tuple[int, float]] = []
    for w in sorted(set(windows)):
        width = max(base, int(w // BUCKETS))
        if plan:
            prev = plan[-1][0]
            width = max(prev, width // prev * prev)
            if width == prev:
                plan[-1] = (prev, max(plan[-1][1], w))
                continue
        plan.append((width, w))
    return plan


class Series:
    """Buckets of one width, newest on the right."""

    __slots__ = ("buckets", "horizon", "width")

    def __init__(self, width: int, horizon: float) -> None:
        self.width = width
        self.horizon = horizon
        self.buckets: deque[tuple[int, Totals]] = deque()

    def bucket(self, index: int) -> Totals | None:
        for i in range(len(self.buckets) - 1, -1, -1):   # the newest is almost always the one
            idx, totals = self.buckets[i]
            if idx == index:
                return totals
            if idx < index:
                totals = Totals()
                self.buckets.insert(i + 1, (index, totals))
                return totals
        return None


class Group:
    __slots__ = ("key", "last", "series")

    def __init__(self, key: GroupKey, plan: list[tuple[int, float]]) -> None:
        self.key = key
        self.series = [Series(w, h) for w, h in plan]
        self.last = 0.0

    def add(self, leg: Leg, table: ClassTable) -> bool:
        fine = self.series[0]
        index = int(leg.time // fine.width)
        if fine.buckets and fine.buckets[-1][0] == index:
            fine.buckets[-1][1].add(leg, table)
        else:
            if fine.buckets and index < fine.buckets[0][0]:
                return False        # older than the finest series: too late to place exactly
            totals = fine.bucket(index) if fine.buckets and index < fine.buckets[-1][0] else None
            if totals is None:
                totals = Totals()
                fine.buckets.append((index, totals))
            totals.add(leg, table)
        self.last = max(self.last, leg.time)
        return True

    def roll(self, now: float) -> None:
        """Fold buckets that left a series into the next one; drop what left the last."""
        for level, series in enumerate(self.series):
            oldest = int((now - series.horizon) // series.width)    # buckets ending before the horizon
            nxt = self.series[level + 1] if level + 1 < len(self.series) else None
            while series.buckets and series.buckets[0][0] < oldest:
                index, totals = series.buckets.popleft()
                if nxt is None:
                    continue
                coarse = int(index * series.width // nxt.width)
                target = nxt.buckets[-1][1] if nxt.buckets and nxt.buckets[-1][0] == coarse else nxt.bucket(coarse)
                if target is None:
                    target = Totals()
                    nxt.buckets.append((coarse, target))
                target.merge(totals)

    def window(self, now: float, span: float) -> Totals:
        out = Totals()
        start = now - span
        for series in self.series:
            for _index, totals in reversed(series.buckets):
                # a bucket counts when its newest leg lies inside the window: a bucket folded
                # from a finer series holds only legs older than that series' horizon
                if totals.last is None or totals.last <= start:
                    break
                out.merge(totals)
        return out


class RollingStats:
    """Per source x trunk x direction (x destination) figures over rolling windows.

    Feed it with `add_record` (live), `add_document` (a JSON record) or `add` (a `Leg`); read
    with `figures(window)` or `snapshot()`. `clock` says what "now" is: the wall clock in the
    daemon, the latest event time when replaying a file.
    """

    def __init__(self, classes: ClassTable | None = None, *, windows: Iterable[float] = DEFAULT_WINDOWS,
                 max_groups: int = 1000, destinations: Destinations | None = None,
                 clock: Callable[[], float] = time.time, resolution: int = BASE_WIDTH) -> None:
        self.classes = classes or load_classes()
        self.windows = tuple(sorted(set(windows)))
        self.longest = max(self.windows)
        self.plan = series_plan(self.windows, resolution)
        self.resolution = resolution
        self.max_groups = max_groups
        self.destinations = destinations
        self.clock = clock
        self.groups: dict[GroupKey, Group] = {}
        self.overflow_legs = 0       # legs counted in `other` because of the cap
        self.late_legs = 0           # legs too old for any window
        self.on_overflow: Callable[[GroupKey], None] | None = None
        self._warned = False
        self._rolled_at = -math.inf

    def key_of(self, leg: Leg) -> GroupKey:
        dest = self.destinations.group(leg.to) if self.destinations is not None else ""
        return GroupKey(leg.source, leg.trunk, leg.direction, dest)

    def add(self, leg: Leg) -> GroupKey:
        key = self.key_of(leg)
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= self.max_groups and key != OTHER_KEY:
                self.overflow_legs += 1
                if not self._warned:
                    self._warned = True
                    log.warning("trunk health: more than %d source/trunk/direction groups; %s and any further "
                                "ones are counted as one 'other' group (raise trunks.max_groups to see them)",
                                self.max_groups, key.label())
                if self.on_overflow is not None:
                    self.on_overflow(key)
                key = OTHER_KEY
                group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(key, self.plan)
        if not group.add(leg, self.classes):
            self.late_legs += 1
        if leg.time - self._rolled_at >= self.resolution:
            self.roll()      # keeps memory bounded even when nobody reads the figures
        return key

    def add_record(self, record: CauseRecord) -> GroupKey | None:
        leg = leg_from_record(record)
        return self.add(leg) if leg is not None else None

    def add_document(self, doc: dict[str, Any]) -> GroupKey | None:
        leg = leg_from_document(doc)
        return self.add(leg) if leg is not None else None

    def roll(self, now: float | None = None) -> None:
        """Fold and drop old buckets; forget groups idle for longer than the longest window.
        Cheap to call often: it does its work at most once per finest bucket."""
        now = self.clock() if now is None else now
        if now - self._rolled_at < self.resolution:
            return
        self._rolled_at = now
        idle = now - self.longest - self.plan[-1][0]
        for key in [k for k, g in self.groups.items() if g.last < idle]:
            del self.groups[key]
        for group in self.groups.values():
            group.roll(now)

    def window(self, key: GroupKey, span: float, now: float | None = None) -> Totals:
        group = self.groups.get(key)
        if group is None:
            return Totals()
        return group.window(self.clock() if now is None else now, span)

    def figures(self, span: float, now: float | None = None) -> dict[GroupKey, Figures]:
        now = self.clock() if now is None else now
        self.roll(now)
        return {key: group.window(now, span).figures() for key, group in self.groups.items()}

    def snapshot(self, now: float | None = None, windows: Iterable[float] | None = None) -> list[dict[str, Any]]:
        """JSON-ready figures of every group over each window (the `/trunks` body's `groups`)."""
        now = self.clock() if now is None else now
        self.roll(now)
        out = []
        for key, group in sorted(self.groups.items()):
            entry: dict[str, Any] = {"source": key.source, "trunk": key.trunk, "direction": key.direction}
            if key.destination:
                entry["destination"] = key.destination
            entry["windows"] = {f"{int(w)}s": group.window(now, w).figures().as_dict()
                                for w in (windows or DEFAULT_WINDOWS)}
            out.append(entry)
        return out
