"""`callcause outbox list|retry|purge`: inspect, replay and clean what the networked sinks hold.

The storage is `callcause.connectors.delivery.outbox`; this module reads the arguments, finds
the file (from `--outbox` or the config) and prints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from callcause.connectors.delivery.outbox import Outbox
from callcause.errors import CallcauseError


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _locate(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The outbox path and a map url -> endpoint name, from --outbox or the config file."""
    if getattr(args, "outbox", None):
        return args.outbox, {}
    from callcause.config import load_config

    config = load_config(args.config)
    if not config.outbox:
        raise CallcauseError(f"{args.config}: no `outbox:` is configured, so there is nothing to inspect "
                             "(or pass --outbox PATH)")
    # an outbox sink may also be named by its url (webhook url, broker url)
    names = {s.url: s.name for s in config.sinks if getattr(s, "uses_outbox", False) and getattr(s, "url", None)}
    return config.outbox, names


def main(args: argparse.Namespace) -> int:
    path, names = _locate(args)
    if not Path(path).exists():
        raise CallcauseError(f"outbox {path} does not exist (no record for a webhook or broker sink was accepted yet)")
    endpoint = names.get(args.endpoint, args.endpoint) if args.endpoint else None
    record_id = getattr(args, "id", None)
    box = Outbox(path).open()
    try:
        if args.action == "list":
            return _list(box, args, endpoint)
        if args.action == "retry":
            n = box.retry_dead(endpoint=endpoint, record_id=record_id, now=time.time())
            print(f"{n} dead letter(s) queued again; a running daemon sends them within seconds")
            return 0
        everything = bool(getattr(args, "all", False))
        n = box.purge(dead_only=not everything, endpoint=endpoint, record_id=record_id)
        what = "record(s), waiting and dead," if everything else "dead letter(s)"
        print(f"{n} {what} deleted")
        return 0
    finally:
        box.close()


def _list(box: Outbox, args: argparse.Namespace, endpoint: str | None) -> int:
    now = time.time()
    for name, waiting, dead in box.counts():
        if endpoint is None or name == endpoint:
            print(f"# {name}: {waiting} waiting, {dead} dead")
    rows = box.listing(dead_only=args.dead, endpoint=endpoint, limit=args.limit)
    if not rows:
        print("(no records)")
        return 0
    print(f"{'id':<30} {'endpoint':<24} {'state':<8} {'attempts':>8} {'age':>6}  last error")
    for record_id, name, dead, attempts, error, accepted, next_at, batch in rows:
        if dead:
            state = "dead"
        elif attempts:
            state = "retry" if next_at > now else "due"
        else:
            state = "new"
        shown = record_id if not batch else f"{record_id} ({batch})"
        print(f"{shown:<30} {name:<24} {state:<8} {attempts:>8} {_age(now - accepted):>6}  {error or '-'}")
    return 0
