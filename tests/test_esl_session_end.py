"""What reached the daemon is recorded, whatever ends the session; memory per FreeSWITCH
connection stays bounded. Each case runs `callcause run` (the Daemon) against the ESL
simulator over TCP and reads the JSON Lines records it wrote."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path

import esl_support as S
import pytest

from callcause.config import load_config
from callcause.connectors.freeswitch.client import MAX_FRAME_BYTES
from callcause.connectors.simulator.esl import EslServer, event_frame, frame_body, load_capture, with_fresh_ids
from callcause.daemon import Daemon

COMPLETE = "CHANNEL_HANGUP_COMPLETE"
_names = itertools.count(1)
LINGER = "006-protocol-command-replies-linger-disconnect-notice.txt"


@pytest.fixture
def server():
    with EslServer(S.PASSWORD) as srv:
        yield srv


def calls(n: int, body: bytes | None = None) -> list[bytes]:
    """`n` different calls: the busy capture's COMPLETE (or `body`), each with fresh ids."""
    template = [event_frame(body)] if body is not None else S.frames("freeswitch-sip486-busy.txt", COMPLETE)
    return [f for _ in range(n) for f in with_fresh_ids(template)]


def notice(fixture: str, disposition: str) -> bytes:
    """FreeSWITCH's own text/disconnect-notice frame from a capture."""
    return next(f for f in load_capture(S.FIXTURES / fixture)
                if b"text/disconnect-notice" in f and disposition.encode() in f)


class Running:
    def __init__(self, daemon: Daemon, task: asyncio.Task[int], out: Path) -> None:
        self.daemon, self.task, self.out = daemon, task, out
        self.source = daemon.sources[0]
        self.name = self.source.name

    def metric(self, name: str, **labels: str) -> float:
        return S.metric(name, source=self.name, **labels)

    async def records(self, count: int, timeout: float = 15.0) -> None:
        async def until() -> None:
            while self.daemon.pipeline.records < count:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until(), timeout)

    async def stop(self) -> list[dict]:  # type: ignore[type-arg]
        self.daemon.stop.set()
        assert await asyncio.wait_for(self.task, 20) == 0
        return [json.loads(line) for line in self.out.read_text().splitlines()]


async def run_daemon(tmp_path: Path, server: EslServer, source_keys: str = "",
                     on_record: Callable[[object], None] | None = None) -> Running:
    name = f"fs-end-{next(_names)}"     # metrics are process-wide: one name per test
    daemon = Daemon(load_config(S.daemon_config(tmp_path, server.port, source_keys=source_keys, name=name)))
    daemon.pipeline.on_record = on_record
    task = asyncio.create_task(daemon.run())
    assert await server.subscribed(1)
    return Running(daemon, task, tmp_path / "records.jsonl")


def slow_sink(pause: float = 0.002) -> Callable[[object], None]:
    """A record hook that holds the loop a moment, as a slow sink does: the hand-off fills."""
    import time

    return lambda record: time.sleep(pause)


