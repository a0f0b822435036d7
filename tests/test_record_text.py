"""A record's id and time text, computed by hand for speed, equal what the standard library gives."""

from __future__ import annotations

import base64
import hashlib
import random
from datetime import UTC, datetime

from callcause.record import iso_time, record_id


def slow_iso(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def slow_id(source: str, leg: str) -> str:
    digest = hashlib.sha256(f"{source}\x00{leg}".encode()).digest()
    return "cc_" + base64.b32encode(digest[:16]).decode().rstrip("=")


def test_iso_time_equals_datetime_formatting() -> None:
    rnd = random.Random(3)
    samples = [1_733_246_400.0, 1_733_246_400.9995, 1_733_246_400.9999995, 1_733_246_400.0000005,
               1_733_246_400.4995, 946_684_800.0, 4_102_444_799.999, 0.0, -1.5, -0.0000004, 1e-7]
    samples += [rnd.uniform(946_684_800, 4_102_444_800) for _ in range(20_000)]
    samples += [round(rnd.uniform(1.7e9, 1.8e9), 6) for _ in range(20_000)]   # microsecond stamps
    samples += [int(rnd.uniform(1.7e9, 1.8e9)) + k / 2000 for k in range(2000)]   # half milliseconds
    for epoch in samples:
        assert iso_time(epoch) == slow_iso(epoch), epoch


def test_record_id_equals_base32_of_the_digest() -> None:
    rnd = random.Random(5)
    for i in range(5_000):
        source = rnd.choice(["pbx-1", "fs", "ästerisk", ""])
        leg = f"{rnd.getrandbits(128):032x}" if i % 2 else str(i)
        assert record_id(source, leg) == slow_id(source, leg)
