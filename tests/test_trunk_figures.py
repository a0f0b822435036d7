"""Trunk health figures: the class table, ASR/NER/SEER/ACD/PDD from real captures, rolling
windows with an injected clock, the group cap, destination groups."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from callcause.mapping.translator import Translator
from callcause.record import CATEGORIES, CauseRecord
from callcause.replay import collect
from callcause.trunks import (
    NER_CLASSES,
    GroupKey,
    Leg,
    RollingStats,
    Totals,
    leg_from_document,
    leg_from_record,
    load_classes,
)
from callcause.trunks.classes import _table_path
from callcause.trunks.destinations import DestinationConfig, Destinations

FIX = Path(__file__).parent / "fixtures"
CAPTURES = {
    "busy": FIX / "esl" / "freeswitch-sip486-busy.txt",
    "congestion": FIX / "esl" / "freeswitch-sip503-reason-q850-34.txt",
    "answered": FIX / "esl" / "freeswitch-answered-remote-bye16.txt",
    "not_found": FIX / "esl" / "freeswitch-sip404-notfound.txt",
    "rejected": FIX / "esl" / "freeswitch-sip603-decline.txt",
    "unavailable": FIX / "esl" / "freeswitch-sip480-unavailable.txt",
}


@pytest.fixture(scope="module")
def records() -> dict[str, CauseRecord]:
    tr = Translator.default()
    out = {}
    for name, path in CAPTURES.items():
        legs = [c for c in collect([str(path)], "esl", "fs-1", False) if not c.internal]
        out[name] = CauseRecord(legs[0], tr.explain(legs[0]), tr.texts)
    return out


def leg(t: float, category: str = "answered", *, trunk: str = "carrier-a", sip: int | None = None,
        answered: bool | None = None, to: str | None = None, source: str = "pbx-1") -> Leg:
    answered = category == "answered" if answered is None else answered
    sip = sip if sip is not None else (200 if answered else 503)
    return Leg(t, source, trunk, "outbound", category, answered, sip, None, 60.0 if answered else None, 2.0, to)


def test_class_table_covers_every_category_and_cites_its_sources():
    table = load_classes()
    assert set(table.ner) == set(CATEGORIES)
    assert set(table.ner.values()) <= set(NER_CLASSES)
    head = _table_path().read_text()
    assert "ITU-T Recommendation E.425" in head and "Annex A" in head
    assert "RFC 6076" in head and "section 4.7" in head
    assert table.seer_effective == {200, 480, 486, 600, 603}
    # overridable: a site that wants abandoned calls to count against the trunk
    assert load_classes({"cancelled": "network"}).ner_class("cancelled") == "network"


def test_figures_of_real_captures(records):
    t = Totals()
    table = load_classes()
    for rec in records.values():
        t.add(leg_from_record(rec), table)
    f = t.figures()
    assert f.attempts == 6 and f.answered == 1
    assert f.asr == pytest.approx(1 / 6)
    # effective: answered, busy (486), rejected (603), unavailable (480); network: 503;
    # the 404 is the caller's dialling error and stays out of NER
    assert f.ner == pytest.approx(4 / 5)
    assert f.caller_share == pytest.approx(1 / 6)
    # RFC 6076: 200, 486, 603, 480 are effective; 503 and 404 are not
    assert f.seer == pytest.approx(4 / 6)
    assert f.acd_s is not None and f.acd_s > 0
    assert f.categories["congestion"] == 1
    congestion = next(c for c, _n in f.top_causes if c.category == "congestion")
    assert congestion.sip == 503


def test_pdd_from_freeswitch_progress(records):
    # the answered capture has progress_media_uepoch after start_uepoch: 180/183 came 20 ms later
    assert records["answered"].clues.pdd_s == pytest.approx(0.02)
    assert records["answered"].document("en")["call"]["pdd_s"] == pytest.approx(0.02)
    assert records["not_found"].clues.pdd_s is None     # FreeSWITCH writes 0: no progress seen


def test_pdd_from_asterisk_ringing():
    """Real AMI frames, each stamped with a Timestamp one second apart (timestampevents=yes):
    the dialled PJSIP channel's PDD runs from its creation (Newchannel) to its first Ringing."""
    from callcause.connectors.asterisk.correlate import EVENTS, Correlator, CorrelatorSettings
    from callcause.connectors.asterisk.protocol import parse_fields
    from callcause.connectors.simulator.ami import load_frames
    from callcause.problems import ProblemLog

    legs = []
    corr = Correlator(CorrelatorSettings(source_name="ast", grace=3600.0), legs.append, ProblemLog("t"))
    begin = ringing = None
    for i, frame in enumerate(load_frames(FIX / "ami" / "asterisk-answered-remote-bye16.txt")):
        fields, _ = parse_fields(frame)
        fields["timestamp"] = f"{1_764_000_000 + i}.000000"
        name = fields.get("event", "").lower()
        if name == "newchannel" and fields.get("channel", "").startswith("PJSIP/peer") and begin is None:
            begin = i
        if name == "newstate" and fields.get("channelstate") == "5" and \
                fields.get("channel", "").startswith("PJSIP/") and ringing is None:
            ringing = i
        if name in EVENTS:
            corr.feed(name, fields)
    corr.flush()
    out = next(c for c in legs if c.channel and c.channel.startswith("PJSIP/") and c.direction == "outbound")
    assert begin is not None and ringing is not None and ringing > begin
    assert out.pdd_s == pytest.approx(ringing - begin)


