"""One test per panoramisk 1.4 defect, each against a real TCP server (the simulator), each
showing the stock reader's failure next to ours where the stock reader can be run."""

from __future__ import annotations

import asyncio
import contextlib
import warnings

from ami_support import SECRET, fixture, running, settle, wait_until
from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol

from callcause import metrics

# capture 015 (Asterisk 13, real bytes): UTF-8 CallerIDName and an `AccountCode:` line that
# lost its trailing space in the published copy
HANGUP_015 = fixture("public-015-ast13-hangup-cause17-user-busy-wire.txt")[0]


class CountingProtocol(AMIProtocol):
    """panoramisk's own reader, unchanged; only counts bytes so a test can wait for them."""

    received = 0

    def data_received(self, data: bytes) -> None:
        CountingProtocol.received += len(data)
        super().data_received(data)


@contextlib.asynccontextmanager
async def stock_client(port: int):
    """A plain panoramisk Manager logged in to the simulator, collecting every event."""
    CountingProtocol.received = 0
    events: list = []
    manager = Manager(host="127.0.0.1", port=port, username="callcause", secret=SECRET,
                      loop=asyncio.get_running_loop(), protocol_factory=CountingProtocol,
                      ping_delay=3600)
    manager.register_event("Hangup", lambda m, e: events.append(e))
    await manager.connect()
    try:
        yield manager, events
    finally:
        manager.close()


def malformed(source, kind: str) -> float:
    return metrics.MALFORMED.labels(source=source.where, kind=kind)._value.get()


def capture_fields(source) -> list[dict[str, str]]:
    """Record what the correlator is fed (name, fields) without changing it."""
    seen: list[dict[str, str]] = []
    feed = source.correlator.feed
    source.protocol.on_event = lambda name, f: (seen.append(dict(f)), feed(name, f))
    return seen


async def test_utf8_character_split_across_reads_is_kept() -> None:
    data = (HANGUP_015 + "\r\n\r\n").encode()
    cut = data.index("Оператор".encode()) + 1          # inside the two bytes of "О"
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        async with stock_client(sim.port) as (_, stock_events):
            await sim.wait_logins(2)
            seen = capture_fields(source)
            start_ours, start_stock = source.protocol.bytes_received, CountingProtocol.received

            async def both_read(offset: int) -> None:
                await wait_until(lambda: source.protocol.bytes_received - start_ours >= offset
                                 and CountingProtocol.received - start_stock >= offset)

            await sim.send_raw(data, splits=[cut], between=both_read)
            await got.wait(1)
            await wait_until(lambda: stock_events)
        assert seen[0]["calleridname"] == "Оператор 11"
        assert stock_events[0]["CallerIDName"] == "ператор 11"    # panoramisk lost a character


async def test_header_with_nothing_after_the_colon_is_kept() -> None:
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        async with stock_client(sim.port) as (_, stock_events):
            await sim.wait_logins(2)
            seen = capture_fields(source)
            await sim.send_events([HANGUP_015])
            await got.wait(1)
            await wait_until(lambda: stock_events)
        assert "AccountCode:" in HANGUP_015.split("\r\n")
        assert seen[0]["accountcode"] == ""
        assert "AccountCode" not in stock_events[0]               # panoramisk dropped it


async def test_unterminated_frame_is_capped_counted_and_the_stream_resyncs() -> None:
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        before = malformed(source, "oversized_frame")
        peak = 0

        async def watch(_: int) -> None:
            nonlocal peak
            await wait_until(lambda: source.protocol.bytes_received > 10_000_000)
            peak = len(source.protocol.buffer)

        flood = b"Event: Hangup\r\nAppData: " + b"x" * 10_000_000
        await sim.send_raw(flood + b"\r\n\r\n" + (HANGUP_015 + "\r\n\r\n").encode(),
                           splits=[len(flood)], between=watch)
        await got.wait(1)
        assert peak <= source.protocol.max_frame               # never held the 10 MB
        assert malformed(source, "oversized_frame") == before + 1
        assert got.clues[0].leg_id == "1482346630.65506"      # the next frame was read


