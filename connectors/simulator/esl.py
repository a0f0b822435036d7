"""A FreeSWITCH event socket (mod_event_socket, inbound mode) on 127.0.0.1 that replays real frames.

Tests, the demo and the bench connect the real client to it over TCP. It speaks the wire
protocol as FreeSWITCH 1.10 does (LF line ends, Content-Length framing, URL-encoded plain
values): auth/request, accepted and rejected auth, `event plain|json`, `filter`, `api`,
`exit` with its disconnect notice, HEARTBEAT; and it misbehaves on demand (silence, drops,
frames split at any byte, garbage). It runs its own asyncio loop in a thread, so a test may
stall its own loop without stalling the "PBX".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
# mod_event_socket.c: the 67-byte notice sent before it closes a session
DISCONNECT_NOTICE = (b"Content-Type: text/disconnect-notice\nContent-Disposition: disconnect\n"
                     b"Content-Length: 67\n\nDisconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# --- Frames -----------------------------------------------------------------------------------

def event_frame(body: bytes | str, content_type: str = "text/event-plain") -> bytes:
    """Wrap an event body the way mod_event_socket does: Content-Length, Content-Type, blank line."""
    data = body.encode() if isinstance(body, str) else body
    return b"Content-Length: %d\nContent-Type: %s\n\n" % (len(data), content_type.encode()) + data


def split_frames(data: bytes) -> list[bytes]:
    """Cut a recorded ESL byte stream into frames (envelope + body), honouring Content-Length."""
    frames, pos = [], 0
    while pos < len(data):
        while data.startswith(b"\n", pos):
            pos += 1
        end = data.find(b"\n\n", pos)
        if end < 0:
            break
        envelope = data[pos:end]
        length = 0
        for line in envelope.split(b"\n"):
            if line.startswith(b"Content-Length: "):
                length = int(line[16:])
        stop = end + 2 + length
        frames.append(data[pos:stop])
        pos = stop
    return frames


def load_capture(path: str | Path) -> list[bytes]:
    """All frames of a capture file, skipping its leading `# ...` description lines."""
    raw = Path(path).read_bytes()
    while raw.startswith(b"#"):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return split_frames(raw)


def event_frames(frames: Iterable[bytes]) -> list[bytes]:
    return [f for f in frames if b"Content-Type: text/event-" in f.split(b"\n\n", 1)[0]]


def frame_body(frame: bytes) -> bytes:
    return frame.split(b"\n\n", 1)[1] if b"\n\n" in frame else b""


def plain_headers(body: bytes) -> dict[str, str]:
    """Decoded headers of a plain event body (for filters, json conversion, tests)."""
    out: dict[str, str] = {}
    head = body.split(b"\n\n", 1)[0]
    for line in head.decode("utf-8", errors="replace").split("\n"):
        name, sep, value = line.partition(": ")
        if sep:
            out[name] = unquote(value)
    return out


def event_name(frame: bytes) -> str | None:
    body = frame_body(frame)
    match = re.search(rb"(?:^|\n)Event-Name: ([^\n]*)", body)
    return match.group(1).decode() if match else None


def with_fresh_ids(frames: Sequence[bytes], keep: Iterable[str] = ()) -> list[bytes]:
    """The same frames with every call/leg UUID replaced consistently (Core-UUID kept).

    Links between legs survive because one old id always maps to the same new id.
    """
    keep_set = {k.encode() for k in keep}
    for f in frames:
        match = re.search(rb"\nCore-UUID: ([0-9a-f-]{36})", frame_body(f))
        if match:
            keep_set.add(match.group(1))
    mapping: dict[bytes, bytes] = {}

    def repl(m: re.Match[bytes]) -> bytes:
        old = m.group(0)
        if old in keep_set:
            return old
        if old not in mapping:
            mapping[old] = str(uuid.uuid4()).encode()
        return mapping[old]

    out = []
    for f in frames:
        body = _UUID.sub(repl, frame_body(f))
        envelope = f.split(b"\n\n", 1)[0]
        ctype = re.search(rb"Content-Type: ([^\n]+)", envelope)
        out.append(event_frame(body, ctype.group(1).decode() if ctype else "text/event-plain"))
    return out


_MICROS = re.compile(rb"(?m)^([A-Za-z_-]+(?:-Time|_uepoch|-Timestamp)): ([1-9][0-9]{15})$")
_SECONDS = re.compile(rb"(?m)^(variable_[a-z_]*_epoch): ([1-9][0-9]{9})$")


def shift_times(body: bytes, shift_us: int) -> bytes:
    """Every time of a leg in an event body (microsecond `*-Time`, `*_uepoch`, `*-Timestamp`
    and second `variable_*_epoch` values) moved by `shift_us`, so durations stay as recorded."""
    body = _MICROS.sub(lambda m: m.group(1) + b": " + str(int(m.group(2)) + shift_us).encode(), body)
    return _SECONDS.sub(lambda m: m.group(1) + b": " + str(int(m.group(2)) + shift_us // 1_000_000).encode(),
                        body)


def with_fresh_time(frame: bytes, now: float) -> bytes:
    """The frame as if sent at `now`: its Event-Date-Timestamp becomes now and every other
    time of the leg (created, answered, hangup ... in microseconds or seconds) moves with it,
    so durations stay as recorded."""
    body = frame_body(frame)
    match = re.search(rb"(?m)^Event-Date-Timestamp: ([0-9]{16})$", body)
    if not match:
        return frame
    body = shift_times(body, int(now * 1_000_000) - int(match.group(1)))
    local = quote(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)), safe="")
    gmt = quote(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)), safe="")
    body = re.sub(rb"(?m)^Event-Date-Local: .*$", b"Event-Date-Local: " + local.encode(), body)
    body = re.sub(rb"(?m)^Event-Date-GMT: .*$", b"Event-Date-GMT: " + gmt.encode(), body)
    ctype = re.search(rb"Content-Type: ([^\n]+)", frame.split(b"\n\n", 1)[0])
    return event_frame(body, ctype.group(1).decode() if ctype else "text/event-plain")


def heartbeat_body(version: str, core_uuid: str, seq: int) -> bytes:
    """A HEARTBEAT event built from the header list of FreeSWITCH's send_heartbeat (switch_core.c),
    in the shape of the HEARTBEAT frame in greenswitch's test suite (tests/test_lib_esl.py)."""
    now = time.time()
    lines = [
        ("Event-Name", "HEARTBEAT"), ("Core-UUID", core_uuid), ("FreeSWITCH-Hostname", "sim"),
        ("FreeSWITCH-Switchname", "sim"), ("FreeSWITCH-IPv4", "127.0.0.1"), ("FreeSWITCH-IPv6", "::1"),
        ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
        ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))),
        ("Event-Date-Timestamp", str(int(now * 1_000_000))), ("Event-Calling-File", "switch_core.c"),
        ("Event-Calling-Function", "send_heartbeat"), ("Event-Calling-Line-Number", "70"),
        ("Event-Sequence", str(seq)), ("Event-Info", "System Ready"),
        ("Up-Time", "0 years, 0 days, 0 hours, 1 minute, 0 seconds, 0 milliseconds, 0 microseconds"),
        ("FreeSWITCH-Version", version), ("Uptime-msec", "60000"), ("Session-Count", "0"),
        ("Max-Sessions", "1000"), ("Session-Per-Sec", "30"), ("Session-Per-Sec-Max", "2"),
        ("Session-Per-Sec-FiveMin", "0"), ("Session-Since-Startup", "0"), ("Session-Peak-Max", "0"),
        ("Session-Peak-FiveMin", "0"), ("Idle-CPU", "98.700000"),
    ]
    return "".join(f"{k}: {quote(v, safe='')}\n" for k, v in lines).encode() + b"\n"


