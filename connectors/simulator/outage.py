"""A carrier outage for the simulator: calls over one gateway that start failing with 503s.

Built from two real FreeSWITCH captures (an answered call and a 503 with Reason Q.850 34),
re-timed to when each call happens, given fresh ids and the gateway name FreeSWITCH sets
when a call leaves through a gateway (`variable_sip_gateway_name`). The demo plays it live;
tests and the docs write it to a file for `callcause replay --alerts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from callcause.connectors.simulator.esl import (
    event_frame,
    event_frames,
    frame_body,
    load_capture,
    shift_times,
    with_fresh_ids,
)

CAPTURES = Path(__file__).parent / "captures"
ANSWERED = "esl-freeswitch-answered-remote-bye16.txt"
FAILED = "esl-freeswitch-sip503-reason-q850-34.txt"


def _retimed(frames: list[bytes], ended_at: float, gateway: str) -> list[bytes]:
    """Shift every time in the frames by one amount, so the call ends at `ended_at`; add the
    gateway."""
    stamp = re.search(rb"^Event-Date-Timestamp: (\d{16})$", frame_body(frames[-1]), re.M)
    assert stamp is not None, "a capture without Event-Date-Timestamp"
    shift_us = int(ended_at * 1_000_000) - int(stamp.group(1))
    out = []
    for frame in frames:
        body = shift_times(frame_body(frame), shift_us)
        if b"\nvariable_sip_gateway_name:" not in body:
            body = body.rstrip(b"\n") + f"\nvariable_sip_gateway_name: {gateway}\n".encode() + b"\n"
        out.append(event_frame(body))
    return out


def outage_call(ended_at: float, failing: bool, gateway: str = "carrier-b") -> list[bytes]:
    """The ESL frames of one call over `gateway` ending at `ended_at`: a 503 when `failing`."""
    frames = event_frames(load_capture(CAPTURES / (FAILED if failing else ANSWERED)))
    return _retimed(with_fresh_ids(frames), ended_at, gateway)


def outage(start: float, calls: int, spacing_s: float, fail_from: float, fail_to: float,
           gateway: str = "carrier-b") -> Iterator[list[bytes]]:
    """`calls` calls `spacing_s` apart from `start`; those in [fail_from, fail_to) of the run
    (fractions of it) fail with 503."""
    for i in range(calls):
        share = i / max(calls, 1)
        yield outage_call(start + i * spacing_s, fail_from <= share < fail_to, gateway)


def write_capture(path: str | Path, frames: Iterator[list[bytes]] | list[list[bytes]]) -> Path:
    """An ESL capture file `callcause replay` reads (the simulator's capture format)."""
    path = Path(path)
    with path.open("wb") as fh:
        fh.write(b"# source: callcause simulator outage scenario, built from the real captures "
                 + ANSWERED.encode() + b" and " + FAILED.encode() + b" (re-timed, fresh ids, gateway added)\n")
        for call in frames:
            for frame in call:
                fh.write(frame)
    return path
