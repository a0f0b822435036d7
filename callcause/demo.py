"""`callcause demo`: the real daemon against the built-in PBX simulator, no PBX and no config.

An AMI server and an ESL server on free 127.0.0.1 ports replay real captured calls (busy,
no answer, rejected, unallocated, congestion, answered, cancelled) with fresh ids per call;
the daemon connects to them over TCP exactly as to Asterisk and FreeSWITCH, writes records
to a JSON Lines file and stdout, and delivers signed webhooks to a local receiver that
verifies every signature. Meanwhile one simulated FreeSWITCH gateway, `carrier-b`, starts
failing with 503s a third of the way in and recovers later: the trunk alert fires and
resolves (the demo's alert window is seconds long instead of minutes, so it fits the run).
At the end a summary says what was recorded, delivered and alerted, with the trunk table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from callcause.config import load_yaml, parse_config
from callcause.daemon import Daemon
from callcause.mapping.locales import SUPPORTED, resolve_language
from callcause.record import CauseRecord


def _captures_dir() -> Path:
    from callcause.connectors import simulator

    return Path(simulator.__file__).parent / "captures"


def demo_config(tmp: Path, ami_port: int, ami_secret: str, esl_port: int, esl_password: str,
                hook_url: str, hook_secret: str, lang: str) -> str:
    """The config a user would write for this setup, with the simulator's ports and secrets."""
    return f"""\
language: {lang}
sources:
  - name: asterisk-demo
    kind: asterisk
    host: 127.0.0.1
    port: {ami_port}
    username: callcause
    secret: {ami_secret}
    hangup_grace: 0.3
    ping_interval: 5
  - name: freeswitch-demo
    kind: freeswitch
    host: 127.0.0.1
    port: {esl_port}
    password: {esl_password}
    complete_wait: 0.5
    internal_leg_wait: 0.3
sinks:
  - kind: log
    path: {tmp / "records.jsonl"}
    stdout: text
  - kind: webhook
    url: {hook_url}
    secrets: ["{hook_secret}"]
    allow_insecure_http: true
outbox: {tmp / "outbox.sqlite3"}
logging: {{level: WARNING}}
"""


# The lab captures were placed without a caller id (FreeSWITCH writes 0000000000, or the
# dialled string); the demo gives each such call a caller like the ones a PBX sees (numbers
# from the ranges Ofcom keeps free for drama and examples).
DEMO_CALLERS = ("+442079460123", "+441632960961", "+441134960754", "+442079460987")
_CALLER_ID = re.compile(rb"(?mi)^([A-Za-z_-]*caller[-_]id[-_]number): ([^\n]*)$")
_DESTINATION = re.compile(rb"(?m)^Caller-Destination-Number: ([^\n]*)$")


def with_callers(calls: list[list[bytes]], first: int = 0) -> list[list[bytes]]:
    """Each call's frames with a placeholder caller id (0000000000, or the number dialled
    itself) replaced by a demo number (the `first`-th onwards); real caller ids stay."""
    from callcause.connectors.simulator.esl import event_frame, frame_body

    out = []
    for n, frames in enumerate(calls):
        number = quote(DEMO_CALLERS[(first + n) % len(DEMO_CALLERS)], safe="").encode()
        fixed = []
        for f in frames:
            body = frame_body(f)
            dest = _DESTINATION.search(body)
            placeholders = {b"0000000000", dest.group(1) if dest else b"0000000000"}
            fixed.append(event_frame(_CALLER_ID.sub(
                lambda m, v=number, p=placeholders: m.group(1) + b": " + (v if m.group(2) in p else m.group(2)),
                body)))
        out.append(fixed)
    return out


async def _quiet(counter: list[int], settle: float, limit: float) -> None:
    """Wait until no new record arrived for `settle` seconds (at most `limit` seconds)."""
    deadline = time.monotonic() + limit
    last, since = counter[0], time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        if counter[0] != last:
            last, since = counter[0], time.monotonic()
        elif time.monotonic() - since >= settle:
            return


