"""The little a trunk figure needs from one record, read from a `CauseRecord` or its JSON.

The daemon hands over live records; a report reads JSON Lines files. Both become the same
`Leg`, so every figure is computed by one piece of code whichever way the records came.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from callcause.record import CauseRecord

OTHER = "other"          # the group beyond the cap, and any part of a key that is unknown
NO_TRUNK = "-"           # legs whose PBX named no trunk or gateway


class GroupKey(NamedTuple):
    source: str
    trunk: str
    direction: str
    destination: str = ""    # "" unless destination groups are configured

    def label(self) -> str:
        parts = [self.source, self.trunk, self.direction] + ([self.destination] if self.destination else [])
        return "/".join(parts)


class Cause(NamedTuple):
    """What a top-cause line is counted by."""

    sip: int | None
    q850: int | None
    category: str


class Leg(NamedTuple):
    time: float                  # epoch seconds of the hangup
    source: str
    trunk: str
    direction: str
    category: str
    answered: bool
    sip: int | None
    q850: int | None
    duration_s: float | None     # talk time of an answered leg (billsec when the PBX tells it)
    pdd_s: float | None
    to: str | None               # called number, for destination groups

    @property
    def cause(self) -> Cause:
        return Cause(self.sip, self.q850, self.category)


def talk_time(answered: bool, billsec: Any, duration: Any) -> float | None:
    if not answered:
        return None
    value = billsec if isinstance(billsec, int | float) else duration
    return float(value) if isinstance(value, int | float) else None


def leg_from_record(record: CauseRecord) -> Leg | None:
    """The leg of a live record; None for a PBX-internal connector leg (it tried no trunk)."""
    c = record.clues
    if c.internal:
        return None
    e = record.explanation
    category = e.category
    answered = bool(c.answered) or category == "answered"
    sip, q850 = e.sip, e.q850
    return Leg(c.ended_at, c.source_name, c.trunk or NO_TRUNK, c.direction or "unknown", category, answered,
               sip["code"] if sip else None, q850["cause"] if q850 else None,
               talk_time(answered, c.billsec_s, c.duration_s) if answered else None, c.pdd_s, c.to_number)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def leg_from_document(doc: dict[str, Any]) -> Leg | None:
    """The leg of a record's JSON document (a JSON Lines file, a webhook body's `data`); None for
    internal legs and for documents that are not `call.hangup` records."""
    if doc.get("type") != "call.hangup":
        return None
    call = doc.get("call") or {}
    if call.get("internal"):
        return None
    cause = doc.get("cause") or {}
    category = cause.get("category") or "unknown"
    answered = bool(call.get("answered")) or category == "answered"
    sip = (doc.get("sip") or {}).get("code")
    q850 = (doc.get("q850") or {}).get("cause")
    pdd = call.get("pdd_s")
    return Leg(parse_time(doc["time"]), (doc.get("source") or {}).get("name") or OTHER,
               call.get("trunk") or NO_TRUNK, call.get("direction") or "unknown", category, answered,
               sip if isinstance(sip, int) else None, q850 if isinstance(q850, int) else None,
               talk_time(answered, call.get("billsec_s"), call.get("duration_s")),
               float(pdd) if isinstance(pdd, int | float) else None, call.get("to"))
