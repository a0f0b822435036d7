"""Trunk alerts through the real pipeline with an injected clock: an outage fires and resolves,
min_attempts keeps quiet trunks quiet, `for`, hysteresis and cooldown, bad rules, webhook
delivery, and `callcause replay --alerts` on a recorded outage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callcause.cli import main
from callcause.config import load_yaml, parse_config
from callcause.connectors.sinks.log import LogConfig, LogSink
from callcause.errors import ConfigError
from callcause.mapping.translator import Translator
from callcause.pipeline import Pipeline
from callcause.record import HangupClues
from callcause.trunks.legs import GroupKey, Leg
from callcause.trunks.monitor import TrunkMonitor
from callcause.trunks.settings import TrunksConfig

T0 = 1_800_000_000.0
OUTAGE_RULE = """\
trunks:
  default_rules: false
  rules:
    - name: outage
      figure: ner
      below: 0.85
      clear: 0.90
      window: {window}
      min_attempts: {min_attempts}
      for: {for_}
      cooldown: {cooldown}
"""


def trunks_config(tmp_path: Path, text: str) -> TrunksConfig:
    path = tmp_path / "callcause.yaml"
    path.write_text(text)
    return parse_config(load_yaml(path), str(path)).trunks


def rule_config(tmp_path: Path, *, min_attempts: int = 30, for_: str = "0", cooldown: str = "0",
                window: str = "5m") -> TrunksConfig:
    return trunks_config(tmp_path, OUTAGE_RULE.format(min_attempts=min_attempts, for_=for_, cooldown=cooldown,
                                                      window=window))


class Harness:
    """The real pipeline, a real log sink writing JSON Lines, the monitor on a fake clock."""

    def __init__(self, tmp_path: Path, cfg: TrunksConfig) -> None:
        self.now = T0
        self.path = tmp_path / "records.jsonl"
        self.sink = LogSink(LogConfig(path=str(self.path), stdout="off"), "en")
        translator = Translator.default()
        self.pipe = Pipeline(translator, [self.sink], instance="pbx-berlin-1")
        self.monitor = TrunkMonitor(cfg, sinks=[self.sink], translator_of=lambda: translator, clock=lambda: self.now,
                                    instance="pbx-berlin-1")
        self.pipe.observers.append(self.monitor.observe)
        self.seq = 0

    async def calls(self, seconds: float, every: float, sip: int, trunk: str = "carrier-a") -> list:
        """One call ending every `every` seconds for `seconds`, evaluating as the daemon does."""
        events = []
        end = self.now + seconds
        while self.now < end:
            self.now += every
            self.seq += 1
            answered = sip == 200
            self.pipe.emit(HangupClues(
                source_name="pbx-1", source_kind="freeswitch", leg_id=f"leg-{self.seq}", direction="outbound",
                trunk=trunk, answered=answered, sip_code=sip, q850=16 if answered else 34,
                duration_s=60.0 if answered else 0.0, ended_at=self.now))
            await self.pipe.drain()
            if self.seq % 5 == 0:          # evaluate every 10 s of the fake clock (2 s per call)
                events += await self.monitor.evaluate()
        return events

    def alert_lines(self) -> list[dict]:
        lines = [json.loads(x) for x in self.path.read_text().splitlines()]
        return [x for x in lines if x["type"] == "trunk.alert"]


async def test_outage_fires_with_its_causes_and_resolves(tmp_path):
    h = Harness(tmp_path, rule_config(tmp_path, for_="1m"))
    await h.pipe.start_sinks()
    assert await h.calls(300, 2, 200) == []
    fired = await h.calls(120, 2, 503)
    assert [e.state for e in fired] == ["firing"]
    # the /trunks body's firing episode names the daemon, as the event does
    assert [a["instance"] for a in h.monitor.snapshot()["firing"]] == ["pbx-berlin-1"]
    resolved = await h.calls(600, 2, 200)
    assert [e.state for e in resolved] == ["resolved"]
    await h.pipe.close_sinks()
    firing, done = h.alert_lines()
    assert firing["data"]["id"] == done["data"]["id"] and firing["data"]["id"].startswith("al_")
    d = firing["data"]
    assert d["rule"] == "outage" and d["state"] == "firing" and d["figure"] == "ner"
    assert d["scope"] == {"source": "pbx-1", "trunk": "carrier-a", "direction": "outbound"}
    assert d["value"] < 0.85 and d["threshold"] == 0.85 and d["window_s"] == 300 and d["attempts"] >= 30
    top = d["top_causes"][0]
    assert (top["sip"], top["q850"], top["category"]) == (503, 34, "congestion")
    assert "overloaded" in top["summary"]
    assert firing["timestamp"] == d["time"] and d["since"] <= d["time"]
    assert done["data"]["value"] >= 0.90
    # the daemon's gauge follows the episode
    from prometheus_client import REGISTRY
    assert REGISTRY.get_sample_value("callcause_alert_firing",
                                     {"rule": "outage", "source": "pbx-1", "trunk": "carrier-a"}) == 0


async def test_min_attempts_keeps_a_quiet_trunk_quiet(tmp_path):
    h = Harness(tmp_path, rule_config(tmp_path, min_attempts=30))
    # five failed calls in five minutes: NER 0, but nobody should be paged for five calls
    events = await h.calls(300, 60, 503, trunk="quiet")
    events += await h.monitor.evaluate()
    assert events == []
    fig = h.monitor.stats.figures(300)
    assert next(iter(fig.values())).ner == 0.0


async def test_for_must_hold_before_firing(tmp_path):
    h = Harness(tmp_path, rule_config(tmp_path, min_attempts=10, for_="3m", window="1m"))
    await h.calls(300, 2, 200)
    # a 90-second burst of failures: in breach for about 2 minutes (1-minute window), not for 3
    assert await h.calls(90, 2, 503) == []
    assert await h.calls(600, 2, 200) == []
    # a long one fires, 3 minutes after the breach began
    fired = await h.calls(400, 2, 503)
    assert [e.state for e in fired] == ["firing"]
    assert fired[0].at - fired[0].since == pytest.approx(180, abs=10)


async def test_hysteresis_keeps_firing_between_threshold_and_clear(tmp_path):
    h = Harness(tmp_path, rule_config(tmp_path, min_attempts=10))
    await h.calls(300, 2, 503)
    assert len(h.monitor.engine.firing()) == 1
    # 7 answered : 1 failed settles at NER 0.875: above the threshold, below clear: still firing
    for _ in range(25):
        for _ in range(7):
            assert await h.calls(2, 2, 200) == []
        assert await h.calls(2, 2, 503) == []
    episode = h.monitor.engine.firing()[0]
    assert 0.85 < episode.value < 0.90
    resolved = await h.calls(300, 2, 200)
    assert [e.state for e in resolved] == ["resolved"]


async def test_cooldown_holds_back_a_second_episode(tmp_path):
    h = Harness(tmp_path, rule_config(tmp_path, min_attempts=10, cooldown="30m"))
    first = await h.calls(120, 2, 503)
    first += await h.calls(360, 2, 200)
    assert [e.state for e in first] == ["firing", "resolved"]
    # the trunk fails again 10 minutes later: inside the cooldown, no page
    await h.calls(240, 2, 200)
    assert await h.calls(300, 2, 503) == []
    # still failing after the cooldown: a new episode, with its own id
    later = await h.calls(1200, 2, 503)
    assert [e.state for e in later] == ["firing"]
    assert later[0].id != first[0].id
    assert later[0].at - first[1].at >= 1800


@pytest.mark.parametrize("rule, key, fix", [
    ("{name: r, figure: ner, below: 1.5}", "below", "from 0 to 1"),
    ("{name: r, figure: ner, below: 0.8, clear: 0.7}", "clear", "at or above"),
    ("{name: r, figure: ner, below: 0.8, above: 0.9}", "below", "exactly one"),
    ("{name: r, figure: nerr, below: 0.8}", "figure", "use one of"),
    ("{name: r, figure: share, above: 0.2}", "categories", "congestion"),
    ("{name: r, figure: sip_count, above: 10}", "sip", "sip: 503"),
    ("{name: r, figure: ner, below: 0.8, window: 5 minutes}", "window", "5m"),
    ("{name: r, figure: asr, below: 0.3, baseline: 1m, window: 5m}", "baseline", "24h"),
    ("{name: r, figure: ner, below: 0.8, fro: 2m}", "fro", "remove it"),
])
def test_bad_rules_are_config_errors_with_file_line_key_and_fix(tmp_path, rule, key, fix):
    path = tmp_path / "callcause.yaml"
    path.write_text(f"language: en\ntrunks:\n  rules:\n    - {rule}\n")
    with pytest.raises(ConfigError) as err:
        parse_config(load_yaml(path), str(path))
    text = str(err.value)
    assert str(path) in text and ":4" in text and key in text and fix in text, text


def test_check_config_names_the_bad_rule(tmp_path, capsys):
    path = tmp_path / "callcause.yaml"
    path.write_text("trunks:\n  rules:\n    - name: x\n      figure: ner\n      below: 0.9\n      clear: 0.5\n")
    assert main(["check-config", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert ("trunks.rules[0].clear" in err and "line 6" in err) or ":6" in err


def test_default_rules_are_on_unless_turned_off(tmp_path):
    assert [r.name for r in trunks_config(tmp_path, "language: en\n").rules] == ["carrier-outage", "failure-share"]
    assert trunks_config(tmp_path, "trunks: {default_rules: false}\n").rules == []
    own = trunks_config(tmp_path, "trunks:\n  rules:\n    - {name: carrier-outage, figure: ner, below: 0.5}\n")
    assert [(r.name, r.threshold) for r in own.rules] == [("failure-share", 0.2), ("carrier-outage", 0.5)]


async def test_alert_goes_to_an_opted_in_webhook_signed(tmp_path):
    from webhook_helpers import SECRET, sink_config

    from callcause.connectors.simulator.receiver import WebhookReceiver
    from callcause.connectors.sinks.webhook import WebhookSink

    receiver = await WebhookReceiver(secret=SECRET).start()
    hook = WebhookSink(sink_config(receiver.url, alerts=True, name="hook"), str(tmp_path / "outbox.sqlite3"), "de")
    plain = WebhookSink(sink_config(receiver.url, name="plain", only={"categories": ["busy"]}),
                        str(tmp_path / "outbox.sqlite3"), "en")
    h = Harness(tmp_path, rule_config(tmp_path, min_attempts=10))
    h.pipe.sinks += [hook, plain]
    h.monitor.sinks += [s for s in (hook, plain) if s.wants_alerts]
    await h.pipe.start_sinks()
    try:
        await h.calls(60, 2, 503)
        assert await receiver.wait_records(31, timeout=10)    # 30 records and the alert
    finally:
        await h.pipe.close_sinks()
        await receiver.close()
    alerts = [r for r in receiver.records if r["type"] == "trunk.alert"]
    assert len(alerts) == 1 and receiver.rejected == 0
    assert alerts[0]["top_causes"][0]["summary"] and alerts[0]["state"] == "firing"
    assert receiver.ids[f"{alerts[0]['id']}.firing"] == 1       # webhook-id: one per event
    # a consumer of many daemons knows which one decided the alert, as for records
    assert alerts[0]["instance"] == "pbx-berlin-1"
    assert {r["instance"] for r in receiver.records if r["type"] == "call.hangup"} == {"pbx-berlin-1"}


@pytest.fixture(scope="module")
def outage_capture(tmp_path_factory) -> Path:
    from callcause.connectors.simulator.outage import outage, write_capture

    return write_capture(tmp_path_factory.mktemp("outage") / "outage.txt", outage(T0, 300, 3.0, 0.4, 0.7))


def test_replay_alerts_back_tests_on_event_time(outage_capture, capsys):
    assert main(["replay", "--alerts", "--json", "--source", "fs-eu-1", str(outage_capture)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    kinds = [x["type"] for x in lines]
    alerts = [x for x in lines if x["type"] == "trunk.alert"]
    assert [(a["data"]["rule"], a["data"]["state"]) for a in alerts] == [
        ("carrier-outage", "firing"), ("failure-share", "firing"),
        ("carrier-outage", "resolved"), ("failure-share", "resolved")]
    # between the records, at the recorded times (the outage starts 6 minutes in)
    first = kinds.index("trunk.alert")
    assert 100 < first < len(lines) - 50
    assert alerts[0]["timestamp"] > lines[first - 1]["time"][:19]
    assert set(alerts[0]) == {"type", "timestamp", "data"}
    # the alert events name the instance the records name
    assert {a["data"]["instance"] for a in alerts} == {x["instance"] for x in lines if x["type"] == "call.hangup"}
    assert alerts[0]["data"]["instance"]
    # same traffic, same episode ids
    assert main(["replay", "--alerts", "--json", "--source", "fs-eu-1", str(outage_capture)]) == 0
    again = [json.loads(x) for x in capsys.readouterr().out.splitlines() if "trunk.alert" in x]
    assert [a["data"]["id"] for a in again] == [a["data"]["id"] for a in alerts]


def test_replay_alerts_with_a_rules_file(outage_capture, tmp_path, capsys):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: many-503, figure: sip_count, sip: 503, above: 50, window: 5m,"
                     " min_attempts: 1}\n")
    assert main(["replay", "--alerts", "--rules", str(rules), str(outage_capture)]) == 0
    out, err = capsys.readouterr()
    assert "ALERT firing many-503" in out and "ALERT resolved many-503" in out
    assert "carrier-outage" not in out and "rules: many-503" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, figure: ner}\n")
    assert main(["replay", "--alerts", "--rules", str(bad), str(outage_capture)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


async def test_baseline_rule_fires_when_asr_drops_below_its_own_trailing_value(tmp_path):
    cfg = trunks_config(tmp_path, """\
