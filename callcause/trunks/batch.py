"""Counting a batch of live records at once: the pipeline's hot path of trunk health.

Counting leg by leg (a `Leg` per record, `Totals.add`, `TrunkCounts.count`) cost about 3.5 µs
a record, close to a tenth of the cheapest pipeline. Almost every leg lands in the newest
bucket of a group that already exists, so the bulk path keeps, per group, a `Slot`: that
bucket and the span of time in which a leg surely lands there with nothing else falling due
(no evaluation tick, no roll), so one comparison per leg decides it. Such a leg is read
straight from its record: the values legs share (category, answered, SIP code, Q.850 cause,
whether talk time and PDD were known) form one small key, counted per slot in a dict, and each
distinct key is added to the bucket and to the Prometheus counts once, weighted by its count,
when the slot's bucket changes, when anything reads the figures (a window, a roll, an
evaluation, a `/metrics` scrape: `RollingStats.before_read` and `TrunkCounts.before_read`) or
before a leg takes the leg-by-leg path. Only what is unique to a leg (its time, talk time and
post-dial delay) is added one by one, in record order, so the float sums are the same as
leg-by-leg counting.

A leg that begins its group's next bucket opens it as `Group.add` would (`Group.newest`), and
stays on the bulk path. Anything else (a new group, a group beyond the cap, a late leg, a leg
at or past the next evaluation or roll) first adds what was gathered and then goes through the
leg-by-leg path, so every figure, alert and metric is exactly what counting one leg at a time
gives; internal legs are skipped.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from callcause.record import CauseRecord
from callcause.trunks.exporter import PDD_BUCKETS, TALK_BUCKETS, Labels
from callcause.trunks.legs import NO_TRUNK, leg_from_record, talk_time
from callcause.trunks.rolling import Group
from callcause.trunks.totals import Totals

if TYPE_CHECKING:
    from callcause.trunks.monitor import TrunkMonitor


class Slot:
    """A group's newest bucket as the bulk path counts into it: a leg with `lo <= time < hi`
    belongs there, and counting it there is all a leg-by-leg count would do. `gathered` counts
    the legs not yet added to the bucket, per key (see `BatchCounter.flush_slot`)."""

    __slots__ = ("gathered", "group", "hi", "labels", "lo", "pdd_row", "talk_row", "totals")

    def __init__(self, group: Group) -> None:
        self.group = group
        self.labels: Labels = group.key
        self.totals: Totals | None = None
        self.lo = self.hi = 0.0
        self.gathered: dict[tuple, int] = {}
        self.talk_row: list[float] | None = None     # the group's histogram rows, made on first use
        self.pdd_row: list[float] | None = None


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
        self.slots: dict[tuple, Slot] = {}         # per record key (raw source, trunk, direction, ...)
        self.group_slots: dict[tuple, Slot] = {}   # the same slots per group
        self._limit: float | None = None           # legs from this time on may evaluate or roll
        monitor.stats.before_read = self.apply
        monitor.counts.before_read = self.apply

    @property
    def pending(self) -> int:
        """Legs counted in bulk but not yet added to their buckets."""
        return sum(sum(slot.gathered.values()) for slot in self.group_slots.values())

    def flush_slot(self, slot: Slot) -> None:
        """Add a slot's gathered keys to its bucket and to the counts, each distinct key once.
        Per slot, not all at once, so that a group opening its next bucket leaves the other
        groups gathering: fewer, larger counts."""
        if not slot.gathered:
            return
        gathered, slot.gathered = slot.gathered, {}
        table = self.monitor.stats.classes
        legs = self.monitor.counts.legs if self.monitor._count_metrics else None
        totals, labels = slot.totals, slot.labels
        assert totals is not None
        for (category, answered, sip, q850, talked, timed), n in gathered.items():
            totals.count(category, answered, sip, q850, n, table)
            if talked:
                totals.talk_n += n
            if timed:
                totals.pdd_n += n
            if legs is not None:
                k = (labels, category, answered, sip)
                legs[k] = legs.get(k, 0) + n
        group = slot.group
        if totals.last > group.last:
            group.last = totals.last

    def apply(self) -> None:
        """Before a read or a leg-by-leg count: flush every slot and drop them (the groups may
        change)."""
        for slot in self.group_slots.values():
            self.flush_slot(slot)
        self.slots.clear()
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

    def slot(self, key: tuple, record: CauseRecord) -> Slot | None:
        """The slot of a record's leg if the bulk path may count it, else None."""
        c = record.clues
        t = c.ended_at
        limit = self.limit()
        if not t < limit:
            return None
        stats = self.monitor.stats
        destination = key[4] if len(key) > 4 else ""
        group = stats.groups.get((c.source_name, c.trunk or NO_TRUNK, c.direction or "unknown", destination))
        if group is None:
            return None
        # one slot per group, whatever record keys lead to it, so that a bucket opened through
        # one key is seen through all
        slot = self.group_slots.get(group.key)
        if slot is None:
            slot = self.group_slots[group.key] = Slot(group)
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
            slot.lo = float(index * group.width)
            slot.hi = min(float((index + 1) * group.width), limit)
        # the leg's time, as the loop would count it (a new bucket has none to compare with)
        totals.seen(t)
        if t > group.last:
            group.last = t
        self.slots[key] = slot
        return slot

    def row(self, store: dict[Labels, list[float]], labels: Labels, bounds: tuple[float, ...]) -> list[float]:
        """A group's histogram row (bucket counts, +Inf, sum); a throwaway one without metrics."""
        if not self.monitor._count_metrics:
            return [0.0] * (len(bounds) + 2)
        row = store.get(labels)
        if row is None:
            row = store[labels] = [0.0] * (len(bounds) + 2)
        return row

    def observe(self, records: Sequence[CauseRecord]) -> None:
        monitor = self.monitor
        counts = monitor.counts
        destinations = monitor.stats.destinations
        slots = self.slots
        get = slots.get
        event_time, latest = monitor.event_time, monitor._latest
        stats = monitor.stats
        if not event_time and monitor.clock() - stats._rolled_at >= stats.resolution:
            stats.roll()    # what `RollingStats.add` would do at this batch's first leg

        for record in records:
            c = record.clues
            t = c.ended_at
            if destinations is None:
                key: tuple[Any, ...] = (c.source_name, c.trunk, c.direction, c.internal)
            else:
                key = (c.source_name, c.trunk, c.direction, c.internal, destinations.group(c.to_number))
            slot = get(key)
            if slot is None or not slot.lo <= t < slot.hi:
                if c.internal:
                    continue
                slot = self.slot(key, record)
                if slot is None:
                    if event_time and latest > monitor._latest:
                        monitor._latest = latest
                    monitor.observe_one(leg_from_record(record))   # applies the keys, drops the slots
                    latest = monitor._latest
                    continue
            if t > latest:
                latest = t
            totals = slot.totals
            if t > totals.last:              # the group's last follows at the flush
                totals.last = t
            elif t < totals.first:
                totals.first = t
            e = record.explanation
            category = e.category
            if c.answered or category == "answered":
                answered = True
                talk = c.billsec_s
                if talk is None:
                    talk = c.duration_s
                if talk.__class__ is not float:
                    talk = talk_time(True, c.billsec_s, c.duration_s)
                talked = talk is not None
                if talked:
                    totals.talk_s += talk
                    row = slot.talk_row
                    if row is None:
                        row = slot.talk_row = self.row(counts.talk, slot.labels, TALK_BUCKETS)
                    row[bisect_left(TALK_BUCKETS, talk)] += 1
                    row[-1] += talk
            else:
                answered = talked = False
            # the same steps as for talk time, written out twice on purpose: a helper call per
            # leg would cost a good part of what counting in bulk saves
            pdd = c.pdd_s
            timed = pdd is not None
            if timed:
                totals.pdd_s += pdd
                row = slot.pdd_row
                if row is None:
                    row = slot.pdd_row = self.row(counts.pdd, slot.labels, PDD_BUCKETS)
                row[bisect_left(PDD_BUCKETS, pdd)] += 1
                row[-1] += pdd
            sip, q850 = e.sip, e.q850
            # counted here rather than gathered in a list for `Counter`: a key tuple that lives
            # on until the flush makes the garbage collector run more often over the pipeline
            k = (category, answered, sip["code"] if sip else None, q850["cause"] if q850 else None, talked, timed)
            gathered = slot.gathered
            gathered[k] = gathered.get(k, 0) + 1
        if event_time and latest > monitor._latest:
            monitor._latest = latest
