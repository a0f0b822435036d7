"""Load the YAML mapping tables once and compile them into fast lookups.

The tables are data (`mapping/tables/*.yaml`, each citing its sources); this module only
reads, checks and indexes them. Everything the translator needs per call is a dict lookup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from callcause.config import SafeLoader
from callcause.record import CATEGORIES, FAULTS, HANGUP_SOURCES, SEVERITIES

TABLES_DIR = Path(__file__).parent / "tables"
DIALECTS = ("rfc3398", "asterisk", "freeswitch")


class TableError(Exception):
    """A built-in table is inconsistent: a bug in the package, caught by the tests."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The machine-readable verdict an entry gives: what kind of end, how bad, whose fault."""

    category: str
    severity: str
    retryable: bool
    fault: str

    @classmethod
    def from_entry(cls, entry: dict[str, Any], where: str) -> Outcome:
        out = cls(entry.get("category", "unknown"), entry.get("severity", "warning"),
                  bool(entry.get("retryable", False)), entry.get("fault", "unknown"))
        if out.category not in CATEGORIES:
            raise TableError(f"{where}: category {out.category!r} is not in the vocabulary")
        if out.severity not in SEVERITIES:
            raise TableError(f"{where}: severity {out.severity!r} is not in the vocabulary")
        if out.fault not in FAULTS:
            raise TableError(f"{where}: fault {out.fault!r} is not in the vocabulary")
        return out


@dataclass(frozen=True, slots=True)
class SipCode:
    code: int
    reason: str
    reference: str
    status: str                     # standard | deprecated | non-standard
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Q850Cause:
    value: int
    name: str
    asterisk: tuple[str, ...]
    asterisk_text: str | None
    freeswitch: str | None
    libpri: tuple[str, ...]
    status: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class FreeswitchCause:
    """One of FreeSWITCH's own causes, numbered above 127 (reported as Q.850 16)."""

    name: str
    code: int
    code_before_1_10_8: int | None
    q850_reported: int
    outcome: Outcome
    hangup_source: str | None


@dataclass(frozen=True, slots=True)
class DialStatus:
    name: str
    meaning: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Phrase:
    id: str
    codes: frozenset[int]
    pattern: re.Pattern[str]
    outcome: Outcome
    seen: str


