"""Counting a batch of live records at once: the pipeline's hot path of trunk health.

Counting leg by leg (a `Leg` per record, `Totals.add`, `TrunkCounts.count`) cost about 3.5 µs
a record, close to a tenth of the cheapest pipeline. Almost every leg lands in the newest
bucket of a group that already exists, so the bulk path keeps, per group, a `Slot`: that
bucket and the span of time in which a leg surely lands there with nothing else falling due
(no evaluation tick, no roll), so one comparison per leg decides it. Such a leg is read
straight from its record into one key: where it was counted (source, trunk, direction) and
what kind of leg it was (category, answered, SIP code, Q.850 cause). One dict lookup of that
key finds a cell, `[slot, count]`: the group's slot and how many such legs it has not yet added
to its bucket. Each kind is added to the bucket and to the Prometheus counts once, weighted by
its count, when the slot's bucket changes, when anything reads the figures (a window, a roll,
an evaluation, a `/metrics` scrape: `RollingStats.before_read` and `TrunkCounts.before_read`)
or before a leg takes the leg-by-leg path. What is unique to a leg (its time, talk time and
post-dial delay) goes into the bucket one by one, in record order, so every figure is the same
as leg-by-leg counting; only the sums of the Prometheus histograms are added per slot, which
may differ from a leg-by-leg sum in the last digits.

A leg that begins its group's next bucket opens it as `Group.add` would (`Group.newest`), and
stays on the bulk path. Anything else (a new group, a group beyond the cap, a late leg, a leg
at or past the next evaluation or roll) first adds what was gathered and then goes through the
leg-by-leg path, so every figure, alert and metric is exactly what counting one leg at a time
gives; internal legs are skipped.

In the daemon the wall clock rolls the buckets (checked once per batch) and evaluates the
rules (`TrunkMonitor.run`); in event time (a replay) the legs' own times do both.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callcause.record import CauseRecord
from callcause.trunks.exporter import PDD_BUCKETS, TALK_BUCKETS, Labels
from callcause.trunks.legs import leg_from_record, talk_time
from callcause.trunks.rolling import Group
from callcause.trunks.totals import Totals

if TYPE_CHECKING:
    from callcause.trunks.monitor import TrunkMonitor


Kind = tuple[str, bool, int | None, int | None]   # category, answered, SIP code, Q.850 cause


class Slot:
    """A group's newest bucket as the bulk path counts into it: a leg with `lo <= time < hi`
    belongs there, and counting it there is all a leg-by-leg count would do. `cells` count the
    legs not yet added to the bucket, one per kind of leg (see `BatchCounter.cells`).

    Talk time and PDD go into the bucket's sums and the group's histogram rows leg by leg; how
    many there were and what they added up to is read back at the flush from the difference
    to the marks taken at the last one (`mark`), so a leg does not also add to the rows' sums."""

    __slots__ = ("cells", "group", "hi", "labels", "lo", "marks", "pdd_row", "talk_row", "totals")

    def __init__(self, group: Group, labels: Labels, talk_row: list[float], pdd_row: list[float]) -> None:
        self.group = group
        self.labels = labels            # what the Prometheus counts call the group
        self.totals: Totals | None = None
        self.lo = self.hi = 0.0
        self.cells: list[tuple[Kind, list[int]]] = []
        self.talk_row = talk_row        # the group's histogram rows (bucket counts, +Inf, sum)
        self.pdd_row = pdd_row
        self.marks = (0.0, 0.0, 0.0, 0.0)

    def mark(self) -> None:
        totals = self.totals
        assert totals is not None
        self.marks = (totals.talk_s, sum(self.talk_row[:-1]), totals.pdd_s, sum(self.pdd_row[:-1]))


def first_roll_time(rolled_at: float, resolution: float) -> float:
    """The earliest leg time at which `RollingStats.add` rolls (`t - rolled_at >= resolution`).

    Found exactly, so that one comparison `t < first_roll_time(...)` per leg decides what the
    subtraction would: the rounded difference is monotonic in `t`, so stepping to the
    neighbouring float settles the rounding of `rolled_at + resolution`."""
    if not math.isfinite(rolled_at):
        return -math.inf          # never rolled yet: the first leg rolls
    t = rolled_at + resolution
    while t - rolled_at >= resolution:
        t = math.nextafter(t, -math.inf)
    while t - rolled_at < resolution:
        t = math.nextafter(t, math.inf)
    return t


