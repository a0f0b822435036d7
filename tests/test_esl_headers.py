"""The FreeSWITCH reader cuts only the headers the source reads out of an event (HeaderPicker).

Every real capture is read both ways, all headers and picked ones, and must give the same clues;
and every header the source asks for must be on the picker's list, or a record would silently
lose a field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from callcause.connectors.freeswitch.headers import HeaderPicker, parse_plain
from callcause.connectors.freeswitch.source import READ_HEADERS, clues_from_event
from callcause.connectors.simulator.esl import event_frames, frame_body, load_capture

FIXTURES = Path(__file__).parent / "fixtures" / "esl"
PICKER = HeaderPicker(READ_HEADERS)


def plain_bodies() -> list[tuple[str, bytes]]:
    out = []
    for path in sorted(FIXTURES.glob("*.txt")):
        for frame in event_frames(load_capture(path)):
            if b"Content-Type: text/event-plain" in frame.split(b"\n\n", 1)[0]:
                body = frame_body(frame)
                if b"Event-Name: CHANNEL_HANGUP" in body:
                    out.append((path.name, body if body.endswith(b"\n\n") else body + b"\n"))
    return out


BODIES = plain_bodies()


class Recording(Mapping[str, str]):
    """Headers that note every key asked for, present or not."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self.data = data
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.data[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return self.data.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the source must not walk all headers: the picker keeps only some")

    def __len__(self) -> int:
        return len(self.data)


def test_there_are_hangup_events_to_compare() -> None:
    assert len(BODIES) >= 40


@pytest.mark.parametrize(("name", "body"), BODIES, ids=[f"{n}#{i}" for i, (n, _) in enumerate(BODIES)])
def test_picked_headers_give_the_same_clues_as_all_headers(name: str, body: bytes) -> None:
    full, _ = parse_plain(body.decode())
    picked = PICKER.pick(body)
    assert set(picked) <= set(READ_HEADERS) | set(HeaderPicker.ALWAYS)
    for key, value in picked.items():
        assert full.get(key) == value, key
    a = clues_from_event(full, "fs", version="1.10.12", received_at=1.0)
    b = clues_from_event(picked, "fs", version="1.10.12", received_at=1.0)
    assert a == b


def test_every_header_the_source_reads_is_picked() -> None:
    asked: set[str] = set()
    samples = [parse_plain(body.decode())[0] for _, body in BODIES] + [{}]   # empty: every fallback is tried
    for headers in samples:
        rec = Recording(headers)
        clues_from_event(rec, "fs", version="1.10.12", received_at=1.0)
        asked |= rec.asked
    assert asked - set(READ_HEADERS) == set()


def test_a_name_inside_another_header_name_is_not_picked() -> None:
    body = b"Event-Name: CHANNEL_HANGUP_COMPLETE\nOther-Leg-Unique-ID: other\nUnique-ID: mine\nX: 1\n\n"
    picked = PICKER.pick(body)
    assert picked["Unique-ID"] == "mine"
    assert picked["Other-Leg-Unique-ID"] == "other"
    body = b"Event-Name: CHANNEL_HANGUP_COMPLETE\nCaller-Unique-ID: c\nX-Unique-ID: no\n\n"
    picked = PICKER.pick(body)
    assert "Unique-ID" not in picked and picked["Caller-Unique-ID"] == "c"


def test_picked_values_are_url_decoded_and_problems_noted() -> None:
    body = (b"Event-Name: CHANNEL_HANGUP_COMPLETE\nCaller-Caller-ID-Number: %2B4930%20123\n"
            b"variable_sip_reason: Q.850%3Bcause%3D17\nChannel-Name: sofia/%ZZ\n\n")
    picked = PICKER.pick(body)
    assert picked["Caller-Caller-ID-Number"] == "+4930 123"
    assert picked["variable_sip_reason"] == "Q.850;cause=17"
    assert picked.problems == {"bad_percent_encoding"}
    assert picked["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"   # the first line has no newline before it


def test_the_memory_of_decoded_values_keeps_short_ones_only() -> None:
    """Decoded values are remembered because a few recur in every event; a long value is not
    one of them, and a hostile one may be megabytes: 4,096 of those held 700 MB in the fuzzer."""
    from callcause.connectors.freeswitch import headers

    picker = HeaderPicker(READ_HEADERS)
    long_value = "%2B" + "4" * headers.MEMO_VALUE_MAX
    for i in range(3):
        body = (f"Event-Name: CHANNEL_HANGUP_COMPLETE\nCaller-Caller-ID-Number: {long_value}{i}\n"
                f"variable_sip_reason: Q.850%3Bcause%3D17\n\n").encode()
        picked = picker.pick(body)
        assert picked["Caller-Caller-ID-Number"] == "+" + "4" * headers.MEMO_VALUE_MAX + str(i)
        assert picked["variable_sip_reason"] == "Q.850;cause=17"
    assert list(picker._memo) == ["Q.850%3Bcause%3D17"]


def test_an_event_with_a_blank_line_before_its_end_is_left_to_the_full_parse() -> None:
    own_body = b"Event-Name: BACKGROUND_JOB\nContent-Length: 3\n\n+OK"
    swallowed = (b"Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: a\n\n"
                 b"Content-Length: 40\nContent-Type: text/event-plain\n\nEvent-Name: HEARTBEAT\n\n")
    not_ascii = "Event-Name: CHANNEL_HANGUP_COMPLETE\nCaller-Caller-ID-Name: Jürgen\n\n".encode()
    for body in (own_body, swallowed, not_ascii, b""):
        assert PICKER.pick(body) is None
