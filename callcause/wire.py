"""Numbers and times read from a PBX's wire, read strictly: ASCII digits, sane ranges.

Python's own conversions are lenient in ways that a hostile or broken peer turns into
crashes or absurd records: `str.isdigit()` is true for `²` (which `int()` then refuses),
`int()` accepts `٣`, ` 12 `, `+5` and `1_000`, `float()` accepts `nan`, `inf` and `1e400`,
and a timestamp in the year 300000 gives a record no sink can write. Every number a source
copies from the wire into a record goes through here; anything else is "not given" (None).
"""

from __future__ import annotations

import math
import re

# Longer is never a PBX's counter or cause and would only cost int() time (or hit the
# interpreter's 4300-digit limit).
MAX_DIGITS = 18
_SURROGATE = re.compile("[\ud800-\udfff]")
_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?", re.ASCII)

# An event time outside these years is a broken clock or a mangled value: the receive time
# says more. Both bounds are far inside what a record's RFC 3339 time can render.
EPOCH_MIN = 946_684_800.0        # 2000-01-01T00:00:00Z
EPOCH_MAX = 4_102_444_800.0      # 2100-01-01T00:00:00Z
# A leg lasting longer than this is a mangled value, not a call.
MAX_DURATION_S = 366 * 86400.0


def ascii_digits(value: str) -> bool:
    """Only ASCII digits, at least one: `str.isdigit()` alone admits `²` (which `int()` and
    `float()` refuse) and `٣` (which they read as 3)."""
    return value.isdigit() and value.isascii()


def ascii_int(value: str | None) -> int | None:
    """`"486"` -> 486; None for anything but 1-18 ASCII digits (surrounding blanks allowed)."""
    if value is None:
        return None
    # `ascii_digits`, written out: the sources call this for several headers of every event
    if not (value.isdigit() and value.isascii()):   # blanks around it, or not a number at all
        value = value.strip()
        if not (value.isdigit() and value.isascii()):
            return None
    return int(value) if len(value) <= MAX_DIGITS else None


def ascii_decimal(value: str | None) -> float | None:
    """`"1733246400.123456"` -> float; None for signs, exponents, nan/inf and non-ASCII digits."""
    if value is None:
        return None
    value = value.strip()
    return float(value) if _DECIMAL.fullmatch(value) else None


def sane_epoch(value: float | None) -> bool:
    """Is this a plausible wall-clock time of a call (epoch seconds)?"""
    return value is not None and math.isfinite(value) and EPOCH_MIN <= value < EPOCH_MAX


def sane_duration(value: float | None) -> float | None:
    """A duration in seconds as given, or None when it cannot be one."""
    if value is None or not math.isfinite(value) or not 0.0 <= value <= MAX_DURATION_S:
        return None
    return value


def clean_text(value: str) -> str:
    """A string that can be written as UTF-8: lone surrogates (which a JSON `\\ud800` escape
    produces) become U+FFFD instead of failing every sink that encodes the record."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value
