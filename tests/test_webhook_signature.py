"""Signatures per Standard Webhooks, checked by the reference `standardwebhooks` package and by
the example consumer in examples/webhook-consumer/, on requests the sink really sent."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from webhook_helpers import SECRET, SECRET_2, Receiver, make_record, make_sink

from callcause.connectors.sinks.webhook import decode_secret, sign
from callcause.record import CauseRecord, Texts

CONSUMER = Path(__file__).resolve().parent.parent / "examples" / "webhook-consumer" / "consumer.py"


def load_consumer():
    spec = importlib.util.spec_from_file_location("webhook_consumer_example", CONSUMER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chinese_record(i: int) -> CauseRecord:
    """A record whose texts are not ASCII: the signed bytes are UTF-8 JSON."""
    base = make_record(i)
    return CauseRecord(base.clues, base.explanation,
                       lambda e, lang: Texts(lang, "被叫用户忙。", "对方正在通话中。", "稍后再拨。"))


def test_sign_matches_the_reference_implementation():
    body = '{"type":"call.hangup","data":{"summary":"被叫用户忙。"}}'
    when = datetime(2026, 11, 21, 16, 30, 2, tzinfo=UTC)
    ours = sign([decode_secret(SECRET)], "cc_X", int(when.timestamp()), body.encode())
    assert ours == Webhook(SECRET).sign("cc_X", when, body)


def test_malformed_secrets_are_refused():
    for bad in ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_"):
        with pytest.raises(ValueError):
            decode_secret(bad)
    assert decode_secret("whsec_c2VjcmV0") == b"secret"       # unpadded base64 is accepted


async def test_reference_package_verifies_what_we_send_including_during_rotation(tmp_path):
    receiver = await Receiver().start()
    sink = make_sink(receiver.url, tmp_path / "outbox.db", name="rotation", language="zh",
                     secrets=[SECRET, SECRET_2])
    await sink.start()
    try:
        record = chinese_record(1)
        await sink.write(record)
        await receiver.wait_until(lambda: record.id in receiver.delivered)
    finally:
        await sink.close()
        await receiver.stop()
    got = receiver.requests[0]
    assert len(got.signature.split(" ")) == 2
    for secret in (SECRET, SECRET_2):       # a receiver holding either secret accepts it
        payload = Webhook(secret).verify(got.body, got.headers)
        assert payload["data"]["cause"]["summary"] == "被叫用户忙。"
        assert payload["data"]["id"] == got.headers["webhook-id"] == record.id
    other = "whsec_" + base64.b64encode(b"someone else's key, 24b.").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(got.body, got.headers)
    tampered = got.body.replace(b"\xe5\xbf\x99", b"\xe9\x97\xb2")    # 忙 -> 闲
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, got.headers)


@pytest.fixture
def consumer():
    module = load_consumer()
    handled: list[dict] = []
    server = module.Consumer(("127.0.0.1", 0), [SECRET], handle=handled.append)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handled
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("batch", [None, {"max_records": 4, "max_wait": 0.02}])
async def test_example_consumer_verifies_and_processes_each_record_once(tmp_path, consumer, batch):
    server, handled = consumer
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    options = {"batch": batch} if batch else {}
    sink = make_sink(url, tmp_path / "outbox.db", name="consumer", **options)
    records = [chinese_record(i) for i in range(10)]
    done = asyncio.Event()
    delivered: set[int] = set()

    def seen(change):
        if change.delivered:
            delivered.update(change.seqs)
        if len(delivered) == len(records):
            done.set()

    sink.on_outcome = seen
    await sink.start()
    try:
        for r in records:
            await sink.write(r)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await sink.close()
    assert sorted(h["id"] for h in handled) == sorted(r.id for r in records)


def test_example_consumer_rejects_stale_forged_and_repeated_requests(consumer):
    server, handled = consumer
    record = make_record(7)
    body = b'{"type":"call.hangup","timestamp":"2026-11-21T16:30:02.000Z","data":' \
        + json.dumps(record.document("en")).encode() + b"}"
    keys = [decode_secret(SECRET)]

    def headers(stamp: int, msg_id: str = record.id, sig_body: bytes = body) -> dict[str, str]:
        return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                "webhook-signature": sign(keys, msg_id, stamp, sig_body)}

    now = int(time.time())
    assert server.receive(headers(now - 600), body)[0] == 400          # replayed ten minutes later
    assert server.receive(headers(now + 600), body)[0] == 400          # from the future
    assert server.receive(headers(now, sig_body=body + b" "), body)[0] == 401
    assert server.receive({"webhook-id": record.id}, body)[0] == 400
    assert handled == []
    assert server.receive(headers(now), body)[0] == 204
    assert server.receive(headers(now + 1), body)[0] == 200            # a re-send: acknowledged only
    assert [h["id"] for h in handled] == [record.id]
