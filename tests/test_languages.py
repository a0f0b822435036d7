"""One daemon, several languages: the top-level default, and a language per sink."""

from __future__ import annotations

import json

from callcause.config import load_config
from callcause.connectors.simulator.receiver import WebhookReceiver
from callcause.daemon import build_connectors
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline
from callcause.record import HangupClues

SECRET = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


async def test_german_webhook_and_english_log_from_one_daemon(tmp_path):
    receiver = await WebhookReceiver(secret=SECRET).start()
    cfg = tmp_path / "callcause.yaml"
    cfg.write_text(f"""
language: en
sinks:
  - kind: log
    path: {tmp_path / "records.jsonl"}
    stdout: off
  - kind: webhook
    url: {receiver.url}
    allow_insecure_http: true
    secrets: ["{SECRET}"]
    language: de-AT
outbox: {tmp_path / "outbox.sqlite3"}
""")
    config = load_config(cfg)
    _sources, sinks = build_connectors(config)
    pipe = Pipeline(Translator.default(), sinks)
    await pipe.start_sinks()
    try:
        pipe.emit(HangupClues("pbx-1", "freeswitch", "leg-1", sip_code=486, q850=17, pbx_cause="USER_BUSY"))
        await pipe.drain()
        assert await receiver.wait_records(1, timeout=10)
    finally:
        await pipe.close_sinks()
        await receiver.close()
    [logged] = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    [hooked] = receiver.records
    assert logged["id"] == hooked["id"]
    assert logged["cause"]["lang"] == "en" and hooked["cause"]["lang"] == "de"
    assert logged["cause"]["summary"] == Translator.default().locales.entries["en"]["sip.486"]["summary"]
    assert hooked["cause"]["summary"] == Translator.default().locales.entries["de"]["sip.486"]["summary"]
    assert logged["cause"]["category"] == hooked["cause"]["category"] == "busy"
