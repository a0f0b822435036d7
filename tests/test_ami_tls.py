"""The Asterisk source over TLS (manager.conf `tlsenable=yes`): a real TLS listener with a test
CA, verified, refused when the CA is unknown, and accepted with a warning when verification is
off."""

from __future__ import annotations

import asyncio
import logging
import ssl

import pytest
import trustme
from ami_support import SECRET, fixture, running, settle, wait_until

from callcause.connectors.asterisk.source import AmiTls

CALL = "asterisk-sip486-busy.txt"


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory):
    """A server context for 127.0.0.1 and the file of the CA that signed it."""
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    path = tmp_path_factory.mktemp("ami-tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ctx, str(path)


async def test_tls_with_the_pbx_ca_logs_in_and_records(server_tls, caplog):
    ctx, ca_file = server_tls
    async with running(sim_kw={"ssl": ctx}, tls=AmiTls(enabled=True, ca_file=ca_file)) as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 10)
        await sim.send_events(fixture(CALL))
        await settle(source)
        assert [(c.sip_code, c.dial_status) for c in got.clues] == [(486, "BUSY")]
    assert "verification is off" not in caplog.text


async def test_tls_with_an_unknown_ca_is_refused_and_retried(server_tls, caplog):
    ctx, _ca_file = server_tls
    caplog.set_level(logging.WARNING)
    # the system trust store does not know the test CA
    async with running(sim_kw={"ssl": ctx}, tls=AmiTls(enabled=True)) as (_sim, source, _got):
        await wait_until(lambda: caplog.text.count("connection failed") >= 2, 10)
        assert not source.connected
    line = next(r.getMessage() for r in caplog.records if "connection failed" in r.getMessage())
    assert "127.0.0.1" in line and "certificate" in line.lower() and "retrying" in line
    assert SECRET not in caplog.text


async def test_tls_without_verification_connects_and_says_so(server_tls, caplog):
    ctx, _ca_file = server_tls
    caplog.set_level(logging.WARNING)
    async with running(sim_kw={"ssl": ctx}, tls=AmiTls(enabled=True, verify=False)) as (_sim, source, _got):
        await asyncio.wait_for(source.logged_in.wait(), 10)
    warnings = [r.getMessage() for r in caplog.records if "verification is off" in r.getMessage()]
    assert len(warnings) == 1 and "source pbx-test (127.0.0.1:" in warnings[0]
    assert "manager login" in warnings[0]