def status_text(version: str) -> str:
    """`api status` output, in the layout of mod_commands' status_function."""
    return (f"UP 0 years, 0 days, 0 hours, 1 minute, 0 seconds, 0 milliseconds, 0 microseconds\n"
            f"FreeSWITCH (Version {version}) is ready\n0 session(s) since startup\n"
            f"0 session(s) - peak 0, last 5min 0\n0 session(s) per Sec out of max 30, peak 0, last 5min 0\n"
            f"1000 session(s) max\nmin idle cpu 0.00/99.00\nCurrent Stack Size/Max 240K/8192K\n")


def _reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def _api(text: str) -> bytes:
    data = text.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def _to_json(body: bytes) -> bytes:
    head, _, inner = body.partition(b"\n\n")
    obj: dict[str, str] = plain_headers(head + b"\n")
    if inner.strip():
        obj["_body"] = inner.decode("utf-8", errors="replace")
    return json.dumps(obj).encode()


# --- The server -------------------------------------------------------------------------------

@dataclass
class _Conn:
    no: int
    writer: asyncio.StreamWriter
    out: asyncio.Queue[bytes | None]
    authed: bool = False
    events: set[str] = field(default_factory=set)
    fmt: str = "plain"
    filters: list[tuple[str, str]] = field(default_factory=list)
    sent_events: int = 0
    closed: bool = False

    def wants(self, name: str | None, body: bytes) -> bool:
        if not self.authed or not self.events or name is None:
            return False
        if "ALL" not in self.events and name not in self.events:
            return False
        if self.filters:
            headers = plain_headers(body)
            return any(headers.get(h) == v for h, v in self.filters)
        return True


