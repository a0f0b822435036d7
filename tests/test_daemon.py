"""`callcause run` / `check-config`: config to records, SIGHUP reload, SIGTERM drain, secrets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import pytest
from ami_support import SECRET, fixture, wait_until
from test_health import http_get

from callcause import cli, metrics
from callcause.config import load_config
from callcause.connectors.asterisk.source import FILTERS
from callcause.connectors.simulator.ami import AmiSimulator, IdSource, Scenario
from callcause.daemon import Daemon

CALL = fixture("asterisk-sip486-busy.txt")


def write_config(tmp_path, port: int, overrides: str | None = None, extra: str = "") -> str:
    path = tmp_path / "callcause.yaml"
    path.write_text(f"""
language: en
sources:
  - name: pbx-test
    kind: asterisk
    host: 127.0.0.1
    port: {port}
    username: callcause
    secret: ${{TEST_AMI_SECRET}}
    reconnect_min: 0.05
    reconnect_max: 0.1
    hangup_grace: 0.2
mapping:
  overrides: {overrides or "null"}
sinks:
  - kind: log
    path: {tmp_path / "records.jsonl"}
    stdout: off
{extra}""", encoding="utf-8")
    return str(path)


def records(tmp_path) -> list[dict]:
    p = tmp_path / "records.jsonl"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv("TEST_AMI_SECRET", SECRET)


async def test_run_records_reloads_on_sighup_and_drains_on_stop(tmp_path, caplog) -> None:
    good = tmp_path / "overrides.yaml"
    good.write_text("# no overrides yet\n", encoding="utf-8")
    async with AmiSimulator(secret=SECRET) as sim:
        daemon = Daemon(load_config(write_config(tmp_path, sim.port, str(good))))
        task = asyncio.create_task(daemon.run())
        await sim.wait_logins(1)
        await wait_until(lambda: daemon.sources[0].connected)
        await sim.send_events(CALL)
        await wait_until(lambda: len(records(tmp_path)) == 1)
        assert records(tmp_path)[0]["cause"]["category"] == "busy"

        # a broken overrides file: the old translator stays, the failure is counted
        errors = metrics.OVERRIDE_RELOADS.labels(result="error")._value.get()
        before = daemon.pipeline.translator
        good.write_text("sip: [unclosed\n", encoding="utf-8")
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(lambda: metrics.OVERRIDE_RELOADS.labels(result="error")._value.get() > errors)
        assert daemon.pipeline.translator is before
        assert "previous ones stay in force" in caplog.text

        # a second call whose callee leg still waits for its CEL HANGUP when the stop comes:
        # the source flushes it and the pipeline drains it into the file before exit
        frames = Scenario.from_frames("again", CALL).render(IdSource())
        end = next(i for i, f in enumerate(frames) if f.startswith("Event: Hangup\r\nPrivilege: call,all"
                                                                    "\r\nChannel: PJSIP/"))
        callee = frames[end].split("Uniqueid: ")[1].split("\r\n")[0]
        cel = f"UniqueID: {callee}\r\n"
        await sim.send_events([f for f in frames[:end + 1]
                               if not (f.startswith("Event: CEL") and cel in f and "HANGUP" in f)])
        await wait_until(lambda: callee in daemon.sources[0].correlator.waiting)
        daemon.stop.set()
        assert await asyncio.wait_for(task, 10) == 0
        assert [r["call"]["leg_id"] for r in records(tmp_path)] == ["1795278971.8", callee]
    assert SECRET not in caplog.text


def test_check_config_ok_and_errors(tmp_path, capsys, monkeypatch) -> None:
    path = write_config(tmp_path, 5038)
    assert cli.main(["check-config", "-c", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and "pbx-test (asterisk)" in out
    bad = write_config(tmp_path, 5038, extra="outbox: 1\nmystery: 2\n")
    assert cli.main(["check-config", "-c", bad]) == 2
    err = capsys.readouterr().err
    assert "callcause.yaml:" in err and "mystery" in err and "fix:" in err
    monkeypatch.delenv("TEST_AMI_SECRET")
    assert cli.main(["check-config", "-c", path]) == 2
    assert "TEST_AMI_SECRET" in capsys.readouterr().err


def test_config_repr_and_errors_never_show_the_secret(tmp_path, capsys) -> None:
    config = load_config(write_config(tmp_path, 5038))
    assert SECRET not in repr(config)
    bad = write_config(tmp_path, 5038, extra="language: xx\n")
    assert cli.main(["check-config", "-c", bad]) == 2
    assert SECRET not in capsys.readouterr().err


async def test_callcause_run_exits_0_on_sigterm_after_writing_records(tmp_path) -> None:
    async with AmiSimulator(secret=SECRET) as sim:
        path = write_config(tmp_path, sim.port)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "callcause.cli", "run", "-c", path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TEST_AMI_SECRET": SECRET})
        try:
            await sim.wait_logins(1, timeout=20)
            await wait_until(lambda: len(sim.active()) == 1 and len(sim.active()[0].filter_texts) == len(FILTERS), 10)
            await sim.send_events(CALL)
            await wait_until(lambda: len(records(tmp_path)) == 1, 10)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
        assert proc.returncode == 0, err.decode()
        assert SECRET.encode() not in err
        assert records(tmp_path)[0]["call"]["leg_id"] == "1795278971.8"


async def test_metrics_and_readiness_follow_the_source(tmp_path) -> None:
    """/readyz flips to 503 when the PBX goes away and back to 200 when the source is back;
    /metrics, scraped over HTTP and parsed by the official parser, counts the records."""
    from prometheus_client.parser import text_string_to_metric_families

    async with AmiSimulator(secret=SECRET) as sim:
        cfg = load_config(write_config(tmp_path, sim.port, extra='metrics: {listen: "127.0.0.1:0"}'))
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run())
        try:
            await sim.wait_logins(1)
            await wait_until(lambda: daemon.health is not None and daemon.sources[0].connected)
            port = daemon.health.port
            assert (await http_get(port, "/readyz"))[0] == 200
            await sim.send_events(Scenario.from_frames("busy", CALL).render(IdSource()))
            await wait_until(lambda: len(records(tmp_path)) >= 1)
            status, body = await http_get(port, "/metrics")
            assert status == 200
            samples = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]
            busy = [s.value for s in samples if s.name == "callcause_records_total"
                    and s.labels == {"source": "pbx-test", "category": "busy"}]
            assert busy and busy[0] >= 1
            sim.silent = True          # the PBX stops answering: no login on reconnect
            sim.drop()
            await wait_until(lambda: not daemon.sources[0].connected)
            status, body = await http_get(port, "/readyz")
            assert status == 503 and json.loads(body)["components"]["source:pbx-test"] is False
            sim.silent = False
            await wait_until(lambda: daemon.sources[0].connected, timeout=10)
            assert (await http_get(port, "/readyz"))[0] == 200
        finally:
            daemon.stop.set()
            assert await asyncio.wait_for(task, 15) == 0


async def test_readiness_follows_a_sink_that_cannot_write(tmp_path) -> None:
    """The record file cannot be written (here a directory took its place, as a wrong
    logrotate rule might leave it): /readyz says which sink, the record waits in the pipeline,
    and both recover once the file can be written again."""
    import shutil

    async with AmiSimulator(secret=SECRET) as sim:
        cfg = load_config(write_config(tmp_path, sim.port, extra='metrics: {listen: "127.0.0.1:0"}'))
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run())
        path = tmp_path / "records.jsonl"
        try:
            await wait_until(lambda: daemon.health is not None and daemon.sources[0].connected)
            port = daemon.health.port
            assert (await http_get(port, "/readyz"))[0] == 200
            path.unlink(missing_ok=True)
            path.mkdir()
            await sim.send_events(Scenario.from_frames("busy", CALL).render(IdSource()))
            await wait_until(lambda: not daemon.sinks[0].ready)
            status, body = await http_get(port, "/readyz")
            assert status == 503
            assert json.loads(body)["components"] == {"source:pbx-test": True, f"sink:log:{path}": False}
            shutil.rmtree(path)
            await wait_until(lambda: len(records(tmp_path)) >= 1, timeout=10)
            assert (await http_get(port, "/readyz"))[0] == 200
        finally:
            daemon.stop.set()
            assert await asyncio.wait_for(task, 15) == 0
