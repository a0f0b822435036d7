"""The `callcause` command: one sub-command per job, each implemented in its own module.

Exit status: 0 success, 1 runtime failure, 2 bad input or bad config (one line on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from callcause import __version__
from callcause.errors import CallcauseError, ConfigError

# sub-command -> "module:function(args) -> int"
COMMANDS = {
    "explain": "callcause.explain:main",
    "run": "callcause.daemon:main",
    "demo": "callcause.demo:main",
    "replay": "callcause.replay:main",
    "check-config": "callcause.daemon:check_config_main",
    "outbox": "callcause.outbox:main",
    "report": "callcause.report.command:main",
    "trunks": "callcause.trunks.command:main",
}


def _dialect(text: str) -> str:
    """`asterisk`, `freeswitch@1.10.6`: a known dialect name, with a version that parses."""
    from callcause.mapping.tables import DIALECTS, parse_version

    name, _, version = text.partition("@")
    if name not in DIALECTS:
        raise argparse.ArgumentTypeError(f"unknown dialect {name!r}; use one of {', '.join(DIALECTS)}"
                                         " (optionally with @VERSION, e.g. asterisk@22.8)")
    if version and (name == "rfc3398" or parse_version(version) is None):
        raise argparse.ArgumentTypeError(f"{text!r}: give a version number after @ (e.g. asterisk@22.8); "
                                         "rfc3398 has no versions")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callcause",
        description="Why did the call end? Hangup-cause records from Asterisk and FreeSWITCH.",
    )
    parser.add_argument("--version", action="version", version=f"callcause {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("explain", help="explain a SIP code, Q.850 cause, PBX cause name or DSS1 cause IE")
    p.add_argument("text", nargs="+", help="e.g. 486, '480 No money left', q850:34, USER_BUSY, 0x8290")
    p.add_argument("--lang", default=None, help="language of the texts: en, de, ru, zh (default en)")
    p.add_argument("--dialect", type=_dialect, default=None, metavar="NAME[@VERSION]",
                   help="whose SIP<->Q.850 mapping to apply: asterisk, freeswitch or rfc3398, "
                        "optionally of one version (asterisk@22.8; plain name: the newest; default: rfc3398)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--overrides", default=None, help="apply this overrides file")

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("-c", "--config", default="/etc/callcause/callcause.yaml", help="config file")

    p = sub.add_parser("check-config", help="validate the config and overrides without connecting")
    p.add_argument("-c", "--config", default="/etc/callcause/callcause.yaml", help="config file")

    p = sub.add_parser("demo", help="run the pipeline against the built-in PBX simulator")
    p.add_argument("--rate", type=float, default=20.0, help="calls per second the simulator plays")
    p.add_argument("--duration", type=float, default=10.0, help="seconds to run")
    p.add_argument("--lang", default="en", help="language of the texts")

    p = sub.add_parser("replay", help="run recorded AMI or ESL traffic through the pipeline")
    p.add_argument("files", nargs="+", help="capture files")
    p.add_argument("--format", choices=("ami", "esl", "auto"), default="auto")
    p.add_argument("-c", "--config", default=None, help="write to the sinks of this config")
    p.add_argument("--lang", default=None)
    p.add_argument("--overrides", default=None, help="overrides to compare against (with --diff)")
    p.add_argument("--diff", action="store_true", help="print the legs whose explanation changes")
    p.add_argument("--json", action="store_true", help="print records as JSON Lines")
    p.add_argument("--source", default="replay",
                   help="source name for the records (use the live source's name to get the same record ids)")
    p.add_argument("--alerts", action="store_true",
                   help="back-test the trunk alert rules on the recorded event times")
    p.add_argument("--rules", default=None, help="with --alerts: the rules of this file instead of the config's")

    p = sub.add_parser("trunks", help="trunk health (ASR, NER, SEER, ACD, PDD) and firing alerts")
    p.add_argument("files", nargs="*", help="record files (the log sink's JSON Lines); without them, ask --url")
    p.add_argument("--url", default="http://127.0.0.1:9464", help="a running daemon's metrics listener")
    p.add_argument("--window", default="5m", help="which window to show (1m, 5m, 1h ...)")
    p.add_argument("--json", action="store_true", help="print the JSON instead of the table")

    p = sub.add_parser("outbox", help="list, retry or purge webhook and broker deliveries in the outbox")
    p.add_argument("action", choices=("list", "retry", "purge"))
    p.add_argument("-c", "--config", default="/etc/callcause/callcause.yaml", help="config file")
    p.add_argument("--dead", action="store_true", help="only dead-lettered records")
    p.add_argument("--endpoint", default=None, help="only this endpoint (its url or name)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--id", default=None, help="only this record id (or batch id)")
    p.add_argument("--all", action="store_true", help="purge: also records still waiting, not only dead ones")
    p.add_argument("--outbox", default=None, help="the outbox file, instead of reading it from the config")

    p = sub.add_parser("report", help="one self-contained HTML report from JSON Lines record files")
    p.add_argument("files", nargs="+", help="record files (JSON Lines, plain or .gz)")
    p.add_argument("-o", "--output", default="report.html", help="the HTML file to write")
    p.add_argument("--lang", default=None, help="language of the texts: en, de, ru, zh (default en)")
    p.add_argument("--since", default=None, help="start: 2026-12-01T08:00 (UTC), or 24h / 7d before --until")
    p.add_argument("--until", default=None, help="end (default: now when --since is given, else the last record)")
    p.add_argument("--sources", default=None, help="only these sources (comma-separated globs)")
    p.add_argument("--trunks", default=None, help="only these trunks (comma-separated globs)")
    p.add_argument("--pii", default=None, help="called numbers: mask (default), keep, hash, drop")
    p.add_argument("-c", "--config", default=None,
                   help="take language, report.pii, destination prefix groups, classes and overrides from this config")
    p.add_argument("--min-attempts", type=int, default=30, help='below this a trunk is marked "few calls"')
    p.add_argument("--alerts", default=None, metavar="RULES",
                   help="back-test alert rules on the records and mark them: a rules file, or `default`")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, func = COMMANDS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module), func)
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"callcause: config error: {exc}", file=sys.stderr)
        return 2
    except CallcauseError as exc:
        print(f"callcause: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
