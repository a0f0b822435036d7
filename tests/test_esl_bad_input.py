"""Bad input on the event socket: each kind is counted and logged once, the connection keeps
reading, and no leg is lost or recorded twice. Also: a refused password and secrets in logs."""

from __future__ import annotations

import asyncio
import logging
import re

import esl_support as S
import pytest

from callcause.connectors.simulator.esl import EslServer, event_frame, frame_body

COMPLETE = "CHANNEL_HANGUP_COMPLETE"


@pytest.fixture
def server():
    with EslServer(S.PASSWORD) as srv:
        yield srv


def body_of(name: str) -> bytes:
    return frame_body(S.frames(name, COMPLETE)[0])


def without(body: bytes, *names: str) -> bytes:
    keep = [line for line in body.split(b"\n") if line.split(b": ", 1)[0].decode() not in names]
    return b"\n".join(keep)


def malformed(source: str, kind: str) -> float:
    return S.metric("callcause_malformed_input_total", source=source, kind=kind)


async def run_and_collect(server: EslServer, sends: list, expect: int, **cfg) -> S.Harness:  # type: ignore[type-arg]
    h = await S.start(server, **cfg)
    try:
        await h.wait_sessions(1)
        for kind, data in sends:
            if kind == "raw":
                server.send_raw(data)
            else:
                server.send_events(data)
        await h.wait_records(expect)
        assert h.source.sessions == 1, "bad input must not cost the connection"
    finally:
        await S.stop(h)
    return h


async def test_garbage_is_skipped_and_logged_once(server: EslServer, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="callcause")
    junk = bytes(range(256)) * 80 + b"\n\n"                        # binary, no frame structure
    lines = b"this is not ESL\nneither: is this line\n\n"
    sends = [("raw", junk), ("raw", lines), ("raw", junk),
             ("events", S.frames("freeswitch-sip486-busy.txt", COMPLETE))]
    h = await run_and_collect(server, sends, 1)
    assert [c.pbx_cause for c in h.records] == ["USER_BUSY"]
    assert malformed(h.source.name, "garbage") >= 3
    lines_logged = [r for r in caplog.records if ": garbage:" in r.getMessage()]
    assert len(lines_logged) == 1 and h.source.name in lines_logged[0].getMessage()


async def test_content_length_too_short(server: EslServer) -> None:
    body = body_of("freeswitch-sip603-decline.txt")
    lying = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % (len(body) - 40) + body
    sends = [("raw", lying), ("events", S.frames("freeswitch-sip486-busy.txt", COMPLETE))]
    h = await run_and_collect(server, sends, 2)
    cut, busy = h.records
    assert cut.pbx_cause == "CALL_REJECTED" and cut.incomplete          # what arrived, marked
    assert busy.pbx_cause == "USER_BUSY" and not busy.incomplete
    assert malformed(h.source.name, "lying_content_length") == 1


async def test_content_length_too_long_gives_the_next_frame_back(server: EslServer) -> None:
    body = body_of("freeswitch-sip603-decline.txt")
    lying = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % (len(body) + 300) + body
    sends = [("raw", lying), ("events", S.frames("freeswitch-sip486-busy.txt", COMPLETE)),
             ("events", S.frames("freeswitch-sip404-notfound.txt", COMPLETE))]
    h = await run_and_collect(server, sends, 3)
    assert [(c.pbx_cause, c.incomplete) for c in h.records] == [
        ("CALL_REJECTED", False), ("USER_BUSY", False), ("UNALLOCATED_NUMBER", False)]
    assert malformed(h.source.name, "lying_content_length") == 1


async def test_ten_megabyte_event_is_skipped_without_losing_the_next(server: EslServer) -> None:
    huge = b"Event-Name: CHANNEL_HANGUP_COMPLETE\nvariable_x: " + b"a" * (10 * 1024 * 1024) + b"\n\n"
    sends = [("raw", event_frame(huge)), ("events", S.frames("freeswitch-sip486-busy.txt", COMPLETE))]
    h = await run_and_collect(server, sends, 1)
    assert [c.pbx_cause for c in h.records] == ["USER_BUSY"]
    assert malformed(h.source.name, "oversized_frame") == 1


