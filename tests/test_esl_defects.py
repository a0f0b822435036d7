"""One test per greenswitch 0.0.19 defect, each against a real TCP server (the ESL simulator).

Each test first shows the defect in the library where that can be done without a network
(so the test notices if a new greenswitch changes the ground), then shows our layer fixing it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import esl_support as S
import gevent
import pytest
from greenswitch.esl import ESLEvent

from callcause.connectors.freeswitch.client import EslTimeout, GuardedInboundESL
from callcause.connectors.simulator.esl import EslServer, event_frame, frame_body

COMPLETE = "CHANNEL_HANGUP_COMPLETE"


@pytest.fixture
def server():
    with EslServer(S.PASSWORD) as srv:
        yield srv


def busy_body() -> bytes:
    return frame_body(S.frames("freeswitch-sip486-busy.txt", COMPLETE)[0])


def in_own_thread(fn):  # type: ignore[no-untyped-def]
    """Run `fn` in a fresh OS thread (its own gevent hub), return its result or raise its error."""
    out: dict[str, object] = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc
        finally:
            gevent.get_hub().destroy(destroy_loop=True)

    t = threading.Thread(target=body)
    t.start()
    t.join(20)
    assert not t.is_alive()
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


async def test_defect_encoded_newline_cannot_forge_a_header(server: EslServer) -> None:
    # a caller-controlled value carrying an encoded newline and a fake header after it
    forged = busy_body().rstrip(b"\n") + b"\nvariable_sip_user_agent: x%0AHangup-Cause%3A%20NORMAL_CLEARING\n\n"
    assert ESLEvent(forged.decode()).headers["Hangup-Cause"] == "NORMAL_CLEARING"   # the defect
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        server.send_events([event_frame(forged)])
        (c,) = await h.wait_records(1)
    finally:
        await S.stop(h)
    assert c.pbx_cause == "USER_BUSY"
    assert S.translator().explain(c).category == "busy"


async def test_defect_frame_without_content_length_does_not_stall_the_reader(server: EslServer) -> None:
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        server.send_raw(b"Content-Type: text/event-plain\n\n" + busy_body())
        server.send_events(S.frames("freeswitch-sip603-decline.txt", COMPLETE))
        records = await h.wait_records(2)
        assert [c.pbx_cause for c in records] == ["USER_BUSY", "CALL_REJECTED"]
        assert h.source.sessions == 1 and h.source.connected       # same connection, still reading
        assert S.metric("callcause_malformed_input_total", source=h.source.name,
                        kind="missing_content_length") == 1
    finally:
        await S.stop(h)


def test_defect_send_to_a_silent_peer_times_out(server: EslServer) -> None:
    def probe() -> float:
        con = GuardedInboundESL(server.host, server.port, S.PASSWORD, timeout=2.0)
        con.connect()
        try:
            server.silent = True
            started = time.monotonic()
            with pytest.raises(EslTimeout):
                con.send("api status", timeout=0.3)
            return time.monotonic() - started
        finally:
            con.stop()

    assert in_own_thread(probe) < 5.0     # greenswitch's own send() would block forever


async def test_defect_silent_peer_is_detected_and_replaced(server: EslServer) -> None:
    h = await S.start(server, heartbeat_timeout=0.2, timeout=0.3)
    try:
        await h.wait_sessions(1)
        server.silent = True                   # the TCP connection stays open, nothing answers
        await asyncio.wait_for(h.source.down_event.wait(), 10)
        server.silent = False
        await h.wait_sessions(2, timeout=10)
        server.send_events(S.frames("freeswitch-sip486-busy.txt"))
        (c,) = await h.wait_records(1)
        assert c.pbx_cause == "USER_BUSY"
    finally:
        await S.stop(h)


@pytest.mark.parametrize("notice", [True, False], ids=["disconnect-notice", "dropped"])
async def test_defect_it_reconnects_and_subscribes_again(server: EslServer, notice: bool) -> None:
    h = await S.start(server)
    try:
        await h.wait_sessions(1)
        name = h.source.name
        server.disconnect(notice=notice)
        await h.wait_sessions(2)
        subscriptions = [c for _, c in server.commands if c.startswith("event plain")]
        assert subscriptions == ["event plain CHANNEL_HANGUP_COMPLETE CHANNEL_HANGUP HEARTBEAT"] * 2
        assert [c for _, c in server.commands].count("auth ********") == 2
        assert S.metric("callcause_source_reconnects_total", source=name) >= 1
        assert S.metric("callcause_source_up", source=name) == 1
        server.send_events(S.frames("freeswitch-sip404-notfound.txt"))
        (c,) = await h.wait_records(1)
        assert c.pbx_cause == "UNALLOCATED_NUMBER"
    finally:
        await S.stop(h)
    assert S.metric("callcause_source_up", source=name) == 0


def test_defect_event_json_is_understood(server: EslServer) -> None:
    json_body = json.dumps({"Event-Name": COMPLETE, "Hangup-Cause": "USER_BUSY"})
    assert "Event-Name" not in ESLEvent(json_body).headers          # the defect

    def listen() -> dict[str, str]:
        got: list[dict[str, str]] = []
        arrived = gevent.event.Event()
        con = GuardedInboundESL(server.host, server.port, S.PASSWORD, timeout=2.0)

        def on_event(ev) -> None:  # type: ignore[no-untyped-def]
            got.append(dict(ev.headers))
            arrived.set()

        con.register_handle(COMPLETE, on_event)
        con.connect()
        try:
            assert con.send(f"event json {COMPLETE}").headers["Reply-Text"].startswith("+OK")
            threading.Thread(target=server.send_events, args=(S.frames("freeswitch-sip486-busy.txt"),)).start()
            assert arrived.wait(5)
            return got[0]
        finally:
            con.stop()

    headers = in_own_thread(listen)
    assert headers["Event-Name"] == COMPLETE and headers["Hangup-Cause"] == "USER_BUSY"
    assert headers["Channel-Name"] == "sofia/external/486@127.0.0.1:5070"
