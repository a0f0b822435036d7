"""`callcause replay`: recorded AMI or ESL traffic through the same correlation and translation
as live traffic, into the configured sinks or stdout; `--overrides NEW --diff` shows which
legs an overrides change would explain differently, before it goes live; `--alerts` back-tests
the trunk alert rules on the recorded event times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from callcause.errors import CallcauseError
from callcause.mapping.locales import SUPPORTED, resolve_language
from callcause.problems import ProblemLog
from callcause.record import HangupClues

Emit = Callable[[HangupClues], None]
# Files above this size get a progress bar on stderr (when stderr is a terminal).
PROGRESS_BYTES = 2_000_000


def detect_format(path: Path) -> str:
    """`esl` for FreeSWITCH event-socket text, `ami` for manager-interface text."""
    with path.open("rb") as fh:
        head = fh.read(256_000)
    if re.search(rb"^Event-Name: ", head, re.M) or re.search(rb"^Content-Type: text/event-", head, re.M):
        return "esl"
    if re.search(rb"^Event: ", head, re.M):
        return "ami"
    raise CallcauseError(f"{path}: neither AMI (`Event:` lines) nor ESL (`Event-Name:` lines) traffic was "
                         "found in its first 256 KB; give --format ami or --format esl if you are sure")


def _progress(items: list, path: Path, size: int) -> Iterator:
    if size < PROGRESS_BYTES or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"replaying {path.name}", total=len(items))
        for i, item in enumerate(items):
            yield item
            if i % 1000 == 999:
                bar.update(task, completed=i + 1)


def replay_ami(path: Path, source: str, emit: Emit, record_internal_legs: bool) -> int:
    """Feed an AMI capture to the Asterisk correlator; returns the number of events read."""
    from callcause.connectors.asterisk.correlate import EVENTS, Correlator, CorrelatorSettings
    from callcause.connectors.asterisk.protocol import parse_fields
    from callcause.connectors.simulator.ami import load_frames

    problems = ProblemLog(f"replay {path}")
    # A long grace: every late clue (DialEnd, CEL) is in the file; flush() ends the rest.
    corr = Correlator(CorrelatorSettings(source_name=source, record_internal_legs=record_internal_legs,
                                         grace=3600.0), emit, problems)
    frames = load_frames(path)
    count = 0
    for frame in _progress(frames, path, path.stat().st_size):
        fields, _bad = parse_fields(frame)
        name = fields.get("event", "").strip().lower()
        if name in EVENTS:
            corr.feed(name, fields)
            count += 1
    corr.flush()
    return count


def replay_esl(path: Path, source: str, emit: Emit, record_internal_legs: bool) -> int:
    """Feed the hangup events of an ESL capture to the FreeSWITCH leg tracker."""
    from callcause.connectors.freeswitch.client import parse_plain
    from callcause.connectors.freeswitch.source import COMPLETE, HANGUP, LegTracker, clues_from_event
    from callcause.connectors.simulator.esl import event_frames, frame_body, load_capture

    tracker = LegTracker(emit, record_internal_legs=record_internal_legs, complete_wait=3600.0,
                         internal_wait=3600.0)
    count = 0
    frames = event_frames(load_capture(path))
    for frame in _progress(frames, path, path.stat().st_size):
        headers, _ = parse_plain(frame_body(frame).decode("utf-8", errors="replace"))
        name = headers.get("Event-Name")
        if name not in (COMPLETE, HANGUP):
            continue
        clues, links, _problems = clues_from_event(headers, source)
        if name == COMPLETE:
            tracker.complete(clues, links)
        else:
            tracker.hangup(clues, links)
        count += 1
    tracker.flush_all()
    return count


def collect(files: list[str], fmt: str, source: str, record_internal_legs: bool) -> list[HangupClues]:
    legs: list[HangupClues] = []
    for name in files:
        path = Path(name)
        if not path.is_file():
            raise CallcauseError(f"{name}: no such file")
        kind = detect_format(path) if fmt == "auto" else fmt
        (replay_ami if kind == "ami" else replay_esl)(path, source, legs.append, record_internal_legs)
    return legs


def diff(legs: list[HangupClues], old, new, lang: str, out=None) -> int:
    """Print the legs whose category or summary changes under the new overrides."""
    out = out or sys.stdout
    changed = 0
    for clues in legs:
        a, b = old.explain(clues), new.explain(clues)
        ta, tb = old.texts(a, lang), new.texts(b, lang)
        if a.category != b.category or ta.summary != tb.summary:
            changed += 1
            print(f"{clues.source_name} {clues.leg_id} {clues.channel or ''}: "
                  f"{a.category} ({a.rule}) -> {b.category} ({b.rule}); "
                  f"{ta.summary!r} -> {tb.summary!r}", file=out)
    print(f"{changed} of {len(legs)} legs change", file=out)
    return changed


async def _wait_delivered(sinks) -> None:
    """Let sinks with an outbox deliver what the replay gave them before the command ends,
    for as long as deliveries go on (each sink's `grace` without progress ends the wait); say
    what is left and where it waits."""
    for sink in sinks:
        wait = getattr(sink, "wait_delivered", None)
        if wait is None:
            continue
        left = await wait(sink.cfg.grace_s)
        if left:
            print(f"callcause replay: sink {sink.name}: {left} record(s) not delivered yet; they wait in "
                  f"the outbox {sink.outbox_path}, which `callcause run` with this config delivers "
                  f"(see `callcause outbox list`)", file=sys.stderr)


async def _write(legs: list[HangupClues], translator, sinks, instance: str) -> int:
    from callcause.pipeline import Pipeline

    pipe = Pipeline(translator, sinks, instance=instance)
    await pipe.start_sinks()
    try:
        for clues in legs:
            pipe.emit(clues)
        await pipe.drain()
        await _wait_delivered(sinks)
    finally:
        await pipe.close_sinks()
    return pipe.records


async def _write_with_alerts(legs: list[HangupClues], translator, sinks, monitor, instance: str) -> int:
    """One leg at a time in event-time order, so each alert event lands between the records
    that decided it, as it would have live."""
    from callcause.pipeline import Pipeline

    pipe = Pipeline(translator, sinks, instance=instance)
    pipe.observers.append(monitor.observe)
    await pipe.start_sinks()
    try:
        for clues in sorted(legs, key=lambda c: c.ended_at):
            monitor.advance(clues.ended_at)     # alerts due before this leg come before its record
            await monitor.flush()
            await pipe.process_many([clues])
        monitor.finish()
        await monitor.flush()
        await _wait_delivered(sinks)
    finally:
        await pipe.close_sinks()
    return pipe.records


def _alert_monitor(args: argparse.Namespace, config, translator, sinks, instance: str):
    from callcause.trunks.monitor import TrunkMonitor
    from callcause.trunks.rules import load_rules_file
    from callcause.trunks.settings import TrunksConfig

    cfg = config.trunks if config is not None and config.trunks is not None else TrunksConfig()
    if args.rules:
        cfg.rules = load_rules_file(args.rules)
    return TrunkMonitor(cfg, sinks=sinks, translator_of=lambda: translator, event_time=True, count_metrics=False,
                        log_events=False, instance=instance)


def main(args: argparse.Namespace) -> int:
    from callcause.connectors.sinks.log import LogConfig, LogSink
    from callcause.mapping.translator import Translator

    lang = resolve_language(args.lang) if args.lang else None
    if args.lang and lang is None:
        print(f"callcause replay: language {args.lang!r} is not supported; use one of: {', '.join(SUPPORTED)}",
              file=sys.stderr)
        return 2
    config = None
    if args.config:
        from callcause.daemon import build_connectors, load_config

        config = load_config(args.config)
    internal = bool(config and config.record_internal_legs)
    base = Translator.load(config.overrides if config else None)
    legs = collect(args.files, args.format, args.source, internal)
    if args.diff:
        if not args.overrides:
            print("callcause replay: --diff needs --overrides NEW.yaml", file=sys.stderr)
            return 2
        diff(legs, base, Translator.load(args.overrides), lang or (config.language if config else "en"))
        return 0
    translator = Translator.load(args.overrides) if args.overrides else base
    if config is not None and config.sinks:
        _sources, sinks = build_connectors(config)
    else:
        sinks = [LogSink(LogConfig(path=None, stdout="json" if args.json else "text"), lang or "en",
                         stdout=sys.stdout, reader_may_leave=True)]
    from callcause.config import default_instance

    instance = config.instance if config else default_instance()
    if getattr(args, "alerts", False) or getattr(args, "rules", None):
        monitor = _alert_monitor(args, config, translator, sinks, instance)
        written = asyncio.run(_write_with_alerts(legs, translator, sinks, monitor, instance))
        fired = sum(e.state == "firing" for e in monitor.events)
        print(f"callcause replay: {written} record(s) from {len(args.files)} file(s); {len(monitor.events)} alert "
              f"event(s), {fired} firing, rules: {', '.join(r.name for r in monitor.engine.rules) or 'none'}",
              file=sys.stderr)
        return 0
    written = asyncio.run(_write(legs, translator, sinks, instance))
    if any(getattr(s, "reader_gone", False) for s in sinks):
        # `replay ... | head`: the reader left; end quietly as Unix tools do. stdout now points
        # at /dev/null so the interpreter's final flush does not complain about the pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    print(f"callcause replay: {written} record(s) from {len(args.files)} file(s)", file=sys.stderr)
    return 0