trunks:
  default_rules: false
  rules:
    - {name: asr-drop, figure: asr, below: 0.30, clear: 0.20, baseline: 24h, window: 5m, min_attempts: 30}
""")
    h = Harness(tmp_path, cfg)
    # two hours at ASR 0.8 (4 answered, 1 busy): the trunk's normal
    for _ in range(144):
        assert await h.calls(40, 10, 200) == []
        assert await h.calls(10, 10, 486) == []
    # then ASR 0.4: 40 points under its own 24 h value
    events = []
    for _ in range(30):
        events += await h.calls(20, 10, 200)
        events += await h.calls(30, 10, 486)
    assert [e.state for e in events] == ["firing"]
    d = events[0].data()
    assert d["baseline_s"] == 86400 and 0.7 < d["baseline"] < 0.8
    assert d["value"] < d["threshold"] == pytest.approx(d["baseline"] - 0.30, abs=1e-3)
    assert d["top_causes"][0]["sip"] == 486


def test_trunk_names_pick_the_trunks_among_endpoints(tmp_path):
    """An Asterisk PBX names every phone's endpoint as the `trunk` of its legs; `trunk_names`
    says which names are trunks, and the legs of the rest count as `-`, so 500 phones do not
    fill the group cap before the carriers are seen."""
    cfg = trunks_config(tmp_path, 'trunks:\n  trunk_names: ["carrier-*", itsp]\n')
    assert cfg.trunk_names == ["carrier-*", "itsp"]
    m = TrunkMonitor(cfg, event_time=True, count_metrics=False)
    for i, trunk in enumerate(["phone-101", "carrier-a", "itsp", "phone-102", "Carrier-B", None]):
        m.observe_leg(Leg(T0 + i, "pbx-1", trunk or "-", "outbound", "answered", True, 200, 16, 30.0, None, None))
    assert sorted(k.trunk for k in m.stats.groups) == ["-", "carrier-a", "itsp"]   # globs match case
    assert m.stats.window(GroupKey("pbx-1", "-", "outbound"), 60, now=T0 + 6).attempts == 4
    assert trunks_config(tmp_path, "language: en\n").trunk_names is None          # default: every name
    # a name no trunk has (off the wire, a megabyte long) would become a label: it counts as `-`
    m = TrunkMonitor(trunks_config(tmp_path, "language: en\n"), event_time=True, count_metrics=False)
    m.observe_leg(Leg(T0, "pbx-1", "x" * 100_000, "outbound", "answered", True, 200, 16, 30.0, None, None))
    assert [k.trunk for k in m.stats.groups] == ["-"]
    with pytest.raises(ConfigError) as err:
        trunks_config(tmp_path, "trunks:\n  trunk_names: []\n")
    assert "trunks.trunk_names" in str(err.value) and "carrier-*" in str(err.value)
