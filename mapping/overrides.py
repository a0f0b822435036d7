"""User overrides: change what a cause means at this site, validated with file:line errors.

An override matches by SIP code, Q.850 cause, PBX cause name, DialStatus or a regex on the
reason phrase, optionally scoped to sources and trunks, and replaces any verdict field or
any text per language. The first matching override in file order wins. See
`config/overrides.yaml` for a commented example.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcause.config import Section, load_yaml
from callcause.errors import ConfigError
from callcause.mapping.locales import FIELDS, SUPPORTED, resolve_language
from callcause.record import CATEGORIES, FAULTS, HANGUP_SOURCES, SEVERITIES


@dataclass(slots=True)
class Override:
    name: str
    where: str                                  # file:line, for logs and `rule`
    sip: frozenset[int] | None = None
    q850: frozenset[int] | None = None
    pbx_cause: frozenset[str] | None = None     # upper-case
    dial_status: frozenset[str] | None = None
    reason: re.Pattern[str] | None = None
    sources: tuple[str, ...] | None = None
    trunks: tuple[str, ...] | None = None       # glob patterns
    set: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)

    def matches(self, *, source: str, trunk: str | None, sip: int | None, reason: str | None,
                q850: int | None, pbx_cause: str | None, dial_status: str | None) -> bool:
        if self.sources is not None and source not in self.sources:
            return False
        if self.trunks is not None and (trunk is None or
                                        not any(fnmatch.fnmatchcase(trunk, p) for p in self.trunks)):
            return False
        if self.sip is not None and sip not in self.sip:
            return False
        if self.q850 is not None and q850 not in self.q850:
            return False
        if self.pbx_cause is not None and (pbx_cause or "").upper() not in self.pbx_cause:
            return False
        if self.dial_status is not None and (dial_status or "").upper() not in self.dial_status:
            return False
        return not (self.reason is not None and not (reason and self.reason.search(reason)))


@dataclass(slots=True)
class Overrides:
    items: list[Override] = field(default_factory=list)
    file: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def find(self, **facts: Any) -> Override | None:
        for item in self.items:
            if item.matches(**facts):
                return item
        return None


_SET_CHOICES = {"category": CATEGORIES, "severity": SEVERITIES, "fault": FAULTS,
                "hangup_source": HANGUP_SOURCES}


def _int_set(sec: Section, key: str, lo: int, hi: int) -> frozenset[int] | None:
    if not sec.has(key):
        sec._known.add(key)
        return None
    raw = sec.data[key]
    values = raw if isinstance(raw, list) else [raw]
    out = set()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise sec.error(key, f"{v!r} is not a number from {lo} to {hi}",
                            fix=f"write a number or a list of numbers, e.g. [{lo}]")
        out.add(v)
    sec._known.add(key)
    return frozenset(out)


def _name_set(sec: Section, key: str) -> frozenset[str] | None:
    if not sec.has(key):
        sec._known.add(key)
        return None
    raw = sec.data[key]
    values = raw if isinstance(raw, list) else [raw]
    sec._known.add(key)
    if not all(isinstance(v, str) and v for v in values):
        raise sec.error(key, "expected a name or a list of names", fix="e.g. USER_BUSY or [BUSY, CONGESTION]")
    return frozenset(v.upper() for v in values)


def _parse_one(sec: Section, index: int) -> Override:
    where = f"{sec.file}:{sec.line}"
    name = sec.str("name", f"#{index + 1}")
    match = sec.section("match", required=True)
    ov = Override(name=name, where=where)
    ov.sip = _int_set(match, "sip", 100, 799)
    ov.q850 = _int_set(match, "q850", 0, 127)
    ov.pbx_cause = _name_set(match, "pbx_cause")
    ov.dial_status = _name_set(match, "dial_status")
    reason = match.str("reason", None)
    if reason is not None:
        try:
            ov.reason = re.compile(reason, re.IGNORECASE)
        except re.error as exc:
            raise match.error("reason", f"not a valid regular expression: {exc}",
                              fix="escape special characters, e.g. 'No money left' or '(?i)balance'") from None
    sources = match.str_list("source", None)
    ov.sources = tuple(sources) if sources is not None else None
    trunks = match.str_list("trunk", None)
    ov.trunks = tuple(trunks) if trunks is not None else None
    match.finish()
    if all(v is None for v in (ov.sip, ov.q850, ov.pbx_cause, ov.dial_status, ov.reason)):
        raise sec.error("match", "an override must match on at least one of sip, q850, pbx_cause, "
                        "dial_status or reason", fix="add one of them under match:")
    setter = sec.section("set", required=True)
    for key, choices in _SET_CHOICES.items():
        value = setter.str(key, None, choices=choices)
        if value is not None:
            ov.set[key] = value
    retryable = setter.bool("retryable", None)
    if retryable is not None:
        ov.set["retryable"] = retryable
    texts = setter.section("texts")
    for lang_key in list(texts.data):
        lang = resolve_language(str(lang_key))
        if lang is None:
            raise texts.error(lang_key, f"language {lang_key!r} is not supported",
                              fix=f"use one of: {', '.join(SUPPORTED)}")
        one = texts.section(lang_key)
        ov.texts[lang] = {f: one.str(f) for f in FIELDS if one.has(f)}
        one.finish()
    texts.finish()
    setter.finish()
    if not ov.set and not ov.texts:
        raise sec.error("set", "the override changes nothing",
                        fix="set at least one of category, severity, retryable, fault, hangup_source, texts")
    sec.finish()
    return ov


def parse_overrides(data: Any, file: str) -> Overrides:
    top = Section(data, file=file, path="", line=1)
    result = Overrides(file=file)
    for i, sec in enumerate(top.sections("overrides")):
        result.items.append(_parse_one(sec, i))
    top.finish()
    return result


def load_overrides(path: str | Path) -> Overrides:
    """Read and validate an overrides file; raises ConfigError naming file, line, key and fix."""
    data = load_yaml(path)
    if data is None:
        return Overrides(file=str(path))
    if not isinstance(data, dict):
        raise ConfigError("expected `overrides:` with a list of overrides", file=str(path), line=1,
                          fix="see config/overrides.yaml for the format")
    return parse_overrides(data, str(path))
