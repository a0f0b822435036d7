"""Hostile input through the real daemon: one bad event costs that event, a source that ends
is restarted, a frame without its blank line keeps the next real event, a record that can
never be written is set aside while later ones flow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

import pytest
from ami_support import SECRET, fixture, wait_until
from esl_support import PASSWORD, frames, metric
from esl_support import daemon_config as esl_config
from test_daemon import records, write_config
from test_health import http_get

from callcause import metrics, wire
from callcause.config import load_config
from callcause.connectors.asterisk import correlate
from callcause.connectors.simulator.ami import AmiSimulator, IdSource, Scenario
from callcause.connectors.simulator.esl import EslServer, with_fresh_ids
from callcause.connectors.sinks.log import LogConfig, LogSink
from callcause.daemon import Daemon
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline
from callcause.record import HangupClues

CALL = fixture("asterisk-sip486-busy.txt")


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("TEST_AMI_SECRET", SECRET)


def fresh(frames_: list[str], ids: IdSource, name: str = "call") -> list[str]:
    return Scenario.from_frames(name, frames_).render(ids)


def malformed(source: str, kind: str) -> float:
    return metrics.MALFORMED.labels(source=source, kind=kind)._value.get()


# --- reading numbers and times from the wire --------------------------------------------------

@pytest.mark.parametrize("text, number", [
    ("486", 486), (" 17 ", 17), ("0", 0), ("²", None), ("²²²", None), ("٣٤", None), ("+5", None),
    ("-1", None), ("1_000", None), ("", None), (None, None), ("9" * 19, None), ("1e3", None)])
def test_ascii_int_takes_ascii_digits_only(text, number):
    assert wire.ascii_int(text) == number


@pytest.mark.parametrize("text, value", [
    ("1733246400.123456", 1733246400.123456), ("1733246400", 1733246400.0), ("nan", None),
    ("inf", None), ("1e400", None), ("-5", None), ("١٢٣", None), ("99999999999999999999", None)])
def test_ascii_decimal_takes_plain_decimals_only(text, value):
    assert wire.ascii_decimal(text) == value


def test_plausible_times_and_durations():
    assert wire.sane_epoch(1733246400.0)
    assert not any(wire.sane_epoch(v) for v in (None, 0.0, 1e17, float("nan"), float("inf"), -1.0))
    assert wire.sane_duration(4.2) == 4.2
    assert wire.sane_duration(1e12) is None and wire.sane_duration(-1.0) is None


@pytest.mark.parametrize("text", ["²²²", "SIP ²²² Busy", "SIP ٤٨٦ Busy"])
def test_techcause_with_non_ascii_digits_is_no_sip_code(text):
    assert correlate.parse_tech(text) is None


def test_a_reason_header_with_a_non_ascii_cause_is_skipped_not_raised():
    from callcause.mapping.notation import parse_reason_header

    assert parse_reason_header('Q.850;cause=²;text="x", SIP;cause=486', lenient=True)[0].cause == 486
    assert parse_reason_header("Q.850;cause=٣", lenient=True) == []


# --- Asterisk, through the real daemon --------------------------------------------------------

async def test_an_event_that_raises_costs_that_event_only(tmp_path, monkeypatch, caplog):
    """A failure injected into the handling of one UserEvent, between two real calls: both
    calls are recorded, the event is counted and logged once, the connection stays."""
    real = correlate.parse_reason

    def boom(text: str):
        if "boom" in text:
            raise RuntimeError("injected failure")
        return real(text)

    monkeypatch.setattr(correlate, "parse_reason", boom)
    ids = IdSource()
    bad = "Event: UserEvent\r\nUserEvent: CallCause\r\nUniqueid: 1733246400.999\r\nReason: boom"
    async with AmiSimulator(secret=SECRET) as sim:
        daemon = Daemon(load_config(write_config(tmp_path, sim.port)))
        task = asyncio.create_task(daemon.run())
        await sim.wait_logins(1)
        await wait_until(lambda: daemon.sources[0].connected)
        where = daemon.sources[0].where
        before = malformed(where, "event_error")
        await sim.send_events([*fresh(CALL, ids, "a"), bad, *fresh(CALL, ids, "b")])
        await wait_until(lambda: len(records(tmp_path)) == 2)
        assert malformed(where, "event_error") == before + 1
        assert daemon.sources[0].connections == 1 and daemon.sources[0].connected
        daemon.stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    assert {r["cause"]["category"] for r in records(tmp_path)} == {"busy"}
    assert "userevent event (Uniqueid '1733246400.999') could not be handled" in caplog.text
    assert "injected failure" in caplog.text


async def test_a_frame_without_its_blank_line_keeps_the_next_real_event(tmp_path, caplog):
    """The callee leg's Hangup glued to the frame before it: both frames are read, the call is
    recorded in full, and the resync is logged."""
    ids = IdSource()
    call = fresh(CALL, ids)
    hangup = next(i for i, f in enumerate(call)
                  if f.startswith("Event: Hangup\r\n") and "\r\nChannel: PJSIP/" in f)
    glued = call[hangup - 1] + "\r\n" + call[hangup]          # the blank line between them lost
    stream = [*call[:hangup - 1], glued, *call[hangup + 1:]]
    async with AmiSimulator(secret=SECRET) as sim:
        daemon = Daemon(load_config(write_config(tmp_path, sim.port)))
        task = asyncio.create_task(daemon.run())
        await sim.wait_logins(1)
        await wait_until(lambda: daemon.sources[0].connected)
        await sim.send_raw("".join(f + "\r\n\r\n" for f in stream).encode())
        clean = fresh(CALL, ids, "control")
        await sim.send_events(clean)
        await wait_until(lambda: len(records(tmp_path)) == 2)
        daemon.stop.set()
        await asyncio.wait_for(task, 10)
    uid = next(line.split(": ", 1)[1] for line in call[hangup].split("\r\n") if line.startswith("Uniqueid: "))
    assert uid in {r["call"]["leg_id"] for r in records(tmp_path)}
    assert "resync" in caplog.text


def test_frames_split_at_a_second_event_line_and_stray_blank_lines_are_skipped():
    """At the wire layer: a blank line too many before a frame, a frame glued to the next,
    and OriginateResponse's own `Response:` header, which is no frame boundary."""
    from callcause.connectors.asterisk.protocol import AmiProtocol
    from callcause.problems import ProblemLog

    seen: list[tuple[str, dict]] = []
    proto = AmiProtocol()
    proto.on_event = lambda name, fields: seen.append((name, fields))
    proto.wanted = frozenset({"hangup", "originateresponse", "newchannel"})
    proto.problems = ProblemLog("test")
    proto.connection_made(None)
    proto.banner_seen = True
    proto.data_received(b"\r\n\r\nEvent: Hangup\r\nUniqueid: 1.1\r\n\r\n"
                        b"Event: Newchannel\r\nUniqueid: 1.2\r\nEvent: Hangup\r\nUniqueid: 1.3\r\n\r\n"
                        b"Event: OriginateResponse\r\nResponse: Failure\r\nUniqueid: 1.4\r\n\r\n")
    assert [(name, f["uniqueid"]) for name, f in seen] == [
        ("hangup", "1.1"), ("newchannel", "1.2"), ("hangup", "1.3"), ("originateresponse", "1.4")]
    assert seen[3][1]["response"] == "Failure"


