"""A small seeded run of `bench/fuzz.py` for each protocol, so a regression fails CI.

The same fuzzer as the bench (mutated frames from the real captures, real calls with fresh ids
in between, random chunk sizes, a real `callcause run` over 127.0.0.1), with a fixed seed and
a few thousand frames: every real leg of the clean control run recorded exactly once, no
traceback, no source death, the daemon alive.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "fuzz.py"
_spec = importlib.util.spec_from_file_location("callcause_bench_fuzz", _PATH)
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz
_spec.loader.exec_module(fuzz)

SEED = 20261203


@pytest.mark.parametrize("protocol", ["ami", "esl"])
async def test_small_seeded_fuzz_run_loses_no_real_call(protocol):
    result = await fuzz.run_one(protocol, SEED, frames=3000, calls=20)
    assert result.failures(max_rss_mb=1024.0) == [], result.line() + "\n" + result.stderr_tail
    assert result.expected_legs >= 20


def test_mutations_cover_the_absurd_time_case():
    """The issue's wedging input, an event time in a year no record can render, is among the
    mutations of both protocols."""
    import random

    rng = random.Random(SEED)
    ami = [fuzz.mutate_ami(rng, b"Event: Hangup\r\nUniqueid: 1.2\r\nTimestamp: 1733246400.1") for _ in range(400)]
    esl = [fuzz.mutate_esl(rng, fuzz.event_frame(b"Event-Name: CHANNEL_HANGUP_COMPLETE\n"
                                                 b"Event-Date-Timestamp: 1733246400000000\n"))
           for _ in range(400)]
    assert any(b"Timestamp: 99999999999.0" in f for f in ami)
    assert any(b"Event-Date-Timestamp: 99999999999999999999" in f for f in esl)
