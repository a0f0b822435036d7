"""The AMI simulator itself (filters like Asterisk, fresh ids per repetition) and the
correlator's bounds (TTL, max legs), driven over TCP."""

from __future__ import annotations

import asyncio

from ami_support import FIXTURES, fixture, running, settle, wait_until

from callcause import metrics
from callcause.connectors.simulator.ami import IdSource, Scenario, compile_filter, passes

CALL = fixture("asterisk-sip486-busy.txt")


def test_filters_are_regexes_over_the_whole_event_like_asterisk() -> None:
    request = next(f for f in CALL if f.startswith("Event: HangupRequest"))
    hangup = next(f for f in CALL if f.startswith("Event: Hangup\r\n"))
    loose = [compile_filter("Event: Hangup")]
    anchored = [compile_filter("^Event: Hangup[[:space:]]")]
    assert passes(loose, request + "\r\n") and passes(loose, hangup + "\r\n")
    assert not passes(anchored, request + "\r\n") and passes(anchored, hangup + "\r\n")
    assert not passes([compile_filter("!Privilege: call")], hangup + "\r\n")
    assert passes([], request)


def test_each_repetition_gets_fresh_consistent_ids() -> None:
    sc = Scenario.load(FIXTURES / "asterisk-sip486-busy.txt")
    ids = IdSource(epoch=1900000000)
    first, second = sc.render(ids), sc.render(ids)
    text1, text2 = "\n".join(first), "\n".join(second)
    assert "1795278971" not in text1 and "PJSIP/peer-00000002" not in text1
    uids1 = {line for line in text1.split("\r\n") if line.startswith("Uniqueid: ")}
    uids2 = {line for line in text2.split("\r\n") if line.startswith("Uniqueid: ")}
    uids1.discard("Uniqueid: <unknown>")
    assert len(uids1) == 3 and not uids1 & uids2          # the three legs, renamed apart
    assert sc.render(None) == CALL


async def test_repeated_calls_with_fresh_ids_give_one_record_each() -> None:
    sc = Scenario.load(FIXTURES / "asterisk-sip486-busy.txt")
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        assert await sim.play([sc], calls=20, ids=IdSource()) == 20
        await settle(source)
        assert len({c.leg_id for c in got.clues}) == len(got.clues) == 20
        assert {(c.sip_code, c.q850, c.dial_status) for c in got.clues} == {(486, 17, "BUSY")}
        assert not source.correlator.legs and not source.correlator.calls   # nothing left behind


async def test_unfinished_legs_are_evicted_after_the_ttl_and_counted() -> None:
    async with running(leg_ttl=1.0, hangup_grace=0.05) as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        evicted = metrics.LEGS_EVICTED.labels(source="pbx-test")._value.get()
        start = next(i for i, f in enumerate(CALL) if f.startswith("Event: HangupRequest"))
        await sim.send_events(CALL[:start])          # the call starts, never ends
        await settle(source)
        assert len(source.correlator.legs) == 3
        clock = source.correlator.clock
        source.correlator.clock = lambda: clock() + 2.0       # two seconds later
        await wait_until(lambda: not source.correlator.legs)
        assert metrics.LEGS_EVICTED.labels(source="pbx-test")._value.get() == evicted + 3
        assert not got.clues and not source.correlator.calls


async def test_max_legs_bounds_memory() -> None:
    sc = Scenario.load(FIXTURES / "asterisk-sip486-busy.txt")
    start = next(i for i, f in enumerate(CALL) if f.startswith("Event: HangupRequest"))
    async with running(max_legs=100) as (sim, source, _got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        ids = IdSource()
        for _ in range(60):                           # 180 legs that never end
            await sim.send_events(sc.render(ids)[:start])
        await settle(source)
        assert len(source.correlator.legs) <= 100
