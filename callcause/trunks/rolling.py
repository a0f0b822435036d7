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
from fnmatch import fnmatchcase
from typing import Any

from callcause.trunks.classes import ClassTable, load_classes
from callcause.trunks.destinations import Destinations
from callcause.trunks.legs import NO_TRUNK, OTHER, GroupKey, Leg, leg_from_document
from callcause.trunks.totals import Figures, Totals

log = logging.getLogger("callcause.trunks")

DEFAULT_WINDOWS = (60, 300, 3600)
BASE_WIDTH = 10            # seconds of the finest bucket
BUCKETS = 30               # a window is served by buckets at most 1/30 of its length
OTHER_KEY = GroupKey(OTHER, OTHER, OTHER)
MAX_TRUNK_NAME = 128       # characters; a longer name counts as `-`


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


class Running:
    """The sum of the closed fine buckets inside one window, kept up to date as buckets close
    (merged in) and leave the window (subtracted), so reading a window costs two merges
    instead of one per bucket: the rules read every group's window at every evaluation."""

    __slots__ = ("lo", "span", "start", "totals")

    def __init__(self, span: float) -> None:
        self.span = span
        self.totals = Totals()
        self.lo = -(2**62)          # buckets with a smaller index are not (or no longer) in totals
        self.start = -math.inf      # the window start of the last read; reads must not go back