async def test_a_source_task_that_ends_is_restarted_and_not_ready_meanwhile(tmp_path, caplog):
    """The source's task fails once (injected); the supervisor counts and logs it, /readyz
    answers 503 while it is down, and after the (injected) backoff wait it records again."""
    async with AmiSimulator(secret=SECRET) as sim:
        path = write_config(tmp_path, sim.port, extra="metrics:\n  listen: 127.0.0.1:0\n")
        daemon = Daemon(load_config(path))
        source = daemon.sources[0]
        real_run = source.run
        runs = 0

        async def flaky(emit):
            nonlocal runs
            runs += 1
            if runs == 1:
                inner = asyncio.ensure_future(real_run(emit))
                await source.logged_in.wait()
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await inner
                raise RuntimeError("injected source failure")
            await real_run(emit)

        source.run = flaky
        waits: list[float] = []
        release = asyncio.Event()

        async def restart_wait(delay: float) -> None:
            waits.append(delay)
            await release.wait()

        daemon.restart_wait = restart_wait
        restarts = metrics.SOURCE_RESTARTS.labels(source="pbx-test")._value.get()
        task = asyncio.create_task(daemon.run())
        await wait_until(lambda: waits == [daemon.restart_min])
        assert metrics.SOURCE_RESTARTS.labels(source="pbx-test")._value.get() == restarts + 1
        status, body = await http_get(daemon.health.port, "/readyz")
        assert status == 503 and json.loads(body)["components"]["source:pbx-test"] is False
        release.set()
        await wait_until(lambda: runs == 2 and source.connected)
        await sim.send_events(fresh(CALL, IdSource()))
        await wait_until(lambda: len(records(tmp_path)) == 1)
        status, _ = await http_get(daemon.health.port, "/readyz")
        assert status == 200
        daemon.stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    line = next(r for r in caplog.records if "stopped unexpectedly" in r.getMessage())
    assert line.levelno == logging.ERROR and "injected source failure" in line.getMessage()


