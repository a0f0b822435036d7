"""The FreeSWITCH source: one `HangupClues` per ended call leg, read over the event socket (ESL).

Records come from CHANNEL_HANGUP_COMPLETE, the event whose channel variables are final. The
greenswitch connection runs in the ESL thread (`client.EslSession`, one gevent hub for all
FreeSWITCH sources); events cross to the asyncio loop through a bounded hand-off, and
everything that keeps state across events (de-duplication, loopback legs, CHANNEL_HANGUP
fallback) runs on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent

from callcause import metrics
from callcause.config import Secret, Section
from callcause.connectors.freeswitch import client
from callcause.connectors.freeswitch.client import (
    MAX_FRAME_BYTES,
    EslFrame,
    EslSession,
    SessionResult,
    SessionSettings,
)
from callcause.connectors.freeswitch.headers import HeaderPicker
from callcause.mapping.notation import parse_reason_header
from callcause.mapping.tables import builtin_dispositions, builtin_tables
from callcause.pipeline import Source
from callcause.problems import ProblemLog
from callcause.record import HangupClues, ReasonHeader
from callcause.wire import ascii_int, clean_text, sane_duration, sane_epoch

log = logging.getLogger("callcause.esl")

COMPLETE = "CHANNEL_HANGUP_COMPLETE"
HANGUP = "CHANNEL_HANGUP"
HEARTBEAT = "HEARTBEAT"


# --- Configuration ----------------------------------------------------------------------------

@dataclass(slots=True)
class EslConfig:
    """One `kind: freeswitch` entry of `sources:` (design.md section 6 plus tuning knobs)."""

    name: str
    host: str = "127.0.0.1"
    port: int = 8021
    password: Secret = field(default_factory=lambda: Secret("ClueCon"))
    filters: tuple[str, ...] = ()          # extra ESL `filter` lines, e.g. "Caller-Context default"
    timeout: float = 5.0                   # connect and command timeout, seconds
    heartbeat_timeout: float = 30.0        # silence before probing with `api status`
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    handoff_size: int = 1000               # events in flight between the ESL thread and the loop
    handoff_bytes: int = 8 * 1024 * 1024   # ... and their size as received, whichever is reached first
    max_event_bytes: int = MAX_FRAME_BYTES  # a larger frame is skipped up to the next frame
    hangup_fallback: bool = True           # also subscribe CHANNEL_HANGUP, used if COMPLETE never comes
    complete_wait: float = 30.0            # how long a CHANNEL_HANGUP waits for its COMPLETE
    internal_leg_wait: float = 5.0         # how long a loopback leg waits for a real leg of its call
    kind: str = "freeswitch"

    def events(self) -> tuple[str, ...]:
        return (COMPLETE, HANGUP, HEARTBEAT) if self.hangup_fallback else (COMPLETE, HEARTBEAT)

    def all_filters(self) -> tuple[str, ...]:
        if not self.filters:
            return ()
        # once one filter is set FreeSWITCH passes only matching events: keep the ones we live on
        keep = tuple(f"Event-Name {name}" for name in (HEARTBEAT,))
        return self.filters + keep


def parse_config(sec: Section) -> EslConfig:
    """Read one FreeSWITCH source from the config; errors name file, line and key."""
    name = sec.str("name")
    cfg = EslConfig(name=name)
    cfg.host = sec.str("host", "127.0.0.1")
    cfg.port = sec.int("port", 8021, min=1, max=65535)
    cfg.password = sec.secret("password")
    filters = sec.str_list("filter", [])
    for spec in filters:
        if len(spec.split(None, 1)) != 2:
            raise sec.error("filter", f"filter {spec!r} needs a header name and a value",
                            fix="write e.g. `filter: [\"Caller-Context default\"]`")
    cfg.filters = tuple(filters)
    cfg.timeout = sec.float("timeout", 5.0, min=0.1)
    cfg.heartbeat_timeout = sec.float("heartbeat_timeout", 30.0, min=0.1)
    cfg.reconnect_min = sec.float("reconnect_min", 0.5, min=0.01)
    cfg.reconnect_max = sec.float("reconnect_max", 30.0, min=0.01)
    if cfg.reconnect_max < cfg.reconnect_min:
        raise sec.error("reconnect_max", "reconnect_max is smaller than reconnect_min",
                        fix="make reconnect_max at least reconnect_min")
    cfg.handoff_size = sec.int("handoff_size", 1000, min=1)
    cfg.handoff_bytes = sec.int("handoff_bytes", 8 * 1024 * 1024, min=4096)
    sec.int("backlog", 0, min=0)   # no longer used (nothing waits between reading and converting)
    cfg.max_event_bytes = sec.int("max_event_bytes", MAX_FRAME_BYTES, min=4096)
    cfg.hangup_fallback = sec.bool("hangup_fallback", True)
    cfg.complete_wait = sec.float("complete_wait", 30.0, min=0.01)
    cfg.internal_leg_wait = sec.float("internal_leg_wait", 5.0, min=0.0)
    return cfg


def build(cfg: EslConfig, config: Any = None) -> EslSource:
    """The daemon's factory: one source per `kind: freeswitch` entry."""
    return EslSource(cfg, record_internal_legs=bool(getattr(config, "record_internal_legs", False)))


