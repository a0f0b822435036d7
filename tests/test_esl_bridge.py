"""The thread bridge: greenswitch runs in its own OS thread (one gevent hub shared by all
FreeSWITCH sources), records reach the asyncio loop, a busy ESL thread does not stall the loop,
a full hand-off waits (counted) and loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time

import esl_support as S
import pytest

from callcause.connectors.simulator.esl import EslServer, with_fresh_ids

COMPLETE = "CHANNEL_HANGUP_COMPLETE"


@pytest.fixture
def server():
    with EslServer(S.PASSWORD) as srv:
        yield srv


def esl_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "callcause-esl"]


async def no_esl_thread_left() -> bool:
    """The shared hub's thread ends once its last session has ended (bounded wait)."""
    for _ in range(200):
        if not esl_threads():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_events_cross_from_the_esl_thread_to_the_loop(server: EslServer) -> None:
    h = await S.start(server)
    seen_in: set[int] = set()
    original = h.source._on_event

    def spy(frame):  # type: ignore[no-untyped-def]
        seen_in.add(threading.get_ident())
        original(frame)

    h.source._on_event = spy  # type: ignore[method-assign]
    try:
        await h.wait_sessions(1)
        assert len(esl_threads()) == 1
        server.send_events(S.frames("freeswitch-sip486-busy.txt", COMPLETE))
        await h.wait_records(1)
    finally:
        await S.stop(h)
    loop_thread = threading.get_ident()
    assert h.emit_threads == {loop_thread}
    assert seen_in and loop_thread not in seen_in
    assert await no_esl_thread_left()                 # the thread ended with the source


async def test_many_sources_share_one_esl_thread(server: EslServer) -> None:
    sources = [await S.start(server) for _ in range(5)]
    try:
        for i, h in enumerate(sources, 1):
            await h.wait_sessions(i)
        assert len(esl_threads()) == 1
        server.send_events(S.frames("freeswitch-sip486-busy.txt", COMPLETE))   # to every connection
        for h in sources:
            (c,) = await h.wait_records(1)
            assert c.pbx_cause == "USER_BUSY" and h.emit_threads == {threading.get_ident()}
        await S.stop(sources[0])                     # one ends, the others keep the thread
        assert len(esl_threads()) == 1 and all(h.source.connected for h in sources[1:])
    finally:
        for h in sources[1:]:
            await S.stop(h)
    assert await no_esl_thread_left()


async def test_a_blocked_esl_thread_does_not_stall_the_loop(server: EslServer) -> None:
    h = await S.start(server)
    blocking, released = threading.Event(), threading.Event()
    original = h.source._on_event

    def slow(frame):  # type: ignore[no-untyped-def]
        blocking.set()
        time.sleep(0.4)            # blocks the whole ESL OS thread (and its gevent hub)
        released.set()
        original(frame)

    h.source._on_event = slow  # type: ignore[method-assign]
    ticks_while_blocked = 0

    async def ticker() -> None:
        nonlocal ticks_while_blocked
        while not released.is_set():
            await asyncio.sleep(0.005)
            if blocking.is_set() and not released.is_set():
                ticks_while_blocked += 1

    try:
        await h.wait_sessions(1)
        tick = asyncio.create_task(ticker())
        server.send_events(S.frames("freeswitch-sip486-busy.txt", COMPLETE))
        await h.wait_records(1)
        await asyncio.wait_for(tick, 5)
    finally:
        await S.stop(h)
    # a loop stalled by the ESL thread would tick once at most in those 0.4 s
    assert ticks_while_blocked >= 10


async def test_full_handoff_waits_counts_and_loses_nothing(server: EslServer) -> None:
    h = await S.start(server, handoff_size=2)
    stalled = []

    def stall_once(clues) -> None:  # type: ignore[no-untyped-def]
        if not stalled:
            stalled.append(clues)
            time.sleep(0.3)        # the loop is busy; the ESL thread must wait, not drop
    h.on_emit = stall_once
    frames = S.frames("freeswitch-sip486-busy.txt", COMPLETE)
    burst = [f for _ in range(30) for f in with_fresh_ids(frames)]
    try:
        await h.wait_sessions(1)
        server.send_events(burst)
        await h.wait_records(30)
    finally:
        await S.stop(h)
    legs = [c.leg_id for c in h.records]
    assert len(legs) == 30 and len(set(legs)) == 30
    assert S.metric("callcause_handoff_overflow_total", source=h.source.name) >= 1
    assert h.source.handoff is not None and h.source.handoff.overflows >= 1


async def test_stopping_leaves_no_thread_even_when_fs_is_silent(server: EslServer) -> None:
    h = await S.start(server)
    await h.wait_sessions(1)
    server.silent = True
    await S.stop(h)
    assert await no_esl_thread_left()
