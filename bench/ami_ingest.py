"""AMI ingest benchmark: how fast callcause turns an Asterisk event stream into records.

The AMI simulator runs in its own process and replays the Asterisk 22 failed-call captures
(about 100 events per call, fresh ids per call) over TCP as fast as the reader takes them.
Printed, all measured in this run:
  (a) a bare panoramisk 1.4 client that only counts events (the baseline),
  (b) callcause end to end (our reader, correlation, translation, JSON Lines sink),
      and the ratio b/a in events per second (goal >= 2),
  (c) records/s with the server-side filter (goal >= 10,000),
  (d) p99 event-to-record latency at 1,000 records/s (goal <= 20 ms),
  (e) peak RSS while --legs legs flow through (goal: flat).
Usage: python bench/ami_ingest.py [--calls 20000] [--legs 1000000] [--latency-calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from panoramisk import Manager

from callcause.config import Secret
from callcause.connectors.asterisk.source import AmiConfig, AmiSource
from callcause.connectors.sinks.log import LogConfig, LogSink
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline

HERE = Path(__file__).resolve().parent
CAPTURES = [HERE.parent / "tests" / "fixtures" / "ami" / f"asterisk-{n}.txt" for n in (
    "sip486-busy", "sip404-notfound", "sip480-unavailable", "sip503-reason-q850-34",
    "sip603-decline", "noanswer-dial-timeout")]
SECRET = "s3cret"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """The simulator in a child process, so its work does not count against the reader."""

    def __init__(self, calls: int, rate: float | None = None) -> None:
        args = [sys.executable, "-m", "callcause.connectors.simulator.ami", *map(str, CAPTURES),
                "--calls", str(calls)]
        if rate:
            args += ["--rate", str(rate)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


async def bare_panoramisk(calls: int) -> tuple[float, int]:
    """Baseline: stock panoramisk, every event parsed and dispatched to a counter."""
    server = Server(calls)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    count = 0
    logged_in = loop.create_future()

    def on_event(manager, event) -> None:
        nonlocal count
        count += 1
        if event.get("UserEvent") == "BenchEnd" and not done.done():
            done.set_result(time.perf_counter())

    manager = Manager(host="127.0.0.1", port=server.port, username="callcause", secret=SECRET,
                      loop=loop, ping_delay=3600,
                      on_login=lambda m: logged_in.done() or logged_in.set_result(True))
    manager.register_event("*", on_event)
    await manager.connect()
    await asyncio.wait_for(logged_in, 10)
    count = 0
    t0 = time.perf_counter()
    await manager.send_action({"Action": "UserEvent", "UserEvent": "BenchStart"})
    t1 = await asyncio.wait_for(done, 600)
    manager.close()
    server.close()
    return t1 - t0, count


async def callcause_end_to_end(calls: int, *, use_filter: bool, rate: float | None = None,
                               sink_path: str | None = None, rss_every: int = 0
                               ) -> tuple[float, int, int, list[float], list[tuple[int, float]]]:
    """Our source + pipeline + translator + JSON Lines sink; returns elapsed, events read,
    records, event-to-record latencies, RSS samples (records, MB)."""
    server = Server(calls, rate)
    tmp = None
    if sink_path is None:
        fd, tmp = tempfile.mkstemp(suffix=".jsonl")
        os.close(fd)
        sink_path = tmp
    sink = LogSink(LogConfig(path=sink_path, stdout="off"), "en")
    pipeline = Pipeline(Translator.default(), [sink])
    latencies: list[float] = []
    rss: list[tuple[int, float]] = []

    def on_record(record) -> None:
        if rss_every:          # the RSS run keeps no per-record list of its own
            if pipeline.records % rss_every == 0:
                rss.append((pipeline.records, rss_mb()))
        else:
            latencies.append(time.monotonic() - record.clues.received_at)

    pipeline.on_record = on_record
    cfg = AmiConfig(name="bench", host="127.0.0.1", port=server.port, username="callcause",
                    secret=Secret(SECRET), use_filter=use_filter, ping_interval=3600,
                    hangup_grace=2.0)
    source = AmiSource(cfg)
    await pipeline.start_sinks()
    consumer = asyncio.create_task(pipeline.run())
    runner = asyncio.create_task(source.run(pipeline.emit))
    await asyncio.wait_for(source.logged_in.wait(), 10)
    start_events = source.protocol.events_seen
    t0 = time.perf_counter()
    await source.manager.send_action({"Action": "UserEvent", "UserEvent": "BenchStart"})
    while pipeline.records < calls:
        await asyncio.sleep(0.005)
    t1 = time.perf_counter()
    events = source.protocol.events_seen - start_events
    state = source.correlator
    if rss_every:
        print(f"    state left after the run: {len(state.legs)} legs, {len(state.calls)} calls, "
              f"{len(state.by_channel)} channel names, {len(state.finished)} finished ids (capped)")
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await pipeline.close_sinks()
    server.close()
    if tmp is not None:
        os.unlink(tmp)
    return t1 - t0, events, pipeline.records, latencies, rss


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000, help="calls for the throughput runs")
    ap.add_argument("--latency-calls", type=int, default=5_000, help="calls for the paced run")
    ap.add_argument("--legs", type=int, default=300_000,
                    help="legs for the RSS run (3 legs per call; 1000000 for the full figure)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; captures: "
          f"{', '.join(p.stem for p in CAPTURES)}")

    secs, events = await bare_panoramisk(args.calls)
    base = events / secs
    print(f"(a) bare panoramisk 1.4, unfiltered: {events} events in {secs:.2f} s = {base:,.0f} events/s "
          f"({args.calls / secs:,.0f} calls/s)")

    secs, events, records, lat, _ = await callcause_end_to_end(args.calls, use_filter=False)
    ours = events / secs
    print(f"(b) callcause end to end, unfiltered: {events} events, {records} records in {secs:.2f} s = "
          f"{ours:,.0f} events/s, {records / secs:,.0f} records/s")
    print(f"    ratio b/a = {ours / base:.2f}x (goal >= 2x)")

    secs, events, records, lat, _ = await callcause_end_to_end(args.calls, use_filter=True)
    print(f"(c) callcause with the server-side filter: {events} events, {records} records in "
          f"{secs:.2f} s = {records / secs:,.0f} records/s (goal >= 10,000)")

    secs, events, records, lat, _ = await callcause_end_to_end(args.latency_calls, use_filter=True,
                                                               rate=1000.0)
    print(f"(d) paced at 1,000 calls/s for {records} records: event-to-record latency "
          f"p50 {pct(lat, 0.5) * 1000:.2f} ms, p99 {pct(lat, 0.99) * 1000:.2f} ms, "
          f"max {max(lat) * 1000:.2f} ms (goal p99 <= 20 ms)")

    calls = max(1, args.legs // 3)
    before = rss_mb()
    secs, events, records, lat, rss = await callcause_end_to_end(
        calls, use_filter=True, sink_path=os.devnull, rss_every=max(1, calls // 10))
    samples = ", ".join(f"{n // 1000}k:{mb:.0f}" for n, mb in rss)
    print(f"(e) {calls * 3:,} legs ({records:,} records, JSON Lines to {os.devnull}) in {secs:.1f} s: "
          f"RSS before {before:.0f} MB; by records done (k:MB) {samples}; "
          f"peak {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
