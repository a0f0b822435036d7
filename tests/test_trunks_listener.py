"""`/trunks` on the daemon's metrics listener and `callcause trunks` reading it and record files:
the real daemon, a real ESL source on the simulator playing a failing carrier, real HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import esl_support as S
from test_health import http_get

from callcause.cli import main
from callcause.connectors.simulator.esl import EslServer
from callcause.connectors.simulator.outage import outage_call


def write_config(tmp_path, port: int) -> str:  # type: ignore[no-untyped-def]
    path = tmp_path / "callcause.yaml"
    path.write_text(f"""\
sources:
  - name: fs-1
    kind: freeswitch
    host: 127.0.0.1
    port: {port}
    password: {S.PASSWORD}
    reconnect_min: 0.05
sinks:
  - kind: log
    path: {tmp_path / "records.jsonl"}
    stdout: off
metrics: {{listen: "127.0.0.1:0"}}
trunks:
  evaluate_every: 1h          # the test evaluates itself
  default_rules: false
  rules:
    - {{name: outage, figure: ner, below: 0.85, window: 1m, min_attempts: 5}}
""")
    return str(path)


async def test_trunks_endpoint_and_command(tmp_path, capsys) -> None:
    with EslServer(S.PASSWORD) as server:
        daemon, done, run = S.daemon_until(write_config(tmp_path, server.port), 12)
        try:
            assert await server.subscribed(1)
            now = time.time()
            frames = [f for i in range(12) for f in outage_call(now - 30 + i, failing=i >= 4)]
            server.send_events(frames)
            await asyncio.wait_for(done.wait(), 10)
            events = await daemon.trunks.evaluate()
            assert [(e.rule.name, e.state) for e in events] == [("outage", "firing")]
            status, body = await http_get(daemon.health.port, "/trunks")
            assert status == 200
            snap = json.loads(body)
            group = next(g for g in snap["groups"] if g["trunk"] == "carrier-b")
            assert group["source"] == "fs-1" and group["direction"] == "outbound"
            fig = group["windows"]["60s"]
            assert fig["attempts"] == 12 and fig["answered"] == 4
            assert abs(fig["ner"] - 4 / 12) < 1e-3 and fig["top_causes"][0]["sip"] == 503
            assert [a["rule"] for a in snap["firing"]] == ["outage"]
            assert snap["max_groups"] == 1000 and snap["windows_s"] == [60, 300, 3600]
            # the metrics carry the same, with bounded labels
            _status, metrics_text = await http_get(daemon.health.port, "/metrics")
            assert b'callcause_trunk_legs_total{category="congestion",direction="outbound",ner_class="network",' \
                   b'source="fs-1",trunk="carrier-b"} 8.0' in metrics_text
            assert b'callcause_alert_firing{rule="outage",source="fs-1",trunk="carrier-b"} 1.0' in metrics_text
            # `callcause trunks` asks the listener (in a thread: the listener runs on this loop)
            url = f"http://127.0.0.1:{daemon.health.port}"
            assert await asyncio.to_thread(main, ["trunks", "--url", url, "--window", "1m"]) == 0
        finally:
            daemon.stop.set()
            assert await asyncio.wait_for(run, 15) == 0
    out = capsys.readouterr().out
    assert "carrier-b" in out and "33.3 %" in out and "503/34 congestion x8" in out and "FIRING outage" in out
    # the same table from the record file the log sink wrote (alert line included)
    assert main(["trunks", "--window", "1m", str(tmp_path / "records.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "carrier-b" in out and "33.3 %" in out and "FIRING outage" in out


def test_trunks_command_errors(tmp_path, capsys):
    bad = tmp_path / "x.jsonl"
    bad.write_text("not json\n")
    assert main(["trunks", str(bad)]) == 2
    assert "x.jsonl: no JSON record line in 1 line(s); give the log sink's JSON Lines file" in capsys.readouterr().err
    assert main(["trunks", str(tmp_path / "nope.jsonl")]) == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert main(["trunks", "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot read trunk health" in capsys.readouterr().err


def test_trunks_command_reads_rotated_and_damaged_files(tmp_path, capsys, caplog):
    """Record files as logrotate leaves them (one gzipped) and a last line cut short by a crash:
    the table covers every whole record, and the damaged line is named in one warning."""
    import gzip

    from callcause.mapping.translator import Translator
    from callcause.record import CauseRecord, HangupClues

    translator = Translator.default()

    def line(i: int, sip: int) -> str:
        clues = HangupClues(source_name="pbx-1", source_kind="freeswitch", leg_id=f"l{i}", direction="outbound",
                            trunk="carrier-z", answered=sip == 200, sip_code=sip, q850=16 if sip == 200 else 34,
                            duration_s=30.0, ended_at=1_800_000_000.0 + i)
        return json.dumps(CauseRecord(clues, translator.explain(clues), translator.texts).document("en")) + "\n"

    old = tmp_path / "records.jsonl.1.gz"
    with gzip.open(old, "wt") as fh:
        fh.writelines(line(i, 200) for i in range(6))
    new = tmp_path / "records.jsonl"
    new.write_text("".join(line(i, 503) for i in range(6, 10)) + line(10, 503)[:40])
    assert main(["trunks", "--json", str(old), str(new)]) == 0
    snap = json.loads(capsys.readouterr().out)
    [group] = snap["groups"]
    assert group["trunk"] == "carrier-z" and group["windows"]["60s"]["attempts"] == 10
    assert group["windows"]["60s"]["answered"] == 6
    assert "records.jsonl: 1 line(s) are not JSON record objects" in caplog.text
    assert "the table counts the rest" in caplog.text


def test_trunks_command_reads_files_that_span_versions(tmp_path, capsys):
    """A record file kept across an upgrade may hold alert events of an older shape (no `op`,
    no `time`) and JSON lines that are not objects: the table is still printed."""
    old_alert = {"type": "trunk.alert", "timestamp": "2026-11-30T04:30:00.000Z",
                 "data": {"id": "al_OLD", "rule": "carrier-outage", "state": "firing", "value": 0.5,
                          "threshold": 0.85, "window_s": 300, "attempts": 40,
                          "scope": {"source": "pbx-eu-1", "trunk": "peer", "direction": "outbound"}}}
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(old_alert) + "\n[1, 2]\n\"text\"\n")
    assert main(["trunks", str(path)]) == 0
    out = capsys.readouterr().out
    assert "FIRING carrier-outage pbx-eu-1/peer/outbound: ? was 0.5 (0.85) over 300 s with 40 attempts" in out