async def test_invalid_utf8_and_bad_percent_encoding_are_kept_and_counted(server: EslServer) -> None:
    body = body_of("freeswitch-sip486-busy.txt")
    raw_bytes = body.replace(b"Caller-Caller-ID-Number: 0000000000", b"Caller-Caller-ID-Number: 00\xff\xfe00")
    bad_pct = body_of("freeswitch-sip603-decline.txt").replace(
        b"Caller-Caller-ID-Number: 0000000000", b"Caller-Caller-ID-Number: 12%ZZ34%E2%28")
    sends = [("raw", event_frame(raw_bytes)), ("raw", event_frame(bad_pct))]
    h = await run_and_collect(server, sends, 2)
    first, second = h.records
    assert first.pbx_cause == "USER_BUSY" and first.from_number == "00\ufffd\ufffd00"
    assert second.pbx_cause == "CALL_REJECTED" and second.from_number.startswith("12%ZZ34")
    assert malformed(h.source.name, "invalid_utf8") == 2
    assert malformed(h.source.name, "bad_percent_encoding") == 1


async def test_event_without_unique_id_is_recorded_once_under_a_stable_id(server: EslServer) -> None:
    body = without(body_of("freeswitch-sip486-busy.txt"), "Unique-ID", "Caller-Unique-ID", "variable_uuid")
    frame = event_frame(body)
    sends = [("raw", frame), ("raw", frame), ("events", S.frames("freeswitch-sip603-decline.txt", COMPLETE))]
    h = await run_and_collect(server, sends, 2)
    first, second = h.records
    assert first.incomplete and first.pbx_cause == "USER_BUSY"
    assert re.fullmatch(r"6d78956e-1e73-4a2f-8069-c855284078f2/\d+", first.leg_id)   # Core-UUID/sequence
    assert second.pbx_cause == "CALL_REJECTED"            # the repeated event was not recorded twice
    assert malformed(h.source.name, "missing_unique_id") == 2


async def test_event_without_hangup_cause_is_recorded_incomplete(server: EslServer) -> None:
    body = without(body_of("freeswitch-sip486-busy.txt"), "Hangup-Cause", "variable_hangup_cause")
    h = await run_and_collect(server, [("raw", event_frame(body))], 1)
    (c,) = h.records
    assert c.incomplete and c.pbx_cause is None and c.sip_code == 486 and c.q850 == 17
    assert S.translator().explain(c).category == "busy"
    assert malformed(h.source.name, "missing_hangup_cause") == 1


async def test_frames_split_at_any_byte(server: EslServer) -> None:
    server.split_at = 7
    h = await run_and_collect(server, [("events", S.frames("freeswitch-sip486-busy.txt"))], 1)
    assert [(c.pbx_cause, c.sip_code, c.incomplete) for c in h.records] == [("USER_BUSY", 486, False)]


async def test_unsolicited_reply_does_not_break_commands(server: EslServer) -> None:
    sends = [("raw", b"Content-Type: command/reply\nReply-Text: +OK\n\n"),
             ("events", S.frames("freeswitch-sip486-busy.txt", COMPLETE))]
    h = await run_and_collect(server, sends, 1)
    assert malformed(h.source.name, "unsolicited_reply") == 1


async def test_refused_password_names_the_host_never_the_password(server: EslServer, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server.reject_auth = True
    h = await S.start(server)
    try:
        assert await server.wait_for_async(lambda: server.commands.count((2, "auth ********")) == 1)
        server.reject_auth = False                 # the admin fixed the ACL/password
        await h.wait_sessions(1)
        server.send_events(S.frames("freeswitch-sip486-busy.txt", COMPLETE))
        await h.wait_records(1)
    finally:
        await S.stop(h)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused and f"127.0.0.1:{server.port}" in refused[0] and "password" in refused[0]
    assert S.PASSWORD not in caplog.text
    assert S.PASSWORD not in repr(h.source.cfg)


async def test_wrong_password_in_config_retries_with_backoff(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="callcause.esl")
    with EslServer("another-password") as server:
        h = await S.start(server)
        try:
            assert await server.wait_for_async(lambda: server.accepted >= 3)
            assert not h.source.connected and h.records == []
        finally:
            await S.stop(h)
    assert len([r for r in caplog.records if "login refused" in r.getMessage()]) >= 2
    assert S.PASSWORD not in caplog.text


async def test_simulator_wait_helper_is_bounded(server: EslServer) -> None:
    assert not await asyncio.wait_for(server.wait_for_async(lambda: False, timeout=0.05), 2)
