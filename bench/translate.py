"""Translations per second on one core for a realistic mix of call-leg clues.

Run: python bench/translate.py [--seconds 3]

The mix uses the clue shapes the captures show, weighted as an assumed busy day: mostly answered calls, then busy,
no answer, cancelled, rejected and unallocated numbers, a few carrier phrases and Reason
headers, from both Asterisk and FreeSWITCH. A baseline in the same run (building the same
clue objects and doing nothing else) shows how much of the time is the translator itself.
"""

from __future__ import annotations

import argparse
import itertools
import time

from callcause.mapping.translator import Translator
from callcause.record import HangupClues, ReasonHeader


def mix() -> list[HangupClues]:
    ast, fs = "asterisk", "freeswitch"
    legs = [
        # (weight, clues)
        (40, dict(source_kind=ast, q850=16, pbx_cause="Normal Clearing", dial_status="ANSWER", answered=True)),
        (25, dict(source_kind=fs, q850=16, pbx_cause="NORMAL_CLEARING", sip_code=200, answered=True,
                  disposition="recv_bye")),
        (8, dict(source_kind=ast, q850=17, sip_code=486, pbx_cause="User busy", dial_status="BUSY")),
        (6, dict(source_kind=fs, q850=17, pbx_cause="USER_BUSY", sip_code=486, sip_reason="Busy Here",
                 disposition="recv_refuse", answered=False)),
        (6, dict(source_kind=ast, q850=0, dial_status="NOANSWER", answered=False)),
        (4, dict(source_kind=fs, q850=16, pbx_cause="ORIGINATOR_CANCEL", sip_code=487, disposition="send_cancel",
                 answered=False)),
        (3, dict(source_kind=ast, q850=1, sip_code=404, dial_status="CHANUNAVAIL")),
        (3, dict(source_kind=fs, q850=34, pbx_cause="NORMAL_CIRCUIT_CONGESTION", sip_code=503,
                 reason_headers=[ReasonHeader("Q.850", 34, "Circuit/channel congestion")])),
        (2, dict(source_kind=fs, q850=18, pbx_cause="NO_USER_RESPONSE", sip_code=480, sip_reason="No money left")),
        (2, dict(source_kind=ast, q850=21, sip_code=403, sip_reason="Wrong Guess")),
        (1, dict(source_kind=fs, q850=16, pbx_cause="MEDIA_TIMEOUT", sip_code=200, answered=True)),
    ]
    out = []
    for n, (weight, kw) in enumerate(legs):
        for i in range(weight):
            out.append(HangupClues(source_name=f"pbx-{kw['source_kind']}", leg_id=f"{n}.{i}", **kw))
    return out


def run(seconds: float) -> None:
    translator = Translator.default()
    legs = mix()
    # Warm up (tables are compiled at load; this only fills caches of the interpreter).
    for c in legs:
        translator.texts(translator.explain(c), "en")

    def measure(fn) -> float:
        n, start = 0, time.perf_counter()
        deadline = start + seconds
        for c in itertools.cycle(legs):
            fn(c)
            n += 1
            if n % 1000 == 0 and time.perf_counter() >= deadline:
                break
        return n / (time.perf_counter() - start)

    baseline = measure(lambda c: None)
    explain = measure(translator.explain)
    full = measure(lambda c: translator.texts(translator.explain(c), "en"))
    print(f"legs in the mix: {len(legs)} (11 kinds; assumed weights: mostly answered calls, then failures)")
    print(f"baseline loop (no work):         {baseline:12,.0f} /s")
    print(f"explain (verdict only):          {explain:12,.0f} /s")
    print(f"explain + English texts:         {full:12,.0f} /s")
    print(f"per translation:                 {1e6 / full:12.2f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    run(parser.parse_args().seconds)