# --- From event headers to clues -------------------------------------------------------------

# Who ended the leg, from `sip_hangup_disposition` and the leg's Call-Direction: data, with its
# sources, in mapping/tables/freeswitch_disposition.yaml.
_DISPOSITIONS = builtin_dispositions()
HANGUP_SOURCE = _DISPOSITIONS.by_disposition
_CAUSE_ONLY_SOURCE = _DISPOSITIONS.without_disposition


def hangup_source(disposition: str | None, direction: str | None, cause: str | None,
                  relayed_sip: bool = False, response: int | None = None) -> str | None:
    """Who ended the leg: caller, callee, pbx, unknown; None when the event does not say.

    `response` is a final response (>= 300) the leg received (`sip_term_status`): it speaks
    for the far end when FreeSWITCH set no disposition (a 401/407 it could not answer).
    """
    if disposition:
        who = HANGUP_SOURCE.get((disposition, (direction or "").lower()))
        if who is None:
            return "unknown"
        if disposition == "send_cancel" and cause == "ORIGINATOR_CANCEL":
            return "caller"
        if disposition == "send_refuse" and relayed_sip:
            return "callee"
        return who
    if response is not None and response >= 300:
        who = _DISPOSITIONS.response_without_disposition.get((direction or "").lower())
        if who is not None:
            return who
    return _CAUSE_ONLY_SOURCE.get(cause or "")


def _value(h: Mapping[str, str], key: str) -> str | None:
    value = h.get(key)
    if value is None or value == "" or value == "_undef_":
        return None
    return value


def _int(h: Mapping[str, str], key: str) -> int | None:
    return ascii_int(h.get(key))


def _sip_status(text: str | None) -> int | None:
    """`sip:486` (proto_specific_hangup_cause) -> 486."""
    if text and text.lower().startswith("sip:"):
        return ascii_int(text[4:])
    return None


def _seconds(h: Mapping[str, str], msec_key: str, sec_key: str) -> float | None:
    ms = _int(h, msec_key)
    if ms is not None:
        return sane_duration(ms / 1000.0)
    s = _int(h, sec_key)
    return sane_duration(float(s)) if s is not None else None


def _event_time(h: Mapping[str, str], problems: list[str]) -> float:
    """Epoch seconds of the event (`Event-Date-Timestamp`, microseconds); the receive time
    when it is missing, or not a plausible time (a record must stay writable)."""
    stamp = _int(h, "Event-Date-Timestamp")
    if stamp is not None and sane_epoch(stamp / 1_000_000):
        return stamp / 1_000_000
    if _value(h, "Event-Date-Timestamp") is not None:
        problems.append("bad_event_time")
    return time.time()


def _relayed_failure(h: Mapping[str, str]) -> int | None:
    """The other leg's failure code copied onto this leg (switch_channel.c, partner variables).

    Only a failure (>= 300) says why this leg ended; a relayed 200 is the other leg's BYE
    transaction, and this leg's own status says more.
    """
    status = _sip_status(_value(h, "variable_last_bridge_proto_specific_hangup_cause"))
    return status if status is not None and status >= 300 else None


def sip_code_and_reason(h: Mapping[str, str], disposition: str | None) -> tuple[int | None, str | None]:
    """The SIP status that ended the leg, most reliable first (FreeSWITCH notes, "What SIP code").

    A `send_cancel` leg carries 487/CANCEL that FreeSWITCH wrote about its own CANCEL: no
    answer of the far end ended it, so no SIP code is reported and the cause name decides
    (NO_ANSWER, ORIGINATOR_CANCEL, LOSE_RACE ...).
    """
    if disposition == "send_cancel":
        return None, None
    status = _int(h, "variable_sip_invite_failure_status")
    if status:
        return status, _value(h, "variable_sip_invite_failure_phrase")
    status = _relayed_failure(h)
    if status:
        return status, _value(h, "variable_sip_hangup_phrase")
    status = _int(h, "variable_sip_term_status")
    if status:
        return status, None
    status = _sip_status(_value(h, "variable_proto_specific_hangup_cause"))
    return (status, None) if status else (None, None)


