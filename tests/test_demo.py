"""`callcause demo` end to end: simulator, real sources over TCP, log and webhook sinks."""

from __future__ import annotations

import json
import subprocess
import sys


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
