"""ESL ingest: hangup events per second through a bare greenswitch client vs callcause end to end.

Run: python bench/esl_ingest.py [--events 20000] [--many 50,200] [--rate 1000] [--seconds 10] [--trunk-health]

A FreeSWITCH simulator in a separate process sends realistic CHANNEL_HANGUP_COMPLETE events
(the real 1.10 captures, 5-9 KB with all channel variables, every id rewritten per copy) as
fast as the client takes them. In the same run it measures:

  (a) baseline: greenswitch's InboundESL with a handler that only counts;
  (b) callcause: the FreeSWITCH source -> pipeline (translator) -> JSON Lines log sink;
  (c) the source alone (emit only counts), to see what the ESL thread costs the asyncio
      loop: a ticker task records the longest gap between its 1 ms ticks.

  (d) many sources (`--many`): that many FreeSWITCH sources in one daemon (pipeline and JSON
      Lines sink), the simulator pacing `--rate` records/s in all for `--seconds`; prints the
      longest loop stall, RSS and the thread count.

  (e) with `--trunk-health`: (b) with trunk health on and off (the default rules, on the wall
      clock as in `callcause run`), alternating: what trunk health costs the daemon end to end.

Events carry the time the run starts (as live events carry the present), ids fresh per copy.

Goals: (b) >= 1.2 x (a) and >= 6,000 records/s; longest loop stall <= 20 ms at a paced 1,000
records/s from 50 sources. (a) and (b) alternate `--rounds` times and the best of each is
compared, so load from elsewhere on the machine hits both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
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
    from callcause.connectors.simulator.esl import EslServer, with_fresh_ids, with_fresh_time

    templates = template_frames()
    frames: list[bytes] = []
    while len(frames) < count:
        frames += with_fresh_ids(templates)
    # stamped with the time the run starts, as live events are: trunk health (e) counts legs of
    # the last minutes in their windows, and would take its slow path for years-old legs
    now = time.time()
    frames = [with_fresh_time(f, now) for f in frames[:count]]
    with EslServer(PASSWORD) as server:
        conn.send((server.port, sum(map(len, frames)) / len(frames)))
        served = 0
        while True:
            if conn.poll(0.01):
                break
            if server.wait_subscribed(served + 1, timeout=0.05):
                served += 1
                server.send_events(frames)


async def ticker(finished: asyncio.Event, stall: list[float]) -> None:
    """Until `finished`: the longest gap beyond its 1 ms sleeps (the loop's longest stall)."""
    while not finished.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        stall[0] = max(stall[0], time.perf_counter() - t - 0.001)


def serve_paced(conn, sources: int, rate: float, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Child process: once `sources` clients subscribed, send each of them `rate / sources`
    events per second for `seconds` (one frame goes to every subscriber)."""
    from callcause.connectors.simulator.esl import EslServer

    per_source, repeat = paced_plan(sources, rate, seconds)
    with EslServer(PASSWORD) as server:
        conn.send(server.port)
        if server.wait_subscribed(sources, timeout=300):
            server.play(template_frames(), rate=per_source, repeat=repeat).result(seconds * 10 + 60)
        conn.recv()


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def many_sources(port: int, sources: int, per_source: int, out: Path) -> tuple[float, float, int]:
    """Records/s, longest loop stall and thread count with `sources` sources in one pipeline."""
    from callcause.config import Secret
    from callcause.connectors.freeswitch.source import EslConfig, EslSource
    from callcause.connectors.sinks.log import LogConfig, LogSink
    from callcause.daemon import freeze_long_lived
    from callcause.mapping.translator import Translator
    from callcause.pipeline import Pipeline

    sink = LogSink(LogConfig(path=str(out), stdout="off"), "en")
    pipeline = Pipeline(Translator.default(), [sink])
    await pipeline.start_sinks()
    total = sources * per_source
    finished = asyncio.Event()

    def on_record(record) -> None:  # type: ignore[no-untyped-def]
        if pipeline.records >= total:
            finished.set()

    pipeline.on_record = on_record
    consumer = asyncio.create_task(pipeline.run())
    srcs = [EslSource(EslConfig(name=f"many-{i}", port=port, password=Secret(PASSWORD), hangup_fallback=False))
            for i in range(sources)]
    tasks = [asyncio.create_task(s.run(pipeline.emit)) for s in srcs]
    await asyncio.wait_for(asyncio.gather(*(s.connected_event.wait() for s in srcs)), 300)
    freeze_long_lived()
    stall = [0.0]

    started = time.perf_counter()
    tick = asyncio.create_task(ticker(finished, stall))
    await asyncio.wait_for(finished.wait(), 600)
    elapsed = time.perf_counter() - started
    await tick
    threads = threading.active_count()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    await pipeline.close_sinks()
    return total / elapsed, stall[0], threads


def paced_plan(sources: int, rate: float, seconds: float) -> tuple[float, int]:
    """(events per second per source, repetitions of the templates) for a paced run."""
    per_source = rate / sources
    return per_source, max(1, math.ceil(per_source * seconds / len(template_frames())))


def run_many(sources: int, rate: float, seconds: float) -> None:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_paced, args=(child, sources, rate, seconds), daemon=True)
    proc.start()
    port = parent.recv()
    _, repeat = paced_plan(sources, rate, seconds)
    per_source = repeat * len(template_frames())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            got, stall, threads = asyncio.run(many_sources(port, sources, per_source, Path(tmp) / "r.jsonl"))
    finally:
        parent.send("stop")
        proc.join(10)
    rss, peak = rss_mb()
    from callcause.connectors.freeswitch import client

    hub = "one shared gevent hub" if client.SHARED_HUB is not None else "a thread per connection"
    print(f"(d) {sources} sources ({hub}), paced {rate:,.0f} records/s in all: {got:,.0f} records/s recorded, "
          f"longest loop stall {stall * 1000:.1f} ms (goal <= 20 ms at 50 sources); "
          f"RSS {rss:.0f} MB (peak {peak:.0f} MB), {threads} threads")


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


async def callcause_end_to_end(port: int, count: int, out: Path, pipeline_on: bool,
                               trunk_health: bool = False) -> tuple[float, float, float]:
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
        translator = Translator.default()
        pipeline = Pipeline(translator, [sink])
        if trunk_health:   # as `callcause run` wires it, with the default rules
            from callcause.trunks.monitor import TrunkMonitor
            from callcause.trunks.settings import TrunksConfig

            monitor = TrunkMonitor(TrunksConfig(), sinks=[sink], translator_of=lambda: translator)
            pipeline.observers.append(monitor.observe)
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
    tick = asyncio.create_task(ticker(finished, stall))
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
    parser.add_argument("--rounds", type=int, default=3, help="(a) and (b) alternate this often; best of each")
    parser.add_argument("--many", default="", help="comma-separated source counts for (d), e.g. 50,200; "
                        "(d) only, (a)-(c) are skipped")
    parser.add_argument("--rate", type=float, default=1000.0, help="records/s in all for (d)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of (d)")
    parser.add_argument("--trunk-health", action="store_true",
                        help="also (e): (b) with trunk health on and off, alternating, best of each")
    parser.add_argument("--hub", choices=("shared", "thread"), default="shared",
                        help="FreeSWITCH sessions in one shared gevent hub (the daemon's way) or a thread each")
    args = parser.parse_args()
    if args.hub == "thread":
        from callcause.connectors.freeswitch import client

        client.SHARED_HUB = None
    if args.many:
        for n in (int(x) for x in args.many.split(",")):
            run_many(n, args.rate, args.seconds)
        return
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child, args.events), daemon=True)
    proc.start()
    port, size = parent.recv()
    print(f"{args.events} CHANNEL_HANGUP_COMPLETE events per run, {size:.0f} bytes on average, "
          f"server in a separate process")
    a_runs: list[float] = []
    b_runs: list[float] = []
    stall_b = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "records.jsonl"
            for _ in range(args.rounds):
                # alternate, so load from elsewhere on the machine hits both sides alike
                a_runs.append(bare_greenswitch(port, args.events))
                out.unlink(missing_ok=True)
                b, stall, _ = asyncio.run(callcause_end_to_end(port, args.events, out, True))
                b_runs.append(b)
                stall_b = max(stall_b, stall)
                lines = sum(1 for _ in out.open())
                assert lines == args.events, f"{lines} records written for {args.events} events"
            c, stall_c, gc_c = asyncio.run(callcause_end_to_end(port, args.events, out, False))
            health: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds if args.trunk_health else 0):
                for on in (False, True):
                    out.unlink(missing_ok=True)
                    health[on].append(asyncio.run(callcause_end_to_end(port, args.events, out, True, on))[0])
    finally:
        parent.send("stop")
        proc.join(10)
    a, b = max(a_runs), max(b_runs)
    print(f"(a) bare greenswitch, counting handler : {a:10,.0f} events/s  best of "
          f"{', '.join(f'{x:,.0f}' for x in a_runs)}")
    print(f"(b) callcause end to end into JSONL    : {b:10,.0f} records/s best of "
          f"{', '.join(f'{x:,.0f}' for x in b_runs)}  ratio b/a = {b / a:.2f} (goal >= 1.2, and >= 6,000/s)")
    print(f"(c) callcause source only (no pipeline) : {c:10,.0f} events/s  ratio c/a = {c / a:.2f}")
    print(f"longest asyncio loop stall: {stall_c * 1000:.1f} ms with the ESL thread alone (goal <= 20 ms); "
          f"{stall_b * 1000:.1f} ms end to end (includes the pipeline's own work on the loop)")
    if args.trunk_health:
        off, on = max(health[False]), max(health[True])
        print(f"(e) (b) with trunk health off / on     : {off:10,.0f} / {on:,.0f} records/s, "
              f"on / off = {on / off:.1%} (best rounds)")
    print(f"longest garbage-collector pause during (c): {gc_c * 1000:.1f} ms (a full collection holds the GIL "
          "and so stops the loop too)")

if __name__ == "__main__":
    main()
