"""Reliability of webhook delivery against real HTTP receivers on 127.0.0.1: outages, 5xx,
Retry-After, permanent refusals, slow receivers, batching, filters."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from webhook_helpers import Outcomes, Received, Receiver, accept, free_port, make_record, make_sink

from callcause.connectors.delivery.outbox import Outbox


def counted(endpoint: str, result: str) -> float:
    return REGISTRY.get_sample_value("callcause_webhook_deliveries_total",
                                     {"endpoint": endpoint, "result": result}) or 0.0


def waiting(path, endpoint: str) -> int:
    box = Outbox(path).open()
    try:
        return box.stats(endpoint)[0]
    finally:
        box.close()


async def test_records_reach_the_receiver_signed_and_leave_the_outbox(tmp_path):
    receiver = await Receiver().start()
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="plain")
    await sink.start()
    try:
        records = [make_record(i) for i in range(20)]
        for r in records:
            await sink.write(r)
        await receiver.wait_until(lambda: len(receiver.delivered) == 20)
    finally:
        await sink.close()
        await receiver.stop()
    assert set(receiver.delivered) == {r.id for r in records}
    first = next(q for q in receiver.requests if q.webhook_id == records[0].id)
    body = first.payload
    assert body["type"] == "call.hangup"
    assert body["timestamp"] == records[0].document("en")["time"]
    assert body["data"] == records[0].document("en")
    assert first.signature.startswith("v1,")
    assert first.headers["Content-Type"] == "application/json"
    assert waiting(tmp_path / "outbox.db", "plain") == 0


async def test_receiver_down_then_up_every_record_delivered(tmp_path):
    port = free_port()
    sink = make_sink(f"http://127.0.0.1:{port}/hook", tmp_path / "outbox.db", name="down-up")
    outcomes = Outcomes(sink)
    await sink.start()
    receiver = Receiver(port)
    try:
        records = [make_record(i) for i in range(50)]
        for r in records:
            await sink.write(r)      # accepted although nobody listens
        await outcomes.wait_until(lambda: outcomes.failures >= 8)   # refused, retried, refused...
        assert counted("down-up", "delivered") == 0
        await receiver.start()
        await receiver.wait_until(lambda: len(receiver.delivered) == 50, timeout=15)
    finally:
        await sink.close()
        await receiver.stop()
    assert set(receiver.delivered) == {r.id for r in records}
    assert counted("down-up", "delivered") >= 50
    assert waiting(tmp_path / "outbox.db", "down-up") == 0


async def test_500_is_retried_with_the_same_id_and_body_and_counted(tmp_path):
    receiver = await Receiver().start()
    answers = iter([500, 500, 500])

    async def flaky(got: Received) -> web.StreamResponse:
        status = next(answers, 204)
        return web.Response(status=status, text="DB Timeout" if status == 500 else None)

    receiver.behaviour = flaky
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="flaky500", concurrency=1)
    before = {r: counted("flaky500", r) for r in ("delivered", "failed", "retried", "dead_lettered")}
    await sink.start()
    try:
        record = make_record(1)
        await sink.write(record)
        await receiver.wait_until(lambda: record.id in receiver.delivered)
    finally:
        await sink.close()
        await receiver.stop()
    assert [q.webhook_id for q in receiver.requests] == [record.id] * 4
    assert len({q.body for q in receiver.requests}) == 1            # signed bytes never change
    assert len({q.timestamp for q in receiver.requests}) >= 1
    delta = {r: counted("flaky500", r) - v for r, v in before.items()}
    assert delta == {"delivered": 1, "failed": 3, "retried": 3, "dead_lettered": 0}


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(tmp_path, status):
    receiver = await Receiver().start()
    answers = iter([status])

    async def busy(got: Received) -> web.StreamResponse:
        code = next(answers, 204)
        return web.Response(status=code, headers={"Retry-After": "1"} if code != 204 else None)

    receiver.behaviour = busy
    # backoff alone would retry after 10-20 ms; only Retry-After explains a 1 s pause
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name=f"retry-after-{status}", concurrency=1)
    await sink.start()
    try:
        record = make_record(2)
        await sink.write(record)
        await receiver.wait_until(lambda: record.id in receiver.delivered, timeout=5)
    finally:
        await sink.close()
        await receiver.stop()
    first, second = receiver.requests
    assert second.at - first.at >= 0.99
    assert counted(f"retry-after-{status}", "retried") == 1


@pytest.mark.parametrize(("status", "dead"), [(400, True), (401, True), (410, True), (408, False),
                                             (425, False), (502, False)])
async def test_permanent_refusals_become_dead_letters_at_once(tmp_path, status, dead):
    receiver = await Receiver().start()
    answers = iter([status])

    async def refuse(got: Received) -> web.StreamResponse:
        return web.Response(status=next(answers, 204), text="unknown tenant")

    receiver.behaviour = refuse
    name = f"refuse-{status}"
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name=name, concurrency=1)
    outcomes = Outcomes(sink)
    await sink.start()
    try:
        await sink.write(make_record(3))
        await outcomes.wait_until(lambda: len(outcomes.changes) == (1 if dead else 2))
    finally:
        await sink.close()
        await receiver.stop()
    box = Outbox(tmp_path / "outbox.db").open()
    rows = box.listing(dead_only=True, endpoint=name, limit=10)
    box.close()
    if dead:
        assert len(receiver.requests) == 1
        assert [(r[2], r[3], r[4]) for r in rows] == [(1, 1, f"HTTP {status}: unknown tenant")]
        assert counted(name, "dead_lettered") == 1
    else:
        assert rows == []
        assert outcomes.changes[-1].delivered


async def test_records_older_than_max_age_become_dead_letters(tmp_path):
    receiver = await Receiver().start()

    async def broken(got: Received) -> web.StreamResponse:
        return web.Response(status=500)

    receiver.behaviour = broken
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="max-age", concurrency=1,
                     retry={"initial": 0.02, "max": 0.05, "max_age": 0.3})
    outcomes = Outcomes(sink)
    await sink.start()
    try:
        await sink.write(make_record(4))
        await outcomes.wait_until(lambda: outcomes.dead == 1, timeout=5)
    finally:
        await sink.close()
        await receiver.stop()
    assert 2 <= len(receiver.requests) == len(outcomes.changes)
    assert [c.dead for c in outcomes.changes] == [False] * (len(outcomes.changes) - 1) + [True]
    assert waiting(tmp_path / "outbox.db", "max-age") == 0


async def test_slow_receiver_keeps_in_flight_bounded_then_everything_arrives(tmp_path):
    receiver = await Receiver().start()
    release = asyncio.Event()

    async def stuck(got: Received) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    receiver.behaviour = stuck
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="slow", concurrency=3, timeout=0.3)
    outcomes = Outcomes(sink)
    await sink.start()
    try:
        records = [make_record(i) for i in range(300)]
        for r in records:
            await sink.write(r)
        await outcomes.wait_until(lambda: outcomes.failures >= 9)      # three rounds of timeouts
        assert receiver.peak_active <= 3
        assert sink.peak_in_flight <= 3
        assert len(sink._inflight) <= 3        # only in-flight rows are held in memory
        assert "no answer within 0.3 s" in outcomes.changes[0].error
        release.set()
        receiver.behaviour = accept
        await receiver.wait_until(lambda: len(receiver.delivered) == 300, timeout=20)
    finally:
        release.set()
        await sink.close()
        await receiver.stop()
    assert receiver.peak_active <= 3


async def test_a_stuck_endpoint_does_not_delay_another(tmp_path):
    stuck_receiver, good_receiver = await Receiver().start(), await Receiver().start()
    release = asyncio.Event()

    async def stuck(got: Received) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    stuck_receiver.behaviour = stuck
    stuck_sink = make_sink(stuck_receiver.url, tmp_path / "outbox.db", name="stuck", timeout=60, grace=0.1)
    good_sink = make_sink(good_receiver.url, tmp_path / "outbox.db", name="good")
    await stuck_sink.start()
    await good_sink.start()
    try:
        records = [make_record(i) for i in range(40)]
        for r in records:
            await stuck_sink.write(r)
            await good_sink.write(r)
        await good_receiver.wait_until(lambda: len(good_receiver.delivered) == 40, timeout=10)
        assert stuck_receiver.delivered == {}
    finally:
        await stuck_sink.close()        # gives up on its open requests after the grace period
        release.set()
        await good_sink.close()
        await stuck_receiver.stop()
        await good_receiver.stop()
    assert waiting(tmp_path / "outbox.db", "stuck") == 40     # kept for the next start
    assert waiting(tmp_path / "outbox.db", "good") == 0


async def test_batches_carry_each_record_once_and_keep_their_id_on_retry(tmp_path):
    receiver = await Receiver().start()
    answers = iter([500])

    async def first_fails(got: Received) -> web.StreamResponse:
        return web.Response(status=next(answers, 204))

    receiver.behaviour = first_fails
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="batched",
                     batch={"max_records": 10, "max_wait": 0.05})
    await sink.start()
    try:
        records = [make_record(i) for i in range(25)]
        for r in records:
            await sink.write(r)
        await receiver.wait_until(lambda: len(receiver.delivered) == 25, timeout=10)
    finally:
        await sink.close()
        await receiver.stop()
    for q in receiver.requests:
        body = q.payload
        assert body["type"] == "call.hangup.batch"
        assert 1 <= len(body["data"]) <= 10
        assert q.webhook_id.startswith("ccb_")
        assert body["timestamp"] == max(d["time"] for d in body["data"])
    failed = receiver.requests[0]
    again = [q for q in receiver.requests[1:] if q.webhook_id == failed.webhook_id]
    assert [q.body for q in again] == [failed.body]
    ok = [q for q in receiver.requests if q is not failed]
    assert sorted(rid for q in ok for rid in q.record_ids) == sorted(r.id for r in records)


async def test_filters_language_and_pii_apply_per_endpoint(tmp_path):
    receiver = await Receiver().start()
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="filtered", language="de",
                     only={"categories": ["busy", "answered", "congestion"], "failures_only": True,
                           "sources": ["pbx-eu-1"]},
                     pii={"from": "mask", "to": "drop"})
    await sink.start()
    try:
        wanted = make_record(1, source="pbx-eu-1", category="busy")
        for r in (make_record(2, source="pbx-eu-1", category="answered"),
                  make_record(3, source="pbx-eu-1", category="no_answer"),
                  make_record(4, source="pbx-us-1", category="busy"),
                  wanted):
            await sink.write(r)
        await receiver.wait_until(lambda: len(receiver.delivered) >= 1)
    finally:
        await sink.close()
        await receiver.stop()
    assert list(receiver.delivered) == [wanted.id]
    data = receiver.requests[0].payload["data"]
    assert data["cause"]["lang"] == "de"
    assert data["call"]["from"] == "+4930****56"
    assert data["call"]["to"] is None


async def test_translated_records_are_filtered_and_sent_with_their_category(tmp_path):
    from callcause.mapping.translator import Translator
    from callcause.record import CauseRecord, HangupClues

    translator = Translator.default()

    def record(leg: str, sip_code: int) -> CauseRecord:
        clues = HangupClues(source_name="pbx-eu-1", source_kind="asterisk", leg_id=leg, sip_code=sip_code)
        return CauseRecord(clues, translator.explain(clues), translator.texts)

    receiver = await Receiver().start()
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="translated", only={"categories": ["busy"]})
    await sink.start()
    try:
        busy, missing = record("1.1", 486), record("1.2", 404)
        await sink.write(missing)
        await sink.write(busy)
        await receiver.wait_until(lambda: busy.id in receiver.delivered)
    finally:
        await sink.close()
        await receiver.stop()
    assert [q.webhook_id for q in receiver.requests] == [busy.id]
    cause = receiver.requests[0].payload["data"]["cause"]
    assert cause["category"] == "busy" and cause["summary"]
    assert receiver.requests[0].payload["data"]["sip"]["code"] == 486
