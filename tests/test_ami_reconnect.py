"""Connection loss, login failure and secrets: the source keeps going and keeps records."""

from __future__ import annotations

import asyncio
import logging

from ami_support import SECRET, fixture, running, settle, wait_until

from callcause import metrics
from callcause.connectors.asterisk.source import AmiConfig

CALL = fixture("asterisk-sip486-busy.txt")
CALLEE_HANGUP = next(i for i, f in enumerate(CALL)
                     if f.startswith("Event: Hangup\r\n") and "Uniqueid: 1795278971.8" in f)


async def test_leg_straddling_a_reconnect_is_recorded_incomplete() -> None:
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        await sim.send_events(CALL[:CALLEE_HANGUP - 5])
        await settle(source)
        sim.drop()
        await sim.wait_logins(2)
        await wait_until(lambda: source.connected)
        await sim.send_events(CALL[CALLEE_HANGUP - 5:])
        await settle(source)
        (c,) = got.clues
        assert (c.leg_id, c.sip_code, c.q850, c.dial_status) == ("1795278971.8", 486, 17, "BUSY")
        assert c.incomplete


async def test_leg_that_ended_while_disconnected_is_recorded_after_reconnect() -> None:
    async with running(reconnect_min=0.2, reconnect_max=0.2) as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        await sim.send_events(CALL[:CALLEE_HANGUP - 5])
        await settle(source)
        sim.drop()
        await sim.send_events(CALL[CALLEE_HANGUP - 5:])     # nobody connected: lost to us
        await sim.wait_logins(2)
        await got.wait(1)
        (c,) = got.clues
        assert c.leg_id == "1795278971.8" and c.incomplete
        assert c.pbx_cause is None                 # its Hangup never reached us ...
        assert (c.q850, c.sip_code) == (17, 486)   # ... but CEL and the dialplan helper did


async def test_failed_login_names_host_and_user_never_the_secret(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(sim_kw={"secret": "something-else"}) as (sim, source, _got):
        before = metrics.SOURCE_RECONNECTS.labels(source="pbx-test")._value.get()
        await wait_until(lambda: sim.failed_logins >= 3)      # retried with backoff
        assert not source.connected
        assert metrics.SOURCE_RECONNECTS.labels(source="pbx-test")._value.get() > before
    failures = [r.getMessage() for r in caplog.records if "login failed" in r.getMessage()]
    assert failures and "127.0.0.1" in failures[0] and "'callcause'" in failures[0]
    assert "Authentication failed" in failures[0]
    assert SECRET not in caplog.text


async def test_secret_stays_out_of_reprs_and_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        await sim.send_events(CALL)
        await settle(source)
        assert len(got.clues) == 1
        sim.drop()
        await sim.wait_logins(2)
        assert SECRET not in repr(source.cfg) and SECRET not in str(source.cfg)
        assert SECRET not in repr(source.manager.config)
        assert "Secret('********')" in repr(source.cfg)
    assert SECRET not in caplog.text


async def test_refused_connection_is_retried_until_the_server_appears() -> None:
    async with running() as (sim, source, _got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        port = sim.port
        await sim.close()
        await wait_until(lambda: not source.connected)
        await asyncio.sleep(0.05)               # a few refused attempts
        sim2_started = asyncio.Event()
        from callcause.connectors.simulator.ami import AmiSimulator
        sim2 = AmiSimulator(secret=SECRET, port=port)
        await sim2.start()
        sim2_started.set()
        try:
            await sim2.wait_logins(1)
            await wait_until(lambda: source.connected)
        finally:
            await sim2.close()


def test_config_repr_hides_the_secret() -> None:
    from callcause.config import Secret
    cfg = AmiConfig(name="x", host="h", username="u", secret=Secret("hunter2"))
    assert "hunter2" not in repr(cfg)
