"""`callcause report RECORDS... -o report.html`: record files in, one HTML file out."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callcause.errors import CallcauseError
from callcause.mapping.locales import SUPPORTED, resolve_language
from callcause.pii import ACTIONS, PiiPolicy
from callcause.report.collect import Collector, Filters, report_destinations
from callcause.report.read import ReadStats, documents
from callcause.report.render import Options, build_view, render_html

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now: float, option: str) -> float:
    """`2026-12-01`, `2026-12-01T08:00`, `...Z` / `+01:00` (UTC when no zone), or a duration
    before `now`: `24h`, `7d`, `90m`."""
    m = _DURATION.match(text.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise CallcauseError(f"{option} {text!r}: not a time; write e.g. 2026-12-01T08:00 (UTC), "
                             "2026-12-01T08:00+01:00, or a duration before --until such as 24h or 7d") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def filters_from(args: argparse.Namespace, now: float | None = None) -> Filters:
    now = time.time() if now is None else now
    until = parse_when(args.until, now, "--until") if args.until else None
    since = None
    if args.since:
        until = now if until is None else until     # a period needs an end: now, unless given
        since = parse_when(args.since, until, "--since")
        if since >= until:
            raise CallcauseError(f"--since {args.since} is not before --until; the period would be empty")
    return Filters(since=since, until=until, sources=_globs(args.sources), trunks=_globs(args.trunks))


def _globs(value: str | None) -> list[str]:
    return [g.strip() for g in value.split(",") if g.strip()] if value else []


def pii_from(action: str) -> PiiPolicy:
    if action == "hash":
        from callcause.config import Secret

        salt = os.environ.get("CALLCAUSE_PII_SALT")
        if not salt:
            raise CallcauseError("--pii hash needs a salt: set CALLCAUSE_PII_SALT to the salt your sinks use")
        return PiiPolicy(to="hash", salt=Secret(salt))
    return PiiPolicy(to=action)


def alert_events(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`trunk.alert` event bodies (as `callcause replay --alerts --json` writes them), with a time."""
    out = []
    for doc in docs:
        data = dict(doc.get("data") or {})
        stamp = doc.get("timestamp") or data.get("since")
        try:
            data["_time"] = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
        out.append(data)
    return out


def alert_monitor(rules: str):
    """A back-test of alert rules on the report's legs, in event time: `default` for the built-in
    rules, else a rules file as `callcause replay --alerts --rules` takes it."""
    from callcause.trunks.monitor import TrunkMonitor
    from callcause.trunks.rules import load_rules_file
    from callcause.trunks.settings import TrunksConfig

    cfg = TrunksConfig()
    if rules != "default":
        cfg.rules = load_rules_file(rules)
    return TrunkMonitor(cfg, event_time=True, count_metrics=False, log_events=False)


def write_report(files: list[str], output: str, filters: Filters, opts: Options,
                 rules: str | None = None, config: Any = None) -> dict[str, Any]:
    """Read `files`, count, render, write `output`. `config` (a loaded `Config`) brings the
    destination prefix groups, class changes and overrides of the site."""
    from callcause.mapping.translator import Translator
    from callcause.trunks import load_classes

    trunks = config.trunks if config is not None else None
    stats = ReadStats()
    alerts: list[dict[str, Any]] = []
    collector = Collector(filters, destinations=report_destinations(trunks.destinations if trunks else None),
                          classes=load_classes(trunks.classes if trunks else None))
    monitor = alert_monitor(rules) if rules else None
    if monitor is not None:
        collector.on_leg = monitor.observe_leg

    def records():
        for doc in documents(files, stats):
            if doc.get("type") == "trunk.alert":
                alerts.append(doc)
            else:
                yield doc

    collector.add_all(records())
    if monitor is not None:
        monitor.finish()
        alerts += [event.document(opts.lang) for event in monitor.events]
    opts.alerts = [*opts.alerts, *alert_events(alerts)]
    opts.bad_lines = stats.bad_lines
    view = build_view(collector, opts, Translator.load(config.overrides if config is not None else None))
    html = render_html(view)
    Path(output).write_text(html, encoding="utf-8")
    return {"legs": view["legs"], "bytes": len(html.encode()), "files": stats.files, "bad_lines": stats.bad_lines}


def main(args: argparse.Namespace) -> int:
    config = None
    if args.config:
        from callcause.daemon import load_config

        config = load_config(args.config)
    report_cfg = config.report if config is not None else None
    default_lang = (report_cfg.language or config.language) if config is not None else "en"
    lang = resolve_language(args.lang) if args.lang else default_lang
    if lang is None:
        raise CallcauseError(f"language {args.lang!r} is not supported; use one of: {', '.join(SUPPORTED)}")
    if args.pii is not None and args.pii not in ACTIONS:
        raise CallcauseError(f"--pii {args.pii}: use one of {', '.join(ACTIONS)}")
    pii = pii_from(args.pii) if args.pii else report_cfg.pii if report_cfg is not None else PiiPolicy(to="mask")
    opts = Options(lang=lang, min_attempts=args.min_attempts, pii=pii)
    result = write_report(args.files, args.output, filters_from(args), opts, rules=args.alerts, config=config)
    print(f"callcause report: {result['legs']} leg(s) from {result['files']} file(s) -> {args.output} "
          f"({result['bytes'] / 1024:.0f} KB)", file=sys.stderr)
    return 0
