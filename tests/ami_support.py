"""Helpers for the AMI tests: a simulator plus the real source, wired over TCP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from callcause.config import Secret
from callcause.connectors.asterisk.source import AmiConfig, AmiSource
from callcause.connectors.simulator.ami import AmiSimulator, load_frames
from callcause.record import HangupClues

FIXTURES = Path(__file__).parent / "fixtures" / "ami"
SECRET = "s3cret-Do-Not-Log"


def fixture(name: str) -> list[str]:
    return load_frames(FIXTURES / name)


def config(port: int, **kw) -> AmiConfig:
    base = dict(name="pbx-test", host="127.0.0.1", port=port, username="callcause",
                secret=Secret(SECRET), ping_interval=30.0, ping_timeout=5.0,
                reconnect_min=0.01, reconnect_max=0.05, hangup_grace=0.2)
    base.update(kw)
    return AmiConfig(**base)


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    """Bounded wait for a condition the event loop will make true."""
    async def _poll() -> None:
        while not pred():
            await asyncio.sleep(0.002)
    await asyncio.wait_for(_poll(), timeout)


class Collected:
    def __init__(self) -> None:
        self.clues: list[HangupClues] = []
        self.changed = asyncio.Event()

    def __call__(self, clues: HangupClues) -> None:
        self.clues.append(clues)
        self.changed.set()

    def by_leg(self) -> dict[str, HangupClues]:
        return {c.leg_id: c for c in self.clues}

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        await wait_until(lambda: len(self.clues) >= count, timeout)


@contextlib.asynccontextmanager
async def running(sim_kw: dict | None = None, **cfg_kw) -> AsyncIterator[tuple[AmiSimulator, AmiSource, Collected]]:
    """A started simulator and a source logged in to it; both stopped on exit."""
    sim = AmiSimulator(**{"secret": SECRET, **(sim_kw or {})})
    await sim.start()
    internal = cfg_kw.pop("record_internal_legs", False)
    source = AmiSource(config(sim.port, **cfg_kw), record_internal_legs=internal)
    got = Collected()
    task = asyncio.create_task(source.run(got))
    try:
        yield sim, source, got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sim.close()


async def settle(source: AmiSource) -> None:
    """A Ping round trip: every byte the server sent before its Pong has been read; then
    wait until no ended leg is still waiting for late clues."""
    await source._action(source.manager, {"Action": "Ping"})
    await wait_until(lambda: not source.correlator.waiting, 5)


async def replay(name: str, **cfg_kw) -> list[HangupClues]:
    """Replay one fixture through the real source over TCP; returns the clues emitted."""
    async with running(**cfg_kw) as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        await sim.send_events(fixture(name))
        await settle(source)
        return list(got.clues)
