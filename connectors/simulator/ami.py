"""An Asterisk manager interface on 127.0.0.1 that replays captured calls as real bytes.

Tests, the demo and the benchmark talk to it exactly as to Asterisk: banner, Login (success
and `Authentication failed`), Filter (regexes applied to what it sends, like Asterisk),
Ping, CoreSettings, CoreShowChannels, Logoff. Knobs let a test drop the connection, go
silent, split frames at any byte offset and inject garbage. `Scenario` rewrites Uniqueids,
Linkedids and channel numbers per repetition, so one capture can play as many distinct calls.
Responses follow Asterisk's main/manager.c and manager_doc.xml (documented field lists).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

EOL = "\r\n"
BANNER_VERSION = "11.0.0"          # the AMI version Asterisk 22 announces


# --- captures ------------------------------------------------------------------------------

def load_frames(path: str | Path) -> list[str]:
    """The event frames of a capture file, as wire text without the blank-line terminator.

    Lines starting with `#` (the `# source:` header of a fixture) are skipped, as are the
    banner and the responses recorded in the capture: the simulator answers actions itself.
    Line ends are normalised to CRLF; trailing spaces (`AccountCode: `) are kept.
    """
    text = Path(path).read_bytes().decode("utf-8")
    frames: list[str] = []
    current: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("#") or line.startswith("Asterisk Call Manager/"):
            continue
        if line == "":
            if current:
                frames.append(EOL.join(current))
                current = []
            continue
        current.append(line)
    if current:
        frames.append(EOL.join(current))
    return [f for f in frames if f.startswith("Event:")]


_UNIQUEID = re.compile(r"(?<![\d.])(\d{9,10})\.(\d+)(?![\d.])")
_CHANNEL_SEQ = re.compile(r'([A-Za-z0-9]+/[^\s,"]*?-)([0-9a-f]{8})(?=;[12]|<ZOMBIE>|\s|,|"|$)', re.M)


@dataclass
class Scenario:
    """A capture compiled into a template whose ids can be renewed for each repetition."""

    name: str
    frames: list[str]
    _pieces: list[list[str | tuple[str, str]]] = field(default_factory=list, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        return cls.from_frames(Path(path).name, load_frames(path))

    @classmethod
    def from_frames(cls, name: str, frames: list[str]) -> Scenario:
        sc = cls(name, frames)
        for frame in frames:
            pieces: list[str | tuple[str, str]] = []
            pos = 0
            marks = [(m.start(0), m.end(0), ("u", m.group(0))) for m in _UNIQUEID.finditer(frame)]
            marks += [(m.start(2), m.end(2), ("c", m.group(2))) for m in _CHANNEL_SEQ.finditer(frame)]
            for start, end, token in sorted(marks):
                if start < pos:
                    continue
                pieces.append(frame[pos:start])
                pieces.append(token)
                pos = end
            pieces.append(frame[pos:])
            sc._pieces.append(pieces)
        return sc

    def render(self, ids: IdSource | None) -> list[str]:
        """The frames with fresh ids (consistent within this rendering), or as captured."""
        if ids is None:
            return list(self.frames)
        mapping: dict[tuple[str, str], str] = {}
        out = []
        for pieces in self._pieces:
            parts = []
            for p in pieces:
                if isinstance(p, str):
                    parts.append(p)
                    continue
                new = mapping.get(p)
                if new is None:
                    new = mapping[p] = ids.uniqueid() if p[0] == "u" else ids.channel_seq()
                parts.append(new)
            out.append("".join(parts))
        return out


class IdSource:
    """Fresh Uniqueids (`<epoch>.<n>`) and channel sequence numbers, never repeated."""

    def __init__(self, epoch: int | None = None) -> None:
        self.epoch = epoch or int(time.time())
        self._n = itertools.count(1)
        self._seq = itertools.count(1)

    def uniqueid(self) -> str:
        return f"{self.epoch}.{next(self._n)}"

    def channel_seq(self) -> str:
        return f"{next(self._seq) & 0xFFFFFFFF:08x}"


# --- filters -------------------------------------------------------------------------------

_POSIX_CLASSES = {"[[:space:]]": r"\s", "[[:digit:]]": r"\d", "[[:alpha:]]": "[A-Za-z]",
                  "[[:alnum:]]": "[A-Za-z0-9]", "[[:upper:]]": "[A-Z]", "[[:lower:]]": "[a-z]"}


def compile_filter(text: str) -> tuple[bool, re.Pattern[str]]:
    """A manager `Filter:` value: (include?, regex). Asterisk's legacy filters are POSIX
    extended regexes run against the whole event text; `!` in front excludes."""
    include = not text.startswith("!")
    body = text if include else text[1:]
    for posix, py in _POSIX_CLASSES.items():
        body = body.replace(posix, py)
    return include, re.compile(body, re.DOTALL)


def passes(filters: Sequence[tuple[bool, re.Pattern[str]]], event: str) -> bool:
    if not filters:
        return True
    includes = [rx for inc, rx in filters if inc]
    excludes = [rx for inc, rx in filters if not inc]
    if includes and not any(rx.search(event) for rx in includes):
        return False
    return not any(rx.search(event) for rx in excludes)


# --- the server ----------------------------------------------------------------------------

class Session:
    """One manager connection."""

    def __init__(self, sim: AmiSimulator, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.logged_in = False
        self.filters: list[tuple[bool, re.Pattern[str]]] = []
        self.filter_texts: tuple[str, ...] = ()
        self.actions: list[dict[str, str]] = []
        self.closed = asyncio.Event()

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def event_bytes(self, frame: str) -> bytes | None:
        if not passes(self.filters, frame + EOL):
            return None
        return (frame + EOL + EOL).encode("utf-8")

    def respond(self, action: dict[str, str], lines: list[str]) -> None:
        if self.sim.silent:
            return
        head = ["Response: " + lines[0]]
        if "actionid" in action:
            head.append("ActionID: " + action["actionid"])
        self.write((EOL.join(head + lines[1:]) + EOL + EOL).encode("utf-8"))


class AmiSimulator:
    """`async with AmiSimulator(...) as sim:` then connect to `sim.port`."""

    def __init__(self, *, username: str = "callcause", secret: str = "s3cret",
                 banner_version: str = BANNER_VERSION, asterisk_version: str = "22.10.1",
                 auth_fail_delay: float = 0.0, allow_filter: bool = True,
                 host: str = "127.0.0.1", port: int = 0, ssl: object | None = None) -> None:
        self.username = username
        self.secret = secret
        self.banner_version = banner_version
        self.asterisk_version = asterisk_version
        self.auth_fail_delay = auth_fail_delay     # Asterisk sleeps 1 s; tests need not
        self.allow_filter = allow_filter           # False: as if the user lacks write=system
        self.host = host
        self.port = port
        self.ssl = ssl
        self.silent = False                        # True: read actions, answer nothing
        self.sessions: list[Session] = []
        self.logins = 0
        self.failed_logins = 0
        self.channels: dict[str, str] = {}         # live channels: uniqueid -> name
        self.on_signal: Callable[[Session], Awaitable[None]] | None = None
        self._server: asyncio.base_events.Server | None = None
        self._login_cond = asyncio.Condition()

    async def __aenter__(self) -> AmiSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for s in list(self.sessions):
            s.writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    # knobs ---------------------------------------------------------------------------------

    async def wait_logins(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` successful logins happened since the start."""
        async def _wait() -> None:
            async with self._login_cond:
                await self._login_cond.wait_for(lambda: self.logins >= count)
        await asyncio.wait_for(_wait(), timeout)

    def active(self) -> list[Session]:
        return [s for s in self.sessions if s.logged_in and not s.writer.is_closing()]

    def drop(self) -> None:
        """Close every connection at once, as a crashed or restarted Asterisk would."""
        for s in list(self.sessions):
            s.writer.close()

    async def send_raw(self, data: bytes, *, splits: Iterable[int] = (),
                       between: Callable[[int], Awaitable[None]] | None = None) -> None:
        """Write bytes to every logged-in session, cut at the given byte offsets; `between`
        is awaited after each piece (a test waits there until the client read it)."""
        cuts = [0, *sorted(splits), len(data)]
        for i in range(len(cuts) - 1):
            piece = data[cuts[i]:cuts[i + 1]]
            for s in self.active():
                s.write(piece)
                await s.writer.drain()
            if between is not None and i < len(cuts) - 2:
                await between(cuts[i + 1])

    def inject_garbage(self, data: bytes = b"\x00\xff garbage \xfe\r\nno colon here") -> None:
        for s in self.active():
            s.write(data + b"\r\n\r\n")

    async def send_events(self, frames: Iterable[str], *, chunk: int | None = None) -> int:
        """Send event frames to every logged-in session (each applying its own filters);
        `chunk` cuts the byte stream every `chunk` bytes, ignoring frame boundaries.
        Returns how many frames were offered. Live channels are tracked for CoreShowChannels
        whether or not anyone is connected."""
        frames = list(frames)
        for f in frames:
            self._track(f)
        for s in self.active():
            data = b"".join(b for b in (s.event_bytes(f) for f in frames) if b)
            if chunk:
                for i in range(0, len(data), chunk):
                    s.write(data[i:i + chunk])
                    await s.writer.drain()
            else:
                s.write(data)
                await s.writer.drain()
        return len(frames)

    async def play(self, scenarios: Sequence[Scenario], *, calls: int | None = None,
                   rate: float | None = None, ids: IdSource | None = None,
                   stop: asyncio.Event | None = None) -> int:
        """Replay scenarios in turn (a call each), `rate` calls per second (None = as fast
        as the readers take it), with fresh ids per call when `ids` is given. Returns the
        number of calls played."""
        played = 0
        start = time.monotonic()
        for sc in itertools.cycle(scenarios):
            if (calls is not None and played >= calls) or (stop is not None and stop.is_set()):
                break
            await self.send_events(sc.render(ids))
            played += 1
            if rate:
                delay = start + played / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        return played

    def _track(self, frame: str) -> None:
        if frame.startswith("Event: Newchannel\r\n") or frame.startswith("Event: Hangup\r\n"):
            uid = chan = None
            for line in frame.split(EOL):
                k, _, v = line.partition(": ")
                if k.lower() == "uniqueid":
                    uid = v
                elif k == "Channel":
                    chan = v
            if uid:
                if frame.startswith("Event: Newchannel"):
                    self.channels[uid] = chan or ""
                else:
                    self.channels.pop(uid, None)

    # protocol ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, reader, writer)
        self.sessions.append(session)
        try:
            writer.write(f"Asterisk Call Manager/{self.banner_version}{EOL}".encode())
            while True:
                try:
                    block = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    break
                action: dict[str, str] = {}
                for line in block.decode("utf-8", "replace").split(EOL):
                    k, sep, v = line.partition(":")
                    if sep:
                        action.setdefault(k.strip().lower(), v.strip())
                session.actions.append(action)
                if not await self._act(session, action):
                    break
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            session.closed.set()
            self.sessions.remove(session)

    async def _act(self, s: Session, a: dict[str, str]) -> bool:
        name = a.get("action", "").lower()
        if name == "login":
            if a.get("username") == self.username and a.get("secret") == self.secret:
                s.logged_in = True
                s.respond(a, ["Success", "Message: Authentication accepted"])
                boot = s.event_bytes(EOL.join(["Event: FullyBooted", "Privilege: system,all",
                                               "Uptime: 49", "LastReload: 49",
                                               "Status: Fully Booted"]))
                if boot and not self.silent:
                    s.write(boot)
                async with self._login_cond:
                    self.logins += 1
                    self._login_cond.notify_all()
                return True
            self.failed_logins += 1
            if self.auth_fail_delay:
                await asyncio.sleep(self.auth_fail_delay)
            s.respond(a, ["Error", "Message: Authentication failed"])
            return False       # Asterisk ends the session after a failed login
        if name == "logoff":
            s.respond(a, ["Goodbye", "Message: Thanks for all the fish."])
            return False
        if not s.logged_in:
            s.respond(a, ["Error", "Message: Permission denied"])
            return True
        if name == "ping":
            s.respond(a, ["Success", "Ping: Pong", f"Timestamp: {time.time():.6f}"])
        elif name == "filter":
            if not self.allow_filter:
                s.respond(a, ["Error", "Message: Permission denied"])
            elif a.get("operation", "").lower() != "add" or not a.get("filter"):
                s.respond(a, ["Error", "Message: Unknown operation"])
            else:
                try:
                    s.filters.append(compile_filter(a["filter"]))
                    s.filter_texts += (a["filter"],)
                    s.respond(a, ["Success", "Message: Filter Added Successfully"])
                except re.error:
                    s.respond(a, ["Error", "Message: Filter Not Added"])
        elif name == "events":
            s.respond(a, ["Success", "Events: On"])
        elif name == "coresettings":
            s.respond(a, ["Success", "AMIversion: " + self.banner_version,
                          "AsteriskVersion: " + self.asterisk_version, "SystemName: ",
                          "CoreMaxCalls: 0", "CoreMaxLoadAvg: 0.000000", "CoreRunUser: asterisk",
                          "CoreRunGroup: asterisk", "CoreMaxFilehandles: 0",
                          "CoreRealTimeEnabled: No", "CoreCDRenabled: Yes", "CoreHTTPenabled: No"])
        elif name == "coreshowchannels":
            await self._core_show_channels(s, a)
        elif name == "userevent":
            s.respond(a, ["Success", "Message: Event Sent"])
            if self.on_signal is not None:
                asyncio.get_running_loop().create_task(self.on_signal(s))
        else:
            s.respond(a, ["Error", "Message: Invalid/unknown command"])
        return True

    async def _core_show_channels(self, s: Session, a: dict[str, str]) -> None:
        aid = a.get("actionid", "")
        s.respond(a, ["Success", "EventList: start", "Message: Channels will follow"])
        if self.silent:
            return
        out = []
        for uid, chan in self.channels.items():
            out.append(EOL.join(["Event: CoreShowChannel", f"ActionID: {aid}", f"Channel: {chan}",
                                 f"Uniqueid: {uid}", f"Linkedid: {uid}"]) + EOL + EOL)
        out.append(EOL.join(["Event: CoreShowChannelsComplete", f"ActionID: {aid}",
                             "EventList: Complete", f"ListItems: {len(self.channels)}"]) + EOL + EOL)
        s.write("".join(out).encode())