async def test_silent_peer_is_noticed_by_the_ping_watchdog() -> None:
    async with running(ping_interval=0.05, ping_timeout=0.1) as (sim, source, _got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        before = metrics.SOURCE_RECONNECTS.labels(source="pbx-test")._value.get()
        sim.silent = True                        # TCP stays open, nothing is answered
        await wait_until(lambda: not source.connected, 5)
        sim.silent = False
        await sim.wait_logins(2)
        await wait_until(lambda: source.connected)
        assert metrics.SOURCE_RECONNECTS.labels(source="pbx-test")._value.get() > before


async def test_manager_is_built_and_connected_inside_the_running_loop() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with running() as (sim, source, got):
            await asyncio.wait_for(source.logged_in.wait(), 5)
            assert source.manager.loop is asyncio.get_running_loop()
            await sim.send_events([HANGUP_015])
            await got.wait(1)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)
                and "event loop" in str(w.message)]


async def test_event_and_header_names_match_whatever_their_case() -> None:
    # capture 026's Asterisk 1.8 spelling `UniqueID` in Dial and `Uniqueid` in Hangup,
    # plus the `Cause-Txt` spelling some libraries' tests use (never real Asterisk)
    frames = fixture("public-026-ast1.8-dial-begin-and-hangup16.txt")
    frames[1] = frames[1].replace("Cause-txt:", "Cause-Txt:").replace("Event: Hangup", "Event: HANGUP")
    async with running(use_filter=False) as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        await sim.send_events(frames)
        await settle(source)
        (c,) = got.clues
        assert (c.leg_id, c.pbx_cause, c.direction) == ("1340097427.11", "Normal Clearing", "outbound")


async def test_server_side_filter_is_anchored() -> None:
    """`Hangup` must not admit HangupHandlerRun (the regex is matched on the whole event)."""
    frames = fixture("asterisk-sip486-busy.txt")
    async with running() as (sim, source, got):
        await asyncio.wait_for(source.logged_in.wait(), 5)
        assert source.filter_active
        seen = capture_fields(source)
        start = source.protocol.events_seen
        await sim.send_events(frames)
        await settle(source)
        arrived = source.protocol.events_seen - start
        names = {f["event"] for f in seen}
        assert arrived < len(frames) / 3                     # 100 events shrink to a quarter
        assert not any("handler" in n for n in names)
        assert len(got.clues) == 1


def test_header_spellings_from_garbage_do_not_grow_without_bound():
    """Each new spelling of a header name is lower-cased once and remembered, up to a bound:
    a stream of never-repeating names (garbage, a fuzzer) must not grow the memory forever,
    and the names are still read right beyond it."""
    from callcause.connectors.asterisk import protocol

    protocol._LOWER.clear()              # only a cache: the names are read right without it
    long_name = "X" * 100_000
    assert protocol.parse_fields(f"{long_name}: v") == ({long_name.lower(): "v"}, 0)
    assert long_name not in protocol._LOWER and "Event" not in protocol._LOWER
    protocol.parse_fields("Event: Hangup")
    assert protocol._LOWER == {"Event": "event"}
    for i in range(protocol._LOWER_MAX + 500):
        fields, bad = protocol.parse_fields(f"Event: Junk\r\nX-Name-{i}: v{i}\r\n  Padded-{i}  : w")
        assert fields == {"event": "Junk", f"x-name-{i}": f"v{i}", f"padded-{i}": "w"} and bad == 0
    assert len(protocol._LOWER) <= protocol._LOWER_MAX


def test_header_lines_split_at_the_first_colon_whatever_the_line():
    """The reader's shortcut (split at `: ` when the key has no colon) gives what splitting at
    the first colon gives, on seeded random lines of colons, spaces, CR, LF and letters."""
    import random

    from callcause.connectors.asterisk.protocol import parse_fields

    def first_colon(text: str) -> tuple[dict, int]:
        fields, bad = {}, 0
        for line in text.split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep or not key:
                bad += bool(line)
                continue
            fields.setdefault(key.strip().lower(), value[1:] if value[:1] == " " else value)
        return fields, bad

    rnd = random.Random(20261203)
    alphabet = ["a", "B", ":", " ", "\r\n", ": ", "::", "x", "\r", "\n", "é"]
    for _ in range(20_000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(14)))
        assert parse_fields(text) == first_colon(text), repr(text)