def test_document_and_record_give_the_same_leg(records):
    for rec in records.values():
        doc = json.loads(json.dumps(rec.document("en")))
        a, b = leg_from_record(rec), leg_from_document(doc)
        assert a._replace(time=round(a.time, 3)) == b._replace(time=round(b.time, 3))
    assert leg_from_document({"type": "trunk.alert", "data": {}}) is None


def test_rolling_windows_follow_the_injected_clock():
    now = [1_000_000.0]
    stats = RollingStats(clock=lambda: now[0])
    for i in range(20):
        stats.add(leg(now[0] - 30 + i, "congestion" if i % 2 else "answered"))
    key = GroupKey("pbx-1", "carrier-a", "outbound")
    assert stats.window(key, 60).attempts == 20
    assert stats.figures(60)[key].ner == pytest.approx(0.5)
    now[0] += 120     # two minutes later: out of the 1-minute window, still in 5 min and 1 h
    assert stats.figures(60)[key].attempts == 0
    assert stats.figures(60)[key].ner is None          # no calls is not "all failed"
    assert stats.figures(300)[key].attempts == 20
    now[0] += 1800    # the fine buckets are folded into coarser ones: 1 h still has them
    assert stats.figures(300)[key].attempts == 0
    assert stats.figures(3600)[key].attempts == 20
    now[0] += 7200    # idle longer than the longest window: the group is forgotten
    stats.roll()
    assert key not in stats.groups


def test_group_cap_counts_the_rest_as_other_and_logs_once(caplog):
    stats = RollingStats(max_groups=3, clock=lambda: 1000.0)
    with caplog.at_level(logging.WARNING, "callcause.trunks"):
        for i in range(10):
            stats.add(leg(999.0, trunk=f"t{i}"))
    assert len(stats.groups) == 4
    other = GroupKey("other", "other", "other")
    assert stats.window(other, 60, 1000.0).attempts == 7
    assert stats.overflow_legs == 7
    assert len([r for r in caplog.records if "max_groups" in r.getMessage()]) == 1


def test_memory_stays_bounded_over_time():
    now = [0.0]
    stats = RollingStats(clock=lambda: now[0])
    for i in range(20_000):            # 20,000 legs over 5.5 hours on 3 trunks
        now[0] = i
        stats.add(leg(now[0], trunk=f"t{i % 3}"))
    buckets = sum(len(s.buckets) for g in stats.groups.values() for s in g.series)
    assert buckets <= 3 * 3 * 32


def test_destination_groups():
    d = Destinations(DestinationConfig(numbering_plan=True, default_region="DE",
                                       prefixes={"premium-de": ["+49900"]}))
    assert d.group("+4915112345678") == "DE/mobile"
    assert d.group("004930123456") == "DE/fixed"
    assert d.group("+4990012345678") == "premium-de"       # the user's prefix group wins
    assert d.group("1000") == "DE/unknown"
    assert d.group(None) == "unknown"
    # a "number" of a megabyte (off the wire) is no destination, and the cache does not keep it
    assert d.group("+49900" + "1" * 1_000_000) == "unknown"
    assert d._cached.cache_info().currsize == 5
    stats = RollingStats(destinations=d, clock=lambda: 10.0)
    key = stats.add(leg(9.0, to="+33612345678"))
    assert key.destination == "FR/mobile"


def test_running_window_sums_equal_summing_the_buckets():
    """The running sums the rules read (closed buckets merged in, subtracted as they leave)
    give exactly what summing the buckets gives, with late legs and idle gaps."""
    import random

    rnd = random.Random(5)
    now = [1_000_000.0]
    fast = RollingStats(clock=lambda: now[0])
    slow = RollingStats(clock=lambda: now[0])
    slow.fast_spans = []
    cats = ["answered", "busy", "congestion", "cancelled", "not_found"]
    for step in range(3000):
        now[0] += rnd.choice([0.5, 1, 2, 7, 30]) if step % 500 else 400     # now and then a long gap
        t = now[0] - (rnd.random() * 40 if rnd.random() < 0.1 else 0)         # some legs arrive late
        lg = leg(t, rnd.choice(cats), trunk=rnd.choice(["a", "b"]))
        fast.add(lg)
        slow.add(lg)
        if step % 7 == 0:
            for span in (60, 300):
                for key in slow.groups:
                    f, s = fast.window(key, span), slow.window(key, span)
                    assert (f.attempts, f.answered, f.cats, f.causes) == (s.attempts, s.answered, s.cats, s.causes), \
                        (step, span, key)
