"""Counting a batch in bulk gives exactly what counting leg by leg gives: figures, alerts, metrics."""

from __future__ import annotations

import math
import random

import pytest

from callcause.mapping.translator import Translator
from callcause.record import CauseRecord, HangupClues
from callcause.trunks.batch import first_roll_time
from callcause.trunks.destinations import DestinationConfig
from callcause.trunks.exporter import COLLECTOR
from callcause.trunks.legs import leg_from_record
from callcause.trunks.monitor import TrunkMonitor
from callcause.trunks.settings import TrunksConfig

KINDS = [(200, 16, True), (486, 17, False), (503, 34, False), (480, 18, False), (None, 16, True),
         (302, None, False), (404, 1, False), (None, 38, False)]


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator.default()


def stream(translator: Translator, n: int = 6000, seed: int = 3) -> list[CauseRecord]:
    """Legs over a dozen trunks (more than the cap below), an outage on one of them in the
    middle, late and internal legs, gaps longer than a bucket, talk and PDD sometimes missing."""
    rnd = random.Random(seed)
    t, out = 1_800_000_000.0, []
    for i in range(n):
        t += rnd.choice([0.01, 0.05, 0.2, 1.0]) if i % 1000 else 45.0
        trunk = f"carrier-{rnd.randrange(12)}"
        sip, q850, answered = rnd.choice(KINDS)
        if trunk == "carrier-1" and n // 3 < i < 2 * n // 3:
            sip, q850, answered = 503, 34, False
        late = rnd.random()
        when = t - 400 if late < 0.01 else t - rnd.random() * 30 if late < 0.05 else t
        clues = HangupClues(source_name=rnd.choice(["pbx-1", "pbx-2"]), source_kind="freeswitch", leg_id=f"l{i}",
                            direction=rnd.choice(["outbound", "inbound", None]), trunk=trunk,
                            to_number=rnd.choice(["+493012345678", "+33612345678", None]), answered=answered,
                            sip_code=sip, q850=q850, duration_s=rnd.uniform(1, 900) if answered else 0.0,
                            billsec_s=rnd.choice([None, rnd.randrange(1, 600)]) if answered else None,
                            pdd_s=rnd.choice([None, rnd.uniform(0.2, 25.0)]), ended_at=when,
                            internal=rnd.random() < 0.02)
        out.append(CauseRecord(clues, translator.explain(clues), translator.texts))
    return out


def state(m: TrunkMonitor) -> tuple:
    snap = m.snapshot()
    legs = dict(sorted(m.counts.legs.items(), key=repr))
    # the histograms' bucket counts exactly; their sums (`_sum` in Prometheus) are added per
    # slot in bulk, so they may differ from a leg-by-leg sum in the last digits (`sums`)
    pdd = {k: row[:-1] for k, row in m.counts.pdd.items()}
    talk = {k: row[:-1] for k, row in m.counts.talk.items()}
    return (snap, [e.data() for e in m.events], legs, pdd, talk, m.stats.overflow_legs, m.stats.late_legs)


def sums(m: TrunkMonitor) -> dict:
    return {(name, k): row[-1] for name, rows in (("pdd", m.counts.pdd), ("talk", m.counts.talk))
            for k, row in rows.items()}


# evaluating every 25 s, legs roll the buckets between evaluations; with `trunk_names`, the
# legs of the other names count as `-`
@pytest.mark.parametrize(("destinations", "every", "names"), [(False, 10.0, None), (True, 10.0, None),
                                                             (False, 25.0, None), (False, 10.0, ["carrier-1*"])])
def test_bulk_counting_equals_leg_by_leg(translator, destinations, every, names):
    cfg = TrunksConfig(max_groups=60, evaluate_every_s=every, trunk_names=names)
    if destinations:
        cfg.destinations = DestinationConfig(numbering_plan=True, prefixes={"berlin": ["+4930"]})
    records = stream(translator)
    bulk = TrunkMonitor(cfg, translator_of=lambda: translator, event_time=True)
    one = TrunkMonitor(cfg, translator_of=lambda: translator, event_time=True)
    compare(records, bulk, one)
    assert any(e.state == "firing" for e in bulk.events) and bulk.stats.late_legs
    trunks = {k.trunk for k in bulk.stats.groups}
    if names:
        assert trunks == {"-", "carrier-1", "carrier-10", "carrier-11"}
    else:
        assert bulk.stats.overflow_legs and "carrier-5" in trunks


