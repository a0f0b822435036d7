"""examples/prometheus: the real promtool checks and unit-tests the rules; the rules and the
dashboard only use metrics callcause exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import callcause.metrics  # noqa: F401  (the daemon's metric families)

DIR = Path(__file__).resolve().parent.parent / "examples" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=DIR, capture_output=True, text=True, timeout=60)


def test_promtool_check_rules():
    proc = promtool("check", "rules", "callcause-rules.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout


def test_promtool_test_rules():
    proc = promtool("test", "rules", "callcause-rules.test.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_fails_when_the_rules_are_wrong(tmp_path):
    """The unit tests can fail: with the outage threshold lowered to 0.5 the outage does not fire."""
    rules = (DIR / "callcause-rules.yml").read_text().replace("ratio5m < 0.85", "ratio5m < 0.50")
    (tmp_path / "callcause-rules.yml").write_text(rules)
    (tmp_path / "t.yml").write_text((DIR / "callcause-rules.test.yml").read_text())
    proc = subprocess.run(["promtool", "test", "rules", "t.yml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "CallcauseCarrierOutage" in proc.stdout + proc.stderr


def exported() -> set[str]:
    """Every family the daemon's registry serves (trunk families come from a custom collector)."""
    from prometheus_client import REGISTRY

    import callcause.trunks.exporter  # noqa: F401  (registers the trunk collector)

    names = set()
    for family in REGISTRY.collect():
        for suffix in ("", "_total", "_bucket", "_count", "_sum"):
            names.add(family.name + suffix)
    return names


def test_rules_and_dashboard_use_exported_metrics_and_recorded_series():
    rules = (DIR / "callcause-rules.yml").read_text()
    recorded = set(re.findall(r"record: (\S+)", rules))
    known = exported() | recorded | {"ALERTS"}
    dashboard = json.loads((DIR / "grafana-trunks.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += re.findall(r"expr: (.+)", rules) + re.findall(r"^\s{10}(\S.*)$", rules, re.M)
    used = {m for e in exprs for m in re.findall(r"\b(callcause[:_][a-z0-9_:]+)", e)}
    assert used and used <= known, used - known
    assert {"callcause:trunk_ner:ratio5m", "callcause:trunk_seer:ratio5m"} <= used