class Group:
    __slots__ = ("closed_upto", "cur_index", "cur_totals", "key", "last", "running", "series", "width")

    def __init__(self, key: GroupKey, plan: list[tuple[int, float]], fast_spans: Iterable[float] = ()) -> None:
        self.key = key
        self.series = [Series(w, h) for w, h in plan]
        self.width = plan[0][0]
        self.last = 0.0
        self.cur_index: int | None = None     # the newest fine bucket, where almost every leg goes
        self.cur_totals: Totals | None = None
        self.running = {span: Running(span) for span in fast_spans}
        self.closed_upto = -(2**62)           # fine buckets up to this index are in the running sums

    def add(self, leg: Leg, table: ClassTable) -> bool:
        t = leg.time
        index = int(t // self.width)
        totals = self.cur_totals if index == self.cur_index else self.newest(index)
        if totals is None:
            return self._add_older(leg, index, table)
        totals.add(leg, table)
        if t > self.last:
            self.last = t
        return True

    def newest(self, index: int) -> Totals | None:
        """The fine bucket `index` made the current one, when it is the newest bucket or begins
        after all of them (opened here); None when a leg of that time is older than that.
        `batch.py` opens buckets with it too, so counting in bulk opens them exactly like this."""
        fine = self.series[0].buckets
        if fine and fine[-1][0] == index:
            totals = fine[-1][1]
        elif index > self.closed_upto and (not fine or index > fine[-1][0]):
            self._close_before(index)
            totals = Totals()
            fine.append((index, totals))
        else:
            return None
        self.cur_index, self.cur_totals = index, totals
        return totals

    def _add_older(self, leg: Leg, index: int, table: ClassTable) -> bool:
        """A leg behind the newest bucket: into its bucket if the finest series still has it."""
        fine = self.series[0]
        if fine.buckets and index < fine.buckets[0][0]:
            return False        # older than the finest series: too late to place exactly
        totals = fine.bucket(index) if fine.buckets and index < fine.buckets[-1][0] else None
        if totals is None:
            self._close_before(index)
            totals = Totals()
            fine.buckets.append((index, totals))
        totals.add(leg, table)
        if index <= self.closed_upto:       # a late leg in a closed bucket
            for run in self.running.values():
                if index >= run.lo:
                    run.totals.add(leg, table)
        if fine.buckets[-1][0] == index:
            self.cur_index, self.cur_totals = index, fine.buckets[-1][1]
        self.last = max(self.last, leg.time)
        return True

    def _close_before(self, index: int) -> None:
        """A newer bucket begins: every open bucket before it goes into the running sums."""
        if not self.running:
            return
        for idx, totals in reversed(self.series[0].buckets):
            if idx <= self.closed_upto:
                break
            for run in self.running.values():
                if idx >= run.lo:
                    run.totals.merge(totals)
        self.closed_upto = max(self.closed_upto, index - 1)

    def roll(self, now: float) -> None:
        """Fold buckets that left a series into the next one; drop what left the last."""
        self.cur_index = self.cur_totals = None
        for level, series in enumerate(self.series):
            oldest = int((now - series.horizon) // series.width)    # buckets ending before the horizon
            nxt = self.series[level + 1] if level + 1 < len(self.series) else None
            while series.buckets and series.buckets[0][0] < oldest:
                index, totals = series.buckets.popleft()
                if level == 0:
                    self._leave(index, totals)
                if nxt is None:
                    continue
                coarse = int(index * series.width // nxt.width)
                target = nxt.buckets[-1][1] if nxt.buckets and nxt.buckets[-1][0] == coarse else nxt.bucket(coarse)
                if target is None:
                    target = Totals()
                    nxt.buckets.append((coarse, target))
                target.merge(totals)

    def _leave(self, index: int, totals: Totals) -> None:
        for run in self.running.values():
            if run.lo <= index <= self.closed_upto:
                run.totals.subtract(totals)
            run.lo = max(run.lo, index + 1)
        self.closed_upto = max(self.closed_upto, index)

    def window(self, now: float, span: float, causes: bool = True) -> Totals:
        start = now - span
        run = self.running.get(span)
        if run is not None and start >= run.start:
            return self._fast_window(run, start, causes)
        out = Totals()
        for level, series in enumerate(self.series):
            for index, totals in reversed(series.buckets):
                # a fine bucket counts when it ends inside the window; a coarser one when its
                # newest leg does (it was folded from a finer series, so it holds only legs
                # older than that series' horizon)
                if (level == 0 and (index + 1) * series.width <= start) or \
                        (level and (totals.last is None or totals.last <= start)):
                    break
                out.merge(totals, causes)
        return out

    def _fast_window(self, run: Running, start: float, causes: bool) -> Totals:
        run.start = start
        buckets, width = self.series[0].buckets, self.width
        for index, totals in buckets:          # slide: closed buckets that ended before the start
            if index < run.lo:
                continue
            if index > self.closed_upto or (index + 1) * width > start:
                break
            run.totals.subtract(totals)
            run.lo = index + 1
        out = run.totals.copy(causes)
        for index, totals in reversed(buckets):    # the open buckets
            if index <= self.closed_upto or (index + 1) * width <= start:
                break
            out.merge(totals, causes)
        return out


class RollingStats:
    """Per source x trunk x direction (x destination) figures over rolling windows.

    Feed it with `add_document` (a JSON record) or `add` (a `Leg`; the live pipeline counts in
    bulk through `batch.py`); read with `figures(window)` or `snapshot()`. `clock` says what
    "now" is: the wall clock in the daemon, the latest event time when replaying a file.
    """

    def __init__(self, classes: ClassTable | None = None, *, windows: Iterable[float] = DEFAULT_WINDOWS,
                 max_groups: int = 1000, destinations: Destinations | None = None,
                 clock: Callable[[], float] = time.time, resolution: int = BASE_WIDTH,
                 read_often: Iterable[float] | None = None, roll_by_legs: bool = True,
                 trunk_names: Iterable[str] | None = None) -> None:
        self.classes = classes or load_classes()
        self.windows = tuple(sorted(set(windows)))
        self.longest = max(self.windows)
        self.plan = series_plan(self.windows, resolution)
        # a running sum for each window read at every evaluation (the rules' windows; by default
        # all), if the finest series serves it: keeping one costs two merges per closed bucket
        often = self.windows if read_often is None else sorted(set(read_often))
        self.fast_spans = [w for w in often if w <= self.plan[0][1]]
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
        # when to roll: once a leg's own time is a bucket past the last roll (replays, where the
        # clock is the newest leg's time), or once the clock is (the daemon: a PBX clock running
        # ahead of ours must not make every leg try a roll that the clock says is not due yet)
        self.roll_by_legs = roll_by_legs
        # which endpoint or gateway names are trunks (globs); None: every name is
        self.trunk_names = tuple(trunk_names) if trunk_names else None
        self._trunk_of: dict[str, str] = {}
        # legs counted in bulk but not yet in their buckets are added before any read
        self.before_read: Callable[[], None] | None = None

    def trunk(self, name: str | None) -> str:
        """The trunk a leg is counted under: its endpoint or gateway name, or `-` when it has
        none, when `trunks.trunk_names` does not name it (an Asterisk phone's own endpoint), or
        when it is longer than any trunk's name (it comes off the wire, and becomes a label)."""
        if not name or len(name) > MAX_TRUNK_NAME:
            return NO_TRUNK
        if self.trunk_names is None:
            return name
        got = self._trunk_of.get(name)
        if got is None:
            got = name if any(fnmatchcase(name, glob) for glob in self.trunk_names) else NO_TRUNK
            if len(self._trunk_of) < 10_000:      # names come off the wire: bounded
                self._trunk_of[name] = got
        return got

    def add(self, leg: Leg) -> GroupKey:
        dest = self.destinations.group(leg.to) if self.destinations is not None else ""
        trunk = self.trunk(leg.trunk)
        # a plain tuple finds the GroupKey entry (equal and same hash) without building one
        group = self.groups.get((leg.source, trunk, leg.direction, dest))
        if group is not None:
            key = group.key
        else:
            key = GroupKey(leg.source, trunk, leg.direction, dest)
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
                group = self.groups[key] = Group(key, self.plan, self.fast_spans)
        if not group.add(leg, self.classes):
            self.late_legs += 1
        if (leg.time if self.roll_by_legs else self.clock()) - self._rolled_at >= self.resolution:
            self.roll()      # keeps memory bounded even when nobody reads the figures
        return key

    def add_document(self, doc: dict[str, Any]) -> GroupKey | None:
        leg = leg_from_document(doc)
        return self.add(leg) if leg is not None else None

    def roll(self, now: float | None = None) -> None:
        """Fold and drop old buckets; forget groups idle for longer than the longest window.
        Cheap to call often: it does its work at most once per finest bucket."""
        if self.before_read is not None:
            self.before_read()
        now = self.clock() if now is None else now
        if now - self._rolled_at < self.resolution:
            return
        self._rolled_at = now
        idle = now - self.longest - self.plan[-1][0]
        for key in [k for k, g in self.groups.items() if g.last < idle]:
            del self.groups[key]
        for group in self.groups.values():
            group.roll(now)

    def window(self, key: GroupKey, span: float, now: float | None = None, causes: bool = True) -> Totals:
        if self.before_read is not None:
            self.before_read()
        group = self.groups.get(key)
        if group is None:
            return Totals()
        return group.window(self.clock() if now is None else now, span, causes)

    def figures(self, span: float, now: float | None = None) -> dict[GroupKey, Figures]:
        now = self.clock() if now is None else now
        self.roll(now)
        return {key: group.window(now, span).figures(self.classes) for key, group in self.groups.items()}

    def snapshot(self, now: float | None = None, windows: Iterable[float] | None = None) -> list[dict[str, Any]]:
        """JSON-ready figures of every group over each window (the `/trunks` body's `groups`)."""
        now = self.clock() if now is None else now
        self.roll(now)
        out = []
        for key, group in sorted(self.groups.items()):
            entry: dict[str, Any] = {"source": key.source, "trunk": key.trunk, "direction": key.direction}
            if key.destination:
                entry["destination"] = key.destination
            entry["windows"] = {f"{int(w)}s": group.window(now, w).figures(self.classes).as_dict()
                                for w in (windows or DEFAULT_WINDOWS)}
            out.append(entry)
        return out
