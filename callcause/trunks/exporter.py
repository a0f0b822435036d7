"""Trunk counters and histograms for Prometheus, kept as plain numbers while legs are counted
and turned into metric families only when `/metrics` is scraped.

A locked `inc()`/`observe()` of the official client per leg and per metric cost more than all
the rest of trunk health together; a custom collector (the client's documented extension point)
reads the same numbers at scrape time instead, so the hot path is a few dict increments.
"""

from __future__ import annotations

import bisect
import logging
import weakref
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from callcause.trunks.classes import ClassTable
from callcause.trunks.legs import OTHER, GroupKey

PDD_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0)
TALK_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
Labels = tuple[str, ...]               # a group key: source, trunk, direction (, destination)
OTHER_LABELS: Labels = GroupKey(OTHER, OTHER, OTHER)
log = logging.getLogger("callcause.trunks")


class TrunkCounts:
    """The cumulative counts of one monitor, per group key; the destination part of a key, if
    any, is summed away at export to keep the labels bounded.

    Counters never forget a group, while the figures forget one idle for longer than the
    longest window and may then take in a new one: over months of changing trunk names the
    counts would keep every group ever seen. So they have a cap of their own, the group cap:
    beyond it, a group never counted before is counted as `other`, logged once."""

    def __init__(self, classes: ClassTable, max_groups: int | None = None) -> None:
        self.classes = classes
        self.max_groups = max_groups
        self.known: set[Labels] = set()
        # (labels, category, answered, SIP code): one dict update per leg; the SEER split is
        # derived from the code at export
        self.legs: dict[tuple[Labels, str, bool, int | None], int] = {}
        self.pdd: dict[Labels, list[float]] = {}                 # per bucket counts, then the sum
        self.talk: dict[Labels, list[float]] = {}
        self.before_read: Callable[[], None] | None = None    # adds legs counted in bulk
        COLLECTOR.sources.add(self)

    def labels(self, key: Labels) -> Labels:
        """The labels a group is counted under: its own, or `other` beyond the cap."""
        if key in self.known:
            return key
        if self.max_groups is not None and len(self.known) >= self.max_groups and key != OTHER_LABELS:
            if OTHER_LABELS not in self.known:
                log.warning("trunk metrics: more than %d groups counted since start; %s and any further new "
                            "ones are counted as 'other' (raise trunks.max_groups to keep them apart)",
                            self.max_groups, "/".join(key))
            key = OTHER_LABELS
        self.known.add(key)
        return key

    def count(self, labels: Labels, category: str, answered: bool, sip: int | None,
              pdd: float | None, talk: float | None) -> None:
        labels = self.labels(labels)
        k = (labels, category, answered, sip)
        legs = self.legs
        legs[k] = legs.get(k, 0) + 1
        talk_row, pdd_row = self.rows(labels)
        if pdd is not None:
            pdd_row[bisect.bisect_left(PDD_BUCKETS, pdd)] += 1
            pdd_row[-1] += pdd
        if talk is not None:
            talk_row[bisect.bisect_left(TALK_BUCKETS, talk)] += 1
            talk_row[-1] += talk

    def rows(self, labels: Labels) -> tuple[list[float], list[float]]:
        """A group's talk-time and PDD histogram rows: the bucket counts, +Inf, then the sum.
        Both are made at the group's first leg, so its histograms are exported (at zero)
        before any value, as a Prometheus client would for a labelled histogram."""
        talk = self.talk.get(labels)
        if talk is None:
            talk = self.talk[labels] = [0.0] * (len(TALK_BUCKETS) + 2)
            self.pdd[labels] = [0.0] * (len(PDD_BUCKETS) + 2)
        return talk, self.pdd[labels]


class _Collector:
    def __init__(self) -> None:
        self.sources: weakref.WeakSet[TrunkCounts] = weakref.WeakSet()

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(list(self.sources)))

    def _families(self, sources: list[TrunkCounts] = ()) -> list[Metric]:  # type: ignore[assignment]
        names = ["source", "trunk", "direction"]
        legs = CounterMetricFamily("callcause_trunk_legs", "Call legs per trunk group, by category and NER class",
                                   labels=[*names, "category", "ner_class"])
        answered = CounterMetricFamily("callcause_trunk_answered", "Answered call legs per trunk group",
                                       labels=names)
        seer = CounterMetricFamily("callcause_trunk_seer_legs",
                                   "Call legs counted by RFC 6076 SEER, by whether they were effective",
                                   labels=[*names, "effective"])
        pdd = HistogramMetricFamily("callcause_trunk_pdd_seconds",
                                    "Post-dial delay (attempt to first ringing/progress)", labels=names)
        talk = HistogramMetricFamily("callcause_trunk_talk_seconds", "Talk time of answered legs", labels=names)
        sums: dict[tuple, float] = {}
        for src in sources:
            if src.before_read is not None:
                src.before_read()
        for src in sources:
            for (labels, category, was_answered, sip), n in list(src.legs.items()):
                keys = [("legs", *labels[:3], category, src.classes.ner_class(category))]
                if was_answered:
                    keys.append(("answered", *labels[:3]))
                split = src.classes.seer(sip, was_answered)
                if split is not None:
                    keys.append(("seer", *labels[:3], "true" if split[1] else "false"))
                for k in keys:
                    sums[k] = sums.get(k, 0) + n
        for k, n in sorted(sums.items()):
            {"legs": legs, "answered": answered, "seer": seer}[k[0]].add_metric(list(k[1:]), n)
        for family, attr, bounds in ((pdd, "pdd", PDD_BUCKETS), (talk, "talk", TALK_BUCKETS)):
            rows: dict[Labels, list[float]] = {}
            for src in sources:
                for labels, row in list(getattr(src, attr).items()):
                    acc = rows.setdefault(labels[:3], [0.0] * len(row))
                    for i, v in enumerate(row):
                        acc[i] += v
            for labels, row in sorted(rows.items()):
                cumulative, buckets = 0.0, []
                for bound, n in zip((*map(str, bounds), "+Inf"), row[:-1], strict=True):
                    cumulative += n
                    buckets.append((bound, cumulative))
                family.add_metric(list(labels), buckets, row[-1])
        return [legs, answered, seer, pdd, talk]


COLLECTOR = _Collector()
REGISTRY.register(COLLECTOR)
