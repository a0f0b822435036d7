"""Scenarios recorded on the real lab PBXs (bench/live_pbx.py --tap) explain as the wire says.

The FreeSWITCH captures go through the ESL simulator and the real source, the Asterisk ones
through the AMI simulator and the real correlator; the translator then decides. Each case
checks which clue won (`rule`), which lost (`overruled`), the SIP code kept in the record and
who ended the leg.
"""

from __future__ import annotations

import asyncio

import esl_support as S
import pytest
from ami_support import replay

from callcause.connectors.freeswitch.source import inferred_reason
from callcause.connectors.simulator.esl import EslServer
from callcause.record import HangupClues

# file -> per recorded leg (in record order, loopback legs not recorded):
# (category, hangup_source, sip code, rule, overruled clues, inferred Reason cause)
ESL = {
    "freeswitch-live-sip486-reason-q850-21.txt": [
        ("rejected", "callee", 486, "builtin:reason/q850/21", ["sip/486"], 21)],
    "freeswitch-live-sip500-reason-q850-17.txt": [
        ("busy", "callee", 500, "builtin:reason/q850/17", ["sip/500"], 17)],
    # the Reason agrees with FreeSWITCH's own map of 486: nothing tells them apart
    "freeswitch-live-sip486-reason-q850-17.txt": [("busy", "callee", 486, "builtin:sip/486", [], None)],
    # 503 maps to 41 in FreeSWITCH; 34 came from the Reason header (same category as 503)
    "freeswitch-sip503-reason-q850-34.txt": [
        ("congestion", "callee", 503, "builtin:reason/q850/34", [], 34)],
    # no sip_hangup_disposition on a 401 (sofia.c hands it to the challenge code)
    "freeswitch-live-sip401-no-disposition.txt": [("auth", "callee", 401, "builtin:sip/401", [], None)],
    # FreeSWITCH keeps its own 487/CANCEL note; the phone's 500 is nowhere in the event
    "freeswitch-live-cancel-phone-answers-500.txt": [
        ("cancelled", "caller", None, "builtin:freeswitch/ORIGINATOR_CANCEL", [], None)],
    "freeswitch-live-parallel-fork-lose-race.txt": [
        ("cancelled", "pbx", None, "builtin:freeswitch/LOSE_RACE", [], None),
        ("answered", "callee", 200, "builtin:freeswitch/NORMAL_CLEARING", [], None)],
    "freeswitch-live-early-media-183-then-486.txt": [("busy", "callee", 486, "builtin:sip/486", [], None)],
    "freeswitch-live-answered-media-timeout.txt": [
        ("media", "pbx", None, "builtin:freeswitch/MEDIA_TIMEOUT", [], None)],
}


@pytest.mark.parametrize("name", sorted(ESL))
async def test_freeswitch_live_scenarios(name: str) -> None:
    with EslServer(S.PASSWORD) as server:
        h = await S.start(server)
        try:
            await h.wait_sessions(1)
            server.send_events(S.frames(name))
            records = await h.wait_records(len(ESL[name]))
        finally:
            await S.stop(h)
    t = S.translator()
    got = []
    for c in records:
        exp = t.explain(c)
        inferred = [r.cause for r in c.reason_headers if r.inferred]
        got.append((exp.category, exp.hangup_source, exp.sip["code"] if exp.sip else None, exp.rule,
                    [o["clue"] for o in exp.overruled], inferred[0] if inferred else None))
    assert got == ESL[name]


def test_inferred_reason_is_marked_in_the_record() -> None:
    from urllib.parse import unquote

    from callcause.connectors.freeswitch.source import clues_from_event
    from callcause.record import CauseRecord

    frame = S.frames("freeswitch-live-sip486-reason-q850-21.txt", only="CHANNEL_HANGUP_COMPLETE")[0]
    headers = {k: unquote(v) for k, _, v in (line.partition(": ") for line in frame.decode().split("\n"))}
    clues, _, _ = clues_from_event(headers, "fs", version="1.10.12-release")
    t = S.translator()
    doc = CauseRecord(clues, t.explain(clues), t.texts).document("en")
    assert doc["reason_headers"] == [{"protocol": "Q.850", "cause": 21, "text": None, "inferred": True}]
    assert doc["sip"]["code"] == 486 and doc["rule"] == "builtin:reason/q850/21"
    assert doc["overruled"] == [{"clue": "sip/486", "by": "reason/q850/21"}]


