"""`callcause trunks`: the trunk health table, from a running daemon's `/trunks` or from
record files (the log sink's JSON Lines), with the alerts firing.

From files, "now" is the newest record's time, so the windows show the end of the file; the
alerts are the `trunk.alert` lines in the files whose episode has not resolved.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from callcause.errors import CallcauseError
from callcause.trunks.legs import parse_time
from callcause.trunks.rolling import DEFAULT_WINDOWS, RollingStats


def from_url(url: str, timeout: float = 5.0) -> dict[str, Any]:
    target = url.rstrip("/")
    if not target.endswith("/trunks"):
        target += "/trunks"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CallcauseError(f"{target}: cannot read trunk health ({exc}); is the daemon running with "
                             "`metrics: {listen: ...}` and trunk health on?") from None


def from_files(files: list[str], windows: tuple[float, ...] = DEFAULT_WINDOWS) -> dict[str, Any]:
    """The snapshot of record files, read as `callcause report` reads them: plain or gzip (as
    logrotate leaves them), a damaged line skipped with one warning per file."""
    from callcause.report.read import ReadStats, documents

    latest = [0.0]
    stats = RollingStats(windows=windows, max_groups=10_000, clock=lambda: latest[0])
    episodes: dict[str, dict[str, Any]] = {}
    read = ReadStats()
    records = 0
    for doc in documents(files, read, result="the table"):
        if doc.get("type") == "trunk.alert":
            data = doc.get("data") or {}
            episodes[data.get("id", "")] = data
            continue
        if doc.get("type") != "call.hangup" or "time" not in doc:
            continue
        records += 1
        latest[0] = max(latest[0], parse_time(doc["time"]))
        stats.add_document(doc)
    if read.bad_lines and not records and not episodes:
        raise CallcauseError(f"{', '.join(files)}: no JSON record line in {read.lines} line(s); give the log "
                             "sink's JSON Lines file (sinks: kind: log, path: ...)")
    return {"time": None, "windows_s": list(windows), "groups": stats.snapshot(latest[0], windows),
            "firing": [d for d in episodes.values() if d.get("state") == "firing"]}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f} %"


def _num(x: float | None, unit: str, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f} {unit}"


def render(snapshot: dict[str, Any], window: int, out=None) -> None:
    from rich.console import Console
    from rich.table import Table

    key = f"{window}s"
    span = f"{window // 60} min" if window >= 60 and window % 60 == 0 else f"{window} s"
    table = Table(title=f"callcause trunk health, last {span}")
    for col in ("source", "trunk", "direction", "attempts", "ASR", "NER", "SEER", "ACD", "PDD", "top failure"):
        table.add_column(col, justify="right" if col not in ("source", "trunk", "direction", "top failure") else "left")
    firing = {(a["scope"]["source"], a["scope"]["trunk"], a["scope"]["direction"]) for a in snapshot.get("firing", [])}
    for g in snapshot.get("groups", []):
        f = g["windows"].get(key)
        if f is None or not f["attempts"]:
            continue
        fails = [c for c in f["top_causes"] if c["category"] != "answered"]
        top = (f"{fails[0]['sip'] or '-'}/{fails[0]['q850'] if fails[0]['q850'] is not None else '-'} "
               f"{fails[0]['category']} x{fails[0]['count']}") if fails else ""
        trunk = g["trunk"] + (f" [{g['destination']}]" if g.get("destination") else "")
        style = "bold red" if (g["source"], g["trunk"], g["direction"]) in firing else None
        table.add_row(g["source"], trunk, g["direction"], str(f["attempts"]), _pct(f["asr"]), _pct(f["ner"]),
                      _pct(f["seer"]), _num(f["acd_s"], "s"), _num(f["pdd_s"], "s", 2), top, style=style)
    stream = out or sys.stdout
    console = Console(file=stream, soft_wrap=True, width=None if stream.isatty() else 150)
    console.print(table)
    alerts = snapshot.get("firing", [])
    if not alerts:
        console.print("no alert firing")
    for a in alerts:
        console.print(f"[bold red]FIRING[/] {_alert_text(a)}")


def _alert_text(a: dict[str, Any]) -> str:
    """One firing alert in words; tolerant of alert events written by older versions (a file
    may span an upgrade), which lack some keys."""
    s = a.get("scope") or {}
    where = "/".join(str(s.get(k, "?")) for k in ("source", "trunk", "direction"))
    window = a.get("window_s")
    over = f" over {window:g} s" if isinstance(window, int | float) else ""
    op = f"{a['op']} " if a.get("op") else ""
    return (f"{a.get('rule', '?')} {where}: {a.get('figure', '?')} was {a.get('value')} ({op}{a.get('threshold')})"
            f"{over} with {a.get('attempts', '?')} attempts when it fired at {a.get('time', '?')}; "
            f"breach since {a.get('since', '?')}")


def main(args: argparse.Namespace) -> int:
    from callcause.config import Section

    holder = Section({"window": args.window}, file="command line", path="--window")
    window = int(holder.duration("window", 300.0, minimum=10.0))
    if args.files:
        snapshot = from_files(args.files, tuple(sorted({*DEFAULT_WINDOWS, window})))
    else:
        snapshot = from_url(args.url)
        if f"{window}s" not in (snapshot["groups"][0]["windows"] if snapshot.get("groups") else {f"{window}s": 0}):
            raise CallcauseError(f"the daemon keeps windows of {', '.join(f'{w:g} s' for w in snapshot['windows_s'])}; "
                                 f"pick one of them with --window")
    if args.json:
        print(json.dumps(snapshot, ensure_ascii=False, indent=2))
    else:
        render(snapshot, window)
    return 0
