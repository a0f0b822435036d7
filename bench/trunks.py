"""Trunk health's cost: pipeline records/s with it on against off, and memory over many trunks.

Run: python bench/trunks.py [--records 100000] [--rounds 7] [--memory-records 1000000] [--trunks 10000]

1. Throughput, as the daemon runs it: two real pipelines (translator, a JSON Lines log sink on
   a temp file; then the same plus a signed webhook through the SQLite outbox to a local
   receiver, the usual deployment), one with trunk health off (baseline) and one with it on
   (counting, metrics, the default rules on the wall clock: buckets roll and the rules are
   evaluated every 10 s of it, as `callcause run` does), take the same legs in turns of 1,000,
   in CPU time of the process. Turns rather than whole runs, because this machine's speed drifts
   over seconds, and each pipeline gets its share of every drift. The legs are timed at the pace
   the pipeline takes them, as a saturated daemon receives them (the only case in which what
   trunk health costs shows in records/s); the run lasts long enough for evaluations to fall in
   it, about twice as many per leg as in a saturated daemon, since both pipelines share the
   clock. The target is on >= 95 % of off, over all rounds.
   For comparison, the same in event time at 200 legs/s, as a replay of recorded traffic counts
   them: 300 times more evaluations and bucket changes per leg than the daemon meets.
2. Memory: legs over `--trunks` distinct trunks (10,000 against the default cap of 1,000
   groups) and 2 hours of event time go through the monitor (counting, metrics, alerts); the
   resident set size is printed every tenth of the run. Flat means the cap and the windows bound
   it, not the number of records.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from callcause.connectors.sinks.log import LogConfig, LogSink
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline
from callcause.record import CauseRecord, HangupClues
from callcause.trunks.monitor import TrunkMonitor
from callcause.trunks.settings import TrunksConfig

KINDS = [  # (weight, sip, q850, answered): an assumed busy day
    (60, 200, 16, True), (10, 486, 17, False), (8, 487, 16, False), (6, 480, 18, False), (6, 503, 34, False),
    (4, 404, 1, False), (3, 603, 21, False), (3, 408, 102, False),
]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TURN = 1000          # legs each pipeline takes in its turn


def legs(n: int, trunks: int, start: float, per_second: float, first: int = 0) -> list[HangupClues]:
    """Legs `first` .. `first + n - 1` of an endless, reproducible stream."""
    rnd = random.Random(first)
    pool = [k for w, *k in KINDS for _ in range(w)]
    out = []
    for i in range(first, first + n):
        sip, q850, answered = rnd.choice(pool)
        out.append(HangupClues(source_name="pbx-1", source_kind="freeswitch", leg_id=f"leg-{i}",
                               direction="outbound", trunk=f"carrier-{rnd.randrange(trunks)}",
                               to_number=f"+4930{rnd.randrange(10**7):07d}", answered=answered, sip_code=sip,
                               q850=q850, duration_s=rnd.uniform(5, 300) if answered else 0.0,
                               pdd_s=rnd.uniform(0.5, 4.0), ended_at=start + i / per_second))
    return out


class Bench:
    """One pipeline of the comparison, with its sinks (and receiver) and, if on, its monitor."""

    def __init__(self, translator: Translator, on: bool, directory: Path, webhook: bool, event_time: bool) -> None:
        self.translator, self.on, self.directory, self.webhook = translator, on, directory, webhook
        self.event_time = event_time
        self.cpu = 0.0
        self.evaluations = 0
        self.monitor: TrunkMonitor | None = None
        self.receiver: Any = None
        self.path = directory / f"records-{on}.jsonl"

    async def start(self) -> None:
        log = LogSink(LogConfig(path=str(self.path), stdout="off"), "en")
        sinks: list = [log]
        if self.webhook:
            from callcause.config import Section
            from callcause.connectors.simulator.receiver import WebhookReceiver
            from callcause.connectors.sinks.webhook import WebhookSink, parse_config

            self.receiver = await WebhookReceiver(secret=SECRET).start()
            sec = Section({"url": self.receiver.url, "secrets": [SECRET], "allow_insecure_http": True,
                           "name": "bench"}, file="bench", path="sinks[1]")
            sinks.append(WebhookSink(parse_config(sec), str(self.directory / f"outbox-{self.on}.sqlite3"), "en"))
        self.pipe = Pipeline(self.translator, sinks)
        if self.on:
            self.monitor = TrunkMonitor(TrunksConfig(), sinks=[log], translator_of=lambda: self.translator,
                                        event_time=self.event_time)
            self.pipe.observers.append(self.monitor.observe)
            self.next_eval = time.time() + self.monitor.cfg.evaluate_every_s
        await self.pipe.start_sinks()

    async def turn(self, clues: list[HangupClues]) -> None:
        start = time.process_time()
        for c in clues:
            self.pipe.emit(c)
        await self.pipe.drain()
        monitor = self.monitor
        if monitor is not None and not self.event_time and time.time() >= self.next_eval:
            await monitor.evaluate()     # the daemon's evaluation task, every 10 s of the wall clock
            self.evaluations += 1
            self.next_eval += monitor.cfg.evaluate_every_s
        self.cpu += time.process_time() - start

    async def close(self) -> None:
        await self.pipe.close_sinks()
        if self.receiver is not None:
            await self.receiver.close()
        for leftover in self.directory.glob(f"*-{self.on}.*"):
            os.unlink(leftover)


async def compare(translator: Translator, rounds: int, records: int, pace: float, directory: Path, webhook: bool,
                  event_time: bool) -> tuple[list[tuple[float, float]], int]:
    """Records/s of the pipeline with trunk health off and on, per round, both taking the same
    legs in turns; and how many evaluations the monitor made."""
    start = 1_800_000_000.0 if event_time else time.time()
    benches = {on: Bench(translator, on, directory, webhook, event_time) for on in (False, True)}
    for bench in benches.values():
        await bench.start()
    gc.collect()
    gc.freeze()          # as the daemon does after start-up
    rates = []
    for r in range(rounds):
        before = {on: bench.cpu for on, bench in benches.items()}
        for k, i in enumerate(range(r * records, (r + 1) * records, TURN)):
            for on in ((False, True) if k % 2 == 0 else (True, False)):
                await benches[on].turn(legs(TURN, 50, start, pace, first=i))   # the same legs, a copy each
        rates.append((records / (benches[False].cpu - before[False]), records / (benches[True].cpu - before[True])))
        for bench in benches.values():
            os.truncate(bench.path, 0)   # the sink appends (O_APPEND): keeps the disk free, costs nothing
    gc.unfreeze()
    for bench in benches.values():
        await bench.close()
    return rates, benches[True].evaluations


def throughput(records: int, rounds: int, webhook: bool = False, event_time: bool = False) -> None:
    translator = Translator.default()
    sinks = "JSON Lines log sink + signed webhook through the outbox" if webhook else "JSON Lines log sink only"
    with tempfile.TemporaryDirectory() as tmp:
        if event_time:
            pace = 200.0
            print(f"replayed traffic, in event time at 200 legs/s: {records:,} records x {rounds} rounds, {sinks}")
        else:
            # the pace of the pipeline itself, from a short run
            warm, _evaluations = asyncio.run(compare(translator, 1, 4 * TURN, 50_000.0, Path(tmp), webhook, False))
            pace = round(warm[0][0], -3)     # the baseline's records/s
            print(f"the daemon's pipeline: {records:,} records x {rounds} rounds, 50 trunks, {sinks}; "
                  f"legs timed at {pace:,.0f}/s")
        rates, evaluations = asyncio.run(compare(translator, rounds, records, pace, Path(tmp), webhook, event_time))
    print(f"  {'round':>5} {'off rec/s':>10} {'on rec/s':>10} {'on/off':>7}")
    for i, (off, on) in enumerate(rates, 1):
        print(f"  {i:>5} {off:>10,.0f} {on:>10,.0f} {on / off:>7.1%}")
    # over all rounds: total CPU time of each side for the same legs
    off_all = len(rates) / sum(1 / off for off, _ in rates)
    on_all = len(rates) / sum(1 / on for _, on in rates)
    ratio = on_all / off_all
    target = "" if event_time else f"   (target >= 95 %: {'met' if ratio >= 0.95 else 'NOT met'})"
    print(f"  all rounds: off {off_all:,.0f}, on {on_all:,.0f} records/s; on / off {ratio:.1%}{target}")
    print(f"  median of rounds {statistics.median(on / off for off, on in rates):.1%}; trunk health costs "
          f"{1e6 / on_all - 1e6 / off_all:.2f} us a record" +
          ("" if event_time else f"; {evaluations} evaluation(s) on the wall clock"))


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def memory(records: int, trunks: int) -> None:
    translator = Translator.default()
    # one explanation per kind: the translator's cost is not what this measures
    explained = {}
    monitor = TrunkMonitor(TrunksConfig(), translator_of=lambda: translator, event_time=True)
    rnd = random.Random(11)
    pool = [k for w, *k in KINDS for _ in range(w)]
    per_second = records / 7200.0               # two hours of event time
    step = max(1, records // 10)
    print(f"memory: {records:,} records over {trunks:,} trunks and 2 h of event time (cap 1,000 groups)")
    print(f"  {'records':>10} {'groups':>7} {'buckets':>8} {'RSS MB':>8}")
    start_t = time.perf_counter()
    for i in range(records):
        sip, q850, answered = rnd.choice(pool)
        exp = explained.get(sip)
        if exp is None:
            probe = HangupClues(source_name="", source_kind="freeswitch", leg_id="", sip_code=sip, q850=q850)
            exp = explained[sip] = translator.explain(probe)
        clues = HangupClues(source_name="pbx-1", source_kind="freeswitch", leg_id=str(i), direction="outbound",
                            trunk=f"carrier-{rnd.randrange(trunks)}", answered=answered, sip_code=sip, q850=q850,
                            duration_s=60.0 if answered else 0.0, pdd_s=1.5,
                            ended_at=1_800_000_000.0 + i / per_second)
        monitor.observe([CauseRecord(clues, exp, translator.texts)])
        if (i + 1) % step == 0:
            gc.collect()
            buckets = sum(len(s.buckets) for g in monitor.stats.groups.values() for s in g.series)
            print(f"  {i + 1:>10,} {len(monitor.stats.groups):>7,} {buckets:>8,} {rss_mb():>8.1f}")
    rate = records / (time.perf_counter() - start_t)
    print(f"  monitor alone: {rate:,.0f} records/s; legs counted as 'other': {monitor.stats.overflow_legs:,}; "
          f"alert events: {len(monitor.events)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="records per throughput round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--memory-records", type=int, default=1_000_000)
    parser.add_argument("--trunks", type=int, default=10_000)
    args = parser.parse_args()
    throughput(args.records, args.rounds)
    throughput(args.records // 2, max(3, args.rounds // 2), webhook=True)
    throughput(args.records // 5, 3, event_time=True)
    memory(args.memory_records, args.trunks)