# --- FreeSWITCH: an absurd time between real calls (issue: one record wedging every sink) ------

async def test_an_absurd_event_time_between_real_calls_falls_back_to_the_receive_time(tmp_path):
    busy = frames("freeswitch-sip486-busy.txt", only="CHANNEL_HANGUP_COMPLETE")
    absurd = [f.replace(b"Event-Date-Timestamp: ", b"Event-Date-Timestamp: 99999999999999999")
              for f in with_fresh_ids(busy)]
    with EslServer(PASSWORD) as server:
        daemon = Daemon(load_config(esl_config(tmp_path, server.port)))
        task = asyncio.create_task(daemon.run())
        assert await server.subscribed(1)
        before = metric("callcause_malformed_input_total", source="fs-daemon", kind="bad_event_time")
        started = time.time()
        server.send_events(with_fresh_ids(busy) + absurd + with_fresh_ids(busy))
        await wait_until(lambda: len(records(tmp_path)) == 3 * len(busy), 10)
        daemon.stop.set()
        assert await asyncio.wait_for(task, 15) == 0
    docs = records(tmp_path)
    assert metric("callcause_malformed_input_total", source="fs-daemon", kind="bad_event_time") == before + len(busy)
    odd = [d for d in docs if not d["time"].startswith(("2024", "2025", "2026"))]
    assert not odd
    middle = docs[len(busy)]
    assert middle["time"] >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started - 60))


async def test_an_event_json_frame_with_lone_surrogates_still_gives_a_writable_record(tmp_path):
    """JSON escapes can carry lone surrogates (`\\ud800`), which no UTF-8 sink can encode; a
    peer may send `text/event-json` whatever format was asked for."""
    from callcause.connectors.simulator.esl import event_frame, frame_body, plain_headers

    busy = frames("freeswitch-sip486-busy.txt", only="CHANNEL_HANGUP_COMPLETE")
    odd = json.loads(json.dumps(plain_headers(frame_body(with_fresh_ids(busy)[0]))))
    odd["Caller-Caller-ID-Number"] = "1000\ud800"
    odd["variable_sip_reason"] = 'Q.850;cause=17;text="busy\udcff"'
    raw = event_frame(json.dumps(odd).encode(), "text/event-json")
    with EslServer(PASSWORD) as server:
        daemon = Daemon(load_config(esl_config(tmp_path, server.port)))
        task = asyncio.create_task(daemon.run())
        assert await server.subscribed(1)
        server.send_events(with_fresh_ids(busy))
        server.send_raw(raw)
        server.send_events(with_fresh_ids(busy))
        await wait_until(lambda: len(records(tmp_path)) == 2 * len(busy) + 1, 10)
        daemon.stop.set()
        assert await asyncio.wait_for(task, 15) == 0
    doc = next(d for d in records(tmp_path) if d["call"]["leg_id"] == odd["Unique-ID"])
    assert doc["call"]["from"] == "1000\ufffd"


