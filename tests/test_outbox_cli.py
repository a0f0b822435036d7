"""`callcause outbox list|retry|purge` on a real outbox written by a real sink."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from webhook_helpers import SECRET, Outcomes, Received, Receiver, make_record

from callcause.cli import main
from callcause.config import load_config
from callcause.connectors.sinks.webhook import build


def write_config(tmp_path: Path, url: str, outbox: bool = True) -> Path:
    path = tmp_path / "callcause.yaml"
    lines = [f"outbox: {tmp_path / 'outbox.db'}"] if outbox else []
    lines += ["sinks:", "  - kind: webhook", "    name: crm", f"    url: {url}",
              "    allow_insecure_http: true", '    secrets: ["${WEBHOOK_SECRET}"]',
              "    retry: {initial: 0.02, max: 0.1}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def sink_from(config_path: Path):
    config = load_config(config_path)
    return build(config.sinks[0], config)


async def test_list_retry_and_purge_dead_letters(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    receiver = await Receiver().start()
    refusing = True

    async def gate(got: Received) -> web.StreamResponse:
        return web.Response(status=422 if refusing else 204, text="schema mismatch")

    receiver.behaviour = gate
    cfg = write_config(tmp_path, receiver.url)
    records = [make_record(i) for i in range(3)]
    sink = sink_from(cfg)
    sink.POLL_S = 0.05           # notice a CLI retry quickly (the default is a few seconds)
    outcomes = Outcomes(sink)
    await sink.start()
    try:
        for r in records:
            await sink.write(r)
        await outcomes.wait_until(lambda: outcomes.dead == 3)

        assert main(["outbox", "list", "-c", str(cfg)]) == 0
        out = capsys.readouterr().out
        assert "# crm: 0 waiting, 3 dead" in out
        for r in records:
            line = next(ln for ln in out.splitlines() if ln.startswith(r.id))
            assert line.split()[1:4] == ["crm", "dead", "1"]
            assert line.endswith("HTTP 422: schema mismatch")

        assert main(["outbox", "list", "-c", str(cfg), "--endpoint", receiver.url, "--dead"]) == 0
        assert capsys.readouterr().out.count(" dead ") == 3

        refusing = False
        assert main(["outbox", "retry", "-c", str(cfg), "--id", records[0].id]) == 0
        assert capsys.readouterr().out.startswith("1 dead letter(s) queued again")
        await receiver.wait_until(lambda: records[0].id in receiver.delivered)      # the running sink
        assert main(["outbox", "retry", "-c", str(cfg)]) == 0
        assert capsys.readouterr().out.startswith("2 dead letter(s) queued again")
        await receiver.wait_until(lambda: len(receiver.delivered) == 3)

        refusing = True
        await sink.write(make_record(10))
        await outcomes.wait_until(lambda: outcomes.dead == 4)
    finally:
        await sink.close()
        await receiver.stop()

    assert main(["outbox", "purge", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith("1 dead letter(s) deleted")

    sink = sink_from(cfg)           # the receiver is gone: records wait for retries
    await sink.start()
    for i in (20, 21):
        await sink.write(make_record(i))
    await sink.close()
    outbox = str(tmp_path / "outbox.db")
    assert main(["outbox", "list", "--outbox", outbox]) == 0
    assert "# crm: 2 waiting, 0 dead" in capsys.readouterr().out
    assert main(["outbox", "purge", "--outbox", outbox]) == 0
    assert capsys.readouterr().out.startswith("0 dead letter(s) deleted")
    assert main(["outbox", "purge", "--all", "--outbox", outbox]) == 0
    assert capsys.readouterr().out.startswith("2 record(s), waiting and dead, deleted")
    assert main(["outbox", "list", "--outbox", outbox]) == 0
    assert "(no records)" in capsys.readouterr().out


@pytest.mark.parametrize("with_outbox", [True, False])
def test_missing_outbox_is_a_clear_error(tmp_path, monkeypatch, capsys, with_outbox):
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    cfg = write_config(tmp_path, "http://127.0.0.1:9/hook", outbox=with_outbox)
    assert main(["outbox", "list", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    # without `outbox:` the config itself is refused: a webhook sink cannot run without one
    assert ("does not exist" if with_outbox else "`outbox:` is not set") in err