def test_bulk_counting_equals_leg_by_leg_on_the_wall_clock(translator):
    """The daemon's mode: evaluations and rolls follow an injected clock, which here runs a
    little behind the legs' times (a PBX clock ahead of ours)."""
    records = stream(translator, n=3000, seed=4)
    now = [records[0].clues.ended_at]
    bulk = TrunkMonitor(TrunksConfig(max_groups=60), translator_of=lambda: translator, clock=lambda: now[0])
    one = TrunkMonitor(TrunksConfig(max_groups=60), translator_of=lambda: translator, clock=lambda: now[0])

    def tick(i: int) -> None:
        now[0] = max(now[0], records[min(i, len(records) - 1)].clues.ended_at - 4.0)
        if i % 3 == 0:
            for m in (bulk, one):
                m._decide(now[0])

    compare(records, bulk, one, tick)
    assert bulk.stats.late_legs and bulk.events


def test_a_pbx_clock_ahead_of_ours_keeps_legs_on_the_bulk_path(translator):
    """On the wall clock, legs whose times run a minute ahead of the clock are counted in bulk:
    the clock, not their times, says when buckets roll. Before, every such leg tried a roll the
    clock did not allow yet and went leg by leg."""
    records = []
    for i in range(2000):
        sip, q850, answered = KINDS[i % len(KINDS)]
        clues = HangupClues(source_name="pbx-1", source_kind="freeswitch", leg_id=f"l{i}", direction="outbound",
                            trunk=f"carrier-{i % 10}", answered=answered, sip_code=sip, q850=q850,
                            duration_s=60.0 if answered else 0.0, ended_at=1_800_000_000.0 + i / 10)
        records.append(CauseRecord(clues, translator.explain(clues), translator.texts))
    now = [0.0]
    m = TrunkMonitor(TrunksConfig(), translator_of=lambda: translator, clock=lambda: now[0])
    one_by_one = []
    observe_one = m.observe_one
    m.observe_one = lambda leg: (one_by_one.append(leg), observe_one(leg))   # type: ignore[method-assign]
    for i in range(0, len(records), 50):
        now[0] = records[i].clues.ended_at - 60.0
        m.observe(records[i:i + 50])
    assert len(one_by_one) == 10          # each group's first leg
    assert sum(m.stats.window(key, 3600, now=now[0] + 60.0).attempts for key in m.stats.groups) == len(records)


def compare(records: list[CauseRecord], bulk: TrunkMonitor, one: TrunkMonitor, tick=None) -> None:
    rnd = random.Random(9)
    i = 0
    while i < len(records):
        if tick is not None:
            tick(i)
        size = rnd.choice([1, 7, 64, 256])
        bulk.observe(records[i:i + size])
        for r in records[i:i + size]:
            leg = leg_from_record(r)
            if leg is not None:
                one.observe_one(leg)
        i += size
        if rnd.random() < 0.1:       # reads in between see the same (the /trunks body, a scrape)
            assert state(bulk) == state(one)
            assert sums(bulk) == pytest.approx(sums(one), rel=1e-12)
    bulk.finish()
    one.finish()
    assert state(bulk) == state(one)
    assert sums(bulk) == pytest.approx(sums(one), rel=1e-12)


def test_first_roll_time_is_exactly_where_the_subtraction_says_so():
    """One comparison with it must decide what `t - rolled_at >= resolution` decides, also for
    the floats next to the boundary, where the subtraction rounds."""
    rnd = random.Random(2)
    assert first_roll_time(-math.inf, 10) == -math.inf
    for _ in range(2000):
        rolled_at = rnd.choice([1_800_000_000.0, 1e9, 3.0]) + rnd.random() * rnd.choice([1, 1e-3, 1e3])
        resolution = rnd.choice([1, 10, 60])
        edge = first_roll_time(rolled_at, resolution)
        for t in (edge, math.nextafter(edge, -math.inf), math.nextafter(edge, math.inf), rolled_at + resolution):
            assert (t < edge) == (t - rolled_at < resolution)


def test_reads_include_legs_counted_in_bulk(translator):
    """Legs gathered in bulk but not yet in their buckets are seen by a window and a scrape."""
    m = TrunkMonitor(TrunksConfig(), translator_of=lambda: translator, event_time=True)
    records = []
    for i, (sip, q850, answered) in enumerate(KINDS * 3):
        clues = HangupClues(source_name="pbx-1", source_kind="freeswitch", leg_id=f"l{i}", direction="outbound",
                            trunk="carrier-3", answered=answered, sip_code=sip, q850=q850,
                            duration_s=60.0 if answered else 0.0, ended_at=1_800_000_001.0 + i / 100)
        records.append(CauseRecord(clues, translator.explain(clues), translator.texts))
    m.observe(records[:1])                        # opens the group and its bucket
    m.observe(records[1:])                        # counted in bulk
    assert m.batch.pending
    scraped = {tuple(s.labels.values()): s.value for f in COLLECTOR.collect() if f.name == "callcause_trunk_answered"
               for s in f.samples if s.name.endswith("_total")}
    assert not m.batch.pending
    key = next(iter(m.stats.groups))
    answered = sum(1 for r in records if r.clues.answered)
    assert scraped[(key.source, key.trunk, key.direction)] >= answered
    m.observe(records[1:])
    assert m.stats.window(key, 60).attempts == 2 * len(records) - 1