@pytest.mark.parametrize(("status", "cause", "version", "want"), [
    ("486", "21", None, 21),
    ("486", "17", None, None),            # agrees with the map
    ("488", "96", None, None),            # FreeSWITCH sets 96 itself on a 488
    ("608", "21", "1.10.12", None),       # 608 -> CALL_REJECTED since 1.10.7 ...
    ("608", "21", "1.10.6", 21),          # ... before, 608 mapped to 31: 21 came from a Reason
    ("608", "31", "1.10.6", None),
    ("487", "487", None, None),           # ORIGINATOR_CANCEL is FreeSWITCH's own number
    ("200", "31", None, None),            # a BYE: its Reason is in sip_reason when sent
    ("503", "200", None, None),           # not a Q.850 value
])
def test_inferred_reason_rules(status: str, cause: str, version: str | None, want: int | None) -> None:
    h = {"variable_sip_term_status": status, "variable_sip_term_cause": cause}
    got = inferred_reason(h, version)
    assert (got.cause if got else None) == want
    if got:
        assert got.inferred and got.protocol == "Q.850"


# --- Asterisk ---------------------------------------------------------------------------------

AMI = {
    # (channel, category, hangup_source, sip, rule, overruled)
    "asterisk-live-caller-cancel-while-ringing.txt": [
        ("PJSIP/peer-00000087", "answered", "unknown", None, "builtin:dialstatus/ANSWER", []),
        ("PJSIP/peer-00000088", "cancelled", "caller", None, "builtin:dialstatus/CANCEL", [])],
    "asterisk-live-parallel-fork-answered-elsewhere.txt": [
        ("PJSIP/peer-0000008d", "cancelled", "pbx", None, "builtin:q850/26", []),
        ("PJSIP/peer-0000008c", "answered", "callee", None, "builtin:dialstatus/ANSWER", []),
        ("PJSIP/peer-0000008b", "answered", "callee", None, "builtin:dialstatus/ANSWER", [])],
    "asterisk-live-sip302-cause23.txt": [
        ("PJSIP/peer-0000008e", "transfer", "callee", 302, "builtin:sip/302", ["dialstatus/NOANSWER"])],
    "asterisk-live-blind-transfer-to-486.txt": [
        ("PJSIP/peer-00000090", "answered", "unknown", None, "builtin:dialstatus/ANSWER", []),
        ("PJSIP/peer-00000092", "busy", "callee", 486, "builtin:sip/486", []),
        ("PJSIP/peer-00000091", "answered", "pbx", None, "builtin:dialstatus/ANSWER", ["q850/17"])],
}


@pytest.mark.parametrize("name", sorted(AMI))
async def test_asterisk_live_scenarios(name: str) -> None:
    t = S.translator()
    got = []
    for c in await replay(name):
        exp = t.explain(c)
        got.append((c.channel, exp.category, exp.hangup_source, exp.sip["code"] if exp.sip else None,
                    exp.rule, [o["clue"] for o in exp.overruled]))
    assert got == AMI[name]


async def test_asterisk_derived_techcause_of_an_answered_leg_is_kept_aside() -> None:
    *_, transferred = await replay("asterisk-live-blind-transfer-to-486.txt")
    assert transferred.sip_code is None and transferred.extra["techcause_derived"] == "486"


def _clues(**kw) -> HangupClues:
    base = dict(source_name="pbx", source_kind="asterisk", leg_id="1", direction="outbound",
                answered=False, source_version="22.8.2")
    return HangupClues(**{**base, **kw})


@pytest.mark.parametrize("tech", [487, 500])
def test_asterisk_22_8_cancelled_callee_is_cancelled_whatever_the_phone_answered(tech: int) -> None:
    # 20.17-20.18 / 22.7-22.8 / 23.1-23.2: the cancelled callee leg has Cause 127 and the far
    # end's answer to the CANCEL as TechCause (reported in issue 11 for real phones)
    exp = S.translator().explain(_clues(sip_code=tech, q850=127, pbx_cause="Interworking, unspecified",
                                        pbx_cause_code=127, dial_status="CANCEL", hangup_source="caller"))
    assert (exp.category, exp.hangup_source, exp.rule) == ("cancelled", "caller", "builtin:dialstatus/CANCEL")
    assert exp.sip["code"] == tech and exp.collapsed
    assert exp.overruled == ([{"clue": "sip/500", "by": "dialstatus/CANCEL"}] if tech == 500 else [])


def test_freeswitch_media_timeout_overrules_the_bye_200() -> None:
    exp = S.translator().explain(HangupClues(
        source_name="fs", source_kind="freeswitch", leg_id="1", answered=True, sip_code=200, q850=16,
        pbx_cause="MEDIA_TIMEOUT", disposition="send_bye"))
    assert exp.rule == "builtin:freeswitch/MEDIA_TIMEOUT"
    assert exp.overruled == [{"clue": "sip/200", "by": "freeswitch/MEDIA_TIMEOUT"}]


def test_asterisk_302_reads_by_version() -> None:
    t = S.translator()
    new = t.explain(_clues(sip_code=302, source_version="22.10.1"))
    old = t.explain(_clues(sip_code=302, source_version="22.8.2"))
    assert (new.q850["cause"], old.q850["cause"]) == (23, 16)      # derived in each version's map
    assert new.q850["derived"] and old.q850["derived"]


