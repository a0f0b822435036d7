"""The MQTT sink against a real mosquitto: bodies, topics, ids, status and Last Will, TLS,
credentials, outages."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest
from broker_support import PASSWORD, USER, MqttConsumer, alert_delivery, refused, sink
from webhook_helpers import FixedExplainer, make_record

from callcause.config import Section
from callcause.connectors.sinks.mqtt import parse_config
from callcause.errors import ConfigError
from callcause.pipeline import Pipeline

HERE = Path(__file__).resolve().parent


async def run_records(s, records, consumer: MqttConsumer) -> None:
    """Through the pipeline into the sink, until the consumer has every record."""
    pipeline = Pipeline(FixedExplainer(), [s], instance="test-pbx")
    await pipeline.start_sinks()
    try:
        for r in records:
            pipeline.emit(r.clues)
        await pipeline.drain()
        await consumer.wait_for({r.id for r in records}, timeout=15)
    finally:
        await pipeline.close_sinks()


async def test_records_arrive_as_the_webhook_body_with_id_instance_and_topic(mosquitto, tmp_path):
    consumer = await MqttConsumer(mosquitto.port).start()
    s = sink("mqtt", mosquitto.url, tmp_path / "outbox.db", topic="callcause/{instance}/{source}/{category}")
    records = [make_record(i) for i in range(20)]
    try:
        await run_records(s, records, consumer)
    finally:
        await consumer.stop()
    hangups = [m for m in consumer.messages if not str(m.topic).endswith("/status")]
    assert {str(m.topic) for m in hangups} == {"callcause/test-pbx/pbx-test/busy"}
    first = hangups[0]
    body = json.loads(first.payload)
    assert body["type"] == "call.hangup"
    assert body["data"]["instance"] == "test-pbx"
    assert body["timestamp"] == body["data"]["time"]
    assert first.qos == 1
    props = dict(first.properties.UserProperty)
    assert props == {"id": body["data"]["id"], "type": "call.hangup", "instance": "test-pbx"}
    assert first.properties.ContentType == "application/json"
    assert sorted(consumer.ids) == sorted(r.id for r in records)


async def test_a_document_of_another_type_goes_out_as_it_is(mosquitto, tmp_path):
    consumer = await MqttConsumer(mosquitto.port).start()
    s = sink("mqtt", mosquitto.url, tmp_path / "outbox.db", topic="callcause/{instance}/{type}/{source}/{category}")
    await s.start()
    unit = alert_delivery()
    try:
        assert (await s.transport.deliver(unit)).delivered
        await consumer.wait_for({"al_test_1"}, timeout=15)
    finally:
        await s.close()
        await consumer.stop()
    (message,) = [m for m in consumer.messages if not str(m.topic).endswith("/status")]
    assert str(message.topic) == "callcause/test-pbx/trunk.alert/pbx-test/none"   # instance: the daemon's
    assert message.payload == unit.body
    assert dict(message.properties.UserProperty)["type"] == "trunk.alert"


async def test_batches_carry_their_records_and_mixed_topic_fields(mosquitto, tmp_path):
    consumer = await MqttConsumer(mosquitto.port).start()
    s = sink("mqtt", mosquitto.url, tmp_path / "outbox.db", batch={"max_records": 10, "max_wait": 0.05},
             topic="callcause/{instance}/{category}")
    records = [make_record(i, category="busy" if i % 2 else "rejected") for i in range(30)]
    try:
        await run_records(s, records, consumer)
    finally:
        await consumer.stop()
    batches = [m for m in consumer.messages if not str(m.topic).endswith("/status")]
    assert all(json.loads(m.payload)["type"] == "call.hangup.batch" for m in batches)
    assert len(batches) <= 3 + 1
    # FixedExplainer gives every record the same category, so the topic shows it, not "mixed"
    assert {str(m.topic) for m in batches} == {"callcause/test-pbx/busy"}
    assert sum(len(json.loads(m.payload)["data"]) for m in batches) == 30


async def test_status_is_retained_online_and_the_last_will_says_offline(mosquitto, tmp_path):
    """A daemon killed with SIGKILL cannot say goodbye: the broker publishes its Will."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "broker_support.py"), "child", "--kind", "mqtt", "--url", mosquitto.url,
        "--outbox", str(tmp_path / "o.db"), "--options", json.dumps({"keepalive": 5}),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"ready"
        status = await read_retained(mosquitto.port, "callcause/test-pbx/status")
        assert status["status"] == "online" and status["instance"] == "test-pbx"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        # mosquitto notices the dead socket at once and sends the Will
        async with asyncio.timeout(15):
            while (await read_retained(mosquitto.port, "callcause/test-pbx/status"))["status"] != "offline":
                await asyncio.sleep(0.1)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_clean_close_publishes_offline_itself(mosquitto, tmp_path):
    s = sink("mqtt", mosquitto.url, tmp_path / "outbox.db", status_topic="site/{instance}/alive",
             instance="pbx-7")
    await s.start()
    assert (await read_retained(mosquitto.port, "site/pbx-7/alive"))["status"] == "online"
    await s.close()
    assert (await read_retained(mosquitto.port, "site/pbx-7/alive"))["status"] == "offline"


