"""A whole file of records counted per group and per time bucket, for a report.

Unlike `RollingStats` nothing is forgotten: a report covers what the files hold, so memory
grows with groups x buckets (a day of 5-minute buckets is 288 per group), not with records.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from callcause.trunks.classes import ClassTable, load_classes
from callcause.trunks.destinations import Destinations
from callcause.trunks.legs import OTHER, GroupKey, Leg
from callcause.trunks.totals import Totals


@dataclass(slots=True)
class GroupHistory:
    key: GroupKey
    total: Totals = field(default_factory=Totals)
    buckets: dict[int, Totals] = field(default_factory=dict)     # bucket start (epoch s) -> totals


def history(legs: Iterable[Leg], *, bucket_s: int = 300, classes: ClassTable | None = None,
            destinations: Destinations | None = None, max_groups: int = 1000) -> dict[GroupKey, GroupHistory]:
    """Count `legs` (e.g. `leg_from_document` over a JSON Lines file) per group and bucket."""
    table = classes or load_classes()
    out: dict[GroupKey, GroupHistory] = {}
    for leg in legs:
        dest = destinations.group(leg.to) if destinations is not None else ""
        key = GroupKey(leg.source, leg.trunk, leg.direction, dest)
        entry = out.get(key)
        if entry is None:
            if len(out) >= max_groups:
                key = GroupKey(OTHER, OTHER, OTHER)
                entry = out.get(key)
            if entry is None:
                entry = out[key] = GroupHistory(key)
        entry.total.add(leg, table)
        start = int(leg.time // bucket_s) * bucket_s
        bucket = entry.buckets.get(start)
        if bucket is None:
            bucket = entry.buckets[start] = Totals()
        bucket.add(leg, table)
    return out
