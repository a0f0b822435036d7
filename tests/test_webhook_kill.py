"""kill -9 of the process that runs the sink, in the middle of deliveries: a new process
delivers every accepted record; SIGTERM then finishes within the grace period."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from aiohttp import web
from webhook_helpers import Received, Receiver, read_lines, sigkill

from callcause.connectors.delivery.outbox import Outbox

HELPER = Path(__file__).resolve().parent / "webhook_helpers.py"


async def spawn(url: str, outbox: Path, count: int, sync: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(HELPER), "child", "--url", url, "--outbox", str(outbox), "--count", str(count),
        "--sync", sync, stdout=asyncio.subprocess.PIPE)


@pytest.mark.parametrize("sync", ["interval", "every_record"])
async def test_sigkill_mid_delivery_then_restart_delivers_everything_accepted(tmp_path, sync):
    receiver = await Receiver().start()
    outbox = tmp_path / "outbox.db"
    answered = 0
    hold = asyncio.Event()

    async def answer_some_then_hang(got: Received) -> web.StreamResponse:
        nonlocal answered
        if answered < 40:
            answered += 1
            return web.Response(status=204)
        await hold.wait()               # requests in flight when the process dies
        return web.Response(status=204)

    receiver.behaviour = answer_some_then_hang
    lines: list[str] = []
    first = await spawn(receiver.url, outbox, 400, sync)
    reader = asyncio.create_task(read_lines(first, lines))
    try:
        await receiver.wait_until(lambda: receiver.active >= 4, timeout=20)   # 4 = concurrency
    finally:
        await sigkill(first, reader)
    accepted = {line.split()[1] for line in lines if line.startswith("accepted ")}
    assert len(accepted) >= 44                         # delivered + in flight at least
    assert len(receiver.delivered) < len(accepted)     # it really died with work left

    # what the outbox holds is what was committed: every printed id, maybe one more whose
    # line the kill cut off
    box = Outbox(outbox).open()
    committed = {row[0] for row in box.listing(dead_only=False, endpoint=None, limit=10_000)}
    box.close()
    assert accepted - set(receiver.delivered) <= committed

    receiver.behaviour = lambda got: _ok()
    hold.set()
    lines2: list[str] = []
    second = await spawn(receiver.url, outbox, 0, sync)
    try:
        assert second.stdout is not None
        lines2.append((await asyncio.wait_for(second.stdout.readline(), 20)).decode().strip())
        assert lines2 == ["ready"]                   # started; its sink delivers in the background
        reader2 = asyncio.create_task(read_lines(second, lines2))
        await receiver.wait_until(lambda: accepted | committed <= set(receiver.delivered), timeout=20)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 10) == 0
        await asyncio.wait_for(reader2, 10)
    finally:
        if second.returncode is None:
            second.kill()
        await receiver.stop()
    assert lines2[-1] == "closed"
    box = Outbox(outbox).open()
    try:
        assert box.stats("127.0.0.1") == (0, None)     # nothing left, nothing dead
        assert box.listing(dead_only=True, endpoint=None, limit=10) == []
    finally:
        box.close()


async def _ok() -> web.StreamResponse:
    return web.Response(status=204)