def parse_reason_values(text: str) -> list[ReasonHeader]:
    """RFC 3326 Reason values (`Q.850;cause=17;text="USER_BUSY", SIP;cause=200`); a malformed
    value costs only itself, the well-formed ones are kept."""
    return parse_reason_header(text, lenient=True)


def _cause_number(name: str | None, q850: int | None) -> int | None:
    """FreeSWITCH's number for its cause name (current numbering), from the cause tables."""
    if name:
        number = builtin_tables().fs_names.get(name.upper())
        if number is not None:
            return number
    # an unknown name: its Q.850 value is its number, unless FreeSWITCH collapsed it to 16
    return q850 if q850 is not None and q850 != 16 else None


def _pdd(h: Mapping[str, str]) -> float | None:
    """Post-dial delay: from the channel's creation to its first progress (180 or 183), in
    seconds; None when the leg never saw progress (FreeSWITCH writes 0 then)."""
    start = _int(h, "variable_start_uepoch") or _int(h, "Caller-Channel-Created-Time")
    marks = [v for k in ("variable_progress_uepoch", "variable_progress_media_uepoch",
                         "Caller-Channel-Progress-Time", "Caller-Channel-Progress-Media-Time")
             if (v := _int(h, k))]
    if not start or not marks or min(marks) < start:
        return None
    return round((min(marks) - start) / 1_000_000, 3)


def inferred_reason(h: Mapping[str, str], version: str | None) -> ReasonHeader | None:
    """The Q.850 value of a Reason header FreeSWITCH honoured but did not hand over.

    On a final response FreeSWITCH writes `sip_term_status` (the code) and `sip_term_cause`: the
    Q.850 value of a received `Reason: Q.850;cause=N`, else its own map of the code (sofia.c,
    nua_callstate_terminated). A cause that map cannot give for that code (in the map of this
    FreeSWITCH version) therefore came from a Reason header. Cause 96 is left alone: FreeSWITCH
    sets it itself on a 488 and on hibernating channels.
    """
    status = _int(h, "variable_sip_term_status")
    cause = _int(h, "variable_sip_term_cause")
    if status is None or cause is None or cause == 96:
        return None
    n = builtin_tables().reason_behind("freeswitch", version, status, cause)
    return ReasonHeader("Q.850", n, None, inferred=True) if n is not None else None


# Every event header the source reads (clues_from_event and _on_event): the reader cuts only
# these out of an event (headers.HeaderPicker). A test reads the fixtures, and an empty event,
# through a mapping that records each key clues_from_event asks for, so a header read there but
# missing from this list fails the suite.
READ_HEADERS = (
    "Event-Name", "Event-Date-Timestamp", "Event-Sequence", "Core-UUID", "FreeSWITCH-Version",
    "Unique-ID", "Caller-Unique-ID", "Other-Leg-Unique-ID", "Channel-Call-UUID", "Channel-Name",
    "Hangup-Cause", "Call-Direction", "Caller-Direction", "Presence-Call-Direction",
    "Caller-Caller-ID-Number", "Caller-Destination-Number", "Caller-Channel-Answered-Time",
    "Caller-Channel-Created-Time", "Caller-Channel-Progress-Time", "Caller-Channel-Progress-Media-Time",
    "variable_uuid", "variable_call_uuid", "variable_other_loopback_leg_uuid", "variable_signal_bond",
    "variable_bridge_uuid", "variable_loopback_leg", "variable_direction", "variable_hangup_cause",
    "variable_hangup_cause_q850", "variable_last_bridge_hangup_cause",
    "variable_last_bridge_proto_specific_hangup_cause", "variable_proto_specific_hangup_cause",
    "variable_sip_hangup_disposition", "variable_sip_hangup_phrase", "variable_sip_invite_failure_status",
    "variable_sip_invite_failure_phrase", "variable_sip_term_status", "variable_sip_term_cause",
    "variable_sip_reason", "variable_sip_call_id", "variable_sip_gateway_name", "variable_sip_gateway",
    "variable_endpoint_disposition", "variable_originate_disposition", "variable_DIALSTATUS",
    "variable_answer_epoch", "variable_start_uepoch", "variable_progress_uepoch",
    "variable_progress_media_uepoch", "variable_duration", "variable_mduration", "variable_billsec",
    "variable_billmsec",
)

