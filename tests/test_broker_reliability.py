"""Zero loss of accepted records into real brokers: broker down at start, broker restarted in the
middle of a stream, and the process running the sink killed with SIGKILL mid-delivery and
started again. A consumer reads everything back and checks the ids: every accepted record
arrives, and a record that arrives twice (at-least-once) carries the same id both times."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest
from broker_support import MqttConsumer, amqp_drain, amqp_queue, sink
from webhook_helpers import FixedExplainer, make_record, read_lines, sigkill

from callcause.connectors.delivery.outbox import Outbox
from callcause.pipeline import Pipeline

HERE = Path(__file__).resolve().parent


async def stream(pipeline: Pipeline, first: int, count: int) -> None:
    """Records arriving over time, as from a PBX."""
    for i in range(first, first + count):
        pipeline.emit(make_record(i).clues)
        if i % 10 == 0:
            await asyncio.sleep(0.002)
    await pipeline.drain()


def outbox_rows(path: Path) -> tuple[set[str], int]:
    """(ids still waiting, dead letters) of an outbox file."""
    box = Outbox(path).open()
    try:
        waiting = {row[0] for row in box.listing(dead_only=False, endpoint=None, limit=100_000)}
        dead = len(box.listing(dead_only=True, endpoint=None, limit=100_000))
    finally:
        box.close()
    return waiting, dead


async def test_mqtt_broker_down_at_start_then_restarted_mid_stream(mosquitto, tmp_path):
    consumer = await MqttConsumer(mosquitto.port).start()   # its session outlives the restarts
    mosquitto.stop()
    s = sink("mqtt", mosquitto.url, tmp_path / "o.db")
    pipeline = Pipeline(FixedExplainer(), [s], instance="test-pbx")
    await pipeline.start_sinks()                             # the broker is down: records wait
    runner = asyncio.create_task(pipeline.run())
    try:
        await stream(pipeline, 0, 100)
        assert outbox_rows(tmp_path / "o.db")[0] == {make_record(i).id for i in range(100)}
        mosquitto.start()
        feeding = asyncio.create_task(stream(pipeline, 100, 400))
        await consumer.wait_for({make_record(i).id for i in range(150)}, timeout=30)
        mosquitto.stop()                                     # restarted in the middle of the stream
        await asyncio.sleep(0.2)
        mosquitto.start()
        await feeding
        await consumer.wait_for({make_record(i).id for i in range(500)}, timeout=30)
        # the consumer may have a message whose acknowledgement never reached the sink (the
        # broker went away in between): its row waits for its retry, a duplicate of the same id
        assert await s.wait_delivered(30) == 0
    finally:
        runner.cancel()
        await pipeline.close_sinks()
        await consumer.stop()
    assert set(consumer.ids) == {make_record(i).id for i in range(500)}
    assert_same_ids_when_repeated(consumer.messages)
    assert outbox_rows(tmp_path / "o.db") == (set(), 0)


def assert_same_ids_when_repeated(messages) -> None:
    """A message seen twice is the same message: same MQTT 5 id property, same body."""
    seen: dict[str, bytes] = {}
    for m in messages:
        if str(m.topic).endswith("/status"):
            continue
        msg_id = dict(m.properties.UserProperty)["id"]
        assert json.loads(m.payload)["data"]["id"] == msg_id
        assert seen.setdefault(msg_id, m.payload) == m.payload


@pytest.mark.timeout(240)     # RabbitMQ starts twice; seconds here, longer on a loaded machine
async def test_amqp_broker_down_at_start_then_restarted_mid_stream(rabbitmq, tmp_path):
    conn, _ = await amqp_queue(rabbitmq.consumer_url, "ex-restart")
    await conn.close()
    rabbitmq.stop()
    s = sink("amqp", rabbitmq.url, tmp_path / "o.db", exchange="ex-restart")
    pipeline = Pipeline(FixedExplainer(), [s], instance="test-pbx")
    await pipeline.start_sinks()
    runner = asyncio.create_task(pipeline.run())
    try:
        await stream(pipeline, 0, 100)
        assert outbox_rows(tmp_path / "o.db")[0] == {make_record(i).id for i in range(100)}
        await asyncio.to_thread(rabbitmq.start)
        feeding = asyncio.create_task(stream(pipeline, 100, 300))
        await wait_depth_below(tmp_path / "o.db", 350)           # deliveries are flowing
        await asyncio.to_thread(rabbitmq.restart)                # in the middle of the stream
        await feeding
        await wait_depth_below(tmp_path / "o.db", 1, timeout=60)
    finally:
        runner.cancel()
        await pipeline.close_sinks()
    messages, ids = await amqp_drain(rabbitmq.consumer_url, "q-ex-restart", {make_record(i).id for i in range(400)})
    assert set(ids) == {make_record(i).id for i in range(400)}
    seen: dict[str, bytes] = {}
    for m in messages:
        assert json.loads(m.body)["data"]["id"] == m.message_id
        assert seen.setdefault(m.message_id, m.body) == m.body


async def wait_depth_below(path: Path, n: int, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while len(outbox_rows(path)[0]) >= n:
            await asyncio.sleep(0.1)


# --- kill -9 -----------------------------------------------------------------------------------

async def spawn(kind: str, url: str, outbox: Path, first: int, count: int, **options) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "broker_support.py"), "child", "--kind", kind, "--url", url, "--outbox",
        str(outbox), "--first", str(first), "--count", str(count), "--options", json.dumps(options),
        stdout=asyncio.subprocess.PIPE)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["mqtt", "amqp"])
async def test_sigkill_mid_delivery_then_restart_delivers_every_accepted_record(kind, request, tmp_path):
    outbox = tmp_path / "outbox.db"
    if kind == "mqtt":
        broker = request.getfixturevalue("mosquitto")
        consumer = await MqttConsumer(broker.port).start()
        delivered = lambda: set(consumer.ids)          # noqa: E731
        options = {}
    else:
        broker = request.getfixturevalue("rabbitmq")
        conn, queue = await amqp_queue(broker.consumer_url, "ex-kill")
        options = {"exchange": "ex-kill"}

        async def count() -> int:
            return (await queue.declare()).message_count
    # one delivery at a time, so the outbox is well ahead of the broker when the process dies
    lines: list[str] = []
    first = await spawn(kind, broker.url, outbox, 0, 3000, concurrency=1, **options)
    reader = asyncio.create_task(read_lines(first, lines))
    try:
        async with asyncio.timeout(30):
            while True:
                got = len(delivered()) if kind == "mqtt" else await count()
                if got >= 200:
                    break
                await asyncio.sleep(0.01)
    finally:
        await sigkill(first, reader)
    accepted = {line.split()[1] for line in lines if line.startswith("accepted ")}
    waiting, _ = outbox_rows(outbox)
    assert waiting, "the process died with nothing left to deliver: the test proves nothing"
    assert len(accepted) >= 200

    second = await spawn(kind, broker.url, outbox, 0, 0, **options)
    lines2: list[str] = []
    try:
        assert second.stdout is not None
        assert (await asyncio.wait_for(second.stdout.readline(), 20)).strip() == b"ready"
        reader2 = asyncio.create_task(read_lines(second, lines2))
        if kind == "mqtt":
            await consumer.wait_for(accepted | waiting, timeout=60)
            ids = dict(consumer.ids)
        else:
            await conn.close()
            _, ids = await amqp_drain(broker.consumer_url, "q-ex-kill", accepted | waiting, timeout=60)
        await wait_depth_below(outbox, 1)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 15) == 0
        await asyncio.wait_for(reader2, 10)
    finally:
        if second.returncode is None:
            second.kill()
        if kind == "mqtt":
            await consumer.stop()
    assert lines2[-1] == "closed"
    assert accepted <= set(ids)                              # zero accepted records lost
    assert set(ids) <= {make_record(i).id for i in range(3000)}
    duplicates = sum(n - 1 for n in ids.values())
    print(f"\n{kind}: {len(accepted)} accepted before SIGKILL, {len(waiting)} waiting in the outbox, "
          f"{len(ids)} distinct records read back, {duplicates} duplicate(s)")
    assert duplicates <= 1                                    # at most the one in flight (concurrency 1)
    assert outbox_rows(outbox) == (set(), 0)
