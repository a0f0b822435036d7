"""Parse every way an operator writes a hangup cause into the clues the translator reads.

`486`, `SIP/2.0 480 No money left`, `SIP 486 Busy Here`, `sip:486`, `q850:34`, `cause=34`,
`Reason: Q.850;cause=34;text="..."`, `USER_BUSY`, `AST_CAUSE_CONGESTION`, `PRI_CAUSE_USER_BUSY`,
`0x8290`, `82 90`, `Cause i = 0x829F08 - Normal, unspecified`, DialStatus values, the same
values as `Header: value` lines copied from AMI or ESL, and cause lines from vendor debug output
(Abilis CPX, libpri / chan_dahdi, Sangoma's FreeTDM ISDN trace, Wireshark's Q.931 and ISUP
dissectors, Avaya IP Office, AudioCodes; see `_DEBUG_LINES`). Anything else raises
NotationError with one line saying what was understood and what was expected.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import yaml

from callcause.config import SafeLoader
from callcause.errors import NotationError
from callcause.mapping.tables import TABLES_DIR, Tables
from callcause.record import ReasonHeader
from callcause.wire import ascii_digits

EXPECTED = ("a SIP code (486, 'SIP/2.0 480 No money left', 'SIP 486 Busy Here', sip:486), "
            "a Q.850 cause (q850:34, cause=34, 'Reason: Q.850;cause=34'), a cause name (USER_BUSY, "
            "AST_CAUSE_CONGESTION, PRI_CAUSE_USER_BUSY, GWAPP_USER_BUSY), a DialStatus (BUSY), a DSS1 "
            "cause IE (0x8290, '82 90', 'Cause i = 0x829F08', 'CAUSE: 82 90') or a cause line from "
            "libpri, Sangoma, Wireshark or IP Office debug output (see the README)")


@dataclass(slots=True)
class Notation:
    """What one piece of text says. `dialect` is set when the notation betrays its PBX."""

    kind: str                       # sip | q850 | reason | name | dial_status | dss1
    text: str
    sip_code: int | None = None
    sip_reason: str | None = None
    q850: int | None = None
    reason_headers: list[ReasonHeader] = field(default_factory=list)
    pbx_cause: str | None = None    # FreeSWITCH cause name
    dial_status: str | None = None
    dss1: dict | None = None        # coding_standard, location, recommendation, cause, diagnostic
    dialect: str | None = None
    name_family: str | None = None  # freeswitch | asterisk | libpri, for cause names


def _fail(understood: str) -> NotationError:
    return NotationError(f"{understood}; expected {EXPECTED}")


# --- SIP -------------------------------------------------------------------------------

_SIP_STATUS = re.compile(r"^SIP/2\.0\s+(\d{3})(?:\s+(.*))?$", re.IGNORECASE)
_SIP_TECH = re.compile(r"^SIP\s+(\d{3})(?:\s+(.*))?$", re.IGNORECASE)            # HANGUPCAUSE(...,tech)
_SIP_PROTO = re.compile(r"^sip\s*:\s*(\d{3})$", re.IGNORECASE)                     # proto_specific_hangup_cause
_CODE_PHRASE = re.compile(r"^(\d{3})(?:\s+(\S.*))?$")


def _sip_code(value: str, text: str) -> int:
    code = int(value)
    if not 100 <= code <= 799:
        raise _fail(f"understood a SIP response code in {text!r}, but {code} is outside 100-799")
    return code


def _clean_phrase(phrase: str | None) -> str | None:
    phrase = (phrase or "").strip().strip('"').strip()
    return phrase or None


# --- Reason header (RFC 3326, RFC 6432, RFC 8606) ------------------------------------------

_REASON_PREFIX = re.compile(r"^reason\s*:\s*", re.IGNORECASE)
_REASON_VALUE = re.compile(r"^\s*(Q\.850|SIP|[A-Za-z][\w.\-]*)\s*(;.*)?$", re.IGNORECASE)
_PARAM = re.compile(r';\s*([A-Za-z][\w\-]*)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,]*))?')
# ASCII digits only (str.isdigit also accepts '²', which int() refuses), and no more than a
# cause or status code needs (a Q.850 cause is 0-127, a SIP status three digits): a longer
# number is not a cause, and beyond 4,300 digits int() itself refuses it.
_CAUSE = re.compile(r"[0-9]{1,3}")


def _split_reason_values(text: str) -> list[str]:
    """Split on commas outside quoted strings (a `text=` may contain commas)."""
    parts, buf, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            buf.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def parse_reason_header(text: str, *, lenient: bool = False) -> list[ReasonHeader]:
    """All values of a Reason header (`Q.850;cause=16;text="..."`, several comma-separated).

    Raises NotationError when a value has no protocol and numeric cause; `lenient` (for
    values a PBX hands over) skips such values instead and keeps the well-formed ones.
    """
    body = _REASON_PREFIX.sub("", text.strip())
    headers = []
    for value in _split_reason_values(body):
        m = _REASON_VALUE.match(value)
        if not m:
            if lenient:
                continue
            raise _fail(f"understood a Reason header, but {value!r} has no protocol;cause=N")
        protocol = m.group(1)
        params = {k.lower(): (v or "").strip() for k, v in _PARAM.findall(m.group(2) or "")}
        cause = params.get("cause", "")
        if not _CAUSE.fullmatch(cause):
            if lenient:
                continue
            raise _fail(f"understood a Reason header ({protocol}), but cause={cause[:20]!r} is not a "
                        "cause number (1-3 digits 0-9)")
        txt = params.get("text")
        if txt is not None:
            txt = txt[1:-1].replace('\\"', '"') if txt.startswith('"') and txt.endswith('"') else txt
        proto = "Q.850" if protocol.upper() == "Q.850" else protocol.upper() if protocol.upper() == "SIP" \
            else protocol
        headers.append(ReasonHeader(proto, int(cause), txt or None, params.get("location") or None))
    if not headers and not lenient:
        raise _fail("understood a Reason header with no value")
    return headers


# --- Q.850 numbers ----------------------------------------------------------------------

_Q850 = re.compile(r"^(?:q\.?850|cause|isdn)\s*[:=\s]\s*(\d{1,3})$", re.IGNORECASE)


def _q850_value(value: str, text: str) -> int:
    cause = int(value)
    if not 0 <= cause <= 127:
        raise _fail(f"understood a Q.850 cause in {text!r}, but {cause} is outside 0-127")
    return cause


# --- DSS1 / Q.931 cause information element -----------------------------------------------

_DSS1_CISCO = re.compile(r"^cause\s+i\s*=\s*(?:0x)?([0-9a-f]+)(?:\s*-\s*(.*))?$", re.IGNORECASE)
_HEX_0X = re.compile(r"^0x([0-9a-f]+)$", re.IGNORECASE)
_HEX_PAIRS = re.compile(r"^[0-9a-f]{2}(?:[\s:-][0-9a-f]{2})+$", re.IGNORECASE)


def decode_cause_ie(octets: bytes, text: str) -> dict:
    """Decode the cause IE contents (Q.931 §4.5.12 / Q.850 §2): octet 3 (coding standard,
    location), optional 3a (recommendation, when octet 3's extension bit is 0), octet 4
    (cause value), then diagnostics. A leading IE identifier 0x08 with a matching length is
    skipped, so a full IE copied from a trace also decodes."""
    if len(octets) >= 3 and octets[0] == 0x08 and octets[1] == len(octets) - 2:
        octets = octets[2:]
    if len(octets) < 2:
        raise _fail(f"understood a DSS1 cause IE in {text!r}, but it needs at least 2 octets "
                    "(location and cause value)")
    o3 = octets[0]
    i = 1
    recommendation = None
    if not o3 & 0x80:
        recommendation = octets[1] & 0x7F
        i = 2
        if len(octets) < 3:
            raise _fail(f"understood a DSS1 cause IE in {text!r} with octet 3a, but the cause "
                        "value octet is missing")
    o4 = octets[i]
    if not o4 & 0x80:
        raise _fail(f"understood a DSS1 cause IE in {text!r}, but the cause octet 0x{o4:02X} lacks "
                    "its extension bit (expected 0x80-0xFF)")
    return {
        "coding_standard": (o3 >> 5) & 0x03,
        "location": o3 & 0x0F,
        "recommendation": recommendation,
        "cause": o4 & 0x7F,
        "diagnostic": octets[i + 1:].hex().upper() or None,
        "octets": octets.hex().upper(),
    }


def _dss1(hexdigits: str, text: str) -> Notation:
    if len(hexdigits) % 2:
        raise _fail(f"understood hexadecimal octets in {text!r}, but there is an odd number of digits")
    info = decode_cause_ie(bytes.fromhex(hexdigits), text)
    return Notation("dss1", text, q850=info["cause"], dss1=info)


# --- Cause lines from vendor debug output -----------------------------------------------------
# Each pattern is anchored on words only its tool prints, so a line is read one way or refused.
# The number printed is trusted; the name beside it is the tool's and is not re-checked.

_ABILIS_INTERNAL = ("F0", "FF")      # Abilis CPX locations meaning "generated by the CPX itself"
# libpri dump_cause(): "> Cause (len= 2) [ Ext: 1  Coding: CCITT (ITU) standard (0)  Spare: 0
# Location: Private network serving the local user (1)" then "> Ext: 1  Cause: Normal Clearing
# (16), class = Normal Event (1) ]"; the first line is optional when only the second is pasted.
_LIBPRI_CAUSE = re.compile(
    r"^[<>]?\s*(?:Cause \(len=\s*\d+\) \[ Ext: 1 Coding: .*?\((\d)\) Spare: 0 "
    r"Location: .*?\((\d+)\) [<>]?\s*)?Ext: 1 Cause: .*?\((\d+)\), class = .*?\((\d)\) \]?$",
    re.IGNORECASE)
_LIBPRI_IE = re.compile(r"^[<>]?\s*\[((?:[0-9a-f]{2} )*[0-9a-f]{2})\]$", re.IGNORECASE)
# Asterisk channels/sig_pri.c: "Span %d: Channel %d/%d got hangup[ request], cause %d", after
# whatever prefix the logger adds.
_SIG_PRI = re.compile(r"(?:^|\s)Span \d+: Channel \d+/\d+ got hangup(?: request)?, cause (\d+)$",
                      re.IGNORECASE)
# Wireshark: packet-q931.c field "Cause value", packet-isup.c field "Cause indicator", shown as
# ".001 0000 = Cause value: Normal call clearing (16)" (the bit mask is optional here).
_WIRESHARK = re.compile(r"^(?:[.01 ]+=\s*)?Cause (?:value|indicator): .*\((\d+)\)$",
                        re.IGNORECASE)
# FreeTDM ftmod_sangoma_isdn (Sangoma ISDN stack) Q.931 trace, ftmod_sangoma_isdn_trace.c:
# "  Cause:coding:ITU-T(0) location:Public network, local user(2) val:Normal call clearing(16)".
_SANGOMA = re.compile(r"^(?:Cause:\s*)?coding:[^()]*\((\d)\) location:[^()]*\((\d+)\) val:.*\((\d+)\)$",
                      re.IGNORECASE)
# Avaya IP Office System Monitor: "Cause=16, Normal call clearing"; 103 and up are its own.
_IP_OFFICE = re.compile(r"^Cause=(\d+), [A-Za-z].*$", re.IGNORECASE)
# Cisco IOS `debug voip ccapi inout`: "ccCallDisconnect (callID=0x1B, cause=0x10 tag=0x0)"; the
# CCAPI cause values are the Q.850 value in hexadecimal (Cisco's "Details of Cause Codes and Debug
# Values for VoIP": CC_CAUSE_NORM = 0x10, normal call clearing (16)).
_CISCO_CCAPI = re.compile(r"(?:^|[\s(,])cause\s*=\s*0x([0-9a-f]{1,2})(?![0-9a-f])", re.IGNORECASE)
_H323_CAUSE = re.compile(r"^h323-disconnect-cause\s*[=:]", re.IGNORECASE)


def _libpri_cause(m: re.Match, text: str) -> Notation:
    coding, location, cause, klass = m.groups()
    cause_value = _q850_value(cause, text)
    if int(klass) != cause_value >> 4:
        raise _fail(f"understood a libpri cause line in {text!r}, but class {klass} does not belong "
                    f"to cause {cause_value} (class {cause_value >> 4})")
    if location is None:
        return Notation("q850", text, q850=cause_value)
    return _dss1_fields(coding, location, cause, text, "a libpri cause line")


def _dss1_fields(coding: str, location: str, cause: str, text: str, what: str) -> Notation:
    """A cause IE printed field by field (coding standard, location, cause value)."""
    cause_value = _q850_value(cause, text)
    if int(coding) > 3 or int(location) > 15:
        raise _fail(f"understood {what} in {text!r}, but coding standard {coding} / location "
                    f"{location} is outside 0-3 / 0-15")
    octets = bytes([0x80 | int(coding) << 5 | int(location), 0x80 | cause_value])
    return Notation("dss1", text, q850=cause_value, dss1=decode_cause_ie(octets, text))


def _libpri_ie(m: re.Match, text: str) -> Notation:
    octets = bytes.fromhex(m.group(1).replace(" ", ""))
    if octets[0] != 0x08:
        raise _fail(f"understood a libpri information element dump in {text!r}, but element "
                    f"0x{octets[0]:02X} is not a cause (0x08)")
    if len(octets) < 2 or octets[1] != len(octets) - 2:
        raise _fail(f"understood a libpri cause element dump in {text!r}, but its length octet "
                    "does not match the octets that follow")
    return _dss1(octets.hex(), text)


def _ip_office(m: re.Match, text: str) -> Notation:
    cause = int(m.group(1))
    if cause > 102:
        raise _fail(f"understood an IP Office cause line in {text!r}, but IP Office numbers its own "
                    f"causes from 103 up, so {cause} is not a Q.850 cause")
    return Notation("q850", text, q850=cause)


def _h323_cause(_m: re.Match, text: str) -> Notation:
    raise _fail(f"understood h323-disconnect-cause in {text!r}, but Cisco gateways write it in "
                "hexadecimal and AudioCodes in decimal; paste the decimal cause as q850:N (Cisco's 10 is "
                "q850:16)")


_DEBUG_LINES: tuple[tuple[re.Pattern, Callable[[re.Match, str], Notation]], ...] = (
    (_LIBPRI_CAUSE, _libpri_cause),
    (_LIBPRI_IE, _libpri_ie),
    (_SIG_PRI, lambda m, text: Notation("q850", text, q850=_q850_value(m.group(1), text),
                                        dialect="asterisk")),
    (_WIRESHARK, lambda m, text: Notation("q850", text, q850=_q850_value(m.group(1), text))),
    (_SANGOMA, lambda m, text: _dss1_fields(*m.groups(), text, "a Sangoma ISDN trace line")),
    (_IP_OFFICE, _ip_office),
    (_CISCO_CCAPI, lambda m, text: Notation("q850", text, q850=_q850_value(str(int(m.group(1), 16)), text))),
    (_H323_CAUSE, _h323_cause),
)


def _debug_line(text: str) -> Notation | None:
    for pattern, read in _DEBUG_LINES:
        if m := pattern.search(text):
            return read(m, text)
    return None


def _abilis(value: str, text: str) -> Notation:
    """Abilis CPX `CAUSE: 82 90`: octet 3 and octet 4 of the cause IE, except the CPX's own
    locations F0 and FF, which are not Q.850 locations."""
    if value[:2].upper() in _ABILIS_INTERNAL:
        raise _fail(f"understood an Abilis CPX cause in {text!r}, but location {value[:2].upper()} "
                    "is the CPX's own internal code, not a Q.850 location")
    return _dss1(re.sub(r"[\s:-]", "", value), text)


@cache
def vendor_names(directory: Path = TABLES_DIR) -> dict[str, tuple[str, int]]:
    """Vendor cause names (AudioCodes GWAPP_USER_BUSY) -> (vendor, Q.850 value)."""
    with (directory / "vendor_names.yaml").open(encoding="utf-8") as fh:
        raw = yaml.load(fh, Loader=SafeLoader)
    return {str(name).upper(): (vendor, int(value))
            for vendor, names in raw.items() for name, value in names.items()}


# --- Header lines copied from AMI / ESL -----------------------------------------------------

_HEADER = re.compile(r"^([A-Za-z][\w\-]*)\s*:\s*(.*)$")
_HEADER_KINDS = {
    "cause": "q850", "hangupcause": "q850", "variable_hangup_cause_q850": "q850",
    "hangup_cause_q850": "q850", "q.850": "q850",
    "techcause": "sip", "variable_sip_term_status": "sip", "sip_term_status": "sip",
    "variable_sip_invite_failure_status": "sip", "sip_invite_failure_status": "sip",
    "variable_proto_specific_hangup_cause": "any", "proto_specific_hangup_cause": "any",
    "variable_last_bridge_proto_specific_hangup_cause": "any",
    "hangup-cause": "name", "variable_hangup_cause": "name", "hangup_cause": "name",
    "dialstatus": "dial_status", "variable_dialstatus": "dial_status",
    "reason": "reason", "variable_sip_reason": "reason",
    "trmreason": "name",            # AudioCodes CDR / syslog termination reason
}


class NotationParser:
    """Parses text against the names the tables know (FreeSWITCH, Asterisk, libpri)."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def parse(self, text: str) -> Notation:
        raw = text
        text = " ".join(text.split())
        if not text:
            raise _fail("understood nothing (the input is empty)")
        if len(text) > 2000:
            raise _fail(f"understood {len(text)} characters of text, far too long for one cause")
        if debug := _debug_line(text):
            return debug
        m = _HEADER.match(text)
        if m and m.group(1).lower() in _HEADER_KINDS and not _SIP_STATUS.match(text):
            return self._header(m.group(1).lower(), unquote(m.group(2).strip()), raw)
        return self._value(text)

    def _header(self, key: str, value: str, text: str) -> Notation:
        kind = _HEADER_KINDS[key]
        if not value:
            raise _fail(f"understood the header {key!r}, but it has no value")
        if kind == "reason":
            return Notation("reason", text, reason_headers=parse_reason_header(value))
        if kind == "q850":
            if key == "cause" and _HEX_PAIRS.match(value):
                return _abilis(value, text)
            if not ascii_digits(value):
                raise _fail(f"understood the header {key!r}, but {value!r} is not a cause number")
            return Notation("q850", text, q850=_q850_value(value, text),
                            dialect="freeswitch" if key.startswith(("variable_", "hangup_")) else "asterisk")
        if kind == "sip":
            if not ascii_digits(value):
                raise _fail(f"understood the header {key!r}, but {value!r} is not a SIP code")
            return Notation("sip", text, sip_code=_sip_code(value, text),
                            dialect="asterisk" if key == "techcause" else "freeswitch")
        if kind == "dial_status":
            return self._name(value.upper(), text, prefer="dial_status")
        return self._value(value)

    def _value(self, text: str) -> Notation:
        if ascii_digits(text):
            number = int(text)
            if 100 <= number <= 799:
                return Notation("sip", text, sip_code=number)
            if number <= 127:
                return Notation("q850", text, q850=number)
            raise _fail(f"understood the number {number}, which is neither a SIP code (100-799) "
                        "nor a Q.850 cause (0-127)")
        if m := _SIP_STATUS.match(text):
            return Notation("sip", text, sip_code=_sip_code(m.group(1), text),
                            sip_reason=_clean_phrase(m.group(2)))
        if m := _SIP_TECH.match(text):
            return Notation("sip", text, sip_code=_sip_code(m.group(1), text),
                            sip_reason=_clean_phrase(m.group(2)), dialect="asterisk")
        if m := _SIP_PROTO.match(text):
            return Notation("sip", text, sip_code=_sip_code(m.group(1), text), dialect="freeswitch")
        if m := _CODE_PHRASE.match(text):
            return Notation("sip", text, sip_code=_sip_code(m.group(1), text),
                            sip_reason=_clean_phrase(m.group(2)))
        if m := _Q850.match(text):
            return Notation("q850", text, q850=_q850_value(m.group(1), text))
        if m := _DSS1_CISCO.match(text):
            return _dss1(m.group(1), text)
        if m := _HEX_0X.match(text):
            return _dss1(m.group(1), text)
        if _HEX_PAIRS.match(text):
            return _dss1(re.sub(r"[\s:-]", "", text), text)
        if _REASON_PREFIX.match(text) or re.match(r"^(Q\.850|SIP)\s*;", text, re.IGNORECASE):
            return Notation("reason", text, reason_headers=parse_reason_header(text))
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_ ]*", text):
            return self._name(text.upper().replace(" ", "_"), text)
        raise _fail(f"understood nothing in {text!r}")

    def _name(self, name: str, text: str, prefer: str | None = None) -> Notation:
        t = self.tables
        if name.startswith("AST_CAUSE_"):
            if name in t.ast_names:
                return Notation("name", text, q850=t.ast_names[name], dialect="asterisk",
                                name_family="asterisk", pbx_cause=name)
            raise self._unknown(name, t.ast_names, "an Asterisk cause macro")
        if name.startswith("PRI_CAUSE_"):
            if name in t.pri_names:
                return Notation("name", text, q850=t.pri_names[name], name_family="libpri", pbx_cause=name)
            raise self._unknown(name, t.pri_names, "a libpri cause macro")
        if name.startswith("GWAPP_"):
            if name in (vendors := vendor_names()):
                return Notation("name", text, q850=vendors[name][1], name_family=vendors[name][0],
                                pbx_cause=name)
            raise self._unknown(name, vendor_names(), "an AudioCodes termination reason")
        if name.startswith("SWITCH_CAUSE_"):
            name = name.removeprefix("SWITCH_CAUSE_")
        if prefer == "dial_status" or (name in t.dial_status and name not in t.fs_names):
            status = name.split(":")[0]
            if status in t.dial_status:
                return Notation("dial_status", text, dial_status=status, dialect="asterisk")
            if prefer == "dial_status":
                raise self._unknown(status, t.dial_status, "an Asterisk DialStatus")
        if name in t.fs_names:
            return Notation("name", text, pbx_cause=name, q850=t.fs_q850(name), dialect="freeswitch",
                            name_family="freeswitch")
        if f"AST_CAUSE_{name}" in t.ast_names:
            return Notation("name", text, q850=t.ast_names[f"AST_CAUSE_{name}"], dialect="asterisk",
                            name_family="asterisk", pbx_cause=f"AST_CAUSE_{name}")
        known = {**t.fs_names, **t.ast_names, **t.pri_names, **{k: 0 for k in t.dial_status}}
        raise self._unknown(name, known, "a cause name")

    @staticmethod
    def _unknown(name: str, known: dict, what: str) -> NotationError:
        close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        return NotationError(f"understood {what}, {name}, but no table knows it{hint}; "
                             f"expected {EXPECTED}")