# --- stand-alone use (benchmark, manual tests) ------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Serve captures on a port; with --on-signal, replay them when a client sends the
    `UserEvent` action (the benchmark's start signal), as fast as the reader takes them."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("captures", nargs="+")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--rate", type=float, default=None)
    p.add_argument("--batch", type=int, default=20, help="calls per write when not paced")
    args = p.parse_args(argv)
    scenarios = [Scenario.load(c) for c in args.captures]

    async def serve() -> None:
        sim = AmiSimulator()
        done = asyncio.Event()

        async def stream(session: Session) -> None:
            with contextlib.suppress(ConnectionError):
                await _stream(session)

        async def _stream(session: Session) -> None:
            ids = IdSource()
            cache: dict[tuple[int, int], bool] = {}
            t0 = time.monotonic()
            for n in range(0, args.calls, args.batch):
                chunks = []
                for k in range(n, min(n + args.batch, args.calls)):
                    si = k % len(scenarios)
                    frames = scenarios[si].render(ids)
                    for fi, frame in enumerate(frames):
                        ok = cache.get((si, fi))
                        if ok is None:
                            ok = cache[(si, fi)] = passes(session.filters, frame + EOL)
                        if ok:
                            chunks.append(frame + EOL + EOL)
                    if args.rate:
                        delay = t0 + (k + 1) / args.rate - time.monotonic()
                        if delay > 0:
                            session.write("".join(chunks).encode())
                            chunks = []
                            await session.writer.drain()
                            await asyncio.sleep(delay)
                session.write("".join(chunks).encode())
                await session.writer.drain()
                if session.writer.is_closing():
                    break
            marker = EOL.join(["Event: UserEvent", "Privilege: user,all", "UserEvent: BenchEnd"])
            session.write((marker + EOL + EOL).encode())
            await session.writer.drain()
            done.set()

        sim.on_signal = stream
        await sim.start()
        print(sim.port, flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await sim.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