async def test_empty_hangupcause_tech_after_a_far_end_bye_changes_nothing() -> None:
    """asterisk issue 1606: since 22.7 HANGUPCAUSE(<chan>,tech) is empty after a far-end BYE,
    where 22.6 said `SIP 200 OK`. The record must not change (the real capture, one value blanked)."""
    from ami_support import FIXTURES, running, settle

    from callcause.connectors.simulator.ami import load_frames

    frames = load_frames(FIXTURES / "asterisk-answered-remote-bye16.txt")
    blank = [f.replace("TechCause: SIP 200 OK", "TechCause: ").replace("CALLEE_TECHCAUSE=SIP 200 OK",
                                                                          "CALLEE_TECHCAUSE=")
             .replace("Value: SIP 200 OK", "Value: ") for f in frames]
    assert blank != frames
    results = []
    for stream in (frames, blank):
        async with running() as (sim, source, got):
            await asyncio.wait_for(source.logged_in.wait(), 5)
            await sim.send_events(stream)
            await settle(source)
            (c,) = got.clues
            results.append((c.sip_code, c.q850, c.dial_status, c.hangup_source, c.answered))
    assert results[0] == results[1] == (None, 16, "ANSWER", "callee", True)


@pytest.mark.parametrize(("version", "inferred"), [("22.8.2", 21), ("20.18.2", 21), ("22.10.1", None),
                                                   ("23.3.0", None)])
def test_asterisk_before_22_9_reports_the_reason_in_cause(version: str, inferred: int | None) -> None:
    """Before 20.19 / 22.9 / 23.3 res_pjsip_rfc3326 put a Reason's Q.850 value into the cause of
    a failure response and it stayed. The real 22.10.1 call of 486 + Reason 21, its Hangup
    Cause set to 21 as those versions report it: read as a Reason only where the version says so."""
    def cause_21(events: list[dict]) -> list[dict]:
        for e in events:
            if e.get("event") == "Hangup" and e.get("channel") == "PJSIP/peer-00000093":
                e["cause"] = "21"
        return events

    got = _feed("asterisk-live-sip486-reason-q850-21.txt", version, cause_21)
    (c,) = [c for c in got if c.channel == "PJSIP/peer-00000093"]
    assert (c.sip_code, c.q850) == (486, 21)
    assert [r.cause for r in c.reason_headers if r.inferred] == ([inferred] if inferred else [])
    exp = S.translator().explain(c)
    if inferred:
        assert (exp.category, exp.rule) == ("rejected", "builtin:reason/q850/21")
        assert exp.overruled == [{"clue": "sip/486", "by": "reason/q850/21"},
                                 {"clue": "dialstatus/BUSY", "by": "reason/q850/21"}]
    else:   # 22.9+ replaces what a Reason set: a 21 there has another cause; the code decides
        assert exp.rule == "builtin:sip/486"
        assert exp.overruled == [{"clue": "q850/21", "by": "sip/486"}]


def _feed(name: str, version: str, edit=None) -> list[HangupClues]:
    """The frames of a real capture through a correlator, optionally edited first."""
    from ami_support import FIXTURES

    from callcause.connectors.asterisk.correlate import Correlator, CorrelatorSettings
    from callcause.connectors.simulator.ami import load_frames
    from callcause.problems import ProblemLog

    got: list[HangupClues] = []
    corr = Correlator(CorrelatorSettings(source_name="pbx", grace=0.0), got.append, ProblemLog("test"))
    corr.version = version
    events = [{k.lower(): v for k, _, v in (ln.partition(": ") for ln in f.split("\r\n"))}
              for f in load_frames(FIXTURES / name)]
    for fields in (edit(events) if edit else events):
        corr.feed(fields["event"].lower(), fields)
    corr.flush()
    return got


def test_dial_timeout_is_the_pbx_whatever_order_the_events_come_in() -> None:
    """Under load Asterisk may publish the timed-out callee's Hangup before the SoftHangupRequest
    that shows the PBX ended the dial (seen once in the live check): Cause 0 with DialEnd
    NOANSWER says it already."""
    def hangup_first(events: list[dict]) -> list[dict]:
        hangup = next(e for e in events if e["event"] == "Hangup" and e["channel"] == "PJSIP/peer-0000000a")
        soft = next(i for i, e in enumerate(events) if e["event"] == "SoftHangupRequest")
        rest = [e for e in events if e is not hangup]
        return [*rest[:soft], hangup, *rest[soft:]]

    for edit in (None, hangup_first):
        (c,) = [c for c in _feed("asterisk-noanswer-dial-timeout.txt", "22.10.1", edit)
                if c.channel == "PJSIP/peer-0000000a"]
        assert (c.q850, c.dial_status, c.hangup_source) == (0, "NOANSWER", "pbx")
