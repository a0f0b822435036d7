"""Call-leg correlation for Asterisk: AMI events in, one `HangupClues` per ended leg out.

A leg is a channel (keyed by Uniqueid), a call is the legs sharing a Linkedid (or, before
13.5, the legs joined by Dial and by the two halves of a Local channel). A leg's record is
built when its Hangup arrives, or a moment later when a clue that Asterisk sends after the
Hangup is still due (the dialing side's DialEnd, the CEL HANGUP). State is bounded: legs that
never end are evicted after a TTL, and finished legs are remembered only by id for a while
so that a late or repeated event cannot produce a second record.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from callcause import metrics
from callcause.mapping.notation import parse_reason_header
from callcause.mapping.tables import builtin_tables
from callcause.problems import ProblemLog
from callcause.record import HangupClues, ReasonHeader
from callcause.wire import ascii_decimal, ascii_int, sane_duration, sane_epoch

log = logging.getLogger("callcause.connectors.ami")

Fields = dict[str, str]
Emit = Callable[[HangupClues], None]

# Events the correlator reads; everything else on the wire is skipped unparsed.
EVENTS = frozenset({
    "newchannel", "newstate", "dialstate", "dialbegin", "dialend", "dial", "hanguprequest",
    "softhanguprequest", "hangup", "varset", "userevent", "cel", "cdr",
})
# Dialplan variables read from VarSet (set by the examples/asterisk hangup handlers).
VARIABLES = frozenset({
    "DIALSTATUS", "CALLEE_TECHCAUSE", "CALLEE_REASON", "CALLCAUSE_CHAN", "CALLCAUSE_TECH",
    "CALLCAUSE_REASON", "SIPCALLID",
})
# UserEvent keys that carry HANGUPCAUSE(<chan>,tech) / a Reason header / the dialed channel.
_TECH_KEYS = ("techcause", "tech", "sipcause")
_TARGET_KEYS = ("dialedchannel", "dialed")

_TECH_STRING = re.compile(r"^\s*SIP\s+([0-9]{3})\s*(.*?)\s*$", re.IGNORECASE)
_CHANNEL = re.compile(r"^([A-Za-z0-9_]+)/(.+?)(?:-[0-9a-fA-F]+)?(?:<ZOMBIE>)?$")
_LOCAL = re.compile(r"^Local/(.+);([12])(?:<ZOMBIE>)?$", re.IGNORECASE)
_UNKNOWN = ("", "<unknown>", "<Unknown>")


def clean(value: str | None) -> str | None:
    """An AMI value, or None for the empty and `<unknown>` placeholders."""
    if value is None:
        return None
    value = value.strip()
    return None if value in _UNKNOWN else value


def channel_name(value: str | None) -> str | None:
    """Channel names as a key: without the `<ZOMBIE>` suffix old versions append."""
    if not value:
        return None
    return value[:-8] if value.endswith("<ZOMBIE>") else value


def trunk_of(channel: str | None) -> str | None:
    """The endpoint of a channel name: `PJSIP/carrier-0000001a` -> `carrier`; None for Local."""
    if not channel or channel.lower().startswith("local/"):
        return None
    m = _CHANNEL.match(channel)
    return m.group(2) if m else None


def parse_tech(value: str | None) -> tuple[int, str | None] | None:
    """`SIP 486 Busy Here` (HANGUPCAUSE(<chan>,tech)) or `486` (TechCause) -> (486, reason)."""
    if not value:
        return None
    value = value.strip()
    if len(value) == 3 and (code := ascii_int(value)) is not None:
        return code, None
    m = _TECH_STRING.match(value)
    if not m:
        return None
    return int(m.group(1)), (m.group(2) or None)


_int = ascii_int


def parse_reason(text: str) -> list[ReasonHeader]:
    """A Reason header value published by the dialplan: its well-formed values, [] if none."""
    return parse_reason_header(text, lenient=True)


@dataclass(slots=True)
class Leg:
    uid: str
    call_key: str
    created: float                       # monotonic, for the TTL
    queued: float                        # monotonic, position in the TTL scan
    channel: str | None = None
    linkedid: str | None = None
    internal: bool = False
    started: bool = False                # we saw it begin (Newchannel / Dial as caller)
    start_time: float | None = None      # epoch
    progress_time: float | None = None   # epoch of its first Ringing / Progress (post-dial delay)
    dialed: bool = False                 # destination of a Dial or Originate
    dialer: str | None = None            # uid of the channel that dialed it
    caller_num: str | None = None
    connected_num: str | None = None
    exten: str | None = None
    dial_to: str | None = None
    answered: bool = False
    dial_status: str | None = None       # DialEnd on the dial that reached this leg
    own_dial_status: str | None = None   # the last dial this leg made (DialEnd / DIALSTATUS)
    tech_cause: int | None = None        # TechCause header (20.17, 22.7, 23.1+)
    helper_tech: str | None = None       # HANGUPCAUSE(<chan>,tech) from the dialplan helper
    reasons: list[ReasonHeader] = field(default_factory=list)
    sip_call_id: str | None = None
    pending_chan: str | None = None      # CALLCAUSE_CHAN seen, its CALLCAUSE_TECH is next
    request: str | None = None           # first "request" / "soft" hangup request on it
    cel: tuple[int | None, str, str] | None = None   # CEL HANGUP: cause, hangupsource, dialstatus
    billsec: float | None = None
    hangup: Fields | None = None
    end_time: float | None = None        # epoch of the Hangup
    final_read: float = 0.0              # monotonic time the last clue was read
    deadline: float = 0.0                # when to stop waiting for late clues
    gap: bool = False                    # alive across a reconnect: clues may be lost
    unseen: bool = False                 # its Hangup was the first event we saw


@dataclass(slots=True)
class Call:
    legs: set[str] = field(default_factory=set)
    external: bool = False               # has a leg that is not a Local connector half
    first_request: str | None = None     # uid of the first HangupRequest on a real leg
    soft: bool = False                   # a SoftHangupRequest happened in the call
    channels: list[str] = field(default_factory=list)          # names, dropped with the call
    roles: dict[str, str | None] = field(default_factory=dict)  # finished legs: caller/callee


@dataclass(slots=True)
class CorrelatorSettings:
    source_name: str
    record_internal_legs: bool = False
    leg_ttl: float = 6 * 3600.0          # unfinished legs older than this are evicted
    max_legs: int = 200_000              # hard bound on unfinished legs
    grace: float = 2.0                   # wait for clues due after the Hangup
    remember_finished: int = 50_000      # finished leg ids kept to drop late/repeated events


class Correlator:
    """Feed it `(event name, fields)`; it calls `emit(clues)` once per ended leg."""

    def __init__(self, settings: CorrelatorSettings, emit: Emit, problems: ProblemLog,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.s = settings
        self.emit = emit
        self.problems = problems
        self.clock = clock
        self.legs: dict[str, Leg] = {}
        self.calls: dict[str, Call] = {}
        self.by_channel: dict[str, str] = {}
        self.tech_for_channel: dict[str, tuple[str, float]] = {}   # helper data for a dialed channel
        self.waiting: dict[str, float] = {}       # ended legs waiting for late clues -> deadline
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.cel_active = False
        self.version: str | None = None
        self.records = 0
        self._evicted = metrics.LEGS_EVICTED.labels(source=settings.source_name)
        self._handlers: dict[str, Callable[[Fields], None]] = {
            "newchannel": self._newchannel, "newstate": self._newstate, "dialstate": self._dialstate,
            "dialbegin": self._dialbegin, "dialend": self._dialend, "dial": self._dial_old,
            "hanguprequest": self._request, "softhanguprequest": self._request,
            "hangup": self._hangup, "varset": self._varset, "userevent": self._userevent,
            "cel": self._cel, "cdr": self._cdr,
        }

    # --- entry points -----------------------------------------------------------------

    def feed(self, name: str, fields: Fields) -> None:
        handler = self._handlers.get(name)
        if handler is None:
            return
        fields["event"] = name
        try:
            handler(fields)
        except Exception as exc:   # one event the code cannot handle must cost that event only
            self.failed(f"{name} event (Uniqueid {fields.get('uniqueid')!r})", exc)

    def failed(self, what: str, exc: Exception) -> None:
        """One problem-log line and a count for input that raised where it should not have."""
        self.problems.report("event_error", f"{what} could not be handled: {exc!r}",
                             "it was dropped and the source goes on; please report this with "
                             "the event's text", level=logging.ERROR)

    def _event_time(self, fields: Fields) -> float:
        """Epoch seconds of an event: its `Timestamp` (timestampevents=yes), else now.

        A Timestamp that is not a plausible time (mangled, or a PBX clock far off) gives the
        receive time instead, with a problem line: a record must stay writable."""
        ts = fields.get("timestamp")
        if ts:
            value = ascii_decimal(ts)
            if sane_epoch(value):
                return value  # type: ignore[return-value]
            self.problems.report("bad_event_time",
                                 f"{fields.get('event', 'an')} event has Timestamp {ts[:40]!r}, "
                                 "not a plausible time", "the receive time is used instead; "
                                 "check the PBX's clock")
        return time.time()

    def sweep(self) -> None:
        """Emit legs whose late clues did not come, evict legs that outlived the TTL."""
        now = self.clock()
        if self.waiting:
            for uid, deadline in list(self.waiting.items()):
                if deadline <= now:
                    leg = self.legs.get(uid)
                    if leg is None:
                        self.waiting.pop(uid, None)
                    else:
                        self._finish_safely(leg)
        self._evict(now)

    def disconnected(self) -> None:
        """The connection dropped: what happens until we are back is lost."""
        for uid in list(self.waiting):
            leg = self.legs.get(uid)
            if leg is not None:
                leg.gap = True
                self._finish_safely(leg)
        for leg in self.legs.values():
            leg.gap = True

    def reconcile(self, alive: set[str]) -> int:
        """After a reconnect: legs we track that the PBX no longer has ended while we were
        away. Record them (incomplete, cause unknown) rather than lose them to the TTL."""
        gone = [leg for uid, leg in self.legs.items() if uid not in alive and leg.hangup is None
                and leg.gap]
        for leg in gone:
            leg.hangup = {}
            leg.end_time = time.time()
            leg.final_read = self.clock()
            self._finish_safely(leg)
        return len(gone)

    def flush(self) -> None:
        """Emit every ended leg still waiting for late clues (on shutdown)."""
        for uid in list(self.waiting):
            leg = self.legs.get(uid)
            if leg is not None:
                self._finish_safely(leg)

    # --- state helpers ----------------------------------------------------------------

    def _leg(self, uid: str | None, fields: Fields | None = None, prefix: str = "") -> Leg | None:
        """The leg for a Uniqueid, created on first sight; None for a finished leg."""
        if not uid or uid == "none":
            return None
        leg = self.legs.get(uid)
        if leg is None:
            if uid in self.finished:
                return None
            now = self.clock()
            linked = clean(fields.get(prefix + "linkedid")) if fields else None
            leg = Leg(uid=uid, call_key=linked or uid, created=now, queued=now, linkedid=linked)
            self.legs[uid] = leg
            call = self.calls.get(leg.call_key)
            if call is None:
                call = self.calls[leg.call_key] = Call()
            call.legs.add(uid)
            if len(self.legs) > self.s.max_legs:
                self._evict_oldest()
        if fields is not None:
            self._snapshot(leg, fields, prefix)
        return leg

    def _snapshot(self, leg: Leg, fields: Fields, prefix: str) -> None:
        chan = channel_name(fields.get(prefix + "channel"))
        if chan and leg.channel != chan:
            if leg.channel is None:
                self._set_channel(leg, chan)
            else:
                # renamed (masquerade, Local optimisation): the new name decides
                leg.channel = chan
                leg.internal = bool(_LOCAL.match(chan))
                self.by_channel[chan] = leg.uid
        linked = fields.get(prefix + "linkedid")
        if linked and leg.linkedid is None:
            leg.linkedid = linked
            if leg.call_key != linked:
                self._join(leg, linked)
        num = clean(fields.get(prefix + "calleridnum"))
        if num and leg.caller_num is None:
            leg.caller_num = num
        conn = clean(fields.get(prefix + "connectedlinenum"))
        if conn and leg.connected_num is None:
            leg.connected_num = conn
        exten = clean(fields.get(prefix + "exten"))
        if exten and exten not in ("s", "h") and leg.exten is None:
            leg.exten = exten

    def _set_channel(self, leg: Leg, chan: str) -> None:
        leg.channel = chan
        self.by_channel[chan] = leg.uid
        m = _LOCAL.match(chan)
        call = self.calls.get(leg.call_key)
        if m:
            leg.internal = True
            if leg.linkedid is None:
                # before Linkedid existed, the two halves of a Local channel are one call
                other = self.by_channel.get(f"Local/{m.group(1)};{'1' if m.group(2) == '2' else '2'}")
                other_leg = self.legs.get(other) if other else None
                if other_leg is not None and other_leg.call_key != leg.call_key:
                    self._join(leg, other_leg.call_key)
        elif call is not None:
            call.external = True
        if call is not None:
            call.channels.append(chan)

    def _join(self, leg: Leg, key: str) -> None:
        old = self.calls.get(leg.call_key)
        if old is not None:
            old.legs.discard(leg.uid)
            if not old.legs:
                del self.calls[leg.call_key]
        leg.call_key = key
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = Call()
        call.legs.add(leg.uid)
        if leg.channel and not leg.internal:
            call.external = True
        if old is not None:
            call.soft = call.soft or old.soft
            call.first_request = call.first_request or old.first_request
            if not old.legs:
                call.channels.extend(old.channels)
                call.roles.update(old.roles)
        if leg.channel:
            call.channels.append(leg.channel)

    def _mark_start(self, leg: Leg, fields: Fields) -> None:
        if not leg.started:
            leg.started = True
            leg.start_time = self._event_time(fields)

    # --- events -----------------------------------------------------------------------

    def _newchannel(self, f: Fields) -> None:
        leg = self._leg(f.get("uniqueid"), f)
        if leg is not None:
            self._mark_start(leg, f)

    def _newstate(self, f: Fields) -> None:
        leg = self._leg(f.get("uniqueid"), f)
        if leg is not None and f.get("channelstate") == "6":
            leg.answered = True
        elif leg is not None and f.get("channelstate") == "5" and leg.progress_time is None:
            leg.progress_time = self._event_time(f)     # Ringing: the far end sent 180

    def _dialstate(self, f: Fields) -> None:
        # DialState (Asterisk 13+) on the dialled channel: RINGING (180) or PROGRESS (183)
        dest = self._leg(f.get("destuniqueid"), f, "dest")
        if dest is not None and dest.progress_time is None and \
                (f.get("dialstatus") or "").upper() in ("RINGING", "PROGRESS"):
            dest.progress_time = self._event_time(f)

    def _dialbegin(self, f: Fields) -> None:
        caller = self._leg(f.get("uniqueid"), f)
        dest = self._leg(f.get("destuniqueid"), f, "dest")
        if caller is not None:
            self._mark_start(caller, f)
        if dest is None:
            return
        self._mark_start(dest, f)
        dest.dialed = True
        to = clean(f.get("destcalleridnum")) or _dialstring_number(f.get("dialstring"))
        dest.dial_to = dest.dial_to or to
        if caller is not None:
            dest.dialer = caller.uid
            if dest.connected_num is None:
                dest.connected_num = caller.caller_num
            if dest.linkedid is None and dest.call_key != caller.call_key:
                self._join(dest, caller.call_key)

    def _dialend(self, f: Fields) -> None:
        status = clean(f.get("dialstatus"))
        caller = self._leg(f.get("uniqueid"), f)
        dest = self._leg(f.get("destuniqueid"), f, "dest")
        if caller is not None and status:
            caller.own_dial_status = status
            if status == "ANSWER":
                caller.answered = True
        if dest is not None and status:
            dest.dial_status = status
            if status == "ANSWER":
                dest.answered = True
            self._clue_arrived(dest)
        elif dest is None and f.get("destuniqueid") is None and caller is None:
            self._missing_uniqueid(f)

    def _dial_old(self, f: Fields) -> None:
        """Asterisk 1.8/11 `Dial` with SubEvent Begin (has DestUniqueID) or End (does not)."""
        sub = (f.get("subevent") or "").lower()
        if sub == "begin":
            f2 = dict(f)
            f2["destchannel"] = f.get("destination", "")
            self._dialbegin(f2)
            return
        if sub != "end":
            return
        status = clean(f.get("dialstatus"))
        caller = self._leg(f.get("uniqueid"), f)
        if caller is None or not status:
            return
        caller.own_dial_status = status
        if status == "ANSWER":
            caller.answered = True
        for leg in list(self.legs.values()):
            if leg.dialer == caller.uid and leg.dial_status is None:
                leg.dial_status = status
                if status == "ANSWER":
                    leg.answered = True
                self._clue_arrived(leg)

    def _request(self, f: Fields) -> None:
        leg = self._leg(f.get("uniqueid"), f)
        if leg is None:
            if not f.get("uniqueid"):
                self._missing_uniqueid(f)
            return
        soft = f["event"] == "softhanguprequest"
        if leg.request is None:
            leg.request = "soft" if soft else "request"
        tech = parse_tech(f.get("techcause"))
        if tech and leg.tech_cause is None:
            leg.tech_cause = tech[0]
        call = self.calls.get(leg.call_key)
        if call is None:
            return
        if soft:
            call.soft = True
        elif not leg.internal and call.first_request is None and not call.soft:
            call.first_request = leg.uid

    def _hangup(self, f: Fields) -> None:
        uid = f.get("uniqueid")
        if not uid:
            self._missing_uniqueid(f)
            return
        if uid in self.finished:
            return      # a repeated Hangup: its record was already made
        known = uid in self.legs
        leg = self._leg(uid, f)
        if leg is None:
            return
        if leg.hangup is not None:
            return
        if not known:
            leg.unseen = True
            self.problems.report("hangup_for_unknown_leg",
                                 f"Hangup for channel {leg.channel or uid} whose start was not seen",
                                 "recorded as incomplete; normal for calls that began before "
                                 "callcause connected", level=logging.INFO)
        if "cause" not in f:
            self.problems.report("hangup_without_cause",
                                 f"Hangup for channel {leg.channel or uid} has no Cause header",
                                 "recorded without a Q.850 cause")
        leg.hangup = f
        leg.end_time = self._event_time(f)
        tech = parse_tech(f.get("techcause"))
        if tech:
            leg.tech_cause = tech[0]
        now = self.clock()
        leg.final_read = now
        if self._must_wait(leg):
            leg.deadline = now + self.s.grace
            self.waiting[uid] = leg.deadline
        else:
            self._finish(leg)

    def _varset(self, f: Fields) -> None:
        var = f.get("variable")
        if var not in VARIABLES:
            return
        leg = self._leg(f.get("uniqueid"), f)
        if leg is None:
            return
        value = f.get("value", "")
        if var == "DIALSTATUS":
            if value:
                leg.own_dial_status = value
        elif var == "CALLEE_TECHCAUSE":
            leg.helper_tech = value or leg.helper_tech
        elif var == "CALLEE_REASON":
            leg.reasons = parse_reason(value) or leg.reasons
        elif var == "CALLCAUSE_CHAN":
            leg.pending_chan = channel_name(value)
        elif var == "CALLCAUSE_TECH" and leg.pending_chan:
            self._tech_for(leg.pending_chan, value)
        elif var == "CALLCAUSE_REASON" and leg.pending_chan:
            self._reason_for(leg.pending_chan, value)
        elif var == "SIPCALLID":
            leg.sip_call_id = value or None

    def _userevent(self, f: Fields) -> None:
        tech = next((f[k] for k in _TECH_KEYS if k in f), None)
        reason = f.get("reason")
        sip_call_id = f.get("sipcallid")
        if tech is None and reason is None and sip_call_id is None:
            return
        target = next((channel_name(f[k]) for k in _TARGET_KEYS if f.get(k)), None)
        if target is not None:
            if tech is not None:
                self._tech_for(target, tech)
            if reason:
                self._reason_for(target, reason)
            return
        leg = self._leg(f.get("uniqueid"), f)
        if leg is None:
            return
        if tech:
            leg.helper_tech = tech
        if reason:
            leg.reasons = parse_reason(reason) or leg.reasons
        if sip_call_id:
            leg.sip_call_id = sip_call_id

    def _tech_for(self, chan: str, value: str) -> None:
        if not value.strip():
            # HANGUPCAUSE(<chan>,tech) is empty after a far-end BYE since 20.17 / 22.7 / 23.1
            # (asterisk issue 1606): nothing said, and a later helper value may still come
            return
        uid = self.by_channel.get(chan)
        leg = self.legs.get(uid) if uid else None
        if leg is not None:
            if leg.helper_tech is None:
                leg.helper_tech = value
        elif uid is None:
            self.tech_for_channel[chan] = (value, self.clock())

    def _reason_for(self, chan: str, value: str) -> None:
        reasons = parse_reason(value)
        uid = self.by_channel.get(chan)
        leg = self.legs.get(uid) if uid else None
        if leg is not None and reasons and not leg.reasons:
            leg.reasons = reasons

    def _cel(self, f: Fields) -> None:
        self.cel_active = True
        if (f.get("eventname") or "").upper() != "HANGUP":
            return
        leg = self._leg(f.get("uniqueid"), f)
        if leg is None:
            return
        leg.cel = _cel_extra(f.get("extra", ""))
        self._clue_arrived(leg)

    def _cdr(self, f: Fields) -> None:
        leg = self.legs.get(f.get("uniqueid", ""))
        if leg is None:
            return
        billsec = _int(f.get("billableseconds"))
        if billsec is not None:
            leg.billsec = sane_duration(float(billsec))
        if (f.get("disposition") or "").upper() == "ANSWERED":
            leg.answered = True

    def _missing_uniqueid(self, f: Fields) -> None:
        self.problems.report("event_without_uniqueid",
                             f"{f.get('event', 'an event')} event without a Uniqueid",
                             "it cannot be tied to a call leg and was skipped")

    # --- finishing a leg ----------------------------------------------------------------

    def _must_wait(self, leg: Leg) -> bool:
        if leg.gap:
            return False
        if self._dropped(leg):
            return False
        if leg.dialed and leg.dial_status is None:
            return True
        return self.cel_active and leg.cel is None

    def _clue_arrived(self, leg: Leg) -> None:
        if leg.hangup is not None and leg.uid in self.waiting:
            leg.final_read = self.clock()
            if not self._must_wait(leg):
                self._finish(leg)

    def _dropped(self, leg: Leg) -> bool:
        """Internal connector legs are recorded only when nothing else tells the story."""
        if not leg.internal or self.s.record_internal_legs:
            return False
        call = self.calls.get(leg.call_key)
        if call is not None and call.external:
            return True
        if leg.channel and leg.channel.endswith(";1"):
            # the ;2 half ran the dialplan and carries the cause it chose
            return self.by_channel.get(leg.channel[:-1] + "2") is not None
        return False

    def _finish(self, leg: Leg) -> None:
        self.waiting.pop(leg.uid, None)
        try:
            if not self._dropped(leg):
                self.emit(self._clues(leg))
                self.records += 1
        finally:
            self._forget(leg)

    def _finish_safely(self, leg: Leg) -> None:
        """`_finish` outside an event handler (sweep, reconnect, shutdown): a leg whose clues
        cannot be built costs that leg only; `_finish` forgets it even when it raises."""
        try:
            self._finish(leg)
        except Exception as exc:
            self.failed(f"ended leg {leg.channel or leg.uid}", exc)

    def _forget(self, leg: Leg) -> None:
        """Drop a leg; its channel name and role stay while its call has live legs, because
        a later leg's CEL hangupsource or HangupRequest order may point at it."""
        call = self.calls.get(leg.call_key)
        if call is not None:
            call.roles[leg.uid] = self._role(leg.uid, call)
        self.legs.pop(leg.uid, None)
        self.waiting.pop(leg.uid, None)
        if call is not None:
            call.legs.discard(leg.uid)
            if not call.legs:
                del self.calls[leg.call_key]
                for chan in call.channels:
                    self.by_channel.pop(chan, None)
                    self.tech_for_channel.pop(chan, None)
        elif leg.channel:
            self.by_channel.pop(leg.channel, None)
        self.finished[leg.uid] = None
        if len(self.finished) > self.s.remember_finished:
            self.finished.popitem(last=False)

    def _evict_oldest(self) -> None:
        _uid, leg = next(iter(self.legs.items()))
        self._evict_leg(leg, "the number of unfinished legs reached max_legs")

    def _evict(self, now: float) -> None:
        ttl = self.s.leg_ttl
        scanned = 0
        limit = len(self.legs)
        while self.legs and scanned < limit:
            scanned += 1
            uid = next(iter(self.legs))
            leg = self.legs[uid]
            if now - leg.queued < ttl:
                break
            if leg.hangup is None and now - leg.created >= ttl:
                self._evict_leg(leg, f"no Hangup within {ttl:.0f} s")
            else:
                # still in use: move it to the back of the scan order
                del self.legs[uid]
                leg.queued = now
                self.legs[uid] = leg
        if len(self.tech_for_channel) > 10_000:
            cutoff = now - 60.0
            for chan, (_, at) in list(self.tech_for_channel.items()):
                if at < cutoff:
                    del self.tech_for_channel[chan]

    def _evict_leg(self, leg: Leg, why: str) -> None:
        self._evicted.inc()
        self.problems.report("leg_evicted", f"dropped unfinished leg {leg.channel or leg.uid}: {why}",
                             "normal after missed Hangups; raise leg_ttl for very long calls",
                             level=logging.INFO, count=False)
        self._forget(leg)

    # --- the clues ----------------------------------------------------------------------

    def _clues(self, leg: Leg) -> HangupClues:
        h = leg.hangup or {}
        cause = _int(h.get("cause"))
        if cause is None and leg.cel is not None:
            cause = leg.cel[0]
        sip_code = leg.tech_cause
        sip_reason = None
        tech_text = leg.helper_tech
        if tech_text is None and leg.channel in self.tech_for_channel:
            tech_text = self.tech_for_channel.pop(leg.channel)[0]
        helper = parse_tech(tech_text)
        extra: dict[str, str] = {}
        answered = leg.answered or (leg.own_dial_status == "ANSWER") or None
        if sip_code is not None and answered:
            # An answered leg's INVITE got a 2xx; since 20.17 / 22.7 / 23.1 chan_pjsip_hangup()
            # fills TechCause with hangup_cause2sip(Cause) when Asterisk ends the call itself:
            # a code it derived, not one the far end sent. Kept aside, not reported as the code.
            extra["techcause_derived"] = str(sip_code)
            sip_code = None
        if helper is not None and helper[0] >= 300 and (sip_code is None or sip_code == helper[0]):
            sip_code, sip_reason = helper
        if tech_text:
            extra["hangupcause_tech"] = tech_text
        if leg.cel is not None and leg.cel[1]:
            extra["cel_hangupsource"] = leg.cel[1]
        dial_status = leg.dial_status or leg.own_dial_status
        if dial_status is None and leg.cel is not None and leg.cel[2]:
            dial_status = leg.cel[2]
        reasons = list(leg.reasons)
        if (not reasons and sip_code is not None and cause is not None and dial_status != "CANCEL"
                and sip_code != 487 and cause not in (16, 127) and (leg.channel or "").startswith("PJSIP/")):
            # Before 20.19 / 22.9 / 23.3 a Reason on the far end's failure response set the
            # channel's cause (res_pjsip_rfc3326): a cause res_pjsip's map cannot give for the
            # code came from one. The table of the version decides (`reason_sets_cause`).
            n = builtin_tables().reason_behind("asterisk", self.version, sip_code, cause)
            if n is not None:
                reasons.append(ReasonHeader("Q.850", n, None, inferred=True))
        direction = "outbound" if leg.dialed else ("inbound" if leg.started else None)
        if leg.dialed:
            from_number = leg.connected_num
            to_number = leg.dial_to or clean(h.get("calleridnum")) or leg.caller_num
        else:
            from_number = leg.caller_num or clean(h.get("calleridnum"))
            to_number = leg.exten or clean(h.get("exten")) if leg.started else (
                clean(h.get("exten")) if h.get("exten") not in ("s", "h") else None)
        duration = None
        if leg.start_time is not None and leg.end_time is not None:
            duration = sane_duration(round(max(0.0, leg.end_time - leg.start_time), 3))
        pdd = None
        if leg.dialed and leg.start_time is not None and leg.progress_time is not None:
            pdd = round(max(0.0, leg.progress_time - leg.start_time), 3)
        if answered is None and (leg.started or leg.dialed):
            answered = False
        return HangupClues(
            source_name=self.s.source_name,
            source_kind="asterisk",
            leg_id=leg.uid,
            call_id=leg.linkedid or leg.call_key,
            sip_call_id=leg.sip_call_id,
            channel=leg.channel,
            direction=direction,
            from_number=from_number,
            to_number=to_number,
            answered=answered,
            duration_s=duration,
            billsec_s=leg.billsec,
            pdd_s=pdd,
            trunk=trunk_of(leg.channel),
            internal=leg.internal,
            sip_code=sip_code,
            sip_reason=sip_reason,
            reason_headers=reasons,
            q850=cause,
            pbx_cause=clean(h.get("cause-txt")),
            pbx_cause_code=cause,
            dial_status=dial_status,
            hangup_source=self._hangup_source(leg),
            ended_at=leg.end_time or time.time(),
            received_at=leg.final_read or self.clock(),
            source_version=self.version,
            incomplete=leg.gap or leg.unseen or not h,
            extra=extra,
        )

    def _role(self, uid: str | None, call: Call | None) -> str | None:
        """caller / callee for the party behind a real (non-connector) leg."""
        if uid is None:
            return None
        other = self.legs.get(uid)
        if other is None:
            return call.roles.get(uid) if call is not None else None
        if other.internal:
            return None
        if other.dialed:
            return "callee"
        return "caller" if other.started else None

    def _hangup_source(self, leg: Leg) -> str:
        """Who ended the leg: CEL's hangupsource when it names someone, else the first
        HangupRequest of the call (a far end hung up), else a SoftHangupRequest (the PBX)."""
        call = self.calls.get(leg.call_key)
        if leg.cel is not None and leg.cel[1]:
            src = leg.cel[1]
            if src.startswith("dialplan/"):
                return "pbx"
            role = self._role(self.by_channel.get(channel_name(src) or ""), call)
            if role is not None:
                return role
        if leg.dialed and leg.dial_status == "CANCEL":
            # The dialing side withdrew this branch while it rang: another branch answered
            # (Cause 26) or the caller gave up; the callee's answer to the CANCEL says nothing.
            return "pbx" if _int((leg.hangup or {}).get("cause")) == 26 else "caller"
        if leg.dialed and leg.dial_status == "NOANSWER" and _int((leg.hangup or {}).get("cause")) == 0:
            # Dial's timeout ended the ringing branch (a refusal would have given a cause); the
            # events that tell it (SoftHangupRequest) may come after this Hangup
            return "pbx"
        if not leg.dialed and leg.own_dial_status == "CANCEL":
            # app_dial says CANCEL when the channel running it hung up while the callee rang
            return "caller"
        if call is not None and call.first_request is not None:
            role = self._role(call.first_request, call)
            if role is not None:
                return role
        if call is not None and call.soft:
            return "pbx"
        return "unknown"


def _cel_extra(extra: str) -> tuple[int | None, str, str]:
    """CEL HANGUP `Extra`: JSON (12+) or CSV `cause,hangupsource,dialstatus` (1.8-11)."""
    extra = extra.strip()
    if extra.startswith("{"):
        try:
            data = json.loads(extra)
        except (ValueError, RecursionError):
            return None, "", ""
        if not isinstance(data, dict):
            return None, "", ""
        cause = data.get("hangupcause")
        return (ascii_int(str(cause)) if isinstance(cause, int | str) and not isinstance(cause, bool) else None,
                str(data.get("hangupsource") or ""), str(data.get("dialstatus") or ""))
    parts = [*extra.split(",", 2), "", ""]
    return _int(parts[0]), parts[1].strip(), parts[2].strip()


def _dialstring_number(dialstring: str | None) -> str | None:
    """`486@peer` -> `486`; `peer/4930123` -> `4930123`; otherwise None."""
    if not dialstring:
        return None
    if "@" in dialstring:
        return clean(dialstring.split("@", 1)[0].rsplit("/", 1)[-1])
    if "/" in dialstring:
        return clean(dialstring.split("/")[1])
    return None