class BatchCounter:
    """The slots, and the loop that counts into them.

    Slots hold while nothing but this loop changes the groups: a leg counted leg by leg, a roll,
    an evaluation and a read all go through `apply()` (or `observe_one`), which drops them."""

    def __init__(self, monitor: TrunkMonitor) -> None:
        self.monitor = monitor
        # per record key (raw source, trunk, direction, internal, [destination,] kind): the count
        # of such legs not yet added to the bucket, and the group's slot: `[slot, n]`; one
        # dict lookup per leg finds both
        self.cells: dict[tuple, list[Any]] = {}
        self.group_slots: dict[tuple, Slot] = {}   # the same slots per group
        self._limit: float | None = None           # legs from this time on may evaluate or roll
        monitor.stats.before_read = self.apply
        monitor.counts.before_read = self.apply

    @property
    def pending(self) -> int:
        """Legs counted in bulk but not yet added to their buckets."""
        return sum(cell[1] for slot in self.group_slots.values() for _kind, cell in slot.cells)

    def flush_slot(self, slot: Slot) -> None:
        """Add a slot's counts to its bucket and to the Prometheus counts, each kind of leg once.
        Per slot, not all at once, so that a group opening its next bucket leaves the other
        groups gathering: fewer, larger counts."""
        totals = slot.totals
        if totals is None:
            return
        table = self.monitor.stats.classes
        legs = self.monitor.counts.legs if self.monitor._count_metrics else None
        labels = slot.labels
        for (category, answered, sip, q850), cell in slot.cells:
            n = cell[1]
            if not n:
                continue
            cell[1] = 0
            totals.count(category, answered, sip, q850, n, table)
            if legs is not None:
                k = (labels, category, answered, sip)
                legs[k] = legs.get(k, 0) + n
        talk_s, talk_n, pdd_s, pdd_n = slot.marks
        slot.mark()
        totals.talk_n += int(slot.marks[1] - talk_n)
        slot.talk_row[-1] += totals.talk_s - talk_s
        totals.pdd_n += int(slot.marks[3] - pdd_n)
        slot.pdd_row[-1] += totals.pdd_s - pdd_s
        group = slot.group
        if totals.last > group.last:
            group.last = totals.last

    def apply(self) -> None:
        """Before a read or a leg-by-leg count: flush every slot and drop them (the groups may
        change)."""
        for slot in self.group_slots.values():
            self.flush_slot(slot)
        self.cells.clear()
        self.group_slots.clear()
        self._limit = None

    def limit(self) -> float:
        monitor = self.monitor
        if self._limit is None:
            if not monitor.event_time:
                self._limit = math.inf     # the clock evaluates and rolls (`observe`), not the legs
            elif monitor._next_eval is None:
                self._limit = -math.inf
            else:
                self._limit = min(monitor._next_eval, first_roll_time(monitor.stats._rolled_at,
                                                                      monitor.stats.resolution))
        return self._limit

    def slot(self, record: CauseRecord, destination: str) -> Slot | None:
        """The slot of a record's leg if the bulk path may count it, else None."""
        c = record.clues
        t = c.ended_at
        limit = self.limit()
        if not t < limit:
            return None
        stats = self.monitor.stats
        group = stats.groups.get((c.source_name, stats.trunk(c.trunk), c.direction or "unknown", destination))
        if group is None:
            return None
        # one slot per group, whatever record keys lead to it, so that a bucket opened through
        # one key is seen through all
        slot = self.group_slots.get(group.key)
        if slot is None:
            slot = self.group_slots[group.key] = Slot(group, *self.counted(group.key))
        index = int(t // group.width)
        if index == group.cur_index:
            totals = group.cur_totals
        else:
            self.flush_slot(slot)    # opening a bucket closes the one before: its counts go in first
            totals = group.newest(index)
        if totals is None:
            return None
        if slot.totals is not totals:
            self.flush_slot(slot)
            slot.totals = totals
            slot.mark()
            slot.lo = float(index * group.width)
            slot.hi = min(float((index + 1) * group.width), limit)
        # the leg's time, as the loop would count it (a new bucket has none to compare with)
        totals.seen(t)
        if t > group.last:
            group.last = t
        return slot

    def counted(self, key: Labels) -> tuple[Labels, list[float], list[float]]:
        """A group's labels in the Prometheus counts and its talk-time and PDD histogram rows;
        throwaway rows without metrics."""
        counts = self.monitor.counts
        if not self.monitor._count_metrics:
            return key, [0.0] * (len(TALK_BUCKETS) + 2), [0.0] * (len(PDD_BUCKETS) + 2)
        labels = counts.labels(key)
        return (labels, *counts.rows(labels))

    def observe(self, records: Sequence[CauseRecord]) -> None:
        monitor = self.monitor
        destinations = monitor.stats.destinations
        cells = self.cells
        get = cells.get
        event_time, latest = monitor.event_time, monitor._latest
        stats = monitor.stats
        if not event_time and monitor.clock() - stats._rolled_at >= stats.resolution:
            stats.roll()    # what `RollingStats.add` would do at this batch's first leg

        for record in records:
            c = record.clues
            e = record.explanation
            category = e.category
            answered = c.answered or category == "answered"
            sip, q850 = e.sip, e.q850
            # where the leg was counted (0-3), what kind of leg it was (4-7), its destination (8)
            key: tuple[Any, ...] = (c.source_name, c.trunk, c.direction, c.internal, category, answered,
                                    sip["code"] if sip else None, q850["cause"] if q850 else None)
            if destinations is not None:
                key += (destinations.group(c.to_number),)
            t = c.ended_at
            cell = get(key)
            if cell is None or not (slot := cell[0]).lo <= t < slot.hi:
                if c.internal:
                    continue
                found = self.slot(record, key[8] if destinations is not None else "")
                if found is None:
                    if event_time and latest > monitor._latest:
                        monitor._latest = latest
                    monitor.observe_one(leg_from_record(record))   # flushes the slots and drops them
                    latest = monitor._latest
                    continue
                slot = found
                if cell is None:
                    cell = cells[key] = [slot, 0]
                    slot.cells.append((key[4:8], cell))
            cell[1] += 1
            if t > latest:
                latest = t
            totals = slot.totals
            if t > totals.last:              # the group's last follows at the flush
                totals.last = t
            elif t < totals.first:
                totals.first = t
            if answered:
                talk = c.billsec_s
                if talk is None:
                    talk = c.duration_s
                if talk.__class__ is not float:
                    talk = talk_time(True, c.billsec_s, c.duration_s)
                if talk is not None:
                    totals.talk_s += talk
                    slot.talk_row[bisect_left(TALK_BUCKETS, talk)] += 1
            pdd = c.pdd_s
            if pdd is not None:
                totals.pdd_s += pdd
                slot.pdd_row[bisect_left(PDD_BUCKETS, pdd)] += 1
        if event_time and latest > monitor._latest:
            monitor._latest = latest
