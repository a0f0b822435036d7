"""The SIP code table, the reason-phrase refinements and their English texts are complete.

The expected lists are written out here from the IANA registry and RFC 2543, so a code
dropped from (or mistyped in) the YAML fails a test instead of silently disappearing.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from callcause.record import CATEGORIES, FAULTS, SEVERITIES

MAPPING = Path(__file__).parents[1] / "mapping"


def _load(rel: str) -> dict:
    with (MAPPING / rel).open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


SIP = _load("tables/sip.yaml")["codes"]
PHRASES = _load("tables/phrases.yaml")["phrases"]
EN = _load("locales/en.yaml")

# IANA "Session Initiation Protocol (SIP) Parameters" / "Response Codes": code -> phrase.
IANA = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted (Deprecated)", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority",
    420: "Bad Extension", 421: "Extension Required", 422: "Session Interval Too Small",
    423: "Interval Too Brief", 424: "Bad Location Information", 425: "Bad Alert Message",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 436: "Bad Identity Info", 437: "Unsupported Credential",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
    607: "Unwanted", 608: "Rejected",
}
RFC2543_ONLY = {409: "Conflict", 411: "Length Required"}
DEPRECATED = {202, 409, 411}
NON_STANDARD = {477, 478, 499}

# (code, phrase as sent, expected refinement id)
SAMPLES = [
    (401, "Expired Authorization", "expired_authorization"),
    (403, "No Such User", "no_such_user"),
    (403, "User Disabled", "user_disabled"),
    (403, "Wrong Guess", "wrong_guess"),
    (403, "Caller Not Registered", "caller_not_registered"),
    (403, "Empty Route Set", "empty_route_set"),
    (403, "Out of Look-Ahead Retries", "out_of_lookahead_retries"),
    (403, "Invalid Phone Number", "invalid_phone_number"),
    (404, "Unknown user account", "unknown_user_account"),
    (404, "Undefined Reason", "undefined_reason"),
    (406, "No codecs match", "codec_mismatch"),
    (408, "Login timed out", "login_timed_out"),
    (410, "No Route", "no_route"),
    (415, "No Media", "no_media"),
    (480, "Invalid Phone Number", "invalid_phone_number"),
    (480, "Destination Not Found In Client Plan", "destination_not_in_client_plan"),
    (480, "Codec Mismatch", "codec_mismatch"),
    (480, "Empty Route Set", "empty_route_set"),
    (480, "No money left", "no_money_left"),
    (488, "Codec Mismatch", "codec_mismatch"),
    (488, "Private IP Address", "private_ip_address"),
    (499, "Codec Mismatch", "codec_mismatch"),
    (500, "DB Timeout", "db_timeout"),
    (500, "Database Error", "database_error"),
    (500, "Wrong DB Response", "wrong_db_response"),
]


def refine(code: int, phrase: str) -> list[str]:
    """The ids that refine `code` + `phrase`, applying the rule phrases.yaml documents."""
    text = phrase.strip()
    return [p["id"] for p in PHRASES if code in p["codes"] and re.search(p["match"], text, re.IGNORECASE)]


def test_counts() -> None:
    by_status = Counter(e["status"] for e in SIP.values())
    print(f"\nsip.yaml: {len(SIP)} codes, by status {dict(sorted(by_status.items()))}; "
          f"phrases.yaml: {len(PHRASES)} refinements; en texts: {len(EN['sip'])} codes, {len(EN['phrase'])} phrases")
    assert len(IANA) == 75
    assert by_status == {"standard": 74, "deprecated": 3, "non-standard": 3}
    assert len(SIP) == 80


def test_every_iana_code_with_its_registered_phrase() -> None:
    missing = sorted(set(IANA) - set(SIP))
    assert not missing, f"IANA codes missing from sip.yaml: {missing}"
    wrong = {c: (SIP[c]["reason"], p) for c, p in IANA.items() if SIP[c]["reason"] != p}
    assert not wrong


def test_nothing_outside_registry_rfc2543_and_field_codes() -> None:
    assert set(SIP) == set(IANA) | set(RFC2543_ONLY) | NON_STANDARD
    for code, phrase in RFC2543_ONLY.items():
        assert SIP[code]["reason"] == phrase
        assert "RFC 2543" in SIP[code]["reference"]


def test_deprecated_and_non_standard_markings() -> None:
    assert {c for c, e in SIP.items() if e["status"] == "deprecated"} == DEPRECATED
    assert {c for c, e in SIP.items() if e["status"] == "non-standard"} == NON_STANDARD
    for code in NON_STANDARD:
        assert SIP[code].get("seen"), f"non-standard {code} must say where it is seen"
    assert "6665" in SIP[202]["reference"]


@pytest.mark.parametrize("code", sorted(SIP))
def test_entry_shape(code: int) -> None:
    e = SIP[code]
    assert 100 <= code <= 699
    assert "class" not in e, "the class is derived from the code, never stored"
    assert e["category"] in CATEGORIES
    assert e["severity"] in SEVERITIES
    assert e["fault"] in FAULTS
    assert isinstance(e["retryable"], bool)
    assert e["status"] in ("standard", "deprecated", "non-standard")
    assert e["reference"]


def test_class_conventions() -> None:
    for code, e in SIP.items():
        if code < 200:
            assert (e["category"], e["severity"]) == ("unknown", "info"), code
        if 300 <= code < 400:
            assert e["category"] == "transfer", code
    assert SIP[200]["category"] == "answered"
    assert (SIP[486]["category"], SIP[486]["severity"], SIP[486]["fault"]) == ("busy", "info", "callee")
    assert SIP[487]["category"] == "cancelled"
    assert SIP[503]["category"] == "congestion"


def test_phrase_entries_shape() -> None:
    ids = [p["id"] for p in PHRASES]
    assert len(ids) == len(set(ids)), "phrase ids must be unique"
    for p in PHRASES:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", p["id"])
        re.compile(p["match"])
        assert p["codes"] and all(c in SIP for c in p["codes"]), p["id"]
        assert p["category"] in CATEGORIES and p["severity"] in SEVERITIES and p["fault"] in FAULTS
        assert isinstance(p["retryable"], bool)
        assert p["seen"]


@pytest.mark.parametrize(("code", "phrase", "expected"), SAMPLES)
def test_sample_phrase_refines_its_code(code: int, phrase: str, expected: str) -> None:
    assert refine(code, phrase) == [expected]
    # matching is case-insensitive and ignores surrounding whitespace
    assert refine(code, f"  {phrase.upper()}\t") == [expected]


@pytest.mark.parametrize(("code", "phrase", "expected"), SAMPLES)
def test_loaded_tables_refine_only_the_listed_codes(code: int, phrase: str, expected: str) -> None:
    from callcause.mapping.tables import builtin_tables

    tables = builtin_tables()
    hit = tables.phrase_for(code, f" {phrase} ")
    assert hit is not None and hit.id == expected
    entry = next(p for p in PHRASES if p["id"] == expected)
    for other in (100, 200, 302, 404, 486, 503, 603, 699):
        if other not in entry["codes"]:
            found = tables.phrase_for(other, phrase)
            assert found is None or found.id != expected, (other, phrase)


def test_one_entry_per_meaning_across_codes() -> None:
    codes = {p["id"]: set(p["codes"]) for p in PHRASES}
    assert codes["codec_mismatch"] >= {480, 488, 499}
    assert codes["empty_route_set"] == {403, 480}
    assert codes["invalid_phone_number"] == {403, 480}


def test_standard_phrases_are_not_refined() -> None:
    for code, e in SIP.items():
        assert refine(code, e["reason"]) == [], code
    assert refine(480, "No money left on account") == []   # anchored: only the phrase itself


@pytest.mark.parametrize("code", sorted(SIP))
def test_every_code_has_english_texts(code: int) -> None:
    texts = EN["sip"].get(code)
    assert texts, f"no en texts for SIP {code}"
    for key in ("summary", "detail", "advice"):
        assert isinstance(texts.get(key), str) and len(texts[key].strip()) > 15, (code, key)


@pytest.mark.parametrize("pid", [p["id"] for p in PHRASES])
def test_every_phrase_has_english_texts(pid: str) -> None:
    texts = EN["phrase"].get(pid)
    assert texts, f"no en texts for phrase.{pid}"
    for key in ("summary", "detail", "advice"):
        assert isinstance(texts.get(key), str) and len(texts[key].strip()) > 15, (pid, key)


def test_english_texts_match_the_tables_exactly() -> None:
    assert {"sip", "phrase"} <= set(EN)
    assert set(EN["sip"]) == set(SIP)
    assert set(EN["phrase"]) == {p["id"] for p in PHRASES}
