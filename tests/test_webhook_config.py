"""The webhook sink's config keys: defaults, validation with file:line errors, secrets, PII."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from webhook_helpers import SECRET, SECRET_2, make_record

from callcause.config import Config, Section, load_config
from callcause.connectors.delivery.dispatcher import RetryPolicy
from callcause.connectors.sinks.webhook import build, parse_config, parse_retry_after
from callcause.errors import ConfigError
from callcause.pii import PiiPolicy, hash_value, mask_number


def parse(data: dict, env: dict | None = None):
    sec = Section(data, file="callcause.yaml", path="sinks[0]", line=7, env=env or {})
    cfg = parse_config(sec)
    sec.finish()
    return cfg


def test_defaults():
    cfg = parse({"url": "https://hooks.example.com:8443/callcause", "secrets": [SECRET]})
    assert cfg.name == "hooks.example.com"
    assert (cfg.tls_verify, cfg.ca_file, cfg.timeout_s, cfg.concurrency) == (True, None, 10.0, 4)
    assert cfg.retry == RetryPolicy(initial_s=5.0, max_s=3600.0, max_age_s=86400.0)
    assert cfg.batch is None and cfg.language is None and cfg.pii.keeps_all


def test_full_config_file_with_env_and_durations(tmp_path):
    secrets_file = tmp_path / "webhook.secrets"
    secrets_file.write_text(f"# rotated 2026-11\n{SECRET_2}\n")
    path = tmp_path / "callcause.yaml"
    path.write_text(f"""\
language: en
outbox: {tmp_path}/outbox.sqlite3
sinks:
  - kind: webhook
    url: https://hooks.example.com/callcause
    name: crm
    secrets: ["${{WEBHOOK_SECRET}}"]
    secrets_file: {secrets_file}
    headers: {{X-Api-Key: "${{CRM_KEY}}"}}
    timeout: 2500ms
    only: {{severities: [warning, error], categories: [busy, congestion], failures_only: true}}
    pii: {{from: mask, to: hash, salt: "${{PII_SALT}}"}}
    language: de-AT
    batch: {{max_records: 50, max_wait: 2s}}
    retry: {{initial: 1s, max: 30m, max_age: 2d}}
    concurrency: 8
    grace: 10
""")
    config = load_config(path, env={"WEBHOOK_SECRET": SECRET, "CRM_KEY": "k", "PII_SALT": "s"})
    cfg = config.sinks[0]
    assert [s.reveal() for s in cfg.secrets] == [SECRET, SECRET_2]
    assert cfg.headers["X-Api-Key"].reveal() == "k"
    assert cfg.timeout_s == 2.5 and cfg.language == "de" and cfg.concurrency == 8 and cfg.grace_s == 10
    assert (cfg.batch.max_records, cfg.batch.max_wait_s) == (50, 2.0)
    assert cfg.retry == RetryPolicy(initial_s=1.0, max_s=1800.0, max_age_s=172800.0)
    assert cfg.only.severities == ("warning", "error") and cfg.only.failures_only
    assert (cfg.pii.from_, cfg.pii.to) == ("mask", "hash")
    sink = build(cfg, config)
    assert sink.name == "crm" and sink.lang == "de"


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"url": "http://hooks.example.com/", "secrets": [SECRET]}, "sinks[0].url", "allow_insecure_http: true"),
    ({"url": "ftp://hooks.example.com/", "secrets": [SECRET]}, "sinks[0].url", "https://"),
    ({"url": "https://h.example.com/"}, "sinks[0].secrets", "whsec_"),
    ({"url": "https://h.example.com/", "secrets": ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}, "sinks[0].secrets",
     "item 1 does not start with whsec_"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "pii": {"to": "hash"}}, "sinks[0].pii.salt",
     "hashing needs a salt"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "pii": {"to": "blur"}}, "sinks[0].pii.to",
     "keep, mask, hash, drop"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "only": {"categories": ["bussy"]}},
     "sinks[0].only.categories", "'bussy' is not one of"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "headers": {"webhook-id": "x"}},
     "sinks[0].headers.webhook-id", "set by callcause itself"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "retry": {"max_age": "a day"}},
     "sinks[0].retry.max_age", "expected a duration"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "tls": {"ca_file": "/nonexistent/ca.pem"}},
     "sinks[0].tls.ca_file", "cannot load the CA bundle"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "retries": 3}, "sinks[0].retries", "unknown key"),
    ({"url": "https://h.example.com/", "secrets": [SECRET], "language": "xx"}, "sinks[0].language",
     "not supported"),
])
def test_errors_name_the_key_and_the_fix(data, key, words):
    with pytest.raises(ConfigError) as err:
        parse(data)
    assert err.value.key == key
    assert err.value.file == "callcause.yaml"
    assert words in str(err.value)
    assert err.value.fix


def test_secret_from_env_and_a_missing_outbox():
    cfg = parse({"url": "https://h.example.com/", "secrets": ["${WH}"]}, env={"WH": SECRET})
    assert cfg.secrets[0].reveal() == SECRET
    assert SECRET not in repr(cfg)
    with pytest.raises(ConfigError) as err:
        build(cfg, Config(file="callcause.yaml"))
    assert err.value.key == "outbox"


def test_retry_schedule_grows_to_its_maximum_with_jitter():
    policy = RetryPolicy(initial_s=5, max_s=3600, max_age_s=86400)
    assert [policy.delay(n, lambda: 1.0) for n in (1, 2, 3, 10, 11, 40)] == \
        [5, 10, 20, 2560, 3600, 3600]
    assert [policy.delay(n, lambda: 0.0) for n in (1, 2, 11)] == [2.5, 5, 1800]


def test_retry_after_forms():
    now = datetime(2026, 11, 21, 16, 30, 3, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Sat, 21 Nov 2026 16:40:03 GMT", now) == 600
    assert parse_retry_after("Sat, 21 Nov 2020 16:40:03 GMT", now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("²", now) is None           # a digit to str.isdigit(), not to float()
    assert parse_retry_after(None, now) is None


def test_pii_mask_hash_drop():
    assert mask_number("+4930123456") == "+4930****56"        # the design's example
    assert mask_number("1001") == "**01"
    assert mask_number("0301234567") == "0301****67"
    from callcause.config import Secret

    salt = Secret("s3cret")
    doc = make_record(1, from_number="sip:+4930123456@carrier.example", to_number="+4989123456",
                      channel="sofia/external/+4989123456@10.0.0.5:5070").document("en")
    masked = PiiPolicy(from_="mask", to="mask", uris="mask").apply(doc)
    assert masked["call"]["from"] == "sip:+4930****56@carrier.example"
    assert masked["call"]["to"] == "+4989****56"
    assert masked["call"]["channel"] == "sofia/external/+4989****56@10.0.0.5:5070"
    assert doc["call"]["from"] == "sip:+4930123456@carrier.example"     # the original is untouched
    hashed = PiiPolicy(from_="hash", to="drop", uris="keep", salt=salt).apply(doc)
    assert hashed["call"]["from"] == hash_value("sip:+4930123456@carrier.example", salt)
    assert hashed["call"]["from"].startswith("hmac-sha256:") and len(hashed["call"]["from"]) == 44
    assert hashed["call"]["to"] is None
    assert hashed["call"]["channel"] == doc["call"]["channel"]
    plain = make_record(2, channel="PJSIP/carrier-00000004").document("en")
    assert PiiPolicy(uris="drop").apply(plain)["call"]["channel"] == "PJSIP/carrier-00000004"
