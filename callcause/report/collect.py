"""What a report counts, in one streaming pass over records and in memory bounded by the groups.

The trunk figures (attempts, ASR, NER, SEER, ACD, PDD, category mix, causes) are the trunk-health
package's `Totals`, kept per source x trunk x direction for the report period and for the period
of the same length before it. Only what trunk health does not count is counted here: categories
per time bucket for the chart, who hung up, short calls, collapsed and overruled clues, and the
called numbers with most network failures. Records are never kept.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from callcause.record import CauseRecord
from callcause.trunks import OTHER, ClassTable, GroupKey, Leg, Totals, leg_from_document, load_classes
from callcause.trunks.destinations import DestinationConfig, Destinations

HOUR, DAY = 3600, 86400
HOURLY_SPAN = 7 * DAY        # a longer span is charted per day: 168 bars is about what a page shows
MAX_NUMBERS = 5000           # distinct called numbers counted at once (pruned to the heaviest half)


@dataclass(slots=True)
class Filters:
    since: float | None = None
    until: float | None = None
    sources: Sequence[str] = ()     # globs; empty: all
    trunks: Sequence[str] = ()

    def matches(self, leg: Leg) -> bool:
        if self.sources and not any(fnmatch.fnmatchcase(leg.source, g) for g in self.sources):
            return False
        return not self.trunks or any(fnmatch.fnmatchcase(leg.trunk, g) for g in self.trunks)

    @property
    def previous_since(self) -> float | None:
        if self.since is None or self.until is None:
            return None
        return self.since - (self.until - self.since)


@dataclass(slots=True)
class Group:
    """One source x trunk x direction: its figures now and before, and categories over time."""

    key: GroupKey
    current: Totals = field(default_factory=Totals)
    previous: Totals = field(default_factory=Totals)
    buckets: dict[int, Counter[str]] = field(default_factory=dict)
    hangup: Counter[str] = field(default_factory=Counter)     # hangup_source -> legs
    short: int = 0                                            # answered legs shorter than `short_s`


@dataclass(slots=True)
class SourceClues:
    """How often one PBX lost or contradicted information."""

    kind: str
    legs: int = 0
    collapsed: int = 0
    overruled: int = 0
    incomplete: int = 0
    overridden: int = 0


def report_destinations(cfg: DestinationConfig | None = None) -> Destinations:
    """Destination groups for a report: the config's prefix groups and default region, and the
    numbering plan always (a report is where one looks at destinations, even when the daemon's
    alerting does not group by them)."""
    cfg = cfg or DestinationConfig()
    # a report meets each called number again and again over days: a large cache (about 100 bytes
    # a number) saves the numbering-plan parse, most of the cost of a leg
    return Destinations(DestinationConfig(numbering_plan=True, default_region=cfg.default_region,
                                          prefixes=cfg.prefixes), cache_size=1 << 18)


class Extras(NamedTuple):
    """What a report reads from a record beyond the trunk-health `Leg`."""

    kind: str                 # the PBX: asterisk, freeswitch
    hangup_source: str
    collapsed: bool
    incomplete: bool
    overruled: bool
    overridden: bool          # decided by one of the user's overrides


def overruled(q850: Any) -> bool:
    """The PBX's Q.850 cause says something else than the Q.850 its SIP code stands for: two
    clues disagreed and the more specific one (the SIP code or a Reason header) won."""
    if not isinstance(q850, dict):
        return False
    standard = q850.get("standard_for_sip")
    return standard is not None and q850.get("cause") is not None and standard != q850.get("cause")


def extras_from_document(doc: dict[str, Any]) -> Extras:
    return Extras(str((doc.get("source") or {}).get("kind") or "unknown"),
                  str((doc.get("cause") or {}).get("hangup_source") or "unknown"),
                  doc.get("collapsed") is True, doc.get("incomplete") is True, overruled(doc.get("q850")),
                  str(doc.get("rule") or "").startswith("override:"))


def extras_from_record(record: CauseRecord) -> Extras:
    e = record.explanation
    return Extras(record.clues.source_kind, e.hangup_source or "unknown", bool(e.collapsed),
                  bool(record.clues.incomplete), overruled(e.q850), e.rule.startswith("override:"))


class Collector:
    """Feed it record documents (`add`), then read `groups`, `destinations`, `clues`, `numbers`."""

    def __init__(self, filters: Filters | None = None, *, classes: ClassTable | None = None,
                 destinations: Destinations | None = None, short_s: float = 5.0, max_groups: int = 1000) -> None:
        self.filters = filters or Filters()
        self.table = classes or load_classes()
        self.dest = destinations
        self.short_s = short_s
        self.max_groups = max_groups
        self.groups: dict[GroupKey, Group] = {}
        self.destinations: dict[str, Totals] = {}
        self.clues: dict[str, SourceClues] = {}
        self.numbers: Counter[str] = Counter()      # called number -> network failures (approximate when pruned)
        self.first: float | None = None
        self.last: float | None = None
        self.skipped = 0                            # documents that are not trunk legs (other types, internal legs)
        self.on_leg: Callable[[Leg], None] | None = None   # sees every leg of the period (alert back-test)
        known = self.filters.since is not None and self.filters.until is not None
        self.bucket_s = (HOUR if self.filters.until - self.filters.since <= HOURLY_SPAN else DAY) if known else HOUR
        self._origin = self.filters.since if known else 0.0
        self._adaptive = not known

    # -- feeding ------------------------------------------------------------------------------
    def add_all(self, docs: Iterable[dict[str, Any]]) -> Collector:
        for doc in docs:
            self.add(doc)
        return self

    def add(self, doc: dict[str, Any]) -> None:
        """One record document (a line of a JSON Lines file)."""
        try:
            leg = leg_from_document(doc)
        except (KeyError, ValueError, TypeError):
            leg = None          # a `call.hangup` without a readable time: counted as skipped
        if leg is None:
            self.skipped += 1
            return
        self.add_leg(leg, extras_from_document(doc))

    def add_leg(self, leg: Leg, extras: Extras) -> None:
        f = self.filters
        if not f.matches(leg) or (f.until is not None and leg.time >= f.until):
            return
        if f.since is not None and leg.time < f.since:
            prev = f.previous_since
            if prev is not None and leg.time >= prev:
                self._group(leg).previous.add(leg, self.table)
            return
        self._add_current(leg, extras)

    def _group(self, leg: Leg) -> Group:
        key = GroupKey(leg.source, leg.trunk, leg.direction)
        group = self.groups.get(key)
        if group is None:
            if len(self.groups) >= self.max_groups:
                key = GroupKey(OTHER, OTHER, OTHER)
                group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(key)
        return group

    def _add_current(self, leg: Leg, extras: Extras) -> None:
        if self.on_leg is not None:
            self.on_leg(leg)
        group = self._group(leg)
        group.current.add(leg, self.table)
        self.first = leg.time if self.first is None else min(self.first, leg.time)
        self.last = leg.time if self.last is None else max(self.last, leg.time)
        if self._adaptive and self.bucket_s == HOUR and self.last - self.first > HOURLY_SPAN:
            self._to_days()
        start = self._origin + (leg.time - self._origin) // self.bucket_s * self.bucket_s
        bucket = group.buckets.get(start)
        if bucket is None:
            bucket = group.buckets[start] = Counter()
        bucket[leg.category] += 1
        group.hangup[extras.hangup_source] += 1
        if leg.answered and leg.duration_s is not None and leg.duration_s < self.short_s:
            group.short += 1
        if self.dest is not None:
            name = self.dest.group(leg.to)
            totals = self.destinations.get(name)
            if totals is None:
                totals = self.destinations[name] = Totals()
            totals.add(leg, self.table)
        if leg.to and self.table.ner_class(leg.category) == "network":
            self._count_number(leg.to)
        clues = self.clues.get(leg.source)
        if clues is None:
            clues = self.clues[leg.source] = SourceClues(extras.kind)
        clues.legs += 1
        clues.collapsed += extras.collapsed
        clues.incomplete += extras.incomplete
        clues.overruled += extras.overruled
        clues.overridden += extras.overridden

    def _to_days(self) -> None:
        """The span outgrew hourly bars: merge every group's hours into days, from here on."""
        self.bucket_s = DAY
        for group in self.groups.values():
            days: dict[int, Counter[str]] = {}
            for start, counts in group.buckets.items():
                if counts:
                    days.setdefault(start // DAY * DAY, Counter()).update(counts)
            group.buckets = days

    def _count_number(self, number: str) -> None:
        self.numbers[number] += 1
        if len(self.numbers) > MAX_NUMBERS:
            # keep the heaviest half: a number failing often stays, one-off numbers go
            self.numbers = Counter(dict(self.numbers.most_common(MAX_NUMBERS // 2)))