def test_histograms_after_bulk_counting(translator):
    """The PDD and talk-time histograms a scrape shows for legs counted in bulk: every value in
    its bucket, the sum of the values, and a group's talk histogram at zero before any answer."""
    m = TrunkMonitor(TrunksConfig(), translator_of=lambda: translator, event_time=True)
    pdds = [0.3, 0.5, 0.7, 2.5, 2.5, 9.0, 45.0]
    records = []
    for i, pdd in enumerate(pdds * 4):
        trunk, answered = ("talks", True) if i % 2 else ("never-answers", False)
        clues = HangupClues(source_name="hist", source_kind="freeswitch", leg_id=f"h{i}", direction="outbound",
                            trunk=trunk, answered=answered, sip_code=200 if answered else 486,
                            q850=16 if answered else 17, duration_s=float(10 * i) if answered else 0.0,
                            pdd_s=pdd, ended_at=1_800_000_100.0 + i / 100)
        records.append(CauseRecord(clues, translator.explain(clues), translator.texts))
    m.observe(records[:2])             # opens both groups
    m.observe(records[2:])             # the rest in bulk
    assert m.batch.pending
    samples = {(s.name, s.labels.get("trunk"), s.labels.get("le")): s.value for f in COLLECTOR.collect()
               if f.name in ("callcause_trunk_pdd_seconds", "callcause_trunk_talk_seconds")
               for s in f.samples if s.labels.get("source") == "hist"}
    for trunk, parity in (("talks", 1), ("never-answers", 0)):
        mine = [r.clues for i, r in enumerate(records) if i % 2 == parity]
        values = [c.pdd_s for c in mine]
        assert samples[("callcause_trunk_pdd_seconds_count", trunk, None)] == len(values)
        assert samples[("callcause_trunk_pdd_seconds_sum", trunk, None)] == pytest.approx(sum(values))
        assert samples[("callcause_trunk_pdd_seconds_bucket", trunk, "0.5")] == sum(v <= 0.5 for v in values)
        assert samples[("callcause_trunk_pdd_seconds_bucket", trunk, "3.0")] == sum(v <= 3.0 for v in values)
        assert samples[("callcause_trunk_pdd_seconds_bucket", trunk, "30.0")] == sum(v <= 30.0 for v in values)
        talks = [c.duration_s for c in mine if c.answered]
        assert samples[("callcause_trunk_talk_seconds_count", trunk, None)] == len(talks)
        assert samples[("callcause_trunk_talk_seconds_sum", trunk, None)] == pytest.approx(sum(talks))
        assert samples[("callcause_trunk_talk_seconds_bucket", trunk, "60.0")] == sum(v <= 60.0 for v in talks)
    assert samples[("callcause_trunk_talk_seconds_count", "never-answers", None)] == 0


def test_metrics_keep_the_group_cap_over_changing_trunks(translator, caplog):
    """Groups idle for longer than the longest window are forgotten by the figures, and new ones
    take their place; the Prometheus counts, which never forget, stay within the same cap."""
    m = TrunkMonitor(TrunksConfig(max_groups=3), translator_of=lambda: translator, event_time=True)
    t, records = 1_800_000_000.0, []
    for hour, trunks in enumerate((["a", "b", "c"], ["d", "e", "f"], ["a", "g"])):
        for i in range(60):
            clues = HangupClues(source_name="pbx-1", source_kind="freeswitch", leg_id=f"c{hour}-{i}",
                                direction="outbound", trunk=trunks[i % len(trunks)], answered=True, sip_code=200,
                                q850=16, duration_s=30.0, pdd_s=1.0, ended_at=t + 7200 * hour + i)
            records.append(CauseRecord(clues, translator.explain(clues), translator.texts))
    for i in range(0, len(records), 16):
        m.observe(records[i:i + 16])
    m.finish()
    assert {k.trunk for k in m.stats.groups} == {"a", "g"}        # the figures forgot the rest
    m.counts.before_read()
    labels = {k[0] for k in m.counts.legs}
    assert {tuple(k)[:3] for k in labels} == {("pbx-1", t, "outbound") for t in "abc"} | {("other",) * 3}
    assert sum(m.counts.legs.values()) == len(records)
    assert sum(sum(row[:-1]) for row in m.counts.talk.values()) == len(records)
    assert caplog.text.count("counted as 'other'") == 1
