"""Bad input on the AMI socket: counted, logged once per kind, and the call next to it is
still recorded exactly once."""

from __future__ import annotations

import asyncio
import logging

from ami_support import fixture, running, settle

from callcause import metrics

CALL = fixture("asterisk-sip486-busy.txt")
HANGUP_015 = fixture("public-015-ast13-hangup-cause17-user-busy-wire.txt")[0]

# Frames built from the Hangup of capture 015 (source: that fixture), each broken one way.
NO_UNIQUEID = "\r\n".join(line for line in HANGUP_015.split("\r\n") if not line.startswith("Uniqueid"))
NO_CAUSE = "\r\n".join(line for line in HANGUP_015.split("\r\n")
                       if not line.startswith("Cause")).replace("1482346630.65506", "1482346630.7")
UNKNOWN_EVENT = HANGUP_015.replace("Event: Hangup", "Event: SomethingNew")


def malformed(source, kind: str) -> float:
    return metrics.MALFORMED.labels(source=source.where, kind=kind)._value.get()


async def test_bad_input_is_counted_logged_once_and_records_survive(caplog) -> None:
    caplog.set_level(logging.INFO, logger="callcause")
    kinds = ("garbage", "invalid_utf8", "event_without_uniqueid", "hangup_without_cause",
             "hangup_for_unknown_leg", "bad_header_line")
    async with running(use_filter=False) as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        before = {k: malformed(source, k) for k in kinds}
        half = len(CALL) // 2
        await sim.send_events(CALL[:half])
        for _ in range(2):                   # twice: counted twice, logged once
            sim.inject_garbage()
            await sim.send_raw(b"Event: VarSet\r\nVariable: DIALSTATUS\r\nValue: \xff\xfe\r\n"
                               b"Uniqueid: 1795278971.7\r\n\r\n")
            await sim.send_events([NO_UNIQUEID, UNKNOWN_EVENT])
        await sim.send_raw(b"Event: Hangup\r\nthis line has no colon\r\nUniqueid: 9.9\r\n"
                           b"Cause: 16\r\n\r\n")
        await sim.send_events([NO_CAUSE])
        await sim.send_events(CALL[half:])
        await sim.send_events(CALL[-3:])     # repeated Hangups: no second record
        await settle(source)
        assert source.connected
        legs = [c.leg_id for c in got.clues]
        assert sorted(legs) == ["1482346630.7", "1795278971.8", "9.9"]
        good = got.by_leg()["1795278971.8"]
        assert (good.sip_code, good.q850, good.dial_status) == (486, 17, "BUSY")
        assert got.by_leg()["1482346630.7"].q850 is None
        after = {k: malformed(source, k) for k in kinds}
    assert after["garbage"] == before["garbage"] + 2
    assert after["invalid_utf8"] == before["invalid_utf8"] + 2
    assert after["event_without_uniqueid"] == before["event_without_uniqueid"] + 2
    assert after["hangup_without_cause"] == before["hangup_without_cause"] + 1
    assert after["hangup_for_unknown_leg"] >= before["hangup_for_unknown_leg"] + 2
    assert after["bad_header_line"] == before["bad_header_line"] + 1
    for kind in ("garbage", "invalid_utf8", "event_without_uniqueid"):
        assert sum(f": {kind}: " in r.getMessage() for r in caplog.records) == 1, kind
