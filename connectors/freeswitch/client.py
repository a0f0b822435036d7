"""greenswitch's inbound ESL client with its known defects fixed, and one supervised connection.

greenswitch 0.0.19 is the client; this module subclasses it so that a hostile or broken peer
cannot forge headers, stall the reader, block a command forever or end the session silently.
greenswitch stays the connection and command layer (connect, auth, `send` and its replies);
reading is ours: large `recv`s into one buffer, frames cut by Content-Length, and each event
handed to its handlers by the reader itself. greenswitch's queue and dispatcher greenlet are
not used: a frame that was read is delivered before the next `recv`, so nothing read can be
lost when the session ends, and a slow consumer stops the reading (TCP back-pressure) instead
of growing a queue. All `EslSession`s run as greenlets of one shared gevent hub in one OS thread
(`EslHub`; gevent is never monkey-patched), and hand what they read to the caller through
callbacks. One hub rather than a thread per connection: with 200 sources, 2 threads instead of
201 and loop stalls of ~12 ms instead of ~90 ms (bench/esl_ingest.py --many).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.socket
from greenswitch.esl import ESLEvent, InboundESL, NotConnectedError

from callcause.connectors.freeswitch.headers import HeaderPicker, parse_json_event, parse_plain
from callcause.wire import ascii_int

log = logging.getLogger("callcause.esl")

# A FreeSWITCH envelope is two or three short lines; anything far longer without a blank
# line is not ESL.
MAX_ENVELOPE_BYTES = 16 * 1024
# No frame may be larger (the AMI reader's limit too): a bigger Content-Length is reported and
# the stream resynchronised at the next frame instead of buffering what it announces.
MAX_FRAME_BYTES = 1024 * 1024
# One recv takes many events at once (a CHANNEL_HANGUP_COMPLETE is 5-9 kB).
RECV_BYTES = 256 * 1024
# A standard event envelope, matched in one step on the hot path.
_EVENT_ENVELOPE = re.compile(rb"Content-Length: (\d{1,9})\nContent-Type: (text/event-(?:plain|json))\n\n")
# Where a frame may start again after an oversized one.
_RESYNC = re.compile(rb"\n(?=Content-(?:Length: \d|Type: [a-z]))")
_FRAME_START = re.compile(rb"Content-(?:Length: \d|Type: )")

Report = Callable[[str, str], None]   # (problem kind, what happened)


class EslTimeout(Exception):
    """The peer did not answer a command in time: the connection is treated as dead."""


class EslAuthError(Exception):
    """FreeSWITCH refused the password (`-ERR invalid`) or the address (rude rejection)."""


# --- Parsed frames ---------------------------------------------------------------------------

class EslFrame(ESLEvent):
    """One ESL message: the envelope headers, and for events the event's own headers.

    `headers` is what greenswitch's dispatcher reads (`Event-Name`, `Content-Type`): the
    event headers merged over the envelope. `body` is an event's inner body (e.g. the
    output of a BACKGROUND_JOB) or the text of an api/response.
    """

    def __init__(self, envelope: dict[str, str], headers: Mapping[str, str] | None = None,
                 body: str = "") -> None:
        # ESLEvent.__init__ would parse with the defective whole-body unquote; skip it.
        self.envelope = envelope
        self.headers = headers if headers is not None else envelope   # type: ignore[assignment]
        self.body = body
        self.data = body
        self.truncated = False
        self.size = 0          # bytes of the frame's body as received

    @property
    def content_type(self) -> str:
        return self.envelope.get("Content-Type", "")


def _parse_envelope(block: bytes) -> tuple[dict[str, str], bool]:
    """Envelope lines of one frame; the flag says whether some line was not `Name: value`."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        text = block.decode("utf-8", errors="replace")
    env: dict[str, str] = {}
    bad = False
    for line in text.split("\n"):
        name, sep, value = line.partition(": ")
        if sep and name and " " not in name:
            env[name] = value.strip()
        elif line.strip():
            bad = True
    return env, bad