_LINK_KEYS = ("Unique-ID", "variable_call_uuid", "Channel-Call-UUID", "Other-Leg-Unique-ID",
              "variable_other_loopback_leg_uuid", "variable_signal_bond", "variable_bridge_uuid")


def clues_from_event(h: Mapping[str, str], source_name: str, *, version: str | None = None,
                     received_at: float | None = None) -> tuple[HangupClues, frozenset[str], list[str]]:
    """Clues of one leg from a CHANNEL_HANGUP(_COMPLETE) event, plus the ids that link it to
    the other legs of its call and the kinds of problems met (missing ids or cause)."""
    problems: list[str] = []
    leg_id = _value(h, "Unique-ID") or _value(h, "Caller-Unique-ID") or _value(h, "variable_uuid")
    incomplete = False
    if leg_id is None:
        problems.append("missing_unique_id")
        incomplete = True
        # stable for the same event: a re-sent event gets the same record id
        leg_id = f"{_value(h, 'Core-UUID') or 'unknown-core'}/{_value(h, 'Event-Sequence') or '0'}"
    cause = _value(h, "Hangup-Cause") or _value(h, "variable_hangup_cause")
    if cause is None:
        problems.append("missing_hangup_cause")
        incomplete = True
    q850 = _int(h, "variable_hangup_cause_q850")
    disposition = _value(h, "variable_sip_hangup_disposition")
    direction = (_value(h, "Call-Direction") or _value(h, "Caller-Direction")
                 or _value(h, "variable_direction") or _value(h, "Presence-Call-Direction"))
    sip_code, sip_reason = sip_code_and_reason(h, disposition)
    relayed = _relayed_failure(h) is not None
    channel = _value(h, "Channel-Name")
    internal = bool(channel and channel.startswith("loopback/")) or "variable_loopback_leg" in h
    answered_time = _value(h, "Caller-Channel-Answered-Time")
    answer_epoch = _value(h, "variable_answer_epoch")
    answered = (answered_time != "0") if answered_time is not None else (
        (answer_epoch != "0") if answer_epoch is not None else None)
    reason_text = _value(h, "variable_sip_reason")
    reasons = parse_reason_values(reason_text) if reason_text else []
    if not any(r.protocol.upper() == "Q.850" for r in reasons):
        guess = inferred_reason(h, version)
        if guess is not None:
            reasons.append(guess)
    clues = HangupClues(
        source_name=source_name,
        source_kind="freeswitch",
        leg_id=leg_id,
        # variable_call_uuid: FreeSWITCH gives every leg it originates the uuid of the leg
        # that originated it, so all legs of a bridged call share it from their first event.
        call_id=(_value(h, "variable_call_uuid") or _value(h, "Channel-Call-UUID")
                 or _value(h, "Other-Leg-Unique-ID") or leg_id),
        sip_call_id=_value(h, "variable_sip_call_id"),
        channel=channel,
        direction=direction,
        from_number=_value(h, "Caller-Caller-ID-Number"),
        to_number=_value(h, "Caller-Destination-Number"),
        answered=answered,
        duration_s=_seconds(h, "variable_mduration", "variable_duration"),
        billsec_s=_seconds(h, "variable_billmsec", "variable_billsec"),
        pdd_s=_pdd(h),
        trunk=_value(h, "variable_sip_gateway_name") or _value(h, "variable_sip_gateway"),
        internal=internal,
        sip_code=sip_code,
        sip_reason=sip_reason,
        reason_headers=reasons,
        q850=q850,
        pbx_cause=cause,
        pbx_cause_code=_cause_number(cause, q850),
        dial_status=_value(h, "variable_originate_disposition") or _value(h, "variable_DIALSTATUS"),
        disposition=disposition,
        hangup_source=hangup_source(disposition, direction, cause, relayed,  # type: ignore[arg-type]
                                    _int(h, "variable_sip_term_status")),
        ended_at=_event_time(h, problems),
        received_at=received_at if received_at is not None else time.monotonic(),
        source_version=version,
        incomplete=incomplete,
    )
    extra: dict[str, str] = {}
    for key, name in (("Core-UUID", "core_uuid"), ("Other-Leg-Unique-ID", "other_leg_unique_id"),
                      ("variable_sip_term_status", "sip_term_status"),
                      ("variable_sip_term_cause", "sip_term_cause"),
                      ("variable_sip_invite_failure_status", "sip_invite_failure_status"),
                      ("variable_last_bridge_hangup_cause", "last_bridge_hangup_cause"),
                      ("variable_endpoint_disposition", "endpoint_disposition"),
                      ("Event-Name", "event")):
        value = _value(h, key)
        if value is not None:
            extra[name] = value
    clues.extra = extra
    if not getattr(h, "encoded", True):
        _clean_strings(clues)   # event-json: JSON escapes can carry lone surrogates
    links = frozenset(v for k in _LINK_KEYS if (v := _value(h, k)) is not None) | {leg_id}
    return clues, links, problems


