"""The AMQP sink against a real RabbitMQ: confirms, persistent messages, ids and properties,
routing keys, unroutable messages, TLS, credentials, a broker restart mid-stream."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from broker_support import PASSWORD, alert_delivery, amqp_drain, amqp_queue, refused, sink
from webhook_helpers import FixedExplainer, make_record

from callcause.config import Section
from callcause.connectors.sinks.amqp import parse_config
from callcause.errors import ConfigError
from callcause.pipeline import Pipeline

# the first test to use the session's RabbitMQ waits for it to start (seconds; more on a busy machine)
pytestmark = pytest.mark.timeout(180)


async def feed(s, records) -> Pipeline:
    pipeline = Pipeline(FixedExplainer(), [s], instance="test-pbx")
    await pipeline.start_sinks()
    for r in records:
        pipeline.emit(r.clues)
    await pipeline.drain()
    return pipeline


async def through(rabbitmq, s, queue: str, records) -> tuple[list, dict[str, int]]:
    """Records through the pipeline into the sink until a consumer of `queue` read them all:
    (messages, id counts)."""
    pipeline = await feed(s, records)
    try:
        return await amqp_drain(rabbitmq.consumer_url, queue, {r.id for r in records})
    finally:
        await pipeline.close_sinks()


async def test_records_arrive_confirmed_persistent_with_id_type_and_routing_key(rabbitmq, tmp_path):
    conn, _ = await amqp_queue(rabbitmq.consumer_url, "ex-basic", "test-pbx.pbx-test.*")
    await conn.close()
    s = sink("amqp", rabbitmq.url, tmp_path / "o.db", exchange="ex-basic")
    records = [make_record(i) for i in range(20)]
    messages, ids = await through(rabbitmq, s, "q-ex-basic", records)
    assert sorted(ids) == sorted(r.id for r in records)
    first = messages[0]
    body = json.loads(first.body)
    assert body["type"] == "call.hangup" and body["data"]["instance"] == "test-pbx"
    assert first.message_id == body["data"]["id"]
    assert first.type == "call.hangup"
    assert first.content_type == "application/json"
    assert first.delivery_mode == 2                      # persistent
    assert first.headers == {"instance": "test-pbx"}
    assert first.routing_key == "test-pbx.pbx-test.busy"


async def test_a_document_of_another_type_goes_out_as_it_is(rabbitmq, tmp_path):
    conn, _ = await amqp_queue(rabbitmq.consumer_url, "ex-alert")
    await conn.close()
    s = sink("amqp", rabbitmq.url, tmp_path / "o.db", exchange="ex-alert", routing_key="{type}.{trunk}")
    await s.start()
    unit = alert_delivery()
    try:
        assert (await s.transport.deliver(unit)).delivered
    finally:
        await s.close()
    (message,), _ = await amqp_drain(rabbitmq.consumer_url, "q-ex-alert", {"al_test_1"})
    assert (message.type, message.message_id, message.body) == ("trunk.alert", "al_test_1", unit.body)
    assert message.routing_key == "trunk_alert.carrier"   # an alert's trunk is in its scope


async def test_declared_exchange_and_batches(rabbitmq, tmp_path):
    s = sink("amqp", rabbitmq.url, tmp_path / "o.db", exchange="ex-declared", declare=True,
             routing_key="calls.{category}", batch={"max_records": 25, "max_wait": 0.05})
    await s.start()                   # declares the exchange before any queue is bound to it
    await s.close()
    conn, _ = await amqp_queue(rabbitmq.consumer_url, "ex-declared", "calls.#")
    await conn.close()
    records = [make_record(i) for i in range(60)]
    messages, ids = await through(rabbitmq, s, "q-ex-declared", records)
    assert all(m.type == "call.hangup.batch" and m.message_id.startswith("ccb_") for m in messages)
    assert len(messages) == 3 and sum(ids.values()) == 60
    assert {m.routing_key for m in messages} == {"calls.busy"}


async def test_an_unroutable_message_is_retried_not_lost(rabbitmq, tmp_path, caplog):
    """`mandatory`: with no queue bound the broker returns the message instead of dropping it."""
    conn, queue = await amqp_queue(rabbitmq.consumer_url, "ex-unbound", "nothing.matches.this")
    s = sink("amqp", rabbitmq.url, tmp_path / "o.db", exchange="ex-unbound")
    records = [make_record(i) for i in range(3)]
    pipeline = await feed(s, records)
    try:
        async with asyncio.timeout(10):
            while "no queue is bound" not in caplog.text:
                await asyncio.sleep(0.05)
        await queue.bind("ex-unbound", "#")              # the consumer fixes its binding
        await conn.close()
        _, ids = await amqp_drain(rabbitmq.consumer_url, "q-ex-unbound", {r.id for r in records})
    finally:
        await pipeline.close_sinks()
    assert set(ids) == {r.id for r in records}


async def test_tls_with_verification_delivers_and_an_unknown_ca_is_refused(rabbitmq, broker_certs, tmp_path, caplog):
    ca, _ = broker_certs
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    conn, _ = await amqp_queue(rabbitmq.consumer_url, "ex-tls")
    await conn.close()
    url = f"amqps://127.0.0.1:{rabbitmq.tls_port}/"
    good = sink("amqp", url, tmp_path / "good.db", exchange="ex-tls", tls={"ca_file": str(ca_file)}, name="good")
    records = [make_record(i) for i in range(5)]
    _, ids = await through(rabbitmq, good, "q-ex-tls", records)
    assert set(ids) == {r.id for r in records}
    await refused(sink("amqp", url, tmp_path / "bad.db", exchange="ex-tls", name="bad"), caplog,
                  "CERTIFICATE_VERIFY_FAILED", "certificate verify failed")


async def test_wrong_password_retries_and_no_secret_reaches_a_log_line(rabbitmq, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    conn, _ = await amqp_queue(rabbitmq.consumer_url, "ex-auth")
    await conn.close()
    good = sink("amqp", rabbitmq.url, tmp_path / "o.db", exchange="ex-auth", name="good")
    records = [make_record(i) for i in range(3)]
    await through(rabbitmq, good, "q-ex-auth", records)
    await refused(sink("amqp", rabbitmq.url, tmp_path / "o2.db", exchange="ex-auth", name="bad",
                       password="wrong-" + PASSWORD), caplog, "cannot connect")
    assert "ACCESS_REFUSED" in caplog.text or "authentication" in caplog.text.lower()
    assert PASSWORD not in caplog.text


def test_config_errors_name_the_key_and_the_fix():
    def parse(**data):
        return parse_config(Section({"kind": "amqp", **data}, file="c.yaml", path="sinks[0]", line=3))

    with pytest.raises(ConfigError, match="unencrypted"):
        parse(url="amqp://rabbit")
    with pytest.raises(ConfigError, match="credentials"):
        parse(url="amqps://guest:guest@rabbit/")
    with pytest.raises(ConfigError, match=r"\{call_id\}"):
        parse(url="amqps://rabbit", routing_key="{call_id}")
    with pytest.raises(ConfigError, match="exchange_type"):
        parse(url="amqps://rabbit", exchange_type="fan")
    cfg = parse(url="amqps://rabbit/telephony")
    assert (cfg.vhost, cfg.port, cfg.exchange, cfg.persistent, cfg.mandatory) == ("telephony", 5671, "callcause",
                                                                                  True, True)
