"""`callcause demo` end to end: simulator, real sources over TCP, log and webhook sinks."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from callcause.connectors.simulator.esl import event_frame, frame_body, plain_headers, with_fresh_time
from callcause.demo import with_callers


def test_demo_records_and_verified_deliveries():
    proc = subprocess.run([sys.executable, "-m", "callcause.cli", "demo", "--duration", "2", "--rate", "7",
                           "--lang", "de"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("DEMO-SUMMARY "))
    summary = json.loads(line.removeprefix("DEMO-SUMMARY "))
    # 14 calls: every captured scenario of both PBXs once.
    assert summary["records"] >= 14
    assert summary["records"] == summary["records_in_jsonl"] == summary["webhook_records_distinct"]
    assert summary["webhook_signature_failures"] == 0
    cats = summary["by_source_and_category"]
    for source in ("asterisk-demo", "freeswitch-demo"):
        for category in ("answered", "busy", "no_answer", "rejected", "not_found", "congestion", "cancelled"):
            assert cats.get(f"{source}/{category}", 0) >= 1, (source, category, cats)
    # Live lines are printed in the asked language.
    assert "Der angerufene Teilnehmer ist besetzt" in proc.stdout or "besetzt" in proc.stdout
    # Every record looks like a call that just happened, from a plausible caller, and says who
    # hung up wherever the traffic tells (the one unknown left is a leg seen only at its end).
    lines = [ln for ln in proc.stdout.splitlines() if ln[:1].isdigit() and " ALERT " not in ln]
    assert len(lines) == summary["records"]
    today = time.strftime("%Y-%m-%d", time.gmtime())      # the demo runs for seconds, not days
    assert all(ln.startswith(today) for ln in lines), [ln[:40] for ln in lines if not ln.startswith(today)]
    assert not any("0000000000" in ln for ln in lines)
    assert not any(" von unbekannt " in ln or " by unknown " in ln for ln in lines)


def test_demo_rejects_bad_options():
    proc = subprocess.run([sys.executable, "-m", "callcause.cli", "demo", "--lang", "xx"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not supported" in proc.stderr


def test_demo_carrier_outage_fires_and_resolves():
    """carrier-b fails with 503s in the middle of the run: one episode fires and resolves."""
    proc = subprocess.run([sys.executable, "-m", "callcause.cli", "demo", "--duration", "5", "--rate", "8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("DEMO-SUMMARY "))
    summary = json.loads(line.removeprefix("DEMO-SUMMARY "))
    assert summary["alerts"][:2] == ["carrier-outage firing freeswitch-demo/carrier-b",
                                     "carrier-outage resolved freeswitch-demo/carrier-b"]
    assert "ALERT firing carrier-outage freeswitch-demo/carrier-b/outbound" in proc.stdout
    assert "503/34 congestion" in proc.stdout and "callcause trunk health" in proc.stdout


def test_fresh_time_moves_every_time_of_the_leg_together():
    body = ("Event-Name: CHANNEL_HANGUP_COMPLETE\nEvent-Date-Timestamp: 1420557124255108\n"
            "Event-Date-Local: 2015-01-06%2015%3A12%3A04\nCaller-Channel-Created-Time: 1420557119255108\n"
            "Caller-Channel-Answered-Time: 0\nvariable_start_epoch: 1420557119\n"
            "variable_start_uepoch: 1420557119255108\n\n")
    h = plain_headers(frame_body(with_fresh_time(event_frame(body), 1_800_000_000.5)))
    assert h["Event-Date-Timestamp"] == "1800000000500000"
    assert h["Caller-Channel-Created-Time"] == "1799999995500000"        # 5 s before, as recorded
    assert h["variable_start_uepoch"] == "1799999995500000" and h["variable_start_epoch"] == "1799999995"
    assert h["Caller-Channel-Answered-Time"] == "0"                     # never answered stays 0
    assert h["Event-Date-Local"].startswith("2027-01-15")


def test_placeholder_callers_get_a_demo_number_real_ones_stay():
    lab = event_frame("Caller-Caller-ID-Number: 0000000000\nCaller-Destination-Number: 486\n"
                      "variable_effective_caller_id_number: 486\n\n")
    real = event_frame("Caller-Caller-ID-Number: 1001\nCaller-Destination-Number: 1003\n\n")
    (fixed,), (kept,) = with_callers([[lab], [real]])
    h = plain_headers(frame_body(fixed))
    assert h["Caller-Caller-ID-Number"] == h["variable_effective_caller_id_number"] == "+442079460123"
    assert plain_headers(frame_body(kept))["Caller-Caller-ID-Number"] == "1001"