def assert_clean(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    err = capfd.readouterr().err
    for text in (caplog.text, err):
        assert "GreenletExit" not in text and "Traceback" not in text


async def test_calls_then_an_immediate_close_are_all_recorded(tmp_path, server, caplog, capfd) -> None:
    # a sink slower than FreeSWITCH: most calls are still on their way to the pipeline at the close
    run = await run_daemon(tmp_path, server, "    handoff_size: 10\n", on_record=slow_sink())
    server.send_events(calls(100))
    server.disconnect(notice=False, abort=False)     # all 100 written, then FIN at once
    await run.records(100)
    assert await server.subscribed(2)                # and it came back
    lines = await run.stop()
    assert len(lines) == 100 and len({d["call"]["leg_id"] for d in lines}) == 100
    assert_clean(caplog, capfd)


async def test_calls_then_the_disconnect_notice_are_all_recorded(tmp_path, server) -> None:
    run = await run_daemon(tmp_path, server, "    handoff_size: 1\n", on_record=slow_sink(0.02))
    server.send_events(calls(5))
    server.send_raw(notice("008-protocol-disconnect-notice-command-reply-davec82.txt", "Disposition: disconnect"))
    server.disconnect(notice=False, abort=False)
    await run.records(5)
    lines = await run.stop()
    assert [d["cause"]["category"] for d in lines] == ["busy"] * 5


async def test_a_linger_notice_keeps_the_session(tmp_path, server) -> None:
    run = await run_daemon(tmp_path, server)
    server.send_events(calls(3))
    server.send_raw(notice(LINGER, "Content-Disposition: linger"))
    server.send_events(calls(3))
    server.send_raw(notice(LINGER, "Content-Disposition: disconnect"))
    server.disconnect(notice=False, abort=False)
    await run.records(6)
    assert run.source.sessions >= 1
    lines = await run.stop()
    assert len(lines) == 6


@pytest.mark.parametrize("ctype", ["api/response", "text/rude-rejection", "text/event-plain"])
async def test_an_absurd_content_length_is_capped(tmp_path, server, ctype: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="callcause")
    run = await run_daemon(tmp_path, server)
    junk = b"x" * (1 << 20) + b"\n"
    server.send_raw(b"Content-Type: %s\nContent-Length: 99999999999\n\n" % ctype.encode() + junk * 6)
    if ctype == "text/rude-rejection":               # FreeSWITCH would close now; so do we
        assert await server.subscribed(2)
    server.send_events(calls(3))
    await run.records(3)
    # what was buffered for that frame never grew past the cap (plus one read)
    assert run.source.peak_buffered <= MAX_FRAME_BYTES + 2 * 65536 * 4
    assert run.metric("callcause_malformed_input_total", kind="oversized_frame") >= 1
    assert "oversized_frame" in caplog.text and "99999999999" in caplog.text
    await run.stop()


async def test_the_hand_off_is_bounded_in_bytes(tmp_path, server) -> None:
    run = await run_daemon(tmp_path, server, "    handoff_bytes: 65536\n", on_record=slow_sink())
    server.send_events(calls(300))
    await run.records(300, timeout=30)
    handoff = run.source.handoff
    assert handoff is not None and 0 < handoff.peak_bytes <= 65536
    assert run.metric("callcause_handoff_overflow_total") >= 1
    lines = await run.stop()
    assert len(lines) == 300


@pytest.mark.parametrize("bad", ["%C2%B2", "1" * 5001], ids=["superscript-two", "5001-digits"])
async def test_a_bad_reason_value_costs_only_itself(tmp_path, server, bad: str) -> None:
    body = frame_body(S.frames("freeswitch-sip486-busy.txt", COMPLETE)[0])
    body = body.rstrip(b"\n") + b"\nvariable_sip_reason: Q.850;cause=%s, SIP;cause=486\n\n" % bad.encode()
    run = await run_daemon(tmp_path, server)
    server.send_events(calls(1, body))
    await run.records(1)
    (line,) = await run.stop()
    assert line["cause"]["category"] == "busy" and not line["incomplete"]
    assert [r["protocol"] for r in line["reason_headers"]] == ["SIP"]     # the bad value alone lost
    assert run.metric("callcause_malformed_input_total", kind="conversion_error") == 0


async def test_shutdown_under_load_is_clean(tmp_path, server, caplog, capfd) -> None:
    run = await run_daemon(tmp_path, server, "    handoff_size: 20\n", on_record=slow_sink(0.001))
    server.send_events(calls(1500))
    await run.records(100)
    assert run.metric("callcause_handoff_overflow_total") >= 1   # it is under load
    lines = await run.stop()
    converted = run.metric("callcause_source_events_total")
    assert len(lines) == converted          # every event read was recorded, none half-way
    assert_clean(caplog, capfd)


async def test_reconnect_under_load_loses_nothing(tmp_path, server, caplog, capfd) -> None:
    run = await run_daemon(tmp_path, server, "    handoff_size: 20\n", on_record=slow_sink(0.001))
    server.send_events(calls(600))
    server.disconnect(notice=False, abort=False)
    assert await server.subscribed(2, timeout=30)
    server.send_events(calls(10))
    await run.records(610, timeout=30)
    lines = await run.stop()
    assert len(lines) == 610
    assert_clean(caplog, capfd)


def test_shared_hub_thread_ends_with_its_last_session():
    """The hub's thread tears its loop down once the last session ended, and `join` waits for
    that, so nothing of gevent runs while the interpreter exits."""
    import threading

    from callcause.connectors.freeswitch.client import EslHub

    hub = EslHub(name="test-esl-hub")
    ran = threading.Event()
    hub.spawn(ran.set)
    assert ran.wait(5)
    assert hub.join(5.0)
    assert not any(t.name == "test-esl-hub" and t.is_alive() for t in threading.enumerate())
    assert hub.join(0.1)          # nothing left to wait for