def demo_trunks(config, duration: float) -> tuple[float, int]:
    """Trunk health on the demo's time scale: 1-second buckets, an alert window of a fifth of
    the run on carrier-b, and a window over the whole run for the closing table."""
    from callcause.trunks.rules import Rule, Scope

    window = float(max(1, round(duration / 5)))
    whole = int(duration) + 60
    t = config.trunks
    t.resolution_s, t.windows, t.evaluate_every_s = 1, (window, whole), 0.25
    # the Asterisk captures' phones have endpoints of their own: only these names are trunks
    t.trunk_names = ["peer", "carrier-*"]
    t.rules = [Rule("carrier-outage", "ner", "below", 0.85, 0.90, window, min_attempts=5, for_s=window / 4,
                    scope=Scope(trunk=("carrier-*",)), where="demo")]
    return window, whole


async def _play_outage(esl, duration: float, cps: float, counter: list[int]) -> None:
    """carrier-b: answered calls, 503s from 35 % to 60 % of the run, answered again after."""
    from callcause.connectors.simulator.outage import outage_call

    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < duration:
        share = elapsed / duration
        call = outage_call(time.time(), failing=0.35 <= share < 0.6)
        esl.send_events(with_callers([call], first=counter[0])[0])
        counter[0] += 1
        await asyncio.sleep(1 / cps)


async def run_demo(rate: float, duration: float, lang: str, out=sys.stdout) -> int:
    from callcause.connectors.simulator.ami import AmiSimulator, IdSource, Scenario
    from callcause.connectors.simulator.esl import EslServer, event_frames, load_capture
    from callcause.connectors.simulator.receiver import WebhookReceiver
    from callcause.daemon import setup_logging

    captures = _captures_dir()
    ami_scenarios = [Scenario.load(p) for p in sorted(captures.glob("ami-*.txt"))]
    esl_calls = with_callers([event_frames(load_capture(p)) for p in sorted(captures.glob("esl-*.txt"))])
    calls = max(2, round(rate * duration))
    ami_calls, esl_calls_n = math.ceil(calls / 2), calls // 2

    ami_secret, esl_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    hook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with tempfile.TemporaryDirectory(prefix="callcause-demo-") as tmpdir:
        tmp = Path(tmpdir)
        ami = AmiSimulator(username="callcause", secret=ami_secret)
        await ami.start()
        esl = EslServer(password=esl_password).start()
        receiver = await WebhookReceiver(secret=hook_secret).start()
        text = demo_config(tmp, ami.port, ami_secret, esl.port, esl_password, receiver.url, hook_secret, lang)
        config = parse_config(load_yaml("demo", text=text), "<demo config>")
        window, whole = demo_trunks(config, duration)
        setup_logging(config)
        daemon = Daemon(config)
        outage_calls = [0]
        by_source: Counter[tuple[str, str]] = Counter()
        seen = [0]

        def on_record(record: CauseRecord) -> None:
            by_source[(record.clues.source_name, record.category)] += 1
            seen[0] += 1

        daemon.pipeline.on_record = on_record
        print(f"callcause demo: simulated Asterisk on 127.0.0.1:{ami.port}, FreeSWITCH on "
              f"127.0.0.1:{esl.port}, webhook receiver {receiver.url}; playing {calls} calls "
              f"over {duration:g} s, and gateway carrier-b failing with 503s from {0.35 * duration:.1f} s to "
              f"{0.6 * duration:.1f} s (alert: NER under 85 % over {window:g} s)", file=out, flush=True)
        task = asyncio.create_task(daemon.run())
        try:
            deadline = time.monotonic() + 15
            while not all(s.connected for s in daemon.sources):
                if time.monotonic() > deadline or task.done():
                    print("callcause demo: the sources did not connect to the simulator", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.05)
            await ami.wait_logins(1)
            await esl.subscribed(1)
            per_call_esl = sum(len(c) for c in esl_calls) / len(esl_calls)
            esl_frames = [f for call in esl_calls for f in call]
            repeat = max(1, math.ceil(esl_calls_n / len(esl_calls)))
            esl_rate = max(1.0, per_call_esl * max(esl_calls_n, 1) / duration)
            esl_done = asyncio.wrap_future(esl.play(esl_frames, rate=esl_rate, repeat=repeat, fresh_ids=True,
                                                    fresh_times=True))
            outage = asyncio.create_task(_play_outage(esl, duration, max(8.0, rate / 2), outage_calls))
            await ami.play(ami_scenarios, calls=ami_calls, rate=max(ami_calls / duration, 0.1), ids=IdSource())
            await asyncio.wait_for(esl_done, duration + 30)
            await asyncio.wait_for(outage, duration + 30)
            await _quiet(seen, settle=1.5, limit=30)
            delivered = await receiver.wait_records(seen[0], timeout=30)
        finally:
            daemon.stop.set()
            await asyncio.wait_for(task, 60)
            await receiver.close()
            await ami.close()
            esl.stop()
        lines = [json.loads(line) for line in (tmp / "records.jsonl").read_text().splitlines()]
        jsonl = [d for d in lines if d.get("type") == "call.hangup"]
        alerts = [d["data"] for d in lines if d.get("type") == "trunk.alert"]

    ids = {r["id"] for r in receiver.records}
    summary = {
        "calls_played": ami_calls + repeat * len(esl_calls) + outage_calls[0],
        "records": seen[0],
        "records_in_jsonl": len(jsonl),
        "webhook_deliveries_verified": receiver.verified,
        "webhook_records_distinct": len(ids),
        "webhook_signature_failures": receiver.rejected,
        "by_source_and_category": {f"{s}/{c}": n for (s, c), n in sorted(by_source.items())},
        "alerts": [f"{a['rule']} {a['state']} {a['scope']['source']}/{a['scope']['trunk']}" for a in alerts],
    }
    _print_summary(summary, by_source, out)
    from callcause.trunks.command import render

    render(daemon.trunks.snapshot(), whole, out)
    ok = delivered and receiver.rejected == 0 and len(ids) == seen[0] == len(jsonl) and seen[0] > 0
    print("DEMO-SUMMARY " + json.dumps(summary, sort_keys=True), file=out, flush=True)
    return 0 if ok else 1


