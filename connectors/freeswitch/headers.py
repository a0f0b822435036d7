"""The headers of one FreeSWITCH event: parsed from `text/event-plain` or `text/event-json`.

A CHANNEL_HANGUP_COMPLETE carries about 190 headers (5-9 kB), of which a record reads about
fifty. Splitting every line costs more than everything else the source does with an event, so
a consumer that names the headers it reads gets only those (`HeaderPicker`): one Aho-Corasick
pass over the text finds them (the `ahocorasick-rs` automaton, in Rust), and only their values
are cut out and decoded. Everything else (another event, a
non-ASCII body, an event with its own body) takes the full parse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from itertools import repeat
from typing import Any
from urllib.parse import unquote

from ahocorasick_rs import MATCHKIND_LEFTMOST_FIRST, AhoCorasick

from callcause.wire import ascii_int

MEMO_ENTRIES = 4096        # decoded values a picker remembers
MEMO_VALUE_MAX = 512       # ... each at most this long
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MISSING: Any = object()


def decode_value(value: str, problems: set[str]) -> str:
    """One URL-encoded header value, decoded; what is wrong with it goes into `problems`."""
    if _BAD_PERCENT.search(value):
        problems.add("bad_percent_encoding")
    value = unquote(value, errors="replace")
    if "\ufffd" in value:
        problems.add("invalid_utf8")
    return value


class DecodedHeaders(Mapping[str, str]):
    """Header values of one plain event, URL-decoded one value at a time, when first read.

    Lines are split before anything is decoded, so an encoded newline (`%0A`) stays inside
    its value instead of forging a header. Decoding lazily keeps the ~150 variables of a
    CHANNEL_HANGUP_COMPLETE cheap when only two dozen are used. Problems met while
    decoding are collected in `problems` for the reader of the event to report.
    """

    __slots__ = ("_cache", "_raw", "encoded", "problems")

    def __init__(self, raw: dict[str, str], *, encoded: bool = True) -> None:
        self._raw = raw
        self._cache: dict[str, str] = {}
        self.encoded = encoded
        self.problems: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        # the hot path: most values carry no escape at all and are returned as they are
        value = self._raw.get(key)
        if value is None:
            return default
        if not self.encoded or "%" not in value:
            return value
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = decode_value(value, self.problems)
        return cached

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def raw(self, key: str) -> str | None:
        return self._raw.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        return f"DecodedHeaders({len(self._raw)} headers)"


def parse_plain(text: str) -> tuple[DecodedHeaders, str]:
    """The body of a `text/event-plain` frame: `Name: value` lines, values URL-encoded.

    An event may carry its own body after `Content-Length: N` and a blank line (a
    BACKGROUND_JOB's output); it is returned separately instead of being glued to a header.
    """
    head, _, inner = text.partition("\n\n")
    bad = False
    try:
        # every line `Name: value`: split in C, no Python loop over the ~150 lines
        raw: dict[str, str] = dict(map(str.split, head.split("\n"), repeat(": "), repeat(1)))
    except ValueError:   # a line without ": " (empty value, garbage): line by line
        raw = {}
        for line in head.split("\n"):
            name, sep, value = line.partition(": ")
            if sep:
                raw[name] = value
            elif line.endswith(":"):
                raw[line[:-1]] = ""
            elif line:
                bad = True
    headers = DecodedHeaders(raw)
    if bad:
        headers.problems.add("bad_header_line")
    if inner and "Content-Length" in raw:
        length = ascii_int(raw["Content-Length"])
        if length is not None:
            inner = inner[:length]
    else:
        inner = inner.strip("\n")
    return headers, inner


def parse_json_event(text: str) -> tuple[DecodedHeaders, str]:
    """The body of a `text/event-json` frame: one object, values not URL-encoded."""
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("an event-json body must be one JSON object")
    body = obj.pop("_body", "")
    raw = {str(k): (v if isinstance(v, str) else "|".join(map(str, v)) if isinstance(v, list) else str(v))
           for k, v in obj.items()}
    return DecodedHeaders(raw, encoded=False), str(body)


class HeaderPicker:
    """Cuts the named headers out of a plain event, leaving the rest unread.

    Each name is searched as `\\nName: ` so that it matches a whole header name at a line start
    (`Unique-ID` is not found inside `Other-Leg-Unique-ID: `); the first line has no newline
    before it and is compared on its own. A name that occurs twice keeps its last value, as
    the full parse does. The same pass looks for blank lines: an event with one before its end
    (a body of its own, or a Content-Length that swallowed the next frame) is left to the full
    parse. The dispatching headers (`Event-Name`, `Event-Subclass`) are always picked.
    """

    ALWAYS = ("Event-Name", "Event-Subclass")

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(sorted(set(names) | set(self.ALWAYS)))
        self._wanted = frozenset(self.names)
        self._blank = len(self.names)   # the index of the blank-line pattern
        self._memo: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._finder = AhoCorasick([f"\n{n}: " for n in self.names] + ["\n\n"], matchkind=MATCHKIND_LEFTMOST_FIRST)

    def pick(self, body: bytes) -> PickedHeaders | None:
        """The wanted headers of an ASCII event body that ends in its only blank line,
        URL-decoded; None for any other body."""
        if not body.isascii():
            return None
        # the automaton over the text rather than the bytes: over bytes it lets go of the GIL
        # for each event, and taking it back from the busy loop thread costs a context switch
        # per event (0.6-1 per record against 0.1 measured, and 3-5 % fewer records/s)
        text = body.decode("ascii")
        matches = self._finder.find_matches_as_indexes(text)
        if not matches or matches[-1][1] != len(text) - 2:
            return None
        raw = PickedHeaders()
        name, sep, value = text[: text.find("\n")].partition(": ")
        if sep and name in self._wanted:
            raw[name] = value
        names, blank = self.names, self._blank
        for index, _, start in matches[:-1]:
            if index == blank:
                return None
            raw[names[index]] = text[start: text.find("\n", start)]
        for key, value in list(raw.items()):
            if "%" in value:
                raw[key] = self._decoded(value, raw.problems)
        return raw

    def _decoded(self, value: str, problems: set[str]) -> str:
        # the same few encoded values recur in every event (`sip%3A486`, a gateway's channel
        # name): unquote is pure Python, a dictionary lookup is not
        known = self._memo.get(value)
        if known is None:
            found: set[str] = set()
            known = (decode_value(value, found), tuple(found))
            # values come off the wire: a bounded number, and only short ones (a long value is
            # not one of those that recur, and a hostile one may be megabytes)
            if len(value) <= MEMO_VALUE_MAX:
                if len(self._memo) >= MEMO_ENTRIES:
                    self._memo.clear()
                self._memo[value] = known
        if known[1]:
            problems.update(known[1])
        return known[0]


class PickedHeaders(dict[str, str]):
    """The few headers a `HeaderPicker` cut out, decoded at once: a plain dict, so that every
    lookup of the consumer is a C call; `problems` as in `DecodedHeaders`."""

    __slots__ = ("problems",)
    encoded = True

    def __init__(self) -> None:
        super().__init__()
        self.problems: set[str] = set()
