"""FreeSWITCH source: real and built hangup events replayed over TCP become the right clues.

Every frame goes through the simulator, the real greenswitch-based client in its own thread
and the hand-off to the loop; the translator then gives the category.
"""

from __future__ import annotations

import esl_support as S
import pytest

from callcause.config import Section
from callcause.connectors.freeswitch.source import HANGUP_SOURCE, hangup_source, parse_config
from callcause.connectors.simulator.esl import EslServer
from callcause.errors import ConfigError

COMPLETE = "CHANNEL_HANGUP_COMPLETE"


@pytest.fixture
def server():
    with EslServer(S.PASSWORD) as srv:
        yield srv


# file, leg (Unique-ID prefix), expected: category, sip, q850, FreeSWITCH cause, cause code, disposition, who
REAL = [
    ("freeswitch-sip486-busy.txt", "737a1220", "busy", 486, 17, "USER_BUSY", 17, "recv_refuse", "callee"),
    ("freeswitch-sip404-notfound.txt", "d61d9d39", "not_found", 404, 1, "UNALLOCATED_NUMBER", 1,
     "recv_refuse", "callee"),
    ("freeswitch-sip480-unavailable.txt", "c2b2306b", "unavailable", 480, 18, "NO_USER_RESPONSE", 18,
     "recv_refuse", "callee"),
    ("freeswitch-sip503-reason-q850-34.txt", "bd7ea005", "congestion", 503, 34, "NORMAL_CIRCUIT_CONGESTION",
     34, "recv_refuse", "callee"),
    ("freeswitch-sip603-decline.txt", "1026e887", "rejected", 603, 21, "CALL_REJECTED", 21, "recv_refuse",
     "callee"),
    ("freeswitch-noanswer-originate-timeout.txt", "a9b1004b", "no_answer", None, 19, "NO_ANSWER", 19,
     "send_cancel", "pbx"),
    ("freeswitch-answered-remote-bye16.txt", "07088ce6", "answered", 200, 16, "NORMAL_CLEARING", 16,
     "recv_bye", "callee"),
    ("freeswitch-answered-local-hangup16.txt", "6b99b64b", "answered", None, 16, "NORMAL_CLEARING", 16,
     "send_bye", "pbx"),
    ("freeswitch-x-asterisk-to-fs-sip486.txt", "d79537d0", "busy", None, 17, "USER_BUSY", 17, "send_refuse",
     "pbx"),
    ("007-channel-hangup-complete-normal-clearing-recv_bye-cgrates.txt", "e3133bf7", "answered", 200, 16,
     "NORMAL_CLEARING", 16, "recv_bye", "unknown"),   # the CGRateS copy lost Call-Direction
]

# frames built from the documented variable lists (their files say so in their first line)
BUILT = [
    ("built-user-busy-600-outbound.txt", "busy", 600, 17, "USER_BUSY", 17, "recv_refuse", "callee", False),
    ("built-no-answer-outbound.txt", "no_answer", None, 19, "NO_ANSWER", 19, "send_cancel", "pbx", False),
    ("built-no-route-destination-inbound.txt", "not_found", None, 3, "NO_ROUTE_DESTINATION", 3, "send_refuse",
     "pbx", False),
    ("built-unallocated-number-inbound.txt", "not_found", None, 1, "UNALLOCATED_NUMBER", 1, "send_refuse",
     "pbx", False),
    ("built-recovery-on-timer-expire-outbound.txt", "unavailable", 408, 102, "RECOVERY_ON_TIMER_EXPIRE", 102,
     "recv_refuse", "callee", False),
    ("built-media-timeout-outbound.txt", "media", None, 16, "MEDIA_TIMEOUT", 804, "send_bye", "pbx", True),
    ("built-originator-cancel-outbound.txt", "cancelled", None, 16, "ORIGINATOR_CANCEL", 487, "send_cancel",
     "caller", True),
    ("built-originator-cancel-inbound.txt", "cancelled", 487, 16, "ORIGINATOR_CANCEL", 487, "recv_cancel",
     "caller", True),
    ("built-recv-bye-inbound.txt", "answered", 200, 16, "NORMAL_CLEARING", 16, "recv_bye", "caller", False),
    ("built-send-bye-inbound.txt", "answered", None, 16, "NORMAL_CLEARING", 16, "send_bye", "pbx", False),
    ("built-send-refuse-relayed-486-inbound.txt", "busy", 486, 17, "USER_BUSY", 17, "send_refuse", "callee",
     False),
]


async def test_real_freeswitch_captures_give_the_right_clues(server: EslServer) -> None:
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        for name, *_ in REAL:
            server.send_events(S.frames(name))
        # CHANNEL_HANGUP of each capture waits for its COMPLETE: one record per leg
        await h.wait_records(len(REAL))
        t = S.translator()
        legs = {c.leg_id[:8]: c for c in h.records}
        assert len(h.records) == len(REAL)
        for name, leg, category, sip, q850, cause, code, disposition, who in REAL:
            c = legs[leg]
            assert (c.sip_code, c.q850, c.pbx_cause, c.pbx_cause_code, c.disposition, c.hangup_source) == \
                (sip, q850, cause, code, disposition, who), name
            assert not c.incomplete and c.source_version == "1.10.12-release"
            assert t.explain(c).category == category, name
    finally:
        await S.stop(h)


