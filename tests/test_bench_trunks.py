"""`bench/trunks.py` still runs: a few thousand legs through both pipelines and the memory part,
so a change to the pipeline or the monitor cannot leave the cost bench broken unnoticed. The
figures themselves are the bench's business (never a test's: they depend on the machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "bench" / "trunks.py"
_spec = importlib.util.spec_from_file_location("callcause_bench_trunks", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_the_legs_are_the_same_for_both_pipelines():
    a, b = bench.legs(50, 5, 1_800_000_000.0, 100.0, first=1000), bench.legs(50, 5, 1_800_000_000.0, 100.0, first=1000)
    assert [(c.leg_id, c.trunk, c.sip_code, c.ended_at) for c in a] == [(c.leg_id, c.trunk, c.sip_code, c.ended_at)
                                                                        for c in b]
    assert a[0].leg_id == "leg-1000" and a[0].ended_at == 1_800_000_010.0 and a[1].ended_at > a[0].ended_at


def test_throughput_and_memory_run_and_report(capsys):
    bench.TURN = 500
    bench.throughput(2000, 2)
    bench.throughput(2000, 1, event_time=True)
    bench.memory(3000, 40)
    out = capsys.readouterr().out
    assert out.count("all rounds: off ") == 2 and "target >= 95 %" in out
    assert "replayed traffic, in event time" in out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("3,000 ")]
    assert rows and rows[0][1] == "40"          # 40 trunks, all under the cap: 40 groups
