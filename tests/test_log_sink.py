"""The log sink: whole JSON lines, readable stdout lines, reopen on SIGHUP and after rotation."""

from __future__ import annotations

import io
import json
import os

import pytest

from callcause.config import Section
from callcause.connectors.sinks.log import LogConfig, LogSink, parse_config
from callcause.errors import ConfigError
from callcause.mapping.translator import Translator
from callcause.record import CauseRecord, HangupClues


def record(leg: str = "1795278971.8", **kw) -> CauseRecord:
    t = Translator.default()
    # the clues of capture asterisk-sip486-busy (see test_ami_captures)
    fields = dict(call_id="1795278971.6", channel="PJSIP/peer-00000002", direction="outbound",
                  from_number="1000", to_number="486", sip_code=486, sip_reason="Busy Here", q850=17,
                  pbx_cause="User busy", pbx_cause_code=17, dial_status="BUSY", hangup_source="callee",
                  trunk="peer")
    clues = HangupClues("pbx-test", "asterisk", leg, **{**fields, **kw})
    return CauseRecord(clues, t.explain(clues), t.texts)


def lines(path) -> list[dict]:
    return [json.loads(x) for x in open(path, encoding="utf-8").read().splitlines()]


async def test_one_json_line_and_one_text_line_per_record(tmp_path) -> None:
    out = io.StringIO()
    sink = LogSink(LogConfig(path=str(tmp_path / "r.jsonl")), "en", stdout=out)
    await sink.start()
    await sink.write(record())
    await sink.write(record("1795278971.9", from_number="Оператор"))
    await sink.close()
    docs = lines(tmp_path / "r.jsonl")
    assert [d["call"]["leg_id"] for d in docs] == ["1795278971.8", "1795278971.9"]
    assert docs[0]["cause"]["category"] == "busy" and docs[0]["sip"]["code"] == 486
    assert docs[1]["call"]["from"] == "Оператор"
    text = out.getvalue().splitlines()
    assert len(text) == 2 and "busy" in text[0] and "SIP 486" in text[0] and "1000 -> 486" in text[0]


async def test_stdout_json_and_off(tmp_path) -> None:
    out = io.StringIO()
    sink = LogSink(LogConfig(path=None, stdout="json"), "de", stdout=out)
    rec, asked = record(), []
    texts = rec.texts_for
    rec.texts_for = lambda exp, lang: (asked.append(lang), texts(exp, lang))[1]
    await sink.write(rec)
    doc = json.loads(out.getvalue())
    assert asked == ["de"] and doc["cause"]["category"] == "busy"
    quiet = io.StringIO()
    sink = LogSink(LogConfig(path=str(tmp_path / "q.jsonl"), stdout="off"), "en", stdout=quiet)
    await sink.start()
    await sink.write(record())
    assert quiet.getvalue() == "" and len(lines(tmp_path / "q.jsonl")) == 1


async def test_reopens_after_logrotate_moved_or_deleted_the_file(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    sink = LogSink(LogConfig(path=str(path), stdout="off"), "en")
    await sink.start()
    await sink.write(record("1"))
    os.rename(path, tmp_path / "r.jsonl.1")          # logrotate without copytruncate
    await sink.write(record("2"))
    os.unlink(path)                                  # someone deleted it
    await sink.write(record("3"))
    await sink.close()
    assert [d["call"]["leg_id"] for d in lines(tmp_path / "r.jsonl.1")] == ["1"]
    assert [d["call"]["leg_id"] for d in lines(path)] == ["3"]


async def test_sighup_reopen_starts_a_new_file_at_the_same_path(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    sink = LogSink(LogConfig(path=str(path), stdout="off"), "en")
    await sink.start()
    await sink.write(record("1"))
    fd_before = sink._fd
    sink.reopen()
    await sink.write(record("2"))
    assert sink._fd != fd_before or len(lines(path)) == 2
    assert [d["call"]["leg_id"] for d in lines(path)] == ["1", "2"]
    await sink.close()


async def test_concurrent_writers_never_interleave_lines(tmp_path) -> None:
    path = str(tmp_path / "r.jsonl")
    sinks = [LogSink(LogConfig(path=path, stdout="off"), "en") for _ in range(3)]
    for s in sinks:
        await s.start()
    big = record("x" * 5000)
    for i in range(50):
        for s in sinks:
            await s.write(big if i % 2 else record(str(i)))
    docs = lines(path)
    assert len(docs) == 150


def test_config_needs_somewhere_to_write() -> None:
    with pytest.raises(ConfigError, match="writes nowhere"):
        parse_config(Section({"kind": "log", "stdout": False}, file="c.yaml", path="sinks[0]"))
    cfg = parse_config(Section({"kind": "log", "path": "/x.jsonl", "language": "de-AT"},
                               file="c.yaml", path="sinks[0]"))
    assert (cfg.path, cfg.stdout, cfg.language) == ("/x.jsonl", "text", "de")


async def test_pii_policy_per_log_sink(tmp_path) -> None:
    data = {"path": str(tmp_path / "r.jsonl"), "stdout": "off", "pii": {"from": "mask", "to": "drop"}}
    sec = Section(data, file="x.yaml", path="sinks[0]")
    cfg = parse_config(sec)
    sec.finish()
    sink = LogSink(cfg, "en")
    await sink.start()
    await sink.write(record(from_number="+4930123456", to_number="+4989123456"))
    await sink.close()
    [doc] = lines(tmp_path / "r.jsonl")
    assert doc["call"]["from"] != "+4930123456" and doc["call"]["from"].startswith("+49")
    assert "+4989123456" not in json.dumps(doc)


async def test_a_group_is_one_write_and_a_write_cut_short_resumes_without_duplicates(tmp_path) -> None:
    """A file size limit (RLIMIT_FSIZE) stops a real write part way, as a full disk does: the
    pipeline retries the same group, and the sink writes only what had not been written."""
    import resource
    import signal

    path = tmp_path / "r.jsonl"
    sink = LogSink(LogConfig(path=str(path), stdout="off"), "en")
    await sink.start()
    group = [record(f"leg-{i}") for i in range(3)]
    one_line = len(json.dumps(group[0].document("en"), ensure_ascii=False, separators=(",", ":"))) + 1
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of the signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (one_line + one_line // 2, hard))
    try:
        with pytest.raises(OSError):
            await sink.write_many(group)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert 0 < path.stat().st_size < 2 * one_line            # one line and a half made it
    assert sink.ready is False                                # /readyz says so meanwhile
    await sink.write_many(group)                              # the pipeline's retry
    assert sink.ready is True
    await sink.write_many([record("leg-3")])
    await sink.close()
    assert [d["call"]["leg_id"] for d in lines(path)] == ["leg-0", "leg-1", "leg-2", "leg-3"]