async def read_retained(port: int, topic: str) -> dict:
    async with aiomqtt.Client("127.0.0.1", port, username=USER, password=PASSWORD) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                return json.loads(message.payload)
    raise AssertionError("no retained status")


async def test_mqtt_3_1_1_works_and_keeps_the_id_in_the_body(mosquitto, tmp_path):
    consumer = await MqttConsumer(mosquitto.port).start()
    s = sink("mqtt", mosquitto.url, tmp_path / "outbox.db", protocol="3.1.1")
    records = [make_record(i) for i in range(5)]
    try:
        await run_records(s, records, consumer)
    finally:
        await consumer.stop()


async def test_tls_with_verification_delivers_and_an_unknown_ca_is_refused(mosquitto, broker_certs, tmp_path, caplog):
    ca, _ = broker_certs
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    consumer = await MqttConsumer(mosquitto.port).start()
    url = f"mqtts://127.0.0.1:{mosquitto.tls_port}"
    good = sink("mqtt", url, tmp_path / "good.db", tls={"ca_file": str(ca_file)}, name="good")
    records = [make_record(i) for i in range(5)]
    try:
        await run_records(good, records, consumer)
    finally:
        await consumer.stop()
    # the system CA store does not know the test CA: nothing is sent, the record waits
    await refused(sink("mqtt", url, tmp_path / "bad.db", name="bad"), caplog, "certificate verify failed")
    assert (await asyncio.to_thread(_depth, tmp_path / "bad.db", "bad")) == 1


def _depth(path: Path, name: str) -> int:
    from callcause.connectors.delivery.outbox import Outbox

    box = Outbox(path).open()
    try:
        return box.stats(name)[0]
    finally:
        box.close()


async def test_wrong_password_retries_and_no_secret_reaches_a_log_line(mosquitto, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    consumer = await MqttConsumer(mosquitto.port).start()
    good = sink("mqtt", mosquitto.url, tmp_path / "o.db", name="good")
    records = [make_record(i) for i in range(3)]
    try:
        await run_records(good, records, consumer)
    finally:
        await consumer.stop()
    bad = sink("mqtt", mosquitto.url, tmp_path / "o2.db", name="bad", password="wrong-" + PASSWORD)
    await refused(bad, caplog, "cannot connect")
    assert "Not authorized" in caplog.text or "not authorised" in caplog.text.lower()
    assert PASSWORD not in caplog.text
    assert repr(bad.cfg).count(PASSWORD) == 0


def test_config_errors_name_the_key_and_the_fix():
    def parse(**data):
        return parse_config(Section({"kind": "mqtt", **data}, file="c.yaml", path="sinks[0]", line=3))

    with pytest.raises(ConfigError, match="unencrypted") as err:
        parse(url="mqtt://broker")
    assert "allow_insecure" in str(err.value)
    with pytest.raises(ConfigError, match="credentials"):
        parse(url="mqtts://user:pw@broker")
    with pytest.raises(ConfigError, match=r"\{colour\}"):
        parse(url="mqtts://broker", topic="callcause/{colour}")
    with pytest.raises(ConfigError, match="protocol"):
        parse(url="mqtts://broker", protocol="4")
    assert parse(url="mqtts://broker", protocol=5).protocol == "5"
    cfg = parse(url="mqtts://broker", protocol="3.1.1")
    assert (cfg.protocol, cfg.port, cfg.qos, cfg.name) == ("3.1.1", 8883, 1, "mqtt:broker")


@pytest.mark.parametrize("status_topic", ["", "callcause/{instance}/status"])
async def test_a_broker_that_went_away_leaves_no_unread_error_behind(mosquitto, tmp_path, caplog, status_topic):
    """The broker drops the connection of an idle sink, which then closes: the client's note of
    the disconnection is read, so asyncio has no "Future exception was never retrieved" to
    log when the client is collected."""
    import gc

    s = sink("mqtt", mosquitto.url, tmp_path / "o.db", status_topic=status_topic)
    transport = s.mqtt
    await transport.open()
    client = transport._client
    assert client is not None
    mosquitto.stop()
    for _ in range(200):                      # paho notices the closed socket on its next read
        if client._disconnected.done():
            break
        await asyncio.sleep(0.025)
    assert client._disconnected.done()
    del client
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await transport.close()
        gc.collect()
        await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
