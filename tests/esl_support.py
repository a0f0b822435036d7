"""Helpers for the FreeSWITCH source tests: fixtures, a running source against the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from callcause.config import Secret
from callcause.connectors.freeswitch.source import EslConfig, EslSource
from callcause.connectors.simulator.esl import EslServer, event_frames, event_name, load_capture
from callcause.record import HangupClues

FIXTURES = Path(__file__).parent / "fixtures" / "esl"
PASSWORD = "Tr0ub4dor-esl"
_names = itertools.count(1)


def frames(name: str, only: str | None = None) -> list[bytes]:
    """Event frames of one fixture file, optionally only one event name."""
    out = event_frames(load_capture(FIXTURES / name))
    return [f for f in out if only is None or event_name(f) == only]


def translator() -> Any:
    from callcause.mapping.locales import Locales
    from callcause.mapping.tables import builtin_tables
    from callcause.mapping.translator import Translator

    try:
        return Translator.default()
    except FileNotFoundError:   # texts not installed: categories do not need them
        return Translator(builtin_tables(), Locales({"en": {}}))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Harness:
    """An `EslSource` running against an `EslServer`, collecting what it emits."""

    def __init__(self, server: EslServer, source: EslSource) -> None:
        self.server = server
        self.source = source
        self.records: list[HangupClues] = []
        self.emit_threads: set[int] = set()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.on_emit: Callable[[HangupClues], None] | None = None

    def emit(self, clues: HangupClues) -> None:
        import threading

        self.emit_threads.add(threading.get_ident())
        if self.on_emit is not None:
            self.on_emit(clues)
        self.records.append(clues)
        self._changed.set()

    async def wait_records(self, count: int, timeout: float = 5.0) -> list[HangupClues]:
        async def until() -> None:
            while len(self.records) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), timeout)
        return self.records

    async def wait_sessions(self, count: int, timeout: float = 5.0) -> None:
        """Until the client subscribed `count` times in all and the source says it is up."""
        assert await self.server.subscribed(count, timeout)
        await asyncio.wait_for(self.source.connected_event.wait(), timeout)

    def by_leg(self) -> dict[str, HangupClues]:
        return {c.leg_id: c for c in self.records}


def daemon_config(tmp_path: Path, port: int, *, source_keys: str = "", name: str = "fs-daemon") -> str:
    """A `callcause run` config file: one FreeSWITCH source on `port`, a JSON Lines log sink
    at `tmp_path/records.jsonl`; `source_keys` are extra lines (indented) of the source."""
    secret = tmp_path / "esl.secret"
    secret.write_text(PASSWORD + "\n")
    path = tmp_path / "callcause.yaml"
    path.write_text(f"""\
sources:
  - name: {name}
    kind: freeswitch
    host: 127.0.0.1
    port: {port}
    password_file: {secret}
    reconnect_min: 0.05
    reconnect_max: 0.2
{source_keys}sinks:
  - kind: log
    path: {tmp_path / "records.jsonl"}
    stdout: off
""")
    return str(path)


async def start(server: EslServer, *, record_internal_legs: bool = False, **overrides: Any) -> Harness:
    cfg = EslConfig(name=f"fs-test-{next(_names)}", host=server.host, port=server.port,
                    password=Secret(PASSWORD), complete_wait=5.0, internal_leg_wait=0.2,
                    reconnect_min=0.05, reconnect_max=0.2, timeout=2.0)
    cfg = replace(cfg, **overrides)
    source = EslSource(cfg, record_internal_legs=record_internal_legs)
    h = Harness(server, source)
    h.task = asyncio.create_task(source.run(h.emit))
    return h


async def stop(h: Harness) -> None:
    assert h.task is not None
    h.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(h.task, 10)


def daemon_until(config_path: str, records: int) -> tuple[Any, asyncio.Event, asyncio.Task]:
    """The real daemon of a config file, running; the event is set once it wrote `records`."""
    from callcause.config import load_config
    from callcause.daemon import Daemon

    daemon = Daemon(load_config(config_path))
    written = asyncio.Event()
    daemon.pipeline.on_record = lambda _record: written.set() if daemon.pipeline.records >= records else None
    return daemon, written, asyncio.create_task(daemon.run())
