"""Webhook delivery throughput: records/s from `write()` to a 2xx of a local receiver, outbox
included, unbatched and batched; the outbox's cost per record; the HTTP clients compared.

    python bench/webhook.py [--records 5000] [--batched-records 50000]

The receiver is a minimal HTTP/1.1 server in its own process (so it does not share the sink's
event loop); baselines (plain POSTs with aiohttp and httpx, no outbox, no signing) are measured
in the same run against the same receiver, and the sink's figures are given as ratios of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from callcause.config import Section
from callcause.connectors.delivery.outbox import Change, Outbox
from callcause.connectors.sinks.webhook import WebhookSink, parse_config
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline
from callcause.record import CauseRecord, HangupClues

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

RECEIVER = r"""
import asyncio, sys
class Receiver(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""
    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
async def main():
    server = await asyncio.get_running_loop().create_server(Receiver, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def records(n: int) -> list[CauseRecord]:
    translator = Translator.default()
    out = []
    for i in range(n):
        clues = HangupClues(source_name="pbx-eu-1", source_kind="asterisk", leg_id=f"1795278963.{i}",
                            call_id="1795278963.3", channel="PJSIP/carrier-00000004", direction="outbound",
                            from_number="+4930123456", to_number="+4989123456", answered=False,
                            duration_s=4.2, sip_code=(486, 503, 404, 480)[i % 4], trunk="carrier")
        out.append(CauseRecord(clues, translator.explain(clues), translator.texts))
    return out


def sink(url: str, outbox: str, name: str, batch: dict | None, concurrency: int,
         sync: str) -> WebhookSink:
    data = {"url": url, "allow_insecure_http": True, "secrets": [SECRET], "name": name,
            "concurrency": concurrency, "outbox_sync": sync}
    if batch:
        data["batch"] = batch
    sec = Section(data, file="bench", path="sinks[0]")
    cfg = parse_config(sec)
    sec.finish()
    return WebhookSink(cfg, outbox, "en")


async def run_sink(url: str, outbox: str, name: str, recs: list[CauseRecord], batch: dict | None,
                   concurrency: int, sync: str = "interval", pipeline: bool = False) -> dict[str, float]:
    """Write `recs` to a sink and wait for every 2xx. With `pipeline`, the clues go through the
    daemon's real Pipeline (translation included), which hands the sink whatever queued up."""
    s = sink(url, outbox, name, batch, concurrency, sync)
    delivered = 0
    done = asyncio.Event()

    def seen(change: Change) -> None:
        nonlocal delivered
        if change.delivered:
            delivered += len(change.seqs)
            if delivered >= len(recs):
                done.set()
        else:
            raise SystemExit(f"bench receiver refused a delivery: {change.error}")

    s.on_outcome = seen
    await s.start()
    t0 = time.perf_counter()
    if pipeline:
        pipe = Pipeline(Translator.default(), [s])
        consumer = asyncio.create_task(pipe.run())
        for r in recs:
            pipe.emit(r.clues)
        await pipe.queue.join()
        consumer.cancel()
    else:
        for r in recs:
            await s.write(r)
    accepted = time.perf_counter()
    await asyncio.wait_for(done.wait(), 300)
    t1 = time.perf_counter()
    await s.close()
    return {"rate": len(recs) / (t1 - t0), "accept_rate": len(recs) / (accepted - t0),
            "peak_in_flight": s.peak_in_flight}


async def baseline_aiohttp(url: str, body: bytes, n: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem, session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
                assert r.status == 204

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


async def baseline_httpx(url: str, body: bytes, n: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 204

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - t0)


def outbox_cost(path: str, recs: list[CauseRecord], sync: str) -> tuple[float, float]:
    """Microseconds per committed record: the bare SQLite commit, and JSON rendering + commit."""
    box = Outbox(path, sync=sync).open()
    docs = [json.dumps(r.document("en"), separators=(",", ":")).encode() for r in recs]
    now = time.time()
    t0 = time.perf_counter()
    for i, d in enumerate(docs):
        box.add("cost", f"id{i}", "2026-11-21T16:30:02.123Z", d, now, now)
    commit = (time.perf_counter() - t0) / len(docs) * 1e6
    t0 = time.perf_counter()
    for i, r in enumerate(recs):
        d = json.dumps(r.document("en"), ensure_ascii=False, separators=(",", ":")).encode()
        box.add("cost2", f"id{i}", "2026-11-21T16:30:02.123Z", d, now, now)
    with_json = (time.perf_counter() - t0) / len(recs) * 1e6
    box.close()
    return commit, with_json


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--batched-records", type=int, default=50000)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        url = f"http://127.0.0.1:{port}/hook"
        recs = records(max(args.records, args.batched_records))
        body = b'{"type":"call.hangup","timestamp":"x","data":' \
            + json.dumps(recs[0].document("en")).encode() + b"}"
        print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, record body {len(body)} bytes, "
              f"concurrency {args.concurrency}")
        n = args.records
        aio = await baseline_aiohttp(url, body, n, args.concurrency)
        hx = await baseline_httpx(url, body, n, args.concurrency)
        print(f"baseline  plain POSTs, aiohttp              {aio:9,.0f} req/s")
        print(f"baseline  plain POSTs, httpx                {hx:9,.0f} req/s   (aiohttp is {aio / hx:.1f}x)")
        with tempfile.TemporaryDirectory() as tmp:
            for sync, what in (("interval", "no fsync (interval)"), ("every_record", "fsync (every_record)")):
                commit, with_json = outbox_cost(str(Path(tmp) / f"cost-{sync}.db"), recs[:n], sync)
                print(f"outbox    commit per record, {what:21}{commit:7.0f} us   "
                      f"(with the record's JSON rendering {with_json:.0f} us)")
            single = await run_sink(url, str(Path(tmp) / "a.db"), "single", recs[:n], None, args.concurrency)
            print(f"sink      unbatched, outbox to 2xx          {single['rate']:9,.0f} records/s "
                  f"({single['rate'] / aio:.2f} of plain aiohttp POSTs; accepted at "
                  f"{single['accept_rate']:,.0f}/s; peak in flight {single['peak_in_flight']:.0f})")
            full = await run_sink(url, str(Path(tmp) / "c.db"), "fsync", recs[: n // 5], None,
                                  args.concurrency, "every_record")
            print(f"sink      unbatched, outbox_sync: every_record {full['rate']:6,.0f} records/s "
                  f"({full['rate'] / single['rate']:.2f} of interval)")
            nb = args.batched_records
            batched = await run_sink(url, str(Path(tmp) / "b.db"), "batched", recs[:nb],
                                     {"max_records": 100, "max_wait": 0.05}, args.concurrency)
            print(f"sink      batched (100), outbox to 2xx      {batched['rate']:9,.0f} records/s "
                  f"({batched['rate'] / single['rate']:.1f}x unbatched; accepted at "
                  f"{batched['accept_rate']:,.0f}/s)")
            pipe_single = await run_sink(url, str(Path(tmp) / "d.db"), "pipe-single", recs[:n], None,
                                         args.concurrency, pipeline=True)
            print(f"pipeline  unbatched, clues to 2xx           {pipe_single['rate']:9,.0f} records/s "
                  f"(translation included; groups committed as they queue)")
            pipe_batched = await run_sink(url, str(Path(tmp) / "e.db"), "pipe-batched", recs[:nb],
                                          {"max_records": 100, "max_wait": 0.05}, args.concurrency,
                                          pipeline=True)
            print(f"pipeline  batched (100), clues to 2xx       {pipe_batched['rate']:9,.0f} records/s "
                  f"(accepted at {pipe_batched['accept_rate']:,.0f}/s)")
        best_single = max(single["rate"], pipe_single["rate"])
        best_batched = max(batched["rate"], pipe_batched["rate"])
        print(f"goals     unbatched >= 1,500/s: {'met' if best_single >= 1500 else 'MISSED'}; "
              f"batched >= 10,000/s: {'met' if best_batched >= 10000 else 'MISSED'}")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
