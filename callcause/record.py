"""The record of one ended call leg, and the clues a source gathers to build it.

Sources fill a `HangupClues`; the translator (`callcause.mapping.translator`) turns the
clues into an `Explanation`; `CauseRecord` joins both and renders the JSON document of
design.md section 4, in the language a sink asks for.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

SourceKind = Literal["asterisk", "freeswitch"]
HangupSource = Literal["caller", "callee", "pbx", "unknown"]

CATEGORIES = (
    "answered", "cancelled", "busy", "no_answer", "rejected", "not_found", "unavailable",
    "congestion", "network", "auth", "config", "media", "billing", "policy", "protocol",
    "system", "transfer", "unknown",
)
SEVERITIES = ("info", "warning", "error")
FAULTS = ("none", "caller", "callee", "local", "carrier", "unknown")
HANGUP_SOURCES = ("caller", "callee", "pbx", "unknown")
RECORD_TYPE = "call.hangup"


@dataclass(slots=True)
class ReasonHeader:
    """One value of an RFC 3326 Reason header (`Q.850;cause=34;text="..."`)."""

    protocol: str                 # "Q.850" or "SIP" (as written, case kept)
    cause: int
    text: str | None = None
    location: str | None = None   # RFC 8606 `location=` (e.g. "LN"), Q.850 only
    # True when the PBX did not hand over the header but its own numbers prove one was there
    # (FreeSWITCH: a Q.850 cause that its SIP -> Q.850 map cannot give for the SIP code).
    inferred: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol, "cause": self.cause, "text": self.text}
        if self.location is not None:
            out["location"] = self.location
        if self.inferred:
            out["inferred"] = True
        return out


@dataclass(slots=True)
class HangupClues:
    """Everything a source learned about one ended call leg, before any interpretation.

    Sources fill what their PBX told them and leave the rest `None`; the translator
    decides which clue wins. Values are as the PBX sent them (decoded, not mapped).
    """

    source_name: str
    source_kind: SourceKind
    leg_id: str                                  # Asterisk Uniqueid / FreeSWITCH Unique-ID
    call_id: str | None = None                   # Linkedid / Other-Leg-Unique-ID grouping
    sip_call_id: str | None = None
    channel: str | None = None
    direction: str | None = None                 # "inbound" | "outbound" (seen from the PBX)
    from_number: str | None = None
    to_number: str | None = None
    answered: bool | None = None
    duration_s: float | None = None
    billsec_s: float | None = None
    pdd_s: float | None = None                   # post-dial delay: attempt to first ringing/progress
    trunk: str | None = None                     # endpoint / gateway name
    internal: bool = False                       # Local/;1;2 or loopback connector leg
    # What the PBX said about the end of the leg:
    sip_code: int | None = None                  # final SIP response code that ended it
    sip_reason: str | None = None                # its reason phrase, as sent
    reason_headers: list[ReasonHeader] = field(default_factory=list)
    q850: int | None = None                      # the Q.850 cause number the PBX reported
    pbx_cause: str | None = None                 # FreeSWITCH Hangup-Cause / Asterisk Cause-txt
    pbx_cause_code: int | None = None            # FreeSWITCH cause number / Asterisk Cause
    dial_status: str | None = None               # Asterisk DIALSTATUS / FreeSWITCH originate_disposition
    disposition: str | None = None               # FreeSWITCH sip_hangup_disposition
    hangup_source: HangupSource | None = None    # who ended it, when the source can tell
    trunk_scope: str | None = None               # trunk used for scoping overrides (defaults to trunk)
    ended_at: float = field(default_factory=time.time)    # epoch seconds of the hangup event
    received_at: float = field(default_factory=time.monotonic)  # for event-to-record latency
    source_version: str | None = None
    incomplete: bool = False                     # clues were lost (reconnect, eviction)
    extra: dict[str, str] = field(default_factory=dict)   # raw fields worth keeping


def record_id(source_name: str, leg_id: str) -> str:
    """A stable id for a leg: the same source and PBX unique id always give the same id.

    It is the webhook idempotency key, so a replayed or re-sent record is recognisable.
    """
    digest = hashlib.sha256(f"{source_name}\x00{leg_id}".encode()).digest()
    # base32 of the first 16 bytes without padding (what base64.b32encode gives, in a third of
    # its time): 128 bits and 2 zero bits are 13 groups of 10 bits, two letters each
    n = int.from_bytes(digest[:16], "big") << 2
    return "cc_" + "".join([_B32_PAIRS[(n >> shift) & 1023] for shift in _B32_SHIFTS])


_B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32_ALPHABET for b in _B32_ALPHABET]
_B32_SHIFTS = range(120, -1, -10)
_SECONDS: dict[int, str] = {}     # whole second -> its RFC 3339 text; records come in time order


def iso_time(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds, as in the record example (`...T16:30:02.123Z`).

    The same as `datetime.fromtimestamp(epoch, UTC)` formatted, whose microseconds are the
    fraction rounded half to even; the text of the whole second is remembered, since a busy
    PBX ends many legs in each."""
    frac, whole = math.modf(epoch)
    micro = round(frac * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    second = int(whole)
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        text = _SECONDS[second] = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{text}{micro // 1000:03d}Z"


@dataclass(slots=True, frozen=True)
class Texts:
    """The three texts of one explanation in one language."""

    lang: str
    summary: str
    detail: str
    advice: str


@dataclass(slots=True)
class Explanation:
    """What the translator concluded for one leg; language-neutral.

    `text_keys` lists locale keys from most to least specific (e.g. `phrase.no_money_left`,
    `sip.480`); the locale layer uses the first one it has texts for.
    """

    category: str
    severity: str
    retryable: bool
    fault: str
    hangup_source: str
    rule: str
    collapsed: bool
    text_keys: tuple[str, ...]
    sip: dict[str, Any] | None = None
    q850: dict[str, Any] | None = None
    pbx: dict[str, Any] | None = None
    dss1: dict[str, Any] | None = None
    dialects: dict[str, Any] | None = None
    text_overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # lang -> field -> text
    # clues that pointed elsewhere and lost to `rule`: [{"clue": "sip/486", "by": "reason/q850/21"}]
    overruled: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class CauseRecord:
    """One record per ended call leg: the clues joined with their explanation.

    `texts_for` is the translator's text lookup (overrides included), so each sink can
    render the record in its own language with `document(lang)`.
    """

    clues: HangupClues
    explanation: Explanation
    texts_for: Callable[[Explanation, str], Texts]
    id: str = ""
    instance: str | None = None        # the daemon that wrote it (config `instance`)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = record_id(self.clues.source_name, self.clues.leg_id)

    @property
    def category(self) -> str:
        return self.explanation.category

    @property
    def severity(self) -> str:
        return self.explanation.severity

    def document(self, lang: str) -> dict[str, Any]:
        """The JSON document of design.md section 4, with texts in one language."""
        return self.as_dict(self.texts_for(self.explanation, lang))

    def as_dict(self, texts: Texts) -> dict[str, Any]:
        c, e = self.clues, self.explanation
        return {
            "id": self.id,
            "type": RECORD_TYPE,
            "time": iso_time(c.ended_at),
            "instance": self.instance,
            "source": {"name": c.source_name, "kind": c.source_kind, "version": c.source_version},
            "call": {
                "leg_id": c.leg_id, "call_id": c.call_id, "sip_call_id": c.sip_call_id,
                "channel": c.channel, "direction": c.direction,
                "from": c.from_number, "to": c.to_number,
                "answered": c.answered, "duration_s": c.duration_s, "billsec_s": c.billsec_s,
                "pdd_s": c.pdd_s, "trunk": c.trunk, "internal": c.internal,
            },
            "cause": {
                "category": e.category, "severity": e.severity, "retryable": e.retryable,
                "hangup_source": e.hangup_source, "fault": e.fault,
                "lang": texts.lang, "summary": texts.summary, "detail": texts.detail,
                "advice": texts.advice,
            },
            "sip": e.sip,
            "q850": e.q850,
            "pbx": e.pbx,
            "reason_headers": [r.as_dict() for r in c.reason_headers],
            "collapsed": e.collapsed,
            "incomplete": c.incomplete,
            "rule": e.rule,
            "overruled": e.overruled,
        }