class EslServer:
    """A scripted FreeSWITCH event socket. Start it, point a client at `port`, feed it frames.

    Every knob may change while clients are connected: `reject_auth`, `rude` (ACL
    rejection), `silent` (answer nothing, send nothing), `split_at` (write in chunks of
    that many bytes), `drop_after` (close without notice after that many events).
    """

    def __init__(self, password: str = "ClueCon", *, host: str = "127.0.0.1", port: int = 0,
                 version: str = "1.10.12-release", heartbeat_interval: float | None = None) -> None:
        self.password = password
        self.host = host
        self.port = port
        self.version = version
        self.core_uuid = str(uuid.uuid4())
        self.heartbeat_interval = heartbeat_interval
        self.reject_auth = False
        self.rude = False
        self.silent = False
        self.split_at: int | None = None
        self.drop_after: int | None = None
        self.commands: list[tuple[int, str]] = []   # (connection number, command), auth redacted
        self.connections: list[_Conn] = []
        self.accepted = 0
        self.logins = 0
        self.subscriptions = 0
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._seq = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # lifecycle
    def start(self) -> EslServer:
        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            if self.heartbeat_interval:
                self._tasks.add(loop.create_task(self._heartbeats()))
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name="esl-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the ESL simulator did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for conn in list(self.connections):
                self._close(conn)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> EslServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # waiting (blocking; from asyncio use `await asyncio.to_thread(...)` or the async helpers)
    def wait_for(self, predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_subscribed(self, count: int = 1, timeout: float = 5.0) -> bool:
        return self.wait_for(lambda: self.subscriptions >= count, timeout)

    async def subscribed(self, count: int = 1, timeout: float = 5.0) -> bool:
        return await asyncio.to_thread(self.wait_subscribed, count, timeout)

    async def wait_for_async(self, predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(self.wait_for, predicate, timeout)

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # feeding (thread-safe, from any thread)
    def _call(self, coro) -> None:  # type: ignore[no-untyped-def]
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def send_events(self, frames: Iterable[bytes]) -> None:
        """Send event frames (as captured) to every connection subscribed to them, in order."""
        self._call(self._send_events(list(frames)))

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are to every authenticated connection (garbage, broken frames)."""
        self._call(self._broadcast(data))

    def disconnect(self, notice: bool = True, *, abort: bool = True) -> None:
        """End every session: with FreeSWITCH's disconnect notice, or without one: then
        `abort` resets the connection at once (unsent bytes lost, like a crash), otherwise
        everything queued is written first and the socket closed (like a restart)."""
        self._call(self._disconnect(notice, abort))

    def play(self, frames: Sequence[bytes], *, rate: float = 10.0, repeat: int = 1,
             fresh_ids: bool = True, fresh_times: bool = False) -> asyncio.Future:  # type: ignore[type-arg]
        """Paced replay in the background: `rate` frames per second, `repeat` times, each
        repetition with fresh Unique-IDs so every leg is new to the client; with
        `fresh_times` every frame carries the time it is sent."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._play(list(frames), rate, repeat, fresh_ids, fresh_times),
                                                self._loop)  # type: ignore[return-value]

    # --- on the server loop ----------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        conn = _Conn(no=self.accepted, writer=writer, out=asyncio.Queue())
        self.connections.append(conn)
        writer_task = asyncio.create_task(self._write_loop(conn))
        self._notify()
        try:
            if self.rude:
                text = b"Access Denied, go away.\n"
                conn.out.put_nowait(b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n%s"
                                    % (len(text), text))
                conn.out.put_nowait(None)
                await writer_task
                return
            conn.out.put_nowait(AUTH_REQUEST)
            while not conn.closed:
                try:
                    raw = await reader.readuntil(b"\n\n")
                except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                    break
                except asyncio.CancelledError:
                    # stop() cancels the handlers; on Python 3.11 a handler that ends cancelled
                    # makes asyncio's stream callback log a spurious traceback, so end normally
                    break
                command = raw.decode("utf-8", errors="replace").strip()
                if not command:
                    continue
                if self.silent:
                    continue
                self._handle(conn, command)
        finally:
            if not conn.closed:
                self._close(conn)
            with_timeout = asyncio.wait_for(writer_task, 5)
            try:
                await with_timeout
            except (TimeoutError, asyncio.CancelledError, ConnectionError):
                writer_task.cancel()
            if conn in self.connections:
                self.connections.remove(conn)
            self._notify()

    def _handle(self, conn: _Conn, command: str) -> None:
        verb, _, rest = command.partition(" ")
        self.commands.append((conn.no, "auth ********" if verb == "auth" else command))
        if verb == "auth":
            if rest == self.password and not self.reject_auth:
                conn.authed = True
                self.logins += 1
                conn.out.put_nowait(_reply("+OK accepted"))
            else:
                conn.out.put_nowait(_reply("-ERR invalid"))
                conn.out.put_nowait(None)
            self._notify()
            return
        if not conn.authed:
            conn.out.put_nowait(_reply("-ERR invalid"))
            conn.out.put_nowait(None)
            return
        if verb == "event":
            fmt, _, names = rest.partition(" ")
            if fmt not in ("plain", "json", "xml"):
                names, fmt = rest, "plain"
            conn.fmt = fmt
            conn.events.update(names.split())
            self.subscriptions += 1
            conn.out.put_nowait(_reply(f"+OK event listener enabled {fmt}"))
            self._notify()
        elif verb == "filter":
            parts = rest.split(None, 1)
            if parts and parts[0] == "delete":
                conn.filters.clear()
                conn.out.put_nowait(_reply("+OK filter deleted."))
            elif len(parts) == 2:
                conn.filters.append((parts[0], parts[1]))
                conn.out.put_nowait(_reply(f"+OK filter added. [{parts[0]}]=[{parts[1]}]"))
            else:
                conn.out.put_nowait(_reply("-ERR invalid syntax"))
        elif verb == "nixevent":
            conn.events.difference_update(rest.split())
            conn.out.put_nowait(_reply("+OK events nixed"))
        elif verb == "noevents":
            conn.events.clear()
            conn.out.put_nowait(_reply("+OK no longer listening for events"))
        elif verb == "api":
            if rest == "status":
                conn.out.put_nowait(_api(status_text(self.version)))
            elif rest == "version":
                conn.out.put_nowait(_api(f"FreeSWITCH Version {self.version} (simulator)\n"))
            else:
                conn.out.put_nowait(_api(f"-ERR {rest.split()[0] if rest else ''} Command not found!\n"))
        elif verb == "exit":
            conn.out.put_nowait(_reply("+OK bye"))
            conn.out.put_nowait(DISCONNECT_NOTICE)
            conn.out.put_nowait(None)
        else:
            conn.out.put_nowait(_reply("-ERR command not found"))

    async def _write_loop(self, conn: _Conn) -> None:
        writer = conn.writer
        try:
            while True:
                data = await conn.out.get()
                if data is None:
                    break
                if self.silent:
                    continue
                step = self.split_at
                if step:
                    for i in range(0, len(data), step):
                        writer.write(data[i:i + step])
                        await writer.drain()
                        await asyncio.sleep(0.0005)
                else:
                    writer.write(data)
                    if writer.transport.get_write_buffer_size() > 1 << 20:
                        await writer.drain()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            conn.closed = True
            with contextlib.suppress(RuntimeError):
                writer.close()

    def _close(self, conn: _Conn) -> None:
        conn.closed = True
        conn.out.put_nowait(None)

    async def _send_events(self, frames: list[bytes]) -> None:
        for frame in frames:
            name = event_name(frame)
            body = frame_body(frame)
            for conn in list(self.connections):
                if conn.closed or not conn.wants(name, body):
                    continue
                if conn.fmt == "json":
                    conn.out.put_nowait(event_frame(_to_json(body), "text/event-json"))
                else:
                    conn.out.put_nowait(frame)
                conn.sent_events += 1
                if self.drop_after is not None and conn.sent_events >= self.drop_after:
                    conn.writer.transport.abort()   # gone without a word
                    conn.closed = True
        await asyncio.sleep(0)

    async def _broadcast(self, data: bytes) -> None:
        for conn in list(self.connections):
            if conn.authed and not conn.closed:
                conn.out.put_nowait(data)

    async def _disconnect(self, notice: bool, abort: bool = True) -> None:
        for conn in list(self.connections):
            if conn.closed:
                continue
            if notice or not abort:
                if notice:
                    conn.out.put_nowait(DISCONNECT_NOTICE)
                self._close(conn)
            else:
                conn.writer.transport.abort()
                conn.closed = True

    async def _heartbeats(self) -> None:
        assert self.heartbeat_interval
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not self.silent:
                self._seq += 1
                await self._send_events([event_frame(heartbeat_body(self.version, self.core_uuid, self._seq))])

    async def _play(self, frames: list[bytes], rate: float, repeat: int, fresh_ids: bool,
                    fresh_times: bool) -> int:
        sent = 0
        interval = 1.0 / rate if rate > 0 else 0.0
        for _ in range(repeat):
            batch = with_fresh_ids(frames) if fresh_ids else frames
            for frame in batch:
                await self._send_events([with_fresh_time(frame, time.time()) if fresh_times else frame])
                sent += 1
                if interval:
                    await asyncio.sleep(interval)
        return sent


def main(argv: Sequence[str] | None = None) -> int:
    """Serve capture files on a port, for trying a client by hand."""
    parser = argparse.ArgumentParser(description="a FreeSWITCH event socket replaying capture files")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--port", type=int, default=8021)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--rate", type=float, default=2.0, help="events per second")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    frames = [f for path in args.files for f in event_frames(load_capture(path))]
    with EslServer(args.password, port=args.port, heartbeat_interval=20) as server:
        print(f"ESL simulator on {server.host}:{server.port}; waiting for a subscriber")
        while not server.wait_subscribed(1, timeout=1.0):
            pass
        server.play(frames, rate=args.rate, repeat=args.repeat).result()
        time.sleep(1.0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