# --- The client -----------------------------------------------------------------------------

class GuardedInboundESL(InboundESL):
    """greenswitch's `InboundESL` with its defects fixed (see notes on each override).

    Fixed here: values are URL-decoded after splitting lines; a frame without (or with a
    wrong) Content-Length, garbage, invalid UTF-8 or an oversized body is reported and
    skipped instead of killing the reader; `event json` frames are parsed as JSON; every
    command has a timeout; `connect()` cannot hang on a peer that never says auth/request;
    `stop()` does not wait for a silent peer. Reconnecting is the job of `EslSession`.
    """

    def __init__(self, host: str, port: int, password: str, timeout: float = 5.0, *,
                 report: Report | None = None, max_frame_bytes: int = MAX_FRAME_BYTES,
                 hold_events: bool = False, picker: HeaderPicker | None = None) -> None:
        super().__init__(host, port, password, timeout)
        # the headers the consumer reads; None: all of them
        self.picker = picker
        self.report: Report = report or (lambda kind, what: None)
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0
        self.last_traffic = time.monotonic()
        self.frames = 0
        self.peak_buffered = 0         # largest read buffer this connection needed, in bytes
        self.delivering = False        # a handler holds the reader (back-pressure, not silence)
        self.rejected: str | None = None
        self.on_closed: Callable[[], None] | None = None
        # called whenever the reader has handed on everything it holds and waits for the socket
        # (and after the gate opens): consumers that batch events flush them here
        self.on_idle: Callable[[], None] | None = None
        # with `hold_events`, events that arrive while the session still waits for command
        # replies (between `event plain` and the end of its setup) are held here until
        # `open_gate()`: the reader cannot wait for the session, whose replies may be behind
        # those events
        self._gate_open = not hold_events
        self._early: list[EslFrame] = []

    def open_gate(self) -> None:
        """From the session's greenlet once it is set up: hand on the events held so far."""
        while self._early:
            self._dispatch_now(self._early.pop(0))
        self._gate_open = True
        self._idle()

    def _idle(self) -> None:
        if self.on_idle is not None:
            try:
                self.on_idle()
            except Exception as exc:   # a consumer's bug must not end the reader
                self.report("handler_error", f"an idle handler failed: {exc!r}")

    def start_event_handlers(self) -> None:
        # only the reader: it dispatches itself, so no event waits in a greenlet that stop() kills
        self._receive_events_greenlet = gevent.spawn(self.receive_events)

    # connect/auth: the library waits for auth/request without a timeout
    def connect(self) -> None:
        try:
            self.sock = self._open_socket()
        except (TimeoutError, gevent.socket.timeout):
            raise NotConnectedError(f"no TCP connection within {self.timeout:g} s") from None
        self.sock.settimeout(None)
        self.connected = True
        self.start_event_handlers()
        if not self._auth_request_event.wait(timeout=self.timeout):
            raise EslTimeout(f"no auth/request within {self.timeout:g} s after connecting")
        if not self.connected:
            raise EslAuthError(self.rejected or "the server closed the connection before auth")
        self.authenticate()

    def _open_socket(self) -> Any:
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            socket.inet_pton(family, self.host)
        except OSError:   # a name: resolve it (gevent does that in a helper thread of this hub)
            return gevent.socket.create_connection((self.host, self.port), timeout=self.timeout)
        # an address needs no resolver, so no resolver thread per connection either
        sock = gevent.socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def authenticate(self) -> None:
        reply = self.send(f"auth {self.password}")
        text = reply.headers.get("Reply-Text", "")
        if not text.startswith("+OK"):
            raise EslAuthError(f"the password was refused ({text or 'no reply text'})")

    # every command gets a timeout: the library blocks forever on a silent peer
    def send(self, data: str, timeout: float | None = None) -> EslFrame:
        if not self.connected:
            raise NotConnectedError()
        pending = gevent.event.AsyncResult()
        self._commands_sent.append(pending)
        try:
            with gevent.Timeout(timeout or self.timeout, EslTimeout(f"no reply to {data.split()[0]!r}")):
                self.sock.sendall((data + "\n\n").encode("utf-8"))
                return pending.get()
        except BaseException:
            # the reply may still come; the connection is out of step, so end it
            self.connected = False
            raise

    def stop(self) -> None:
        self._run = False
        self.connected = False
        sock = getattr(self, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        for pending in self._commands_sent:
            if not pending.ready():
                pending.set_exception(NotConnectedError())
        self._commands_sent.clear()
        reader = self._receive_events_greenlet
        if reader and reader is not gevent.getcurrent():
            # the reader ends by itself once the socket is closed, after delivering the frames it
            # already holds; kill it only if a handler keeps it longer than that
            reader.join(timeout=2)
            if not reader.dead:
                reader.kill(block=True, timeout=1)

    @property
    def reader_alive(self) -> bool:
        g = self._receive_events_greenlet
        return bool(g) and not g.dead

    # --- reading: our own framing over the raw socket ------------------------------------
    def _fill(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._idle()
        data = self.sock.recv(RECV_BYTES)
        if not data:
            raise EOFError
        self._buf += data
        if len(self._buf) > self.peak_buffered:
            self.peak_buffered = len(self._buf)
        self.last_traffic = time.monotonic()

    def _read_block(self) -> bytes:
        """Bytes up to the next blank line (the envelope of a frame), without the blank line."""
        start = 0
        while True:
            idx = self._buf.find(b"\n\n", self._pos + start)
            if idx >= 0:
                block = bytes(self._buf[self._pos: idx])
                self._pos = idx + 2
                return block
            pending = len(self._buf) - self._pos
            if pending > MAX_ENVELOPE_BYTES:
                # not ESL: drop what we have up to the last newline and keep reading
                cut = self._buf.rfind(b"\n", self._pos)
                cut = cut if cut > self._pos else len(self._buf)
                self.report("garbage", f"{cut - self._pos} bytes without an ESL frame boundary, skipped")
                self._pos = cut
                start = 0
                continue
            start = max(0, pending - 1)
            self._fill()

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n:
            self._fill()
        data = bytes(self._buf[self._pos: self._pos + n])
        self._pos += n
        return data

    def _skip(self, n: int) -> None:
        while n > 0:
            have = len(self._buf) - self._pos
            if have == 0:
                self._fill()
                continue
            take = min(have, n)
            self._pos += take
            n -= take

    def _unread(self, data: bytes) -> None:
        self._buf[self._pos: self._pos] = data

    def receive_events(self) -> None:
        try:
            while self._run:
                self._read_frame()
        except (EOFError, OSError, gevent.GreenletExit):
            pass
        except Exception as exc:   # a bug here must end the session visibly, not stall it
            self.report("reader_error", f"ESL reader stopped: {exc!r}")
        finally:
            self.connected = False
            self._run = False
            self._auth_request_event.set()
            for pending in self._commands_sent:
                if not pending.ready():
                    pending.set_exception(NotConnectedError())
            self._commands_sent.clear()
            self._idle()
            if self.on_closed is not None:
                self.on_closed()

    def _read_frame(self) -> None:
        # the hot path: a standard event envelope whose whole body is already buffered
        m = _EVENT_ENVELOPE.match(self._buf, self._pos)
        if m is not None:
            length = int(m.group(1))
            start = m.end()
            if length <= self.max_frame_bytes and start + length <= len(self._buf):
                self.frames += 1
                body = bytes(self._buf[start: start + length])
                self._pos = start + length
                self._deliver_raw({"Content-Length": m.group(1).decode(),
                                   "Content-Type": m.group(2).decode()}, body)
                return
        block = self._read_block()
        if not block.strip(b"\n"):
            return
        env, bad = _parse_envelope(block)
        if bad:
            self.report("garbage", "lines that are not `Name: value` in a frame envelope, skipped")
        ctype = env.get("Content-Type")
        length_text = env.get("Content-Length")
        length: int | None = None
        if length_text is not None:
            length = ascii_int(length_text)   # int() would take `+5`, `1_0` or `٣`
            if length is None:
                self.report("bad_content_length", f"Content-Length {length_text[:40]!r} is not a size; frame skipped")
                return
            if length > self.max_frame_bytes:
                self._oversized(ctype, length_text)
                return
        if ctype is None:
            if "Event-Name" in env:
                # an event body whose envelope lost its Content-Type/Length: keep the event
                self.report("missing_content_length", "an event arrived without its envelope; read it anyway")
                self._deliver_event(EslFrame({"Content-Type": "text/event-plain"}),
                                    block.decode("utf-8", errors="replace") + "\n\n")
            elif env:
                self.report("garbage", "a frame without Content-Type, skipped")
            return
        self.frames += 1
        if ctype == "auth/request":
            self._auth_request_event.set()
        elif ctype == "command/reply":
            self._resolve(EslFrame(env))
        elif ctype == "api/response":
            body = self._read_exact(length).decode("utf-8", errors="replace") if length else ""
            self._resolve(EslFrame(env, body=body))
        elif ctype == "text/disconnect-notice":
            if length:
                self._skip(length)
            if env.get("Content-Disposition") != "linger":
                self.connected = False
                self._run = False
            self._dispatch(EslFrame(env))
        elif ctype == "text/rude-rejection":
            if length:
                self.rejected = self._read_exact(length).decode("utf-8", errors="replace").strip()
            self._rejected()
        elif ctype.startswith("text/event-"):
            if length is None:
                # greenswitch dies here (KeyError) while `connected` stays true; instead read the
                # event's lines, which come next up to their own blank line
                self.report("missing_content_length",
                            "an event frame without Content-Length; read up to its blank line")
                body = self._read_block() + b"\n\n"
            else:
                body = self._read_exact(length)
            self._deliver_raw(env, body)
        else:
            if length:
                self._skip(length)

    def _rejected(self) -> None:
        self.connected = False
        self._run = False
        self._auth_request_event.set()

    def _oversized(self, ctype: str | None, length_text: str) -> None:
        """A frame announcing more than the limit: skip to where the next frame starts.

        Skipping exactly Content-Length bytes would trust the number that is already wrong
        (99999999999 would keep the reader discarding forever); what follows an honest big
        event is the next envelope, which the scan finds as well.
        """
        self.report("oversized_frame", f"a {ctype or 'frame'} announcing Content-Length {length_text[:40]} "
                                       f"(limit {self.max_frame_bytes} bytes) was skipped up to the next frame")
        if ctype == "text/rude-rejection":
            self.rejected = "a rude rejection (oversized)"
            self._rejected()
            return
        while True:
            m = _RESYNC.search(self._buf, self._pos)
            if m is not None:
                self._pos = m.end()
                return
            # keep a short tail: a frame start may be cut between two reads
            self._pos = max(self._pos, len(self._buf) - 32)
            self._fill()

    @staticmethod
    def _next_frame_inside(body: bytes) -> int:
        """Where a swallowed envelope starts inside an event body, or -1.

        A plain event has a blank line only at its end (or before its own body, which
        never starts with an envelope header), so `\n\nContent-Length: N` inside it is the
        start of the next frame.
        """
        idx = body.find(b"\n\nContent-")
        while 0 <= idx < len(body) - 2:
            if _FRAME_START.match(body, idx + 2):
                return idx + 2
            idx = body.find(b"\n\nContent-", idx + 2)
        # cut inside the next envelope's first line: the body ends with `\n\nConte`
        last = body.rfind(b"\n\n", 0, len(body) - 2)
        if last >= 0:
            tail = body[last + 2:]
            if b"Content-Length: ".startswith(tail) or b"Content-Type: ".startswith(tail):
                return last + 2
        return -1

    def _resolve(self, frame: EslFrame) -> None:
        if not self._commands_sent:
            self.report("unsolicited_reply", f"a {frame.content_type} nobody asked for, ignored")
            return
        self._commands_sent.pop(0).set(frame)

    def _deliver_raw(self, env: dict[str, str], body: bytes) -> None:
        ctype = env.get("Content-Type", "")
        if ctype == "text/event-plain" and self.picker is not None:
            # the hot path: a well-formed ASCII event whose only blank line is its last, i.e.
            # no body of its own and no swallowed frame (those take the checks below)
            picked = self.picker.pick(body)
            if picked is not None:
                frame = EslFrame(env, picked)
                frame.size = len(body)
                self._dispatch(frame)
                return
        truncated = False
        if ctype == "text/event-plain":
            cut = self._next_frame_inside(body)
            if cut >= 0:
                # the Content-Length was too long and swallowed the next frame(s): give them back
                self.report("lying_content_length",
                            "an event's Content-Length ran into the next frame; re-framed")
                self._unread(body[cut:])
                body = body[:cut]
            elif not body.endswith(b"\n"):
                truncated = True
                self.report("lying_content_length",
                            "an event ended mid-line (Content-Length too short); kept what arrived")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self.report("invalid_utf8", "an event body is not valid UTF-8; bad bytes replaced")
            text = body.decode("utf-8", errors="replace")
        frame = EslFrame(env)
        frame.truncated = truncated
        frame.size = len(body)
        self._deliver_event(frame, text)

    def _deliver_event(self, frame: EslFrame, text: str) -> None:
        ctype = frame.content_type
        if ctype == "text/event-json":
            try:
                frame.headers, frame.body = parse_json_event(text)
            except ValueError as exc:
                self.report("bad_json", f"an event-json body is not a JSON object ({exc}); skipped")
                return
        elif ctype == "text/event-plain":
            frame.headers, frame.body = parse_plain(text)
        else:
            # event-xml: not used by callcause (we subscribe plain); count and skip
            self.report("unsupported_format", f"{ctype} events are not read; subscribe with `event plain`")
            return
        frame.data = frame.body
        self._dispatch(frame)

    def _dispatch(self, frame: EslFrame) -> None:
        if self._gate_open:
            self._dispatch_now(frame)
        else:
            self._early.append(frame)

    def _dispatch_now(self, frame: EslFrame) -> None:
        """Call the handlers of one event now (greenswitch's `process_events` rules:
        Event-Name, `DISCONNECT` for a disconnect notice, `*` for the rest)."""
        headers = frame.headers
        if frame.content_type == "text/disconnect-notice":
            handlers = self.event_handlers.get("DISCONNECT")
        elif headers.get("Event-Name") == "CUSTOM":
            handlers = self.event_handlers.get(headers.get("Event-Subclass"))
        else:
            handlers = self.event_handlers.get(headers.get("Event-Name"))
        if not handlers:
            handlers = self.event_handlers.get("*")
        if not handlers:
            return
        self.delivering = True
        try:
            for handler in handlers:
                try:
                    handler(frame)
                except Exception as exc:   # a handler's bug costs this event, not the connection
                    self.report("handler_error", f"an event handler failed: {exc!r}")
        finally:
            self.delivering = False
            self.last_traffic = time.monotonic()


# --- One supervised connection, in a greenlet -----------------------------------------------

@dataclass(slots=True)
class SessionSettings:
    host: str
    port: int
    password: str
    events: tuple[str, ...]
    filters: tuple[str, ...] = ()
    timeout: float = 5.0                # connect and command timeout
    heartbeat_timeout: float = 30.0     # silence before probing with `api status`
    max_frame_bytes: int = MAX_FRAME_BYTES
    picker: HeaderPicker | None = None  # the event headers the consumer reads; None: all


@dataclass(slots=True)
class SessionResult:
    was_up: bool = False
    reason: str = ""
    auth_failed: bool = False
    version: str | None = None
    error: BaseException | None = field(default=None, repr=False)


_VERSION_RE = re.compile(r"FreeSWITCH Version (\S+)")


class EslSession:
    """One connection attempt and its life: connect, authenticate, subscribe, watch, close.

    `run()` is the body of a greenlet of the shared `EslHub` (or of a thread of its own), so
    nothing here touches the caller's asyncio loop. `on_event(frame)` is called from that
    thread (in greenswitch's dispatcher greenlet) for each event; it may wait cooperatively.
    `on_up(version)` is called once subscribed; `on_idle()` whenever the reader has handed on
    all it read and waits for more. `stop()` may be called from any thread.
    """

    def __init__(self, settings: SessionSettings, *, on_event: Callable[[EslFrame], None],
                 on_up: Callable[[str | None], None], report: Report,
                 on_idle: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self.on_idle = on_idle
        self.on_up = on_up
        self.report = report
        self.result = SessionResult()
        self._stop_requested = threading.Event()
        self._hub: Any = None
        self._wake: gevent.event.Event | None = None
        self._hub_ready = threading.Event()
        self.con: GuardedInboundESL | None = None

    @property
    def peak_buffered(self) -> int:
        """The largest read buffer of this session's connection so far, in bytes."""
        con = self.con
        return con.peak_buffered if con is not None else 0

    def stop(self) -> None:
        """Ask the session to end (thread-safe); it closes its socket and returns from `run`."""
        self._stop_requested.set()
        if self._hub_ready.is_set() and self._wake is not None:
            # the hub may already be gone: then the thread is ending anyway
            with contextlib.suppress(Exception):
                self._hub.loop.run_callback_threadsafe(self._wake.set)

    def run(self, own_hub: bool = True) -> SessionResult:
        """The session, start to end. `own_hub`: this is the body of a thread of its own,
        whose hub is destroyed at the end; otherwise a greenlet of a shared `EslHub`."""
        hub = gevent.get_hub()
        self._hub = hub
        self._wake = gevent.event.Event()
        self._hub_ready.set()
        try:
            if not self._stop_requested.is_set():
                self._run_connection()
        finally:
            self._hub_ready.clear()
            if own_hub:
                with contextlib.suppress(Exception):
                    hub.destroy(destroy_loop=True)
        return self.result

    def _run_connection(self) -> None:
        s = self.settings
        con = GuardedInboundESL(s.host, s.port, s.password, s.timeout, report=self.report,
                                max_frame_bytes=s.max_frame_bytes, hold_events=True, picker=s.picker)
        self.con = con
        done = gevent.event.Event()
        wake = self._wake
        assert wake is not None

        def closed() -> None:
            self.result.reason = self.result.reason or "the connection was closed"
            done.set()
            wake.set()

        con.on_closed = closed
        con.on_idle = self.on_idle

        def on_frame(frame: EslFrame) -> None:
            if frame.content_type == "text/disconnect-notice":
                # the reader ends after this frame, having delivered every event before it
                if frame.envelope.get("Content-Disposition") != "linger":
                    self.result.reason = self.result.reason or "FreeSWITCH sent a disconnect notice"
                return
            self.on_event(frame)

        for name in (*s.events, "DISCONNECT", "*"):
            con.register_handle(name, on_frame)
        try:
            con.connect()
            self.result.version = self._ask_version(con)
            reply = con.send("event plain " + " ".join(s.events))
            if not reply.headers.get("Reply-Text", "").startswith("+OK"):
                raise EslAuthError(f"FreeSWITCH refused the subscription: {reply.headers.get('Reply-Text')}")
            for spec in s.filters:
                reply = con.send(f"filter {spec}")
                if not reply.headers.get("Reply-Text", "").startswith("+OK"):
                    self.report("filter_refused", f"filter {spec!r} refused: {reply.headers.get('Reply-Text')}")
            self.result.was_up = True
            self.on_up(self.result.version)
            con.open_gate()
            self._watch(con, done)
        except EslAuthError as exc:
            self.result.auth_failed = True
            self.result.reason = str(exc)
            self.result.error = exc
        except (EslTimeout, NotConnectedError, OSError, EOFError) as exc:
            self.result.reason = self.result.reason or (str(exc) or type(exc).__name__)
            self.result.error = exc
        except gevent.Timeout as exc:   # pragma: no cover - gevent.Timeout with a custom exception
            self.result.reason = str(exc)
        finally:
            con.open_gate()     # events that came while the setup failed are still events
            con.stop()

    def _ask_version(self, con: GuardedInboundESL) -> str | None:
        try:
            reply = con.send("api version")
        except EslTimeout:
            raise
        match = _VERSION_RE.search(reply.body or "")
        return match.group(1) if match else None

    def _watch(self, con: GuardedInboundESL, done: gevent.event.Event) -> None:
        """Until stopped: notice a closed connection, a dead reader, or a silent peer."""
        s = self.settings
        assert self._wake is not None
        step = max(0.05, min(1.0, s.heartbeat_timeout / 4))
        while not self._stop_requested.is_set():
            if done.is_set():
                return
            if not con.reader_alive or not con.connected:
                self.result.reason = self.result.reason or "the connection ended"
                return
            if con.delivering:
                # the consumer holds the reader: the peer is not silent, it is waiting on us
                con.last_traffic = time.monotonic()
            elif time.monotonic() - con.last_traffic > s.heartbeat_timeout:
                # no HEARTBEAT, no event: ask; a live FreeSWITCH answers `api status` at once
                try:
                    con.send("api status", timeout=s.timeout)
                except (EslTimeout, NotConnectedError, OSError) as exc:
                    self.result.reason = f"FreeSWITCH stopped answering ({exc or 'timeout'})"
                    return
            self._wake.wait(timeout=step)
            self._wake.clear()
        self.result.reason = "stopped"


class EslHub:
    """One OS thread whose gevent hub runs the sessions of many FreeSWITCH sources, each as a
    greenlet: one thread and one event loop for 200 connections instead of 200 of each.

    The thread starts with the first session and ends when the last one has ended; a new
    session after that starts a new thread.
    """

    def __init__(self, name: str = "callcause-esl") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._hub: Any = None
        self._done: gevent.event.Event | None = None
        self._count = 0
        self._thread: threading.Thread | None = None

    def spawn(self, body: Callable[[], None]) -> None:
        """Run `body` as a greenlet in the hub's thread (thread-safe)."""
        with self._lock:
            self._count += 1
            if self._hub is None:
                ready = threading.Event()
                self._thread = threading.Thread(target=self._main, args=(ready,), name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
            # under the lock: the hub cannot be retired between this check and the callback
            self._hub.loop.run_callback_threadsafe(self._start, body)

    def _main(self, ready: threading.Event) -> None:
        hub = gevent.get_hub()
        done = gevent.event.Event()
        self._hub, self._done = hub, done
        ready.set()
        while not done.wait(timeout=60):
            pass   # a pending timer keeps the idle loop alive (else gevent raises LoopExit)
        with contextlib.suppress(Exception):
            hub.destroy(destroy_loop=True)

    def _start(self, body: Callable[[], None]) -> None:
        gevent.spawn(body).link(self._ended)

    def join(self, timeout: float) -> bool:
        """Wait until the hub's thread has torn its hub down (it does so once the last session
        ended); True when no thread is left. At interpreter exit a hub still being destroyed in
        a daemon thread races the interpreter's own teardown (a rare crash at shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _ended(self, _greenlet: Any) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0 and self._done is not None:
                self._hub = None          # the next spawn starts a new thread
                self._done.set()
                self._done = None


# the daemon's FreeSWITCH sessions share this hub; `SHARED_HUB = None` gives each its own thread
SHARED_HUB: EslHub | None = EslHub()


@atexit.register
def _join_shared_hub() -> None:
    # the sessions have ended by now (the daemon stops its sources first); give the hub's
    # thread a moment to finish destroying its loop before the interpreter tears down
    if SHARED_HUB is not None:
        SHARED_HUB.join(2.0)
