"""ESL ingest: hangup events per second through a bare greenswitch client vs callcause end to end.

Run: python bench/esl_ingest.py [--events 20000]

A FreeSWITCH simulator in a separate process sends realistic CHANNEL_HANGUP_COMPLETE events
(the real 1.10 captures, 5-9 KB with all channel variables, every id rewritten per copy) as
fast as the client takes them. In the same run it measures:

  (a) baseline: greenswitch's InboundESL with a handler that only counts;
  (b) callcause: the FreeSWITCH source -> pipeline (translator) -> JSON Lines log sink;
  (c) the source alone (emit only counts), to see what the ESL thread costs the asyncio
      loop: a ticker task records the longest gap between its 1 ms ticks.

Goals: (b) >= 0.9 x (a) and >= 5,000 records/s; longest loop stall caused by the ESL thread
<= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "tests" / "fixtures" / "esl"
PASSWORD = "bench-password"


def template_frames() -> list[bytes]:
    from callcause.connectors.simulator.esl import event_frames, event_name, load_capture

    out = []
    for path in sorted(CAPTURES.glob("freeswitch-*.txt")):
        out += [f for f in event_frames(load_capture(path))
                if event_name(f) == "CHANNEL_HANGUP_COMPLETE" and b"Channel-Name: loopback/" not in f]
    return out   # loopback legs are left out: by design most of them yield no record


def serve(conn, count: int) -> None:  # type: ignore[no-untyped-def]
    """Child process: an ESL server that sends `count` events to each new subscriber."""
    from callcause.connectors.simulator.esl import EslServer, with_fresh_ids

    templates = template_frames()
    frames: list[bytes] = []
    while len(frames) < count:
        frames += with_fresh_ids(templates)
    frames = frames[:count]
    with EslServer(PASSWORD) as server:
        conn.send((server.port, sum(map(len, frames)) / len(frames)))
        served = 0
        while True:
            if conn.poll(0.01):
                break
            if server.wait_subscribed(served + 1, timeout=0.05):
                served += 1
                server.send_events(frames)


def bare_greenswitch(port: int, count: int) -> float:
    """Events/s of greenswitch 0.0.19 itself with a counting handler (in its own thread)."""
    result: dict[str, float] = {}

    def body() -> None:
        import gevent
        from greenswitch.esl import InboundESL

        done = gevent.event.Event()
        seen = [0]

        def handler(event) -> None:  # type: ignore[no-untyped-def]
            seen[0] += 1
            if seen[0] >= count:
                done.set()

        con = InboundESL("127.0.0.1", port, PASSWORD)
        con.register_handle("CHANNEL_HANGUP_COMPLETE", handler)
        con.connect()
        con.send("event plain CHANNEL_HANGUP_COMPLETE")
        started = time.perf_counter()
        done.wait(120)
        result["rate"] = seen[0] / (time.perf_counter() - started)
        con._run = False
        con.sock.close()
        gevent.killall([con._receive_events_greenlet, con._process_events_greenlet], timeout=2)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return result["rate"]


async def callcause_end_to_end(port: int, count: int, out: Path,
                               pipeline_on: bool) -> tuple[float, float, float]:
    """(records or events)/s, the longest loop stall and the longest garbage-collector pause,
    for the source with or without the pipeline."""
    from callcause.config import Secret
    from callcause.connectors.freeswitch.source import EslConfig, EslSource
    from callcause.connectors.sinks.log import LogConfig, LogSink
    from callcause.daemon import freeze_long_lived
    from callcause.mapping.translator import Translator
    from callcause.pipeline import Pipeline

    cfg = EslConfig(name=f"bench-{int(pipeline_on)}", port=port, password=Secret(PASSWORD),
                    hangup_fallback=False)
    source = EslSource(cfg)
    finished = asyncio.Event()
    counted = [0]
    pipeline = None
    if pipeline_on:
        sink = LogSink(LogConfig(path=str(out), stdout="off"), "en")
        pipeline = Pipeline(Translator.default(), [sink])
        await pipeline.start_sinks()

        def on_record(record) -> None:  # type: ignore[no-untyped-def]
            counted[0] += 1
            if counted[0] >= count:
                finished.set()

        pipeline.on_record = on_record
        emit = pipeline.emit
        consumer = asyncio.create_task(pipeline.run())
    else:
        def emit(clues) -> None:  # type: ignore[no-untyped-def]
            counted[0] += 1
            if counted[0] >= count:
                finished.set()

    stall = [0.0]

    async def ticker() -> None:
        while not finished.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            stall[0] = max(stall[0], time.perf_counter() - t - 0.001)

    gc_pause, gc_started = [0.0], [0.0]

    def on_gc(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pause[0] = max(gc_pause[0], time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)
    task = asyncio.create_task(source.run(emit))
    await source.connected_event.wait()
    freeze_long_lived()   # as `callcause run` does once it has started
    started = time.perf_counter()
    tick = asyncio.create_task(ticker())
    await asyncio.wait_for(finished.wait(), 300)
    elapsed = time.perf_counter() - started
    await tick
    gc.callbacks.remove(on_gc)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    if pipeline is not None:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
        await pipeline.close_sinks()
    return counted[0] / elapsed, stall[0], gc_pause[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, args.events), daemon=True)
    proc.start()
    port, size = parent.recv()
    print(f"{args.events} CHANNEL_HANGUP_COMPLETE events per run, {size:.0f} bytes on average, "
          f"server in a separate process")
    try:
        a = bare_greenswitch(port, args.events)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "records.jsonl"
            b, stall_b, _ = asyncio.run(callcause_end_to_end(port, args.events, out, True))
            lines = sum(1 for _ in out.open())
        c, stall_c, gc_c = asyncio.run(callcause_end_to_end(port, args.events, out, False))
    finally:
        parent.send("stop")
        proc.join(10)
    print(f"(a) bare greenswitch, counting handler : {a:10,.0f} events/s")
    print(f"(b) callcause end to end into JSONL    : {b:10,.0f} records/s ({lines} lines written)  "
          f"ratio b/a = {b / a:.2f} (goal >= 0.9, and >= 5,000/s)")
    print(f"(c) callcause source only (no pipeline) : {c:10,.0f} events/s  ratio c/a = {c / a:.2f}")
    print(f"longest asyncio loop stall: {stall_c * 1000:.1f} ms with the ESL thread alone (goal <= 20 ms); "
          f"{stall_b * 1000:.1f} ms end to end (includes the pipeline's own work on the loop)")
    print(f"longest garbage-collector pause during (c): {gc_c * 1000:.1f} ms (a full collection holds the GIL "
          "and so stops the loop too)")


if __name__ == "__main__":
    main()