@dataclass(slots=True)
class Dialect:
    """One PBX's (or the RFC's) view of SIP <-> Q.850, with its defaults for unlisted values."""

    name: str
    sip_to_q850: dict[int, int | None]
    sip_default: dict[str, int | None]
    q850_to_sip: dict[int, int | None]
    q850_default: dict[str, int | None]
    # FreeSWITCH writes its tables by cause name; these keep the names for display.
    sip_to_name: dict[int, str] = field(default_factory=dict)
    name_to_sip: dict[str, int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # the cause a PBX reports for a failure response carries a received Reason: Q.850 value
    reason_sets_cause: bool = False

    def q850_for_sip(self, code: int) -> int | None:
        if code in self.sip_to_q850:
            return self.sip_to_q850[code]
        d = self.sip_default
        return d.get(f"{code // 100}xx", d.get("*"))

    def sip_for_q850(self, cause: int) -> int | None:
        if cause in self.q850_to_sip:
            return self.q850_to_sip[cause]
        d = self.q850_default
        return d.get(str(cause >> 4), d.get("*"))


@dataclass(slots=True)
class Tables:
    sip: dict[int, SipCode]
    q850: dict[int, Q850Cause]
    q850_classes: dict[int, str]
    freeswitch: dict[str, FreeswitchCause]
    dial_status: dict[str, DialStatus]
    phrases: list[Phrase]
    dialects: dict[str, Dialect]
    dss1: dict[str, Any]
    # name indexes, all upper-case keys
    fs_names: dict[str, int] = field(default_factory=dict)      # USER_BUSY -> 17, ORIGINATOR_CANCEL -> 487
    ast_names: dict[str, int] = field(default_factory=dict)     # AST_CAUSE_BUSY -> 17
    pri_names: dict[str, int] = field(default_factory=dict)     # PRI_CAUSE_USER_BUSY -> 17
    phrases_by_code: dict[int, list[Phrase]] = field(default_factory=dict)
    # per dialect, the raw YAML and its revisions, for building the table of an older version
    raw_dialects: dict[str, dict[str, Any]] = field(default_factory=dict)
    _by_version: dict[tuple[str, tuple[int, ...]], Dialect] = field(default_factory=dict)
    # (name, version string) -> table: every event asks, with one of a handful of versions
    _by_asked: dict[tuple[str, str | None], Dialect] = field(default_factory=dict)

    def dialect(self, name: str, version: str | None = None) -> Dialect:
        """The SIP <-> Q.850 table of one dialect as a given PBX version has it.

        `name` may carry the version itself (`asterisk@22.8`). Without a version, or with one
        that does not parse, the newest behaviour applies. Raises KeyError for an unknown name.
        """
        asked = self._by_asked.get((name, version))
        if asked is not None:
            return asked
        found = self._dialect(name, version)
        # versions come off the wire: a bounded memo, of version texts a real PBX could send
        if version is None or len(version) <= 64:
            if len(self._by_asked) >= 256:
                self._by_asked.clear()
            self._by_asked[(name, version)] = found
        return found

    def _dialect(self, name: str, version: str | None) -> Dialect:
        if "@" in name:
            name, version = name.split("@", 1)
        newest = self.dialects[name]
        revisions = self.raw_dialects.get(name, {}).get("revisions") or []
        numbers = parse_version(version)
        if not revisions or numbers is None:
            return newest
        applied = tuple(i for i, rev in enumerate(revisions) if _applies(rev["since"], numbers))
        if len(applied) == len(revisions):
            return newest
        key = (name, applied)
        if key not in self._by_version:
            self._by_version[key] = _compile_dialect(
                name, self.raw_dialects[name], self.fs_names, [revisions[i] for i in applied])
        return self._by_version[key]

    def reason_behind(self, dialect: str, version: str | None, sip_code: int, cause: int) -> int | None:
        """The Q.850 value of a Reason header the PBX honoured but did not hand over, or None.

        A PBX whose reported cause for a failure response comes from the Reason header when
        one was there (`reason_sets_cause`) and from its own map otherwise: a cause its map
        (of that version) cannot give for the code came from a Reason header. When the two
        agree nothing tells them apart.
        """
        d = self.dialect(dialect, version)
        if not d.reason_sets_cause or sip_code < 300 or not 0 < cause <= 127:
            return None
        name = d.sip_to_name.get(sip_code)
        expected = self.fs_names.get(name) if name else d.q850_for_sip(sip_code)
        return None if cause == expected else cause

    def q850_class(self, value: int) -> str:
        return self.q850_classes.get(value >> 4, "unknown")

    def fs_q850(self, name: str) -> int | None:
        """The Q.850 value FreeSWITCH reports for one of its cause names (16 above 127)."""
        num = self.fs_names.get(name.upper())
        if num is None:
            return None
        return num if num <= 127 else 16

    def phrase_for(self, code: int, reason: str | None) -> Phrase | None:
        if not reason:
            return None
        text = reason.strip()
        for phrase in self.phrases_by_code.get(code, ()):
            if phrase.pattern.search(text):
                return phrase
        return None


def _read(name: str, directory: Path) -> dict[str, Any]:
    path = directory / name
    with path.open(encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=SafeLoader)
    if not isinstance(data, dict):
        raise TableError(f"{path.name}: expected a mapping at the top")
    return data


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


# ASCII digits, at most nine a part: a version header comes off the wire, and int() refuses
# (ValueError) a number of more than 4,300 digits
_VERSION = re.compile(r"^[^0-9]*?([0-9]{1,9}(?:\.[0-9]{1,9})*)")


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """`22.10.1`, `1.10.12-release~64bit`, `certified-20.7-cert3` -> numbers; None if none."""
    if not text:
        return None
    m = _VERSION.match(text.strip())
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def _applies(since: dict[str, str], version: tuple[int, ...]) -> bool:
    """Whether a change that reached each release line at `since` is in `version`.

    `since` maps a release line (`"22"`, `"1.10"`) to its first version with the change. A
    line newer than every listed one has it (it branched later); an older or skipped line
    does not (21.x never received the Asterisk 302 change).
    """
    lines = {tuple(int(p) for p in str(k).split(".")): parse_version(str(v)) for k, v in since.items()}
    for line, first in lines.items():
        if version[:len(line)] == line:
            return first is not None and version >= first
    return all(version[:len(line)] > line for line in lines)


def _compile_dialect(name: str, raw: dict[str, Any], fs_names: dict[str, int],
                     revisions: list[dict[str, Any]] | None = None) -> Dialect:
    """One dialect: its base table plus the revisions given (all of them when None: newest)."""
    def cause_number(value: Any) -> int | None:
        if value is None or isinstance(value, int):
            return value
        num = fs_names.get(str(value).upper())
        if num is None:
            raise TableError(f"dialects.yaml {name}: unknown cause name {value!r}")
        return num if num <= 127 else 16

    d = Dialect(name=name, sip_to_q850={}, sip_default={}, q850_to_sip={}, q850_default={},
                notes=list(raw.get("notes") or []), sources=list(raw.get("sources") or []))
    layers = [raw, *(raw.get("revisions") or [] if revisions is None else revisions)]
    for layer in layers:
        if "reason_sets_cause" in layer:
            d.reason_sets_cause = bool(layer["reason_sets_cause"])
    for layer in layers:
        for code, value in (layer.get("sip_to_q850") or {}).items():
            d.sip_to_q850[int(code)] = cause_number(value)
            if isinstance(value, str):
                d.sip_to_name[int(code)] = value.upper()
    for key, value in (raw.get("sip_to_q850_default") or {}).items():
        d.sip_default[str(key)] = cause_number(value)
    for layer in layers:
        for key, value in (layer.get("q850_to_sip") or {}).items():
            if isinstance(key, str) and not key.isdigit():
                d.name_to_sip[key.upper()] = _opt_int(value)
                num = fs_names.get(key.upper())
                if num is not None and num <= 127:
                    d.q850_to_sip[num] = _opt_int(value)
            else:
                d.q850_to_sip[int(key)] = _opt_int(value)
    for key, value in (raw.get("q850_to_sip_default") or {}).items():
        d.q850_default[str(key)] = _opt_int(value)
    return d


def load_tables(directory: Path = TABLES_DIR) -> Tables:
    """Read and index every table; raises TableError when a table contradicts itself."""
    sip_raw = _read("sip.yaml", directory)["codes"]
    sip = {
        int(code): SipCode(int(code), e["reason"], str(e.get("reference", "")), e.get("status", "standard"),
                           Outcome.from_entry(e, f"sip.yaml {code}"))
        for code, e in sip_raw.items()
    }
    q_raw = _read("q850.yaml", directory)
    q850 = {
        int(v): Q850Cause(int(v), e["name"], tuple(e.get("asterisk") or ()), e.get("asterisk_text"),
                          e.get("freeswitch"), tuple(e.get("libpri") or ()), e.get("status", "standard"),
                          Outcome.from_entry(e, f"q850.yaml {v}"))
        for v, e in q_raw["causes"].items()
    }
    classes = {int(k): str(v) for k, v in q_raw["classes"].items()}
    fs_raw = _read("freeswitch.yaml", directory)["causes"]
    freeswitch = {}
    for name, e in fs_raw.items():
        hs = e.get("hangup_source")
        if hs is not None and hs not in HANGUP_SOURCES:
            raise TableError(f"freeswitch.yaml {name}: hangup_source {hs!r} is not in the vocabulary")
        freeswitch[name.upper()] = FreeswitchCause(
            name.upper(), int(e["code"]), _opt_int(e.get("code_before_1_10_8")),
            int(e.get("q850_reported", 16)), Outcome.from_entry(e, f"freeswitch.yaml {name}"), hs)
    ast_raw = _read("asterisk.yaml", directory)
    dial_status = {
        name.upper(): DialStatus(name.upper(), str(e.get("meaning", "")),
                                 Outcome.from_entry(e, f"asterisk.yaml {name}"))
        for name, e in ast_raw["dial_status"].items()
    }
    phrases = []
    for e in _read("phrases.yaml", directory)["phrases"]:
        try:
            pattern = re.compile(e["match"], re.IGNORECASE)
        except re.error as exc:
            raise TableError(f"phrases.yaml {e.get('id')}: bad regex: {exc}") from None
        phrases.append(Phrase(e["id"], frozenset(int(c) for c in e["codes"]), pattern,
                              Outcome.from_entry(e, f"phrases.yaml {e['id']}"), str(e.get("seen", ""))))
    tables = Tables(sip=sip, q850=q850, q850_classes=classes, freeswitch=freeswitch,
                    dial_status=dial_status, phrases=phrases, dialects={},
                    dss1=_read("dss1.yaml", directory))
    for cause in q850.values():
        if cause.freeswitch:
            tables.fs_names[cause.freeswitch.upper()] = cause.value
        for n in cause.asterisk:
            tables.ast_names[n.upper()] = cause.value
        for n in cause.libpri:
            tables.pri_names[n.upper()] = cause.value
    for fs in freeswitch.values():
        tables.fs_names[fs.name] = fs.code
    for phrase in phrases:
        for code in phrase.codes:
            tables.phrases_by_code.setdefault(code, []).append(phrase)
    raw_dialects = _read("dialects.yaml", directory)["dialects"]
    for name in DIALECTS:
        if name not in raw_dialects:
            raise TableError(f"dialects.yaml: dialect {name!r} is missing")
        tables.raw_dialects[name] = raw_dialects[name]
        for rev in raw_dialects[name].get("revisions") or []:
            if not isinstance(rev.get("since"), dict) or not rev.get("source"):
                raise TableError(f"dialects.yaml {name}: every revision needs `since` (line -> version) "
                                 "and `source`")
        tables.dialects[name] = _compile_dialect(name, raw_dialects[name], tables.fs_names)
    return tables


@dataclass(slots=True, frozen=True)
class Dispositions:
    """FreeSWITCH `sip_hangup_disposition` x direction -> who ended the leg."""

    by_disposition: dict[tuple[str, str], str]
    without_disposition: dict[str, str]
    response_without_disposition: dict[str, str] = field(default_factory=dict)   # direction -> who


def load_dispositions(directory: Path = TABLES_DIR) -> Dispositions:
    raw = _read("freeswitch_disposition.yaml", directory)
    pairs: dict[tuple[str, str], str] = {}
    for disposition, by_direction in raw["dispositions"].items():
        for direction, who in by_direction.items():
            pairs[(str(disposition), str(direction))] = _hangup_source(who, f"{disposition}.{direction}")
    alone = {str(cause): _hangup_source(who, str(cause)) for cause, who in raw["without_disposition"].items()}
    response = {str(direction): _hangup_source(who, f"response_without_disposition.{direction}")
                for direction, who in (raw.get("response_without_disposition") or {}).items()}
    return Dispositions(pairs, alone, response)


def _hangup_source(value: Any, where: str) -> str:
    if value not in HANGUP_SOURCES:
        raise TableError(f"freeswitch_disposition.yaml {where}: {value!r} is not one of {HANGUP_SOURCES}")
    return str(value)


@cache
def builtin_dispositions() -> Dispositions:
    """The package's FreeSWITCH disposition table, loaded once per process."""
    return load_dispositions()


@cache
def builtin_tables() -> Tables:
    """The package's tables, loaded once per process."""
    return load_tables()