async def test_real_capture_details_are_decoded() -> None:
    with EslServer(S.PASSWORD) as server:
        h = await S.start(server)
        try:
            await h.wait_sessions(1)
            server.send_events(S.frames("freeswitch-sip486-busy.txt"))
            server.send_events(S.frames("007-channel-hangup-complete-normal-clearing-recv_bye-cgrates.txt"))
            busy, answered = await h.wait_records(2)
        finally:
            await S.stop(h)
    assert busy.channel == "sofia/external/486@127.0.0.1:5070"          # %40 and %3A decoded
    assert (busy.direction, busy.from_number, busy.to_number) == ("outbound", "0000000000", "486")
    assert busy.sip_reason == "Busy Here" and busy.answered is False and busy.billsec_s == 0
    assert busy.sip_call_id == "1d6b9a0c-606e-1240-b292-160069dba1f0"
    assert busy.call_id == busy.leg_id and busy.internal is False
    assert busy.ended_at == pytest.approx(1795279664.204, abs=1.0)
    # billmsec (65039) is more precise than billsec (66, rounded up by FreeSWITCH)
    assert answered.answered is True and answered.billsec_s == 65.039 and answered.to_number == "1003"
    assert answered.call_id == "e3133bf7-dcde-4daf-9663-9a79ffcef5ad"


@pytest.mark.parametrize("case", BUILT, ids=[b[0][6:-4] for b in BUILT])
async def test_built_causes_and_dispositions(server: EslServer, case: tuple) -> None:
    name, category, sip, q850, cause, code, disposition, who, collapsed = case
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        server.send_events(S.frames(name))
        (c,) = await h.wait_records(1)
    finally:
        await S.stop(h)
    assert (c.sip_code, c.q850, c.pbx_cause, c.pbx_cause_code, c.disposition, c.hangup_source) == \
        (sip, q850, cause, code, disposition, who)
    exp = S.translator().explain(c)
    assert (exp.category, exp.hangup_source, exp.collapsed) == (category, who, collapsed)


async def test_reason_header_values_are_kept(server: EslServer) -> None:
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        server.send_events(S.frames("built-send-refuse-relayed-486-inbound.txt"))
        (c,) = await h.wait_records(1)
    finally:
        await S.stop(h)
    assert [(r.protocol, r.cause, r.text) for r in c.reason_headers] == [("Q.850", 17, "USER_BUSY")]
    assert c.sip_reason == "Busy Here"


def test_reason_header_with_several_values_keeps_the_good_ones() -> None:
    from callcause.connectors.freeswitch.source import parse_reason_values

    values = parse_reason_values('Q.850;cause=34;text="No circuit, channel", SIP;cause=503;text="x"')
    assert [(r.protocol, r.cause) for r in values] == [("Q.850", 34), ("SIP", 503)]
    assert [(r.protocol, r.cause) for r in parse_reason_values('Q.850;cause=abc, Q.850;cause=17')] == \
        [("Q.850", 17)]


@pytest.mark.parametrize(("disposition", "direction", "who"), [
    ("recv_bye", "inbound", "caller"), ("recv_bye", "outbound", "callee"),
    ("send_bye", "inbound", "pbx"), ("send_bye", "outbound", "pbx"),
    ("recv_cancel", "inbound", "caller"), ("recv_cancel", "outbound", "unknown"),
    ("send_cancel", "inbound", "unknown"), ("send_cancel", "outbound", "pbx"),
    ("send_refuse", "inbound", "pbx"), ("send_refuse", "outbound", "unknown"),
    ("recv_refuse", "inbound", "unknown"), ("recv_refuse", "outbound", "callee"),
])
def test_hangup_source_table(disposition: str, direction: str, who: str) -> None:
    assert HANGUP_SOURCE[(disposition, direction)] == who
    assert hangup_source(disposition, direction, "NORMAL_CLEARING") == who


def test_hangup_source_refinements_and_fallbacks() -> None:
    assert hangup_source("send_cancel", "outbound", "ORIGINATOR_CANCEL") == "caller"
    assert hangup_source("send_cancel", "outbound", "LOSE_RACE") == "pbx"
    assert hangup_source("send_refuse", "inbound", "USER_BUSY", relayed_sip=True) == "callee"
    assert hangup_source(None, "outbound", "ORIGINATOR_CANCEL") == "caller"
    assert hangup_source(None, "inbound", "MEDIA_TIMEOUT") == "pbx"
    assert hangup_source(None, "inbound", "USER_BUSY") is None
    assert hangup_source("recv_bye", None, "NORMAL_CLEARING") == "unknown"


