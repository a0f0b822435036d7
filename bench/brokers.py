"""Broker delivery throughput: records/s from the daemon's pipeline through the outbox into a
real mosquitto (MQTT, QoS 1, PUBACK awaited) and a real RabbitMQ (AMQP, publisher confirms,
persistent messages to a durable queue), unbatched and batched.

    python bench/brokers.py [--records 5000] [--batched-records 50000] [--concurrency 4,32]

Both brokers are started here as the tests start them (temporary config, free ports). The
baselines are the same clients publishing the same body with the same number in flight, with
no pipeline and no outbox, measured in the same run; the sink's figures are given as ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aio_pika
import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from broker_support import PASSWORD, USER, Mosquitto, RabbitMQ, sink

from callcause.connectors.delivery.dispatcher import single_body
from callcause.connectors.delivery.outbox import Change
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline
from callcause.record import CauseRecord, HangupClues

BATCH = {"max_records": 100, "max_wait": 0.05}


def clues(n: int, offset: int) -> list[HangupClues]:
    return [HangupClues(source_name="pbx-eu-1", source_kind="asterisk", leg_id=f"1795278963.{offset + i}",
                        call_id="1795278963.3", channel="PJSIP/carrier-00000004", direction="outbound",
                        from_number="+4930123456", to_number="+4989123456", answered=False,
                        duration_s=4.2, sip_code=(486, 503, 404, 480)[i % 4], trunk="carrier")
            for i in range(n)]


async def through_pipeline(s, legs: list[HangupClues]) -> tuple[float, float]:
    """Clues into the daemon's Pipeline (translation, instance, outbox) until every record is
    acknowledged by the broker: (records/s, this process's CPU microseconds per record)."""
    delivered = 0
    done = asyncio.Event()

    def seen(change: Change) -> None:
        nonlocal delivered
        if not change.delivered:
            raise SystemExit(f"bench broker refused a delivery: {change.error}")
        delivered += len(change.seqs)
        if delivered >= len(legs):
            done.set()

    s.on_outcome = seen
    pipe = Pipeline(Translator.default(), [s], instance="bench")
    await pipe.start_sinks()
    t0, c0 = time.perf_counter(), time.process_time()
    consumer = asyncio.create_task(pipe.run())
    for c in legs:
        pipe.emit(c)
    await pipe.queue.join()
    consumer.cancel()
    await asyncio.wait_for(done.wait(), 600)
    rate, cpu = len(legs) / (time.perf_counter() - t0), (time.process_time() - c0) / len(legs) * 1e6
    await pipe.close_sinks()
    return rate, cpu


async def baseline_mqtt(port: int, body: bytes, n: int, concurrency: int) -> tuple[float, float]:
    async with aiomqtt.Client("127.0.0.1", port, username=USER, password=PASSWORD,
                              max_inflight_messages=max(20, concurrency)) as client:
        client.pending_calls_threshold = concurrency + 10
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await client.publish("bench/baseline", body, qos=1)

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1e6


async def baseline_amqp(url: str, body: bytes, n: int, concurrency: int) -> tuple[float, float]:
    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("bench", ensure=False)
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                       "baseline", mandatory=True)

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0), (time.process_time() - c0) / n * 1e6
    finally:
        await conn.close()


async def amqp_setup(url: str) -> None:
    """A durable queue bound to everything the bench publishes (mandatory needs a route)."""
    conn = await aio_pika.connect(url)
    channel = await conn.channel()
    exchange = await channel.declare_exchange("bench", "topic", durable=True)
    queue = await channel.declare_queue("bench", durable=True)
    await queue.bind(exchange, "#")
    await conn.close()


async def amqp_purge(url: str) -> None:
    conn = await aio_pika.connect(url)
    channel = await conn.channel()
    await (await channel.get_queue("bench")).purge()
    await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--batched-records", type=int, default=50000)
    ap.add_argument("--concurrency", default="4,32", help="comma-separated deliveries in flight to try")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    translator = Translator.default()
    sample = clues(1, 0)[0]
    doc = CauseRecord(sample, translator.explain(sample), translator.texts, instance="bench").document("en")
    body = single_body(doc["time"], json.dumps(doc, separators=(",", ":")).encode())
    with tempfile.TemporaryDirectory() as tmp:
        mosq = Mosquitto(Path(tmp) / "mosquitto").start()
        rabbit = RabbitMQ(Path(tmp) / "rabbitmq").start()
        try:
            await amqp_setup(rabbit.consumer_url)
            print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, record body {len(body)} bytes; "
                  f"mosquitto and RabbitMQ on 127.0.0.1, same machine")
            n, nb = args.records, args.batched_records
            offset = 0
            best: dict[str, float] = {}
            for conc in levels:
                base_m, cpu_m = await baseline_mqtt(mosq.port, body, n, conc)
                base_a, cpu_a = await baseline_amqp(rabbit.consumer_url, body, n, conc)
                await amqp_purge(rabbit.consumer_url)
                print(f"baseline  concurrency {conc:3}: MQTT QoS 1 publishes {base_m:9,.0f}/s ({cpu_m:.0f} us CPU "
                      f"each); AMQP confirmed persistent publishes {base_a:9,.0f}/s ({cpu_a:.0f} us CPU each)")
                for kind, url, base in (("mqtt", mosq.url, base_m), ("amqp", rabbit.url, base_a)):
                    extra = {"exchange": "bench"} if kind == "amqp" else {}
                    for batched, count in ((False, n), (True, nb)):
                        s = sink(kind, url, str(Path(tmp) / f"{kind}-{conc}-{batched}.db"), instance="bench",
                                 name=f"{kind}-{conc}-{int(batched)}", concurrency=conc,
                                 batch=BATCH if batched else None, timeout=30, **extra)
                        rate, cpu = await through_pipeline(s, clues(count, offset))
                        offset += count
                        what = "batched (100)" if batched else "unbatched    "
                        ratio = f"{rate / base:.2f} of the baseline" if not batched else f"{rate / base:.1f}x " \
                            "the unbatched baseline"
                        print(f"sink      concurrency {conc:3}: {kind.upper()} {what} pipeline -> outbox -> "
                              f"broker ack {rate:9,.0f} records/s ({ratio}; {cpu:.0f} us CPU per record)")
                        key = f"{kind}-{'batched' if batched else 'single'}"
                        best[key] = max(best.get(key, 0.0), rate)
                        if kind == "amqp":
                            await amqp_purge(rabbit.consumer_url)
            goals = (("AMQP unbatched >= 3,000/s", best["amqp-single"], 3000),
                     ("AMQP batched >= 10,000/s", best["amqp-batched"], 10000),
                     ("MQTT QoS 1 >= 3,000/s", best["mqtt-single"], 3000))
            print("goals     " + "; ".join(f"{name}: {'met' if rate >= goal else 'MISSED'} ({rate:,.0f})"
                                          for name, rate, goal in goals))
        finally:
            mosq.stop()
            rabbit.stop()
            rabbit.stop_epmd()


if __name__ == "__main__":
    asyncio.run(main())
