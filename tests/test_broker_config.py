"""Broker sinks without a broker: topic and routing-key templates, the instance name, the outbox
requirement, and `callcause outbox` naming a broker sink by its url."""

from __future__ import annotations

import json

import pytest
from webhook_helpers import make_record

from callcause.cli import main
from callcause.config import Section, default_instance, load_config, parse_config
from callcause.connectors.delivery.broker import NameTemplate, body_type
from callcause.connectors.delivery.dispatcher import Delivery, batch_body, single_body
from callcause.connectors.delivery.outbox import Outbox, Row
from callcause.errors import ConfigError


def row(seq: int, doc: dict) -> Row:
    return Row(seq, doc.get("id", f"x{seq}"), doc.get("time", "2026-11-21T16:30:02.123Z"),
               json.dumps(doc).encode(), 0.0, 0.0, 0, None)


def template(text: str, unsafe: str = "/+#") -> NameTemplate:
    return NameTemplate(Section({"topic": text}, file="c.yaml", path="sinks[0]", line=1), "topic", "",
                        unsafe=unsafe)


def doc(i: int, **changes) -> dict:
    d = make_record(i).document("en")
    d["instance"] = "pbx-1"
    for path, value in changes.items():
        outer, inner = path.split("__")
        d[outer][inner] = value
    return d


def test_a_topic_is_filled_from_the_record_with_unsafe_characters_replaced():
    d = doc(1, call__trunk="PJSIP/carrier+#1")
    unit = Delivery("cc_1", single_body(d["time"], json.dumps(d).encode()), [row(1, d)])
    assert template("cc/{instance}/{source}/{trunk}/{category}/{type}").fill(unit, "daemon-1") == \
        "cc/pbx-1/pbx-test/PJSIP_carrier__1/busy/call.hangup"
    assert template("{instance}.{trunk}.{severity}", unsafe=".*#").fill(unit, "d") == "pbx-1.PJSIP/carrier+_1.info"
    assert template("fixed/topic").fill(unit, "daemon-1") == "fixed/topic"


def test_a_batch_keeps_shared_values_and_says_mixed_for_the_others():
    rows = [row(1, doc(1, call__trunk="carrier")), row(2, doc(2, cause__category="rejected", call__trunk="carrier")),
            row(3, doc(3))]
    unit = Delivery("ccb_x", batch_body(rows), rows)
    assert template("{source}/{category}/{trunk}/{type}").fill(unit, "d") == "pbx-test/mixed/mixed/call.hangup.batch"


def test_an_alert_keeps_its_type_takes_its_scope_and_fields_it_lacks_are_none():
    alert = {"id": "al_1", "type": "trunk.alert", "time": "2026-11-21T16:30:02.123Z",
             "scope": {"source": "pbx-eu-1", "trunk": "carrier", "direction": "outbound"}}
    body = b'{"type":"trunk.alert","timestamp":"2026-11-21T16:30:02.123Z","data":' + json.dumps(alert).encode() + b"}"
    unit = Delivery("al_1", body, [row(1, alert)])
    assert template("cc/{instance}/{type}/{source}/{trunk}/{direction}/{category}").fill(unit, "daemon-1") == \
        "cc/daemon-1/trunk.alert/pbx-eu-1/carrier/outbound/none"
    assert body_type(body) == "trunk.alert"
    assert body_type(b'{ "data": {}, "type": "x.y" }') == "x.y"       # not in front: parsed
    assert body_type(b"not json") == ""


def test_template_errors_name_the_placeholder_and_the_choices():
    with pytest.raises(ConfigError, match=r"\{call_id\}") as err:
        template("cc/{call_id}")
    assert "{category}" in str(err.value.fix)
    with pytest.raises(ConfigError, match="not a template"):
        template("cc/{category")


def test_instance_defaults_to_the_host_name_and_is_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("language: en\n")
    assert load_config(path).instance == default_instance() != ""
    path.write_text("instance: pbx-berlin-1\n")
    assert load_config(path).instance == "pbx-berlin-1"
    path.write_text("language: en\ninstance: 'pbx/berlin #1'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (err.value.line, err.value.key) == (2, "instance") and err.value.fix


@pytest.mark.parametrize("kind, url", [("mqtt", "mqtts://mqtt.example.com"), ("amqp", "amqps://rabbit.example.com")])
def test_a_broker_sink_needs_the_outbox(kind, url):
    data = {"sinks": [{"kind": kind, "url": url}]}
    with pytest.raises(ConfigError, match=f"a {kind} sink needs the durable outbox") as err:
        parse_config(data, "c.yaml")
    assert "outbox:" in str(err.value.fix)


def test_outbox_cli_names_a_broker_sink_by_its_url(tmp_path, capsys):
    outbox = tmp_path / "outbox.db"
    path = tmp_path / "c.yaml"
    path.write_text(f"outbox: {outbox}\nsinks:\n  - kind: amqp\n    name: rabbit\n"
                    "    url: amqps://rabbit.example.com/telephony\n")
    box = Outbox(outbox).open()
    box.add("rabbit", "cc_waiting", "2026-11-21T16:30:02.123Z", b"{}", 0.0, 0.0)
    box.close()
    assert main(["outbox", "list", "-c", str(path), "--endpoint", "amqps://rabbit.example.com/telephony"]) == 0
    out = capsys.readouterr().out
    assert "# rabbit: 1 waiting, 0 dead" in out and "cc_waiting" in out


def test_connect_pacing_answers_a_fresh_refusal_without_dialling_again():
    from callcause.connectors.delivery.broker import ConnectPacing

    now = [100.0]
    pacing = ConnectPacing(clock=lambda: now[0])
    assert pacing.recent() is None
    assert pacing.failed("connection refused") == "connection refused"
    now[0] += ConnectPacing.HOLD_S / 2
    assert pacing.recent() == "connection refused"     # the other deliveries get the same reason
    now[0] += ConnectPacing.HOLD_S
    assert pacing.recent() is None                      # time to dial again
    pacing.failed("timed out")
    pacing.succeeded()
    assert pacing.recent() is None
