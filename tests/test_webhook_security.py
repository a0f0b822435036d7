"""TLS verification (on by default, custom CA bundle) and secrets that never reach a log line."""

from __future__ import annotations

import base64
import logging
import ssl

import pytest
import trustme
from aiohttp import web
from webhook_helpers import SECRET, Outcomes, Received, Receiver, free_port, make_record, make_sink

from callcause.config import Section
from callcause.connectors.sinks.webhook import parse_config
from callcause.errors import ConfigError


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


async def test_self_signed_receiver_is_refused_by_default_and_accepted_with_its_ca(tmp_path, ca):
    receiver = await Receiver(ssl_context=server_context(ca)).start()
    record = make_record(1)
    refusing = make_sink(receiver.url, tmp_path / "outbox.db", name="tls-default")
    outcomes = Outcomes(refusing)
    await refusing.start()
    try:
        await refusing.write(record)
        await outcomes.wait_until(lambda: outcomes.failures >= 1)
    finally:
        await refusing.close()
    assert receiver.requests == []
    assert outcomes.changes[0].error.startswith("TLS certificate not trusted")
    assert not outcomes.changes[0].dead          # a certificate can be fixed: kept for retries

    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trusting = make_sink(receiver.url, tmp_path / "outbox.db", name="tls-ca", tls={"ca_file": str(ca_file)})
    await trusting.start()
    try:
        await trusting.write(record)
        await receiver.wait_until(lambda: record.id in receiver.delivered)
    finally:
        await trusting.close()
        await receiver.stop()


async def test_no_secret_reaches_a_log_line(tmp_path, caplog, monkeypatch):
    api_key = "k3y-of-the-crm-7f1c2a"
    url_token = "t0ken-in-the-query-55e1"
    salt = "pepper-for-numbers-93b0"
    monkeypatch.setenv("CRM_KEY", api_key)
    caplog.set_level(logging.DEBUG)
    receiver = await Receiver().start()
    answers = iter([500, 503, 401])

    async def failing(got: Received) -> web.StreamResponse:
        return web.Response(status=next(answers, 204), text="nope")

    receiver.behaviour = failing
    sink = make_sink(receiver.url + f"?token={url_token}", tmp_path / "outbox.db", name="secretive",
                     headers={"X-Api-Key": "${CRM_KEY}"}, pii={"from": "hash", "salt": salt}, concurrency=1)
    down = make_sink(f"http://127.0.0.1:{free_port()}/hook?token={url_token}", tmp_path / "outbox.db",
                     name="secretive-down")
    outcomes, down_outcomes = Outcomes(sink), Outcomes(down)
    await sink.start()
    await down.start()
    try:
        await sink.write(make_record(1))
        await down.write(make_record(1))
        await outcomes.wait_until(lambda: outcomes.dead == 1)
        await down_outcomes.wait_until(lambda: down_outcomes.failures >= 2)
    finally:
        await sink.close()
        await down.close()
        await receiver.stop()
    assert receiver.requests[0].headers["X-Api-Key"] == api_key     # it was used...
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "dead letter" in logged and "cannot connect" in logged    # ...and the failures logged
    forbidden = [SECRET, SECRET.removeprefix("whsec_"), api_key, url_token, salt,
                 base64.b64decode(SECRET.removeprefix("whsec_")).hex()]
    for text in forbidden:
        assert text not in logged
        assert text not in repr(sink.cfg)
    # config errors name the entry, not its value
    bad = "whsec_" + api_key + "!"
    with pytest.raises(ConfigError) as err:
        parse_config(Section({"url": "https://example.com/", "secrets": [SECRET, bad]}, file="c.yaml",
                             path="sinks[0]"))
    assert "item 2" in str(err.value) and api_key not in str(err.value)
