"""`callcause replay`: captures through the same correlation and translation as live traffic."""

from __future__ import annotations

import json
from pathlib import Path

from callcause.cli import main

FIX = Path(__file__).parent / "fixtures"
AMI_BUSY = FIX / "ami" / "asterisk-sip486-busy.txt"
AMI_404 = FIX / "ami" / "asterisk-sip404-notfound.txt"
ESL_603 = FIX / "esl" / "freeswitch-sip603-decline.txt"
ESL_CANCEL = FIX / "esl" / "003-channel-hangup-originator-cancel.txt"


def replay_json(capsys, *args) -> list[dict]:
    assert main(["replay", "--json", *map(str, args)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_replay_ami_and_esl_with_format_detection(capsys):
    docs = replay_json(capsys, AMI_BUSY, ESL_603, ESL_CANCEL)
    by_kind = {(d["source"]["kind"], d["cause"]["category"]) for d in docs}
    assert ("asterisk", "busy") in by_kind
    assert ("freeswitch", "rejected") in by_kind
    assert ("freeswitch", "cancelled") in by_kind
    busy = next(d for d in docs if d["cause"]["category"] == "busy")
    assert busy["sip"]["code"] == 486 and busy["q850"]["cause"] == 17 and busy["pbx"]["dial_status"] == "BUSY"
    cancel = next(d for d in docs if d["cause"]["category"] == "cancelled")
    assert cancel["collapsed"] is True and cancel["cause"]["hangup_source"] == "caller"


def test_replay_ids_follow_the_source_name(capsys):
    a = replay_json(capsys, "--source", "pbx-eu-1", AMI_BUSY)
    b = replay_json(capsys, "--source", "pbx-eu-1", AMI_BUSY)
    c = replay_json(capsys, "--source", "pbx-us-1", AMI_BUSY)
    assert [d["id"] for d in a] == [d["id"] for d in b]
    assert {d["id"] for d in a}.isdisjoint(d["id"] for d in c)


def test_replay_text_in_another_language(capsys):
    assert main(["replay", "--lang", "de", str(ESL_603)]) == 0
    out = capsys.readouterr().out
    assert "rejected" in out and "abgewiesen" in out


def test_replay_into_configured_sinks(tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    cfg = tmp_path / "callcause.yaml"
    cfg.write_text(f"language: ru\nsinks:\n  - kind: log\n    path: {records}\n    stdout: off\n")
    assert main(["replay", "-c", str(cfg), str(AMI_404), str(ESL_603)]) == 0
    docs = [json.loads(line) for line in records.read_text().splitlines()]
    assert {d["cause"]["category"] for d in docs} >= {"not_found", "rejected"}
    assert all(d["cause"]["lang"] == "ru" for d in docs)


def test_diff_shows_legs_an_override_changes(tmp_path, capsys):
    new = tmp_path / "new.yaml"
    new.write_text("overrides:\n  - name: busy-is-billing\n    match: {sip: 486}\n    set: {category: billing}\n")
    assert main(["replay", "--overrides", str(new), "--diff", str(AMI_BUSY), str(ESL_603)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("1 of ") and out[-1].endswith("legs change")
    assert "busy (builtin:sip/486) -> billing (override:busy-is-billing)" in out[0]


def test_unknown_format_and_missing_file(tmp_path, capsys):
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    assert main(["replay", str(junk)]) == 2
    assert "neither AMI" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["replay", "--diff", str(AMI_BUSY)]) == 2


def test_replay_into_a_closed_pipe_ends_at_once_and_quietly():
    """`callcause replay FILE | head -2`: the reader leaves; replay must not retry the write."""
    import subprocess
    import sys

    files = sorted(str(p) for p in (FIX / "esl").glob("freeswitch-*.txt"))
    proc = subprocess.Popen([sys.executable, "-m", "callcause.cli", "replay", *files],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()              # the reader is gone before the first record is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"Traceback" not in err and b"retrying" not in err and b"Broken pipe" not in err


async def test_the_daemon_log_sink_still_reports_a_broken_stdout():
    """Only the command line gives up on a closed stdout; in the daemon the pipeline retries."""
    import pytest

    from callcause.connectors.sinks.log import LogConfig, LogSink
    from callcause.mapping.translator import Translator
    from callcause.record import CauseRecord, HangupClues

    class Closed:
        def write(self, text: str) -> int:
            raise BrokenPipeError

        def flush(self) -> None:
            raise BrokenPipeError

    t = Translator.default()
    clues = HangupClues(source_name="s", source_kind="asterisk", leg_id="1", q850=16)
    record = CauseRecord(clues, t.explain(clues), t.texts)
    with pytest.raises(BrokenPipeError):
        await LogSink(LogConfig(path=None, stdout="text"), "en", stdout=Closed()).write(record)
    cli = LogSink(LogConfig(path=None, stdout="text"), "en", stdout=Closed(), reader_may_leave=True)
    await cli.write(record)
    await cli.write(record)
    assert cli.reader_gone


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def webhook_config(tmp_path: Path, url: str, grace: str = "5s") -> Path:
    cfg = tmp_path / "callcause.yaml"
    cfg.write_text(f"outbox: {tmp_path / 'outbox.db'}\nsinks:\n  - kind: webhook\n    url: {url}\n"
                   f"    secrets: [{SECRET}]\n    allow_insecure_http: true\n    grace: {grace}\n")
    return cfg


async def test_replay_into_a_webhook_delivers_before_it_ends(tmp_path, capsys):
    """The records a replay hands to a webhook sink reach the receiver before the command
    returns, rather than waiting in the outbox for the daemon's next start."""
    import asyncio

    from callcause.connectors.simulator.receiver import WebhookReceiver

    receiver = await WebhookReceiver(secret=SECRET).start()
    try:
        cfg = webhook_config(tmp_path, receiver.url)
        files = sorted(str(p) for kind, mark in (("esl", "Event-Name:"), ("ami", "Event: Hangup"))
                       for p in (FIX / kind).glob("*.txt") if mark in p.read_text(errors="replace"))
        assert await asyncio.to_thread(main, ["replay", "--json", str(ESL_603), *files]) == 0
        written = {json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()}
        assert len(written) > 80
        assert await asyncio.to_thread(main, ["replay", "-c", str(cfg), str(ESL_603), *files]) == 0
        hangups = [r for r in receiver.records if r["type"] == "call.hangup"]
        assert {r["id"] for r in hangups} == written and receiver.rejected == 0
        assert "not delivered" not in capsys.readouterr().err
    finally:
        await receiver.close()


def test_replay_into_a_webhook_that_is_down_says_what_waits(tmp_path, capsys):
    """A receiver that is down: the replay gives up after the sink's grace without progress,
    and says how many records wait in the outbox and where."""
    import socket

    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = webhook_config(tmp_path, f"http://127.0.0.1:{port}/hook", grace="0.5s")
    assert main(["replay", "-c", str(cfg), str(AMI_404), str(ESL_603)]) == 0
    err = capsys.readouterr().err
    assert "record(s) not delivered yet" in err and str(tmp_path / "outbox.db") in err
    assert "callcause outbox list" in err