def _clean_strings(clues: HangupClues) -> None:
    for f in dataclasses.fields(clues):
        value = getattr(clues, f.name)
        if isinstance(value, str):
            setattr(clues, f.name, clean_text(value))
    clues.extra = {k: clean_text(v) for k, v in clues.extra.items()}
    for reason in clues.reason_headers:
        reason.protocol = clean_text(reason.protocol)
        reason.text = clean_text(reason.text) if reason.text is not None else None
        reason.location = clean_text(reason.location) if reason.location is not None else None


# --- Thread -> loop hand-off ------------------------------------------------------------------

class Handoff:
    """A queue from the ESL thread to the asyncio loop, bounded in items and in bytes.

    The ESL side appends without waking the loop; `wake()` wakes it (`call_soon_threadsafe`,
    only if it is not already draining) once the reader has cut every frame out of what it
    received and is about to wait for more. A `recv` of many events thus costs one wake-up, not
    one per event: per event, a wake-up (a write to the loop's pipe, the loop thread taking the
    GIL from the reader) cost about as much as converting the event. An item's size is that of the
    event it came from, as received. When either bound is reached the ESL side counts the
    overflow and waits cooperatively (gevent.sleep); its reader waits with it, so FreeSWITCH's
    further events stay in the kernel's socket buffers (TCP back-pressure) and nothing is
    dropped. An item larger than the byte bound still passes when the queue is empty.
    """

    MAX_BATCH = 256   # items per loop callback, so one burst cannot stall the loop

    def __init__(self, loop: asyncio.AbstractEventLoop, consumer: Callable[[Any], None], maxsize: int,
                 on_overflow: Callable[[], None], maxbytes: int = 8 * 1024 * 1024) -> None:
        self.loop = loop
        self.consumer = consumer
        self.maxsize = maxsize
        self.maxbytes = maxbytes
        self.on_overflow = on_overflow
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._scheduled = False
        self.closed = False
        self.overflows = 0
        self.peak_bytes = 0

    def put(self, item: Any, size: int = 0) -> bool:
        """From the ESL thread (inside a greenlet); the loop sees the item after the next
        `wake()`. False only if the loop is gone."""
        waited = False
        while True:
            with self._lock:
                if not self._items or (len(self._items) < self.maxsize and self._bytes + size <= self.maxbytes):
                    self._items.append((item, size))
                    self._bytes += size
                    self.peak_bytes = max(self.peak_bytes, self._bytes)
                    return True
            if self.closed or self.loop.is_closed() or not self.wake():
                return False
            if not waited:
                waited = True
                self.overflows += 1
                self.on_overflow()
            gevent.sleep(0.001)

    def wake(self) -> bool:
        """From the ESL thread: have the loop take what is queued. False if the loop is gone."""
        with self._lock:
            if self._scheduled or not self._items:
                return True
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:   # the loop is closed
            return False
        return True

    def _take(self) -> Any:
        item, size = self._items.popleft()
        self._bytes -= size
        return item

    def _drain(self) -> None:
        # one lock for the whole batch: a lock the ESL thread holds at that moment makes the loop
        # thread wait, letting go of the GIL, a thread switch per item
        with self._lock:
            batch = [self._take() for _ in range(min(len(self._items), self.MAX_BATCH))]
            more = bool(self._items)
            if not more:
                self._scheduled = False
        for item in batch:
            self.consumer(item)
        if more:
            self.loop.call_soon(self._drain)

    def drain_now(self) -> None:
        """On the loop: consume everything queued (before a flush or at shutdown)."""
        while True:
            with self._lock:
                if not self._items:
                    return
                item = self._take()
            self.consumer(item)


# --- Per-leg state on the loop ----------------------------------------------------------------

@dataclass(slots=True)
class _Held:
    clues: HangupClues
    links: frozenset[str]
    deadline: float


