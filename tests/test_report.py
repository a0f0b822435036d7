"""`callcause report` without a browser: what it counts from real records, how it reads files
(gzip, damaged lines), its filters and options, and `/report` on a running pipeline."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
from pathlib import Path

import pytest

from callcause.cli import main as cli
from callcause.report.collect import DAY, HOUR, Collector, Filters
from callcause.report.command import parse_when
from callcause.report.read import ReadStats, documents

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "records.jsonl"
PERIOD = ["--since", "2026-11-30", "--until", "2026-12-01"]
SINCE = parse_when("2026-11-30", 0, "--since")
UNTIL = parse_when("2026-12-01", 0, "--until")


def summary_of(sip: int, q850: int, lang: str) -> str:
    """The cause text the report must show, from the same tables (not a copy of them)."""
    from html import escape

    from callcause.mapping.translator import Translator
    from callcause.report.render import cause_texts

    return escape(cause_texts(Translator.load(), sip, q850, lang)[0])


def report(tmp_path: Path, *args: str, files: list[str] | None = None) -> str:
    out = tmp_path / "report.html"
    assert cli(["report", *(files or [str(FIXTURE)]), "-o", str(out), *args]) == 0
    return out.read_text(encoding="utf-8")


def collected() -> Collector:
    return Collector(Filters(since=SINCE, until=UNTIL)).add_all(documents([str(FIXTURE)]))


def test_figures_per_trunk_now_and_the_day_before():
    c = collected()
    peer = {k.trunk: g for k, g in c.groups.items() if k.source == "pbx-eu-1"}["peer"]
    # 9 legs on `peer` on 2026-11-30: 2 answered, busy, no answer, 404, 480, 486, 503, 603
    now, before = peer.current.figures(), peer.previous.figures()
    assert (now.attempts, now.answered) == (9, 2)
    assert now.ner == pytest.approx(7 / 8)        # 404 is the caller's; 503 the network's
    assert (before.attempts, before.ner) == (8, 1.0)   # the day before had no 503
    assert c.bucket_s == HOUR
    assert sum(sum(b.values()) for b in peer.buckets.values()) == 9
    assert c.skipped == 9     # 8 internal legs (Local/ and loopback halves) of both days, 1 trunk.alert event
    assert c.clues["fs-eu-1"].collapsed == 1      # FreeSWITCH reports ORIGINATOR_CANCEL as Q.850 16
    assert c.clues["pbx-eu-1"].overruled == 2     # 503 with Q.850 34 (not 41), 480 with 19 (not 18)


def test_sections_in_order_with_texts_in_the_language(tmp_path):
    html = report(tmp_path, *PERIOD, "--lang", "de")
    ids = re.findall(r'<section id="([a-z]+)"', html)
    assert ids == ["figures", "timeline", "causes", "failing", "hangup", "clues"]
    assert "Häufigste Ursachen" in html and summary_of(486, 17, "de") in html
    assert '<html lang="de">' in html


def test_self_contained_page_forbids_every_request(tmp_path):
    html = report(tmp_path, *PERIOD)
    assert "default-src 'none'" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "Chart.js v4" in html                  # the library is inside the file


def test_numbers_masked_by_default_and_kept_on_request(tmp_path):
    masked = report(tmp_path, *PERIOD)
    assert "****34" in masked and "503q34" not in masked     # the 503 legs were dialled to "503q34"
    assert "503q34" in report(tmp_path, *PERIOD, "--pii", "keep")
    assert "number-table" not in report(tmp_path, *PERIOD, "--pii", "drop")


def test_gzip_and_damaged_lines(tmp_path, caplog):
    gz = tmp_path / "records.jsonl.1.gz"
    lines = FIXTURE.read_bytes().splitlines(keepends=True)
    gz.write_bytes(gzip.compress(b"".join(lines[:10]) + b"not json\n" + b"".join(lines[10:]) + b'{"trunc'))
    stats = ReadStats()
    with caplog.at_level(logging.WARNING, logger="callcause.report"):
        docs = list(documents([str(gz)], stats))
    assert len(docs) == len(lines) and stats.bad_lines == 2
    assert any(str(gz) in r.getMessage() and "line 11" in r.getMessage() for r in caplog.records)
    html = report(tmp_path, *PERIOD, files=[str(gz)])
    assert '<span id="legs">21</span>' in html       # every leg of the day: only the two junk lines were lost
    assert "2 unreadable lines skipped" in html


def test_filters_by_source_and_trunk_globs():
    c = Collector(Filters(since=SINCE, until=UNTIL, sources=["pbx-*"], trunks=["pe*"])).add_all(
        documents([str(FIXTURE)]))
    assert [(k.source, k.trunk) for k in c.groups] == [("pbx-eu-1", "peer")]


def test_relative_since_and_long_spans_in_days():
    assert parse_when("24h", 1_000_000.0, "--since") == 1_000_000.0 - 86400
    assert parse_when("2026-11-30T08:00+01:00", 0, "--since") == SINCE + 7 * 3600
    c = Collector()
    for day in range(9):
        c.add({"type": "call.hangup", "time": f"2026-11-0{day + 1}T10:00:00.000Z", "source": {"name": "a"},
               "call": {"trunk": "t", "direction": "outbound"}, "cause": {"category": "busy"}})
    assert c.bucket_s == DAY and len(next(iter(c.groups.values())).buckets) == 9


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday"], "not a time"),
    (["--since", "2026-12-01", "--until", "2026-11-30"], "not before"),
    (["--lang", "fr"], "not supported"),
    (["--pii", "blur"], "use one of"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, args, message):
    assert cli(["report", str(FIXTURE), "-o", str(tmp_path / "r.html"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_alert_rules_backtested_and_marked(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: peer-503\n    figure: sip_count\n    sip: 503\n    above: 0\n"
                     "    window: 1h\n    min_attempts: 1\n")
    html = report(tmp_path, *PERIOD, "--alerts", str(rules))
    assert re.search(r'class="alert-firing">[^<]*peer-503 firing', html)
    assert re.search(r'class="alert-firing">[^<]*carrier-outage firing', html)   # the event in the file


async def test_daemon_serves_report_of_its_recent_legs(tmp_path):
    """Real captures through the real pipeline into the live report, fetched over HTTP."""
    from callcause.health import HealthServer
    from callcause.mapping.translator import Translator
    from callcause.pipeline import Pipeline
    from callcause.replay import collect
    from callcause.report.live import LiveReport, ReportConfig
    from tests.test_health import http_get

    fixtures = Path(__file__).parent / "fixtures"
    legs = collect([str(p) for p in sorted((fixtures / "ami").glob("asterisk-sip*.txt"))], "ami", "pbx-eu-1", False)
    base = 1_796_000_000.0
    for i, clues in enumerate(legs):
        clues.ended_at = base + 60 * i
    translator = Translator.load()
    live = LiveReport(ReportConfig(), language="de", translator_of=lambda: translator,
                      clock=lambda: base + 3600)
    pipe = Pipeline(translator, [])
    pipe.observers.append(live.observe)
    await pipe.process_many(legs)
    server = HealthServer("127.0.0.1:0", dict, report=live.html)
    await server.start()
    try:
        status, body = await http_get(server.port, "/report")
    finally:
        await server.close()
    html = body.decode()
    assert status == 200
    assert f'<span id="legs">{len(legs)}</span>' in html and "Häufigste Ursachen" in html
    assert "503q34" not in html and "****34" in html      # masked by default

    # a daemon that keeps fewer legs than its window holds says so on the page
    small = LiveReport(ReportConfig(max_legs=len(legs) - 2), language="en", translator_of=lambda: translator,
                       clock=lambda: base + 3600)
    pipe.observers.append(small.observe)
    await pipe.process_many(legs)
    html = await small.html()
    assert '<span id="legs">' + str(len(legs) - 2) + "</span>" in html
    assert "2 legs of these periods were left out" in html


async def test_running_daemon_serves_report(tmp_path, monkeypatch):
    """`callcause run` wiring: a call from the AMI simulator shows up in /report at once."""
    from ami_support import SECRET, fixture, wait_until

    from callcause.config import load_config
    from callcause.connectors.simulator.ami import AmiSimulator, IdSource, Scenario
    from callcause.daemon import Daemon
    from tests.test_daemon import records, write_config
    from tests.test_health import http_get

    monkeypatch.setenv("TEST_AMI_SECRET", SECRET)
    async with AmiSimulator(secret=SECRET) as sim:
        cfg = load_config(write_config(tmp_path, sim.port, extra='metrics: {listen: "127.0.0.1:0"}\n'
                                                                   'report: {language: ru}'))
        daemon = Daemon(cfg)
        task = asyncio.create_task(daemon.run())
        try:
            await sim.wait_logins(1)
            await wait_until(lambda: daemon.health is not None and daemon.sources[0].connected)
            await sim.send_events(Scenario.from_frames("busy", fixture("asterisk-sip486-busy.txt")).render(IdSource()))
            await wait_until(lambda: len(records(tmp_path)) >= 1)
            status, body = await http_get(daemon.health.port, "/report")
        finally:
            daemon.stop.set()
            assert await asyncio.wait_for(task, 15) == 0
    html = body.decode()
    assert status == 200 and '<span id="legs">1</span>' in html and "Частые причины" in html


def test_no_legs_still_a_page(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    html = report(tmp_path, "--since", "24h", files=[str(empty)])
    assert "No call legs in this period." in html and '<span id="legs">0</span>' in html
