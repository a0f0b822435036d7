"""The AMI wire layer: panoramisk 1.4 as transport, with its reader replaced by ours.

panoramisk decodes each TCP chunk on its own (a UTF-8 character split across reads is lost),
drops `Key:` headers with nothing after the colon, keeps an unterminated frame forever and
parses every event of the firehose. `AmiProtocol` (handed to panoramisk's `Manager` through
`protocol_factory`) frames bytes first and decodes whole frames only, caps the frame size,
tolerates empty values, and parses only the events the source asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from callcause.problems import ProblemLog

log = logging.getLogger("callcause.connectors.ami")

BANNER = b"Asterisk Call Manager/"
TERMINATOR = b"\r\n\r\n"
# Every AMI frame starts with `Event:` or `Response:`, so a second such line inside a frame is
# where a frame that lost its blank line ended and the next began. Not `Response:` inside an
# event: OriginateResponse carries a `Response: Failure` header of its own.
_EVENT_LINE = b"\r\nEvent: "
_RESPONSE_LINE = b"\r\nResponse: "
_CRLF = b"\r\n"
MAX_FRAME_BYTES = 1 << 20

Fields = dict[str, str]
# (event name lower-cased, fields with lower-cased keys)
EventHandler = Callable[[str, Fields], None]
# Given the raw frame (without terminator) of a wanted event, say whether to parse it.
FrameGate = Callable[[str, bytes], bool]

# Header names are few and repeat in every event: lower-case each spelling once. Bounded,
# because garbage on the socket brings spellings of its own that never repeat.
_LOWER: dict[str, str] = {}
_LOWER_MAX = 4096


def parse_fields(text: str) -> tuple[Fields, int]:
    """`Key: value` lines into a dict with lower-cased keys; returns (fields, bad lines).

    Splits on the first colon, so values may contain `: `, and accepts `Key:` with no space
    (pasted copies lose it). The first occurrence of a repeated key wins, which keeps the
    channel snapshot of a UserEvent whose user part repeats `Channel`.
    """
    fields: Fields = {}
    bad = 0
    get = _LOWER.get
    for line in text.split("\r\n"):
        # Asterisk writes `Key: value`: one split does it, unless the key is not the text
        # before the first colon (a value with `: ` after a bare `Key:`)
        key, sep, value = line.partition(": ")
        if not sep or ":" in key:
            key, sep, value = line.partition(":")
            if sep and value[:1] == " ":
                value = value[1:]
        if not sep or not key:
            if line:
                bad += 1
            continue
        lk = get(key)
        if lk is None:
            lk = key.strip().lower()
            if len(_LOWER) < _LOWER_MAX and len(key) <= 64:   # garbage may be a megabyte long
                _LOWER[key] = lk
        if lk not in fields:
            fields[lk] = value
    return fields, bad


class AmiProtocol(AMIProtocol):
    """panoramisk's protocol with a byte-level frame reader.

    Responses still go to panoramisk (`handle_message`), so `Manager.send_action` futures
    work as usual; events go straight to `on_event`, matched case-insensitively by name.
    """

    # Set by the source before connecting (class attributes are copied per instance).
    on_event: EventHandler | None = None
    on_frame: Callable[[int], None] | None = None     # bytes received, for tests and metrics
    wanted: frozenset[str] = frozenset()
    gate: FrameGate | None = None
    problems: ProblemLog | None = None
    max_frame: int = MAX_FRAME_BYTES

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.buffer = bytearray()
        self.version: str | None = None
        self.banner_seen = False
        self.discarding = False        # inside an oversized frame: drop until its terminator
        self.events_seen = 0
        self.bytes_received = 0

    # panoramisk's reader is replaced as a whole: see the module docstring for why.
    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        if self.buffer:
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        if self.discarding:
            end = data.find(TERMINATOR)
            if end < 0:
                self.buffer += data[-3:]       # keep a possible partial terminator
                return
            data = data[end + 4:]
            self.discarding = False
        if not self.banner_seen:
            data = self._read_banner(data)
            if data is None:
                return
        start = 0
        events = 0
        find = data.find
        while True:
            end = find(TERMINATOR, start)
            if end < 0:
                break
            if end - start > self.max_frame:
                self._oversized(end - start)
            elif end > start:
                events += self._frames(data[start:end])
            start = end + 4
        rest = len(data) - start
        if rest > self.max_frame:
            self._oversized(rest)
            self.discarding = True
            self.buffer += data[-3:]
        elif rest:
            self.buffer += data[start:]
        self.events_seen += events
        if self.on_frame is not None:
            self.on_frame(events)

    def _read_banner(self, data: bytes) -> bytes | None:
        """Strip the one-line banner (no blank line follows it); None = wait for more bytes."""
        if not data.startswith(BANNER):
            if BANNER.startswith(data):
                self.buffer += data
                return None
            self.banner_seen = True          # no banner: everything is frames
            return data
        eol = data.find(b"\r\n")
        if eol < 0:
            if len(data) <= 256:
                self.buffer += data
                return None
            self.banner_seen = True
            return data
        self.version = data[len(BANNER):eol].decode("ascii", "replace").strip()
        self.banner_seen = True
        return data[eol + 2:]

    def _oversized(self, size: int) -> None:
        if self.problems is not None:
            self.problems.report(
                "oversized_frame",
                f"a frame of more than {self.max_frame} bytes ({size} so far) was dropped",
                "the peer is not speaking AMI correctly, or a channel variable is huge")

    def _frames(self, raw: bytes) -> int:
        """Split what the terminator delimited at every further `Event:`/`Response:` line
        (one resync line in the log), then handle each frame; returns the events seen."""
        if raw[0] in _CRLF:
            # a stray blank line before a frame must not turn the event after it into garbage
            raw = raw.lstrip(b"\r\n")
            if not raw:
                return 0
        cut = _next_start(raw)
        if cut < 0:
            return self._guarded(raw)
        if self.problems is not None:
            self.problems.report("resync", "a frame without its blank line ran into the next "
                                 "one; split where the next `Event:`/`Response:` line starts",
                                 "the peer or a proxy loses bytes; both frames were kept")
        events = 0
        while cut >= 0:
            events += self._guarded(raw[:cut])
            raw = raw[cut + 2:]
            cut = _next_start(raw)
        return events + self._guarded(raw)

    def _guarded(self, raw: bytes) -> int:
        try:
            return self._frame(raw)
        except Exception as exc:   # one frame the code cannot handle must never end the reader
            if self.problems is not None:
                start = raw[:raw.find(b"\r\n")] if b"\r\n" in raw else raw[:40]
                self.problems.report("event_error", f"a frame ({start[:60]!r}, {len(raw)} bytes) "
                                     f"could not be handled: {exc!r}", "it was dropped and the "
                                     "source goes on; please report this with the frame",
                                     level=logging.ERROR)
            return 0

    def _frame(self, raw: bytes) -> int:
        """Handle one frame; returns 1 when it was an event."""
        if raw.startswith(b"Event: "):
            eol = raw.find(b"\r\n")
            name = (raw[7:eol] if eol >= 0 else raw[7:]).decode("ascii", "replace").strip().lower()
            if name in self.wanted and (self.gate is None or self.gate(name, raw)):
                fields = self._decode(raw)
                if fields is not None and self.on_event is not None:
                    if "actionid" in fields and fields["actionid"] in self.responses:
                        self.handle_message(Message(dict(fields)))
                    else:
                        self.on_event(name, fields)
            return 1
        text = raw.lstrip(b"\r\n")
        if not text:
            return 0
        if text.startswith(b"Response: "):
            fields = self._decode(text)
            if fields is not None:
                self.handle_message(Message(fields))
            return 0
        if self.problems is not None:
            self.problems.report("garbage", f"a frame that is neither an event nor a response "
                                            f"({len(raw)} bytes, starts {bytes(raw[:24])!r})",
                                 "check that host:port is an AMI port")
        return 0

    def _decode(self, raw: bytes) -> Fields | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            if self.problems is not None:
                self.problems.report("invalid_utf8", "a frame with bytes that are not UTF-8; "
                                     "they were replaced by U+FFFD", "check the PBX's charset")
        fields, bad = parse_fields(text)
        if bad and self.problems is not None:
            self.problems.report("bad_header_line", f"{bad} line(s) without `Key:` in a frame",
                                 "they were ignored")
        if not fields:
            return None
        return fields


def _next_start(raw: bytes) -> int:
    """Offset of the CRLF before a second frame start inside `raw`, or -1."""
    cut = raw.find(_EVENT_LINE, 1)
    if raw.startswith(b"Response: "):
        response = raw.find(_RESPONSE_LINE, 1)
        if response >= 0 and (cut < 0 or response < cut):
            cut = response
    return cut


class AmiManager(Manager):
    """panoramisk's Manager with the connection lifecycle handed to the source.

    panoramisk reconnects on a fixed delay, pings without a timeout and schedules its own
    login; the source does all three itself (backoff with jitter, a ping watchdog, a login
    that never puts the secret into panoramisk's config), so those paths are disabled here.
    """

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.lost: asyncio.Future[BaseException | None] = self.loop.create_future()
        self.ready: asyncio.Future[None] = self.loop.create_future()   # protocol attached

    def connection_made(self, f: asyncio.Future) -> None:  # type: ignore[override]
        if f.cancelled():
            return
        if f.exception() is not None:
            if not self.lost.done():
                self.lost.set_result(f.exception())
            return
        super().connection_made(f)
        if not self.ready.done():
            self.ready.set_result(None)

    def ping(self) -> None:
        # the source's watchdog pings with a timeout; panoramisk's pinger never times out
        return None

    def connection_lost(self, exc: BaseException | None) -> None:  # type: ignore[override]
        self._connected = False
        if self.pinger:
            self.pinger.cancel()
            self.pinger = None
        if not self.lost.done():
            self.lost.set_result(exc)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            super().close()
        if not self.lost.done():
            self.lost.set_result(None)