async def test_public_channel_hangup_only_legs_are_recorded_incomplete(server: EslServer) -> None:
    # 2015 recordings carry CHANNEL_HANGUP only; their COMPLETE never comes
    names = ["001-channel-hangup-call-rejected-603-recv_refuse.txt",
             "002-channel-hangup-normal-temporary-failure-aleg-after-603.txt",
             "003-channel-hangup-originator-cancel.txt", "004-channel-hangup-normal-clearing-inbound.txt",
             "005-channel-hangup-normal-clearing-outbound-and-inbound.txt",
             "010-channel-hangup-normal-clearing-inbound-with-recording.txt",
             "011-channel-hangup-normal-clearing-inbound-then-outbound.txt"]
    h = await S.start(server, complete_wait=0.05)
    try:
        await h.wait_sessions(1)
        for name in names:
            server.send_events(S.frames(name))
        await h.wait_records(9)
    finally:
        await S.stop(h)
    assert len(h.records) == 9 and all(c.incomplete for c in h.records)
    t = S.translator()
    got = {c.leg_id[:8]: (c.pbx_cause, c.sip_code, c.hangup_source, t.explain(c).category) for c in h.records}
    assert got["11386ee5"] == ("CALL_REJECTED", 603, "callee", "rejected")
    assert got["71a01895"] == ("NORMAL_TEMPORARY_FAILURE", 603, None, "rejected")   # the B leg's 603
    assert got["5cf374c4"] == ("ORIGINATOR_CANCEL", None, "caller", "cancelled")  # relayed 200 ignored
    assert got["15e46277"][3] == "answered"


async def test_the_same_leg_is_recorded_once(server: EslServer) -> None:
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        busy = S.frames("freeswitch-sip486-busy.txt")          # CHANNEL_HANGUP then COMPLETE
        server.send_events(busy + busy[1:] + S.frames("freeswitch-sip603-decline.txt", COMPLETE))
        await h.wait_records(2)
    finally:
        await S.stop(h)
    assert [c.leg_id[:8] for c in h.records] == ["737a1220", "1026e887"]
    assert not h.records[0].incomplete and h.source.tracker.duplicates == 1


async def test_loopback_halves_of_a_call_that_left_the_pbx_are_not_recorded(server: EslServer) -> None:
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        server.send_events(S.frames("freeswitch-loopback-bridge-to-sip486.txt"))
        server.send_events(S.frames("freeswitch-loopback-cause17.txt"))
        # the loopback-only call shows after internal_leg_wait, marked internal
        await h.wait_records(3)
    finally:
        await S.stop(h)
    got = sorted((c.channel, c.internal) for c in h.records)
    assert got == [("loopback/cause17-a", True), ("loopback/cause17-b", True),
                   ("sofia/external/486@127.0.0.1:5070", False)]
    assert h.source.tracker.suppressed_internal == 2


async def test_record_internal_legs_records_every_loopback_leg(server: EslServer) -> None:
    h = await S.start(server, record_internal_legs=True)
    try:
        await h.wait_sessions(1)
        server.send_events(S.frames("freeswitch-loopback-bridge-to-sip486.txt"))
        await h.wait_records(3)
    finally:
        await S.stop(h)
    assert sorted(c.channel for c in h.records) == [
        "loopback/toresp486-a", "loopback/toresp486-b", "sofia/external/486@127.0.0.1:5070"]
    b_leg = next(c for c in h.records if c.channel == "loopback/toresp486-b")
    assert b_leg.internal and b_leg.dial_status == "USER_BUSY" and b_leg.sip_code == 486


def _section(data: dict, env: dict | None = None) -> Section:
    return Section(data, file="callcause.yaml", path="sources[0]", line=3, env=env or {})


def test_config_reads_the_contract_keys(tmp_path) -> None:
    cfg = parse_config(_section({"name": "fs-eu-1", "kind": "freeswitch", "host": "10.0.0.5",
                                 "password": "${ESL_PASSWORD}"}, {"ESL_PASSWORD": "s3cr3t"}))
    assert (cfg.name, cfg.host, cfg.port, cfg.password.reveal()) == ("fs-eu-1", "10.0.0.5", 8021, "s3cr3t")
    assert "s3cr3t" not in repr(cfg)
    secret = tmp_path / "esl.secret"
    secret.write_text("from-file\n")
    cfg = parse_config(_section({"name": "a", "password_file": str(secret), "port": 8022,
                                 "filter": ["Caller-Context default"]}))
    assert cfg.password.reveal() == "from-file" and cfg.port == 8022
    assert cfg.all_filters() == ("Caller-Context default", "Event-Name HEARTBEAT")


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="password"):
        parse_config(_section({"name": "a"}))
    with pytest.raises(ConfigError, match="filter"):
        parse_config(_section({"name": "a", "password": "x", "filter": ["justone"]}))
    with pytest.raises(ConfigError, match="port"):
        parse_config(_section({"name": "a", "password": "x", "port": 70000}))