class LegTracker:
    """Turns hangup events into exactly one emitted record per leg.

    * A leg is emitted once (de-duplicated by Unique-ID), from CHANNEL_HANGUP_COMPLETE.
    * A CHANNEL_HANGUP is held; if its COMPLETE never comes (lost on a reconnect, or a
      FreeSWITCH that skips it) the held clues are emitted marked incomplete.
    * A loopback (internal) leg is held until its call shows a real leg, then dropped; if no
      real leg shows within `internal_wait`, it is emitted marked internal.
    """

    def __init__(self, emit: Callable[[HangupClues], None], *, record_internal_legs: bool,
                 complete_wait: float, internal_wait: float, remember: int = 200_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit
        self.record_internal_legs = record_internal_legs
        self.complete_wait = complete_wait
        self.internal_wait = internal_wait
        self.remember = remember
        self.clock = clock
        self.done: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.hangups: dict[str, _Held] = {}
        self.internal: list[_Held] = []
        self.real_ids: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.duplicates = 0
        self.suppressed_internal = 0

    def _mark_done(self, leg_id: str) -> None:
        self.done[leg_id] = None
        if len(self.done) > self.remember:
            self.done.popitem(last=False)

    def complete(self, clues: HangupClues, links: frozenset[str]) -> bool:
        """A CHANNEL_HANGUP_COMPLETE; False if the leg was already recorded."""
        if clues.leg_id in self.done:
            self.duplicates += 1
            return False
        self.hangups.pop(clues.leg_id, None)
        self._route(clues, links)
        return True

    def hangup(self, clues: HangupClues, links: frozenset[str]) -> None:
        """A CHANNEL_HANGUP: wait for the COMPLETE of the same leg."""
        if clues.leg_id in self.done or clues.leg_id in self.hangups:
            return
        self.hangups[clues.leg_id] = _Held(clues, links, self.clock() + self.complete_wait)

    def _route(self, clues: HangupClues, links: frozenset[str]) -> None:
        if not clues.internal or self.record_internal_legs:
            self._emit(clues)
            if not clues.internal:
                self._real_leg(links)
            return
        if any(i in self.real_ids for i in links):
            self._suppress(clues.leg_id, links)
            return
        self.internal.append(_Held(clues, links, self.clock() + self.internal_wait))

    def _emit(self, clues: HangupClues) -> None:
        self._mark_done(clues.leg_id)
        self.emit(clues)

    def _suppress(self, leg_id: str, links: frozenset[str]) -> None:
        self._mark_done(leg_id)
        self.suppressed_internal += 1
        self._remember_real(links)

    def _remember_real(self, links: frozenset[str]) -> None:
        expiry = self.clock() + max(60.0, 4 * self.internal_wait)
        for i in links:
            self.real_ids[i] = expiry
            self.real_ids.move_to_end(i)
        while len(self.real_ids) > self.remember:
            self.real_ids.popitem(last=False)

    def _real_leg(self, links: frozenset[str]) -> None:
        self._remember_real(links)
        if not self.internal:
            return
        # held loopback legs linked to this call (directly or through each other) are halves
        # of a connector inside a call that left the PBX: drop them
        changed = True
        while changed:
            changed = False
            for held in list(self.internal):
                if any(i in self.real_ids for i in held.links):
                    self.internal.remove(held)
                    self._suppress(held.clues.leg_id, held.links)
                    changed = True

    def sweep(self) -> None:
        """Emit what waited long enough (call it periodically on the loop)."""
        now = self.clock()
        for leg_id, held in list(self.hangups.items()):
            if held.deadline <= now:
                del self.hangups[leg_id]
                self._from_hangup_only(held)
        due = [h for h in self.internal if h.deadline <= now]
        for held in due:
            if held in self.internal:
                self.internal.remove(held)
                self._emit(held.clues)
        while self.real_ids:
            _key, expiry = next(iter(self.real_ids.items()))
            if expiry > now:
                break
            self.real_ids.popitem(last=False)

    def _from_hangup_only(self, held: _Held) -> None:
        held.clues.incomplete = True
        self._route(held.clues, held.links)

    def flush_hangups(self) -> None:
        """The connection ended: COMPLETEs still awaited were lost with it."""
        for held in list(self.hangups.values()):
            self._from_hangup_only(held)
        self.hangups.clear()

    def flush_all(self) -> None:
        """Shutdown: emit everything held rather than lose it."""
        self.flush_hangups()
        for held in self.internal:
            self._emit(held.clues)
        self.internal.clear()


# --- The source -------------------------------------------------------------------------------

_PICKER = HeaderPicker(READ_HEADERS)   # one automaton for every source and session


class EslSource(Source):
    """A FreeSWITCH connection that reconnects forever and emits one clue set per ended leg."""

    kind = "freeswitch"

    def __init__(self, cfg: EslConfig, *, record_internal_legs: bool = False) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.record_internal_legs = record_internal_legs
        self.where = f"source {cfg.name} (FreeSWITCH {cfg.host}:{cfg.port})"
        self.problems = ProblemLog(self.where)
        self.version: str | None = None
        self.sessions = 0
        self.tracker: LegTracker | None = None
        self.handoff: Handoff | None = None
        self._connected = False
        self._session: EslSession | None = None
        self._peak_buffered = 0
        self._m_events = metrics.SOURCE_EVENTS.labels(source=cfg.name)
        # counted in the ESL thread as a plain int, added to the metric on the loop: a
        # prometheus counter takes a lock per increment, which the two threads then share
        self._events_seen = 0
        self._events_counted = 0
        self._m_overflow = metrics.HANDOFF_OVERFLOW.labels(source=cfg.name)
        self._m_up = metrics.SOURCE_UP.labels(source=cfg.name)
        self._m_reconnects = metrics.SOURCE_RECONNECTS.labels(source=cfg.name)
        self.connected_event = asyncio.Event()   # set while connected
        self.down_event = asyncio.Event()        # set while not connected
        self.down_event.set()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def peak_buffered(self) -> int:
        """The largest read buffer any session of this source needed, in bytes."""
        session = self._session
        return max(self._peak_buffered, session.peak_buffered if session is not None else 0)

    # from the ESL thread -------------------------------------------------------------------
    def _report(self, kind: str, what: str) -> None:
        todo = {
            "handoff_full": "records are produced slower than FreeSWITCH sends hangups; events wait, none is dropped",
        }.get(kind, "the event was skipped or kept as far as it could be read; nothing else to do")
        self.problems.report(kind, what, todo, source=self.name)

    def _on_overflow(self) -> None:
        self._m_overflow.inc()
        self.problems.report("handoff_full", f"the hand-off to the pipeline is full ({self.cfg.handoff_size} "
                             f"events or {self.cfg.handoff_bytes} bytes); the ESL thread stops reading until "
                             "it has room (FreeSWITCH's events wait in the socket, none is dropped)",
                             "if this repeats, look at the sinks' speed", count=False, source=self.name)

    def _on_event(self, frame: EslFrame) -> None:
        h = frame.headers
        name = h.get("Event-Name")
        if name == HEARTBEAT:
            version = h.get("FreeSWITCH-Version")
            if version:
                self.version = version
            return
        if name != COMPLETE and name != HANGUP:
            return
        self._events_seen += 1
        try:
            clues, links, problems = clues_from_event(h, self.name, version=self.version)
        except Exception as exc:   # a bug must cost one event, never the connection
            self.problems.report("conversion_error", f"cannot read a {name} event: {exc!r}", source=self.name)
            return
        for kind in problems:
            if kind == "bad_event_time":
                self.problems.report(kind, f"a {name} event has Event-Date-Timestamp "
                                     f"{str(h.get('Event-Date-Timestamp'))[:40]!r}, not a plausible time",
                                     "the receive time is used instead; check the PBX's clock",
                                     source=self.name)
                continue
            self._report(kind, f"a {name} event has no {kind.removeprefix('missing_').replace('_', '-')}; "
                               "recorded with what it has, marked incomplete")
        for kind in getattr(h, "problems", ()):
            self._report(kind, f"a {name} event has a value that does not decode cleanly ({kind}); "
                               "kept with replacement characters")
        if frame.truncated:
            clues.incomplete = True
        handoff = self.handoff
        if handoff is not None:
            handoff.put((name, clues, links), frame.size)

    def _wake_loop(self) -> None:
        handoff = self.handoff
        if handoff is not None:
            handoff.wake()

    # on the loop ---------------------------------------------------------------------------
    def _count_events(self) -> None:
        seen = self._events_seen
        if seen != self._events_counted:
            self._m_events.inc(seen - self._events_counted)
            self._events_counted = seen

    def _accept(self, item: tuple[str, HangupClues, frozenset[str]]) -> None:
        self._count_events()
        name, clues, links = item
        tracker = self.tracker
        assert tracker is not None
        try:
            if name == COMPLETE:
                if not tracker.complete(clues, links):
                    log.debug("%s: leg %s already recorded; duplicate ignored", self.where, clues.leg_id)
            else:
                tracker.hangup(clues, links)
        except Exception as exc:   # e.g. a failing emit: report, keep the loop alive
            self.problems.report("internal_error", f"cannot hand leg {clues.leg_id} on: {exc!r}",
                                 source=self.name, level=logging.ERROR)

    def _set_up(self, up: bool, version: str | None = None) -> None:
        if up:
            self.version = version or self.version
            self.sessions += 1
            log.info("%s: connected (FreeSWITCH %s), subscribed to %s", self.where,
                     self.version or "version unknown", " ".join(self.cfg.events()))
            self.connected_event.set()
            self.down_event.clear()
        else:
            self.connected_event.clear()
            self.down_event.set()
        self._connected = up
        self._m_up.set(1 if up else 0)

    def _settings(self) -> SessionSettings:
        c = self.cfg
        return SessionSettings(host=c.host, port=c.port, password=c.password.reveal(),
                               events=c.events(), filters=c.all_filters(), timeout=c.timeout,
                               heartbeat_timeout=c.heartbeat_timeout, max_frame_bytes=c.max_event_bytes,
                               picker=_PICKER)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half fixed, half random, capped."""
        base = min(self.cfg.reconnect_max, self.cfg.reconnect_min * (2 ** min(attempt, 30)))
        return base / 2 + random.uniform(0, base / 2)

    async def _one_session(self, loop: asyncio.AbstractEventLoop) -> SessionResult:
        def up(version: str | None) -> None:
            # set here, in the ESL thread, before its first event is converted
            self.version = version or self.version
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._set_up, True, version)

        session = EslSession(self._settings(), on_event=self._on_event, on_up=up, report=self._report,
                             on_idle=self._wake_loop)
        self._session = session
        finished: asyncio.Future[SessionResult] = loop.create_future()

        def settle(result: SessionResult) -> None:
            if not finished.done():
                finished.set_result(result)

        hub = client.SHARED_HUB

        def body() -> None:
            try:
                result = session.run(own_hub=hub is None)
            except BaseException as exc:   # report, never let the session die silently
                result = SessionResult(reason=f"ESL session failed: {exc!r}", error=exc)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result)

        thread: threading.Thread | None = None
        if hub is not None:
            hub.spawn(body)
        else:
            thread = threading.Thread(target=body, name=f"callcause-esl-{self.name}", daemon=True)
            thread.start()
        try:
            return await asyncio.shield(finished)
        except asyncio.CancelledError:
            session.stop()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(finished), timeout=self.cfg.timeout + 2)
            raise
        finally:
            self._peak_buffered = max(self._peak_buffered, session.peak_buffered)
            self._session = None
            if finished.done() and thread is not None:
                # the result is posted as the thread's last act: it is gone a moment later
                thread.join(1.0)

    async def _sweep_forever(self) -> None:
        assert self.tracker is not None
        step = max(0.01, min(1.0, self.cfg.complete_wait / 2, max(self.cfg.internal_leg_wait, 0.02) / 2))
        while True:
            await asyncio.sleep(step)
            self._count_events()
            try:
                self.tracker.sweep()
            except Exception as exc:   # the sweeper must outlive any one leg
                self.problems.report("internal_error", f"sweeping held legs failed: {exc!r}",
                                     source=self.name, level=logging.ERROR)

    async def run(self, emit: Callable[[HangupClues], None]) -> None:
        loop = asyncio.get_running_loop()
        self.tracker = LegTracker(emit, record_internal_legs=self.record_internal_legs,
                                  complete_wait=self.cfg.complete_wait,
                                  internal_wait=self.cfg.internal_leg_wait)
        self.handoff = Handoff(loop, self._accept, self.cfg.handoff_size, self._on_overflow,
                               self.cfg.handoff_bytes)
        sweeper = asyncio.create_task(self._sweep_forever(), name=f"esl-sweep-{self.name}")
        attempt = 0
        try:
            while True:
                started = time.monotonic()
                result = await self._one_session(loop)
                self.handoff.drain_now()
                self.tracker.flush_hangups()
                self._set_up(False)
                if result.was_up and time.monotonic() - started >= min(5.0, self.cfg.reconnect_max):
                    attempt = 0
                delay = self.backoff(attempt)
                attempt += 1
                if result.auth_failed:
                    log.error("%s: login refused: %s; check this source's `password` and the ACL "
                              "of event_socket.conf.xml; retrying in %.1f s", self.where, result.reason, delay)
                elif result.was_up:
                    log.warning("%s: connection lost: %s; reconnecting in %.1f s",
                                self.where, result.reason, delay)
                else:
                    log.warning("%s: cannot connect: %s; retrying in %.1f s", self.where, result.reason, delay)
                await asyncio.sleep(delay)
                self._m_reconnects.inc()
        finally:
            sweeper.cancel()
            self._set_up(False)
            self.handoff.closed = True
            self.handoff.drain_now()
            self._count_events()
            self.tracker.flush_all()