def _print_summary(summary: dict, by_source: Counter[tuple[str, str]], out) -> None:
    from rich.console import Console
    from rich.table import Table

    sources = sorted({s for s, _ in by_source})
    categories = sorted({c for _, c in by_source})
    table = Table(title="callcause demo: records by category and source")
    table.add_column("category")
    for s in sources:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right", style="bold")
    for c in categories:
        row = [by_source.get((s, c), 0) for s in sources]
        table.add_row(c, *map(str, row), str(sum(row)))
    totals = [sum(n for (s2, _), n in by_source.items() if s2 == s) for s in sources]
    table.add_row("all", *map(str, totals), str(sum(totals)), style="bold")
    console = Console(file=out, soft_wrap=True)
    console.print(table)
    console.print(f"records: {summary['records']} (JSON Lines file: {summary['records_in_jsonl']}); "
                  f"webhook: {summary['webhook_records_distinct']} records delivered with verified "
                  f"signatures in {summary['webhook_deliveries_verified']} deliveries, "
                  f"{summary['webhook_signature_failures']} signature failures")


def main(args: argparse.Namespace) -> int:
    lang = resolve_language(args.lang)
    if lang is None:
        print(f"callcause demo: language {args.lang!r} is not supported; use one of: {', '.join(SUPPORTED)}",
              file=sys.stderr)
        return 2
    if args.rate <= 0 or args.duration <= 0:
        print("callcause demo: --rate and --duration must be positive", file=sys.stderr)
        return 2
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    return asyncio.run(run_demo(args.rate, args.duration, lang))