# --- the pipeline: a record no sink can write is set aside, the rest flow -----------------------

async def test_an_unwritable_record_is_set_aside_and_later_records_flow(tmp_path, caplog):
    """A record whose time cannot be rendered (as a source that did not check it would
    produce) between two good ones: the good ones are written at once, the bad one is
    logged with its id and counted, nothing is retried forever."""
    sink = LogSink(LogConfig(path=str(tmp_path / "records.jsonl"), stdout="off"), "en")
    pipeline = Pipeline(Translator.default(), [sink])
    await pipeline.start_sinks()
    good = [HangupClues("replay", "asterisk", f"1733246400.{i}", q850=17) for i in (1, 3)]
    bad = HangupClues("replay", "asterisk", "1733246400.2", q850=17, ended_at=1e17)
    aside = metrics.RECORDS_SET_ASIDE.labels(sink=sink.name)._value.get()
    out = await asyncio.wait_for(pipeline.process_many([good[0], bad, good[1]]), 5)
    await pipeline.close_sinks()
    assert [r["call"]["leg_id"] for r in records(tmp_path)] == ["1733246400.1", "1733246400.3"]
    assert metrics.RECORDS_SET_ASIDE.labels(sink=sink.name)._value.get() == aside + 1
    assert f"record {out[1].id} (source replay, leg 1733246400.2) can never be written" in caplog.text


async def test_an_unwritable_record_becomes_a_dead_letter_of_the_webhook_outbox(tmp_path):
    """In a group handed to a webhook sink at once: the good records are accepted and
    delivered, the bad one is a dead letter that `callcause outbox list --dead` shows."""
    from webhook_helpers import FixedExplainer, Receiver, make_sink

    from callcause.connectors.delivery.outbox import Outbox

    receiver = await Receiver().start()
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="hook")
    pipeline = Pipeline(FixedExplainer(), [sink])
    await pipeline.start_sinks()
    try:
        clues = [HangupClues("pbx", "asterisk", f"1733246400.{i}", ended_at=1733246400.0 + i)
                 for i in range(5)]
        clues[2].ended_at = float("1e300")
        out = await asyncio.wait_for(pipeline.process_many(clues), 5)
        await receiver.wait_until(lambda: len(receiver.delivered) == 4)
    finally:
        await pipeline.close_sinks()
        await receiver.stop()
    assert set(receiver.delivered) == {r.id for i, r in enumerate(out) if i != 2}
    box = Outbox(tmp_path / "outbox.db").open()
    try:
        dead = box.listing(dead_only=True, endpoint=None, limit=10)
    finally:
        box.close()
    assert [(row[0], row[1]) for row in dead] == [(out[2].id, "hook")]
    assert dead[0][4].startswith("unwritable record:")


async def test_clues_the_translator_cannot_explain_cost_that_record_only(tmp_path, caplog):
    class Failing(Translator):
        def explain(self, c, dialect=None):
            if c.leg_id.endswith(".2"):
                raise KeyError("injected translator failure")
            return super().explain(c, dialect)

    base = Translator.default()
    sink = LogSink(LogConfig(path=str(tmp_path / "records.jsonl"), stdout="off"), "en")
    pipeline = Pipeline(Failing(base.tables, base.locales), [sink])
    await pipeline.start_sinks()
    before = metrics.RECORDS_SET_ASIDE.labels(sink="translator")._value.get()
    clues = [HangupClues("replay", "asterisk", f"1733246400.{i}", q850=17) for i in (1, 2, 3)]
    assert await pipeline.process(clues[1]) is None
    await pipeline.process_many(clues)
    await pipeline.close_sinks()
    assert [r["call"]["leg_id"] for r in records(tmp_path)] == ["1733246400.1", "1733246400.3"]
    assert metrics.RECORDS_SET_ASIDE.labels(sink="translator")._value.get() == before + 2
    assert "(source replay, leg 1733246400.2) cannot be built" in caplog.text
