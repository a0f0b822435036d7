"""dialects.yaml reproduces RFC 3398, Asterisk and FreeSWITCH exactly, disagreements included.

Each expected table below was written out from the cited source (RFC text, the C switch
statements), not generated from the YAML, and is compared value by value with the YAML.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

RAW = yaml.safe_load(
    (Path(__file__).parents[1] / "mapping" / "tables" / "dialects.yaml").read_text(encoding="utf-8"))["dialects"]


def _newest(d: dict) -> dict:
    """A dialect as its newest release has it: the base tables with every revision on top."""
    out = {**d, "sip_to_q850": dict(d["sip_to_q850"]), "q850_to_sip": dict(d["q850_to_sip"])}
    for rev in d.get("revisions") or []:
        out["sip_to_q850"].update(rev.get("sip_to_q850") or {})
        out["q850_to_sip"].update(rev.get("q850_to_sip") or {})
    return out


DIALECTS = {name: _newest(d) for name, d in RAW.items()}

# --- RFC 3398 §8.2.6.1 (SIP -> ISUP cause) -------------------------------------------------
RFC3398_SIP = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22,
    413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127, 480: 18, 481: 41,
    482: 25, 483: 25, 484: 28, 485: 1, 486: 17,
    487: None,   # "no mapping"
    488: 31,     # "by Warning header", default 31
    500: 41, 501: 79, 502: 38, 503: 41, 504: 102, 505: 127, 513: 127,
    600: 17, 603: 21, 604: 1,
    606: 31,     # "by Warning header", default 31
}
RFC3398_SIP_DEFAULT = {"1xx": None, "2xx": None, "3xx": 31, "4xx": 31, "5xx": 31, "6xx": 31, "*": 31}
# --- RFC 3398 §7.2.4.1 (ISUP cause -> SIP) -------------------------------------------------
RFC3398_Q850 = {
    1: 404, 2: 404, 3: 404, 16: None, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410, 23: 410,
    26: 404, 27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503, 41: 503, 42: 503, 47: 503,
    55: 403, 57: 403, 58: 503, 65: 488, 70: 488, 79: 501, 87: 403, 88: 503, 102: 504, 111: 500, 127: 500,
}
RFC3398_Q850_DEFAULT = {k: None for k in ("0", "1", "2", "3", "4", "5", "6", "7", "*")}

# --- Asterisk res_pjsip.c ast_sip_hangup_sip2cause() (22.10.1) ----------------------------
# AST_CAUSE_CALL_REJECTED 21, UNALLOCATED 1, INTERWORKING 127, NO_USER_RESPONSE 18,
# NORMAL_TEMPORARY_FAILURE 41, NUMBER_CHANGED 22, NO_ROUTE_DESTINATION 3, NO_ANSWER 19,
# INVALID_NUMBER_FORMAT 28, BUSY = USER_BUSY 17, BEARERCAPABILITY_NOTAVAIL 58,
# FAILURE = NETWORK_OUT_OF_ORDER 38, FACILITY_REJECTED 29, DESTINATION_OUT_OF_ORDER 27,
# CONGESTION = NORMAL_CIRCUIT_CONGESTION 34, RECOVERY_ON_TIMER_EXPIRE 102.
ASTERISK_SIP = {
    302: 23,     # REDIRECTED_TO_NEW_DESTINATION, since 20.19.0 / 22.9.0 / 23.3.0
    401: 21, 403: 21, 404: 1, 405: 127, 407: 21, 408: 18, 409: 41, 410: 22, 411: 127, 413: 127,
    414: 127, 415: 127, 420: 3, 480: 19, 481: 127, 482: 127, 483: 19, 484: 28, 485: 1, 486: 17,
    487: 127, 488: 58, 491: 127, 493: 127, 500: 38, 501: 29, 502: 27, 503: 34, 504: 102, 505: 127,
    600: 17, 603: 21, 604: 1, 606: 58,
}
# default: 4xx INTERWORKING, 5xx CONGESTION, 6xx INTERWORKING, else AST_CAUSE_NORMAL (16)
ASTERISK_SIP_DEFAULT = {"1xx": 16, "2xx": 16, "3xx": 16, "4xx": 127, "5xx": 34, "6xx": 127, "*": 16}
# --- Asterisk chan_pjsip.c hangup_cause2sip() ----------------------------------------------
ASTERISK_Q850 = {
    1: 404, 3: 404, 2: 404, 34: 503, 42: 503, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410, 31: 480,
    28: 484, 17: 486, 38: 500, 29: 501, 66: 503, 27: 502, 58: 488, 127: 500,
    23: 302,     # since 20.19.0 / 22.9.0 / 23.3.0
}
# returns 0 for everything else; ast_sip_session_terminate() turns 0 into 603
ASTERISK_Q850_DEFAULT = {k: 603 for k in ("0", "1", "2", "3", "4", "5", "6", "7", "*")}

# --- FreeSWITCH sofia_glue.c sofia_glue_sip_cause_to_freeswitch() --------------------------
FREESWITCH_SIP = {
    200: "NORMAL_CLEARING",
    401: "CALL_REJECTED", 402: "CALL_REJECTED", 403: "CALL_REJECTED", 407: "CALL_REJECTED",
    603: "CALL_REJECTED", 608: "CALL_REJECTED",
    607: "UNWANTED",
    404: "UNALLOCATED_NUMBER",
    485: "NO_ROUTE_DESTINATION", 604: "NO_ROUTE_DESTINATION",
    408: "RECOVERY_ON_TIMER_EXPIRE", 504: "RECOVERY_ON_TIMER_EXPIRE",
    410: "NUMBER_CHANGED",
    413: "INTERWORKING", 414: "INTERWORKING", 416: "INTERWORKING", 420: "INTERWORKING",
    421: "INTERWORKING", 423: "INTERWORKING", 505: "INTERWORKING", 513: "INTERWORKING",
    480: "NO_USER_RESPONSE",
    400: "NORMAL_TEMPORARY_FAILURE", 481: "NORMAL_TEMPORARY_FAILURE", 500: "NORMAL_TEMPORARY_FAILURE",
    503: "NORMAL_TEMPORARY_FAILURE",
    486: "USER_BUSY", 600: "USER_BUSY",
    484: "INVALID_NUMBER_FORMAT",
    488: "INCOMPATIBLE_DESTINATION", 606: "INCOMPATIBLE_DESTINATION",
    502: "NETWORK_OUT_OF_ORDER",
    405: "SERVICE_UNAVAILABLE",
    406: "SERVICE_NOT_IMPLEMENTED", 415: "SERVICE_NOT_IMPLEMENTED", 501: "SERVICE_NOT_IMPLEMENTED",
    482: "EXCHANGE_ROUTING_ERROR", 483: "EXCHANGE_ROUTING_ERROR",
    487: "ORIGINATOR_CANCEL",
    428: "NO_IDENTITY", 429: "BAD_IDENTITY_INFO", 437: "UNSUPPORTED_CERTIFICATE", 438: "INVALID_IDENTITY",
}
FREESWITCH_SIP_DEFAULT = {k: "NORMAL_UNSPECIFIED" for k in ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "*")}
# --- FreeSWITCH mod_sofia.c hangup_cause_to_sip() ------------------------------------------
FREESWITCH_Q850 = {
    "UNALLOCATED_NUMBER": 404, "NO_ROUTE_TRANSIT_NET": 404, "NO_ROUTE_DESTINATION": 404,
    "USER_BUSY": 486, "NO_USER_RESPONSE": 408, "NO_ANSWER": 480, "SUBSCRIBER_ABSENT": 480,
    "CALL_REJECTED": 603, "NUMBER_CHANGED": 410, "REDIRECTION_TO_NEW_DESTINATION": 410,
    "DESTINATION_OUT_OF_ORDER": 502, "INVALID_PROFILE": 502,
    "INVALID_NUMBER_FORMAT": 484, "INVALID_URL": 484, "INVALID_GATEWAY": 484,
    "FACILITY_REJECTED": 501, "NORMAL_UNSPECIFIED": 480,
    "REQUESTED_CHAN_UNAVAIL": 503, "NORMAL_CIRCUIT_CONGESTION": 503, "NETWORK_OUT_OF_ORDER": 503,
    "NORMAL_TEMPORARY_FAILURE": 503, "SWITCH_CONGESTION": 503, "GATEWAY_DOWN": 503,
    "OUTGOING_CALL_BARRED": 403, "INCOMING_CALL_BARRED": 403, "BEARERCAPABILITY_NOTAUTH": 403,
    "BEARERCAPABILITY_NOTAVAIL": 503,
    "BEARERCAPABILITY_NOTIMPL": 488, "INCOMPATIBLE_DESTINATION": 488,
    "FACILITY_NOT_IMPLEMENTED": 501, "SERVICE_NOT_IMPLEMENTED": 501,
    "RECOVERY_ON_TIMER_EXPIRE": 504, "ORIGINATOR_CANCEL": 487, "EXCHANGE_ROUTING_ERROR": 483,
    "BUSY_EVERYWHERE": 600, "DECLINE": 603, "REJECT_ALL": 603, "DOES_NOT_EXIST_ANYWHERE": 604,
    "NOT_ACCEPTABLE": 606, "UNWANTED": 607,
    "NO_IDENTITY": 428, "BAD_IDENTITY_INFO": 429, "UNSUPPORTED_CERTIFICATE": 437, "INVALID_IDENTITY": 438,
    "STALE_DATE": 403,
}
FREESWITCH_Q850_DEFAULT = {k: 480 for k in ("0", "1", "2", "3", "4", "5", "6", "7", "*")}

# Q.850 values of the FreeSWITCH names used above (ITU-T Q.850 table 1); FreeSWITCH's own
# causes (ORIGINATOR_CANCEL, UNWANTED, the identity causes) stay names: they are no Q.850 value.
FS_Q850 = {
    "NORMAL_CLEARING": 16, "CALL_REJECTED": 21, "UNALLOCATED_NUMBER": 1, "NO_ROUTE_DESTINATION": 3,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "NUMBER_CHANGED": 22, "INTERWORKING": 127, "NO_USER_RESPONSE": 18,
    "NORMAL_TEMPORARY_FAILURE": 41, "USER_BUSY": 17, "INVALID_NUMBER_FORMAT": 28,
    "INCOMPATIBLE_DESTINATION": 88, "NETWORK_OUT_OF_ORDER": 38, "SERVICE_UNAVAILABLE": 63,
    "SERVICE_NOT_IMPLEMENTED": 79, "EXCHANGE_ROUTING_ERROR": 25, "NORMAL_UNSPECIFIED": 31,
}

EXPECTED = {
    "rfc3398": (RFC3398_SIP, RFC3398_SIP_DEFAULT, RFC3398_Q850, RFC3398_Q850_DEFAULT),
    "asterisk": (ASTERISK_SIP, ASTERISK_SIP_DEFAULT, ASTERISK_Q850, ASTERISK_Q850_DEFAULT),
    "freeswitch": (FREESWITCH_SIP, FREESWITCH_SIP_DEFAULT, FREESWITCH_Q850, FREESWITCH_Q850_DEFAULT),
}


def sip_to_q850(dialect: str, code: int) -> int | str | None:
    """What `dialect` gives for SIP `code`, its class default included (FS names resolved)."""
    table, default, _, _ = EXPECTED[dialect]
    value = table[code] if code in table else default.get(f"{code // 100}xx", default["*"])
    return FS_Q850.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dialect_matches_its_source_value_by_value(name: str) -> None:
    sip, sip_default, q850, q850_default = EXPECTED[name]
    d = DIALECTS[name]
    assert d["sources"]
    got_sip = {int(k): v for k, v in d["sip_to_q850"].items()}
    assert set(got_sip) == set(sip), f"{name}: codes differ: {sorted(set(got_sip) ^ set(sip))}"
    for code, value in sip.items():
        assert got_sip[code] == value, (name, code)
    assert d["sip_to_q850_default"] == sip_default
    got_q = {(k if isinstance(k, str) and not k.isdigit() else int(k)): v for k, v in d["q850_to_sip"].items()}
    assert set(got_q) == set(q850), f"{name}: causes differ: {set(got_q) ^ set(q850)}"
    for cause, value in q850.items():
        assert got_q[cause] == value, (name, cause)
    assert d["q850_to_sip_default"] == q850_default


def test_entry_counts() -> None:
    counts = {n: (len(DIALECTS[n]["sip_to_q850"]), len(DIALECTS[n]["q850_to_sip"])) for n in sorted(DIALECTS)}
    print(f"\ndialect entries (sip->q850, q850->sip): {counts}")
    assert counts == {"asterisk": (35, 20), "freeswitch": (44, 45), "rfc3398": (37, 32)}


@pytest.mark.parametrize(("code", "rfc3398", "asterisk", "freeswitch"), [
    (480, 18, 19, 18),        # NO_USER_RESPONSE in FreeSWITCH; Asterisk says no answer
    (503, 41, 34, 41),        # NORMAL_TEMPORARY_FAILURE in FreeSWITCH
    (488, 31, 58, 88),        # INCOMPATIBLE_DESTINATION in FreeSWITCH
    (408, 102, 18, 102),      # RECOVERY_ON_TIMER_EXPIRE in FreeSWITCH
    (487, None, 127, "ORIGINATOR_CANCEL"),
    (500, 41, 38, 41),
    (501, 79, 29, 79),
    (502, 38, 27, 38),
    (504, 102, 102, 102),
    (405, 63, 127, 63),       # SERVICE_UNAVAILABLE in FreeSWITCH
    (406, 79, 127, 79),       # via Asterisk's 4xx default
    (415, 79, 127, 79),
    (400, 41, 127, 41),
    (481, 41, 127, 41),
    (482, 25, 127, 25),
    (483, 25, 19, 25),
    (420, 127, 3, 127),
    (402, 21, 127, 21),
    (409, 31, 41, 31),        # RFC 2543-only 409: defaults in RFC 3398 and FreeSWITCH
    (606, 31, 58, 88),
    (607, 31, 127, "UNWANTED"),
    (608, 31, 127, 21),
    (302, 31, 23, 31),        # Asterisk before 20.19 / 22.9 / 23.3: 16 (see test_versions)
    (200, None, 16, 16),
    (486, 17, 17, 17),        # agreement
    (404, 1, 1, 1),
    (603, 21, 21, 21),
])
def test_documented_disagreements(code: int, rfc3398, asterisk, freeswitch) -> None:
    assert sip_to_q850("rfc3398", code) == rfc3398
    assert sip_to_q850("asterisk", code) == asterisk
    assert sip_to_q850("freeswitch", code) == freeswitch


def test_reverse_direction_disagreements() -> None:
    rfc, ast, fs = RFC3398_Q850, ASTERISK_Q850, FREESWITCH_Q850
    assert (rfc[21], ast[21], fs["CALL_REJECTED"]) == (403, 403, 603)
    assert (rfc[38], ast[38], fs["NETWORK_OUT_OF_ORDER"]) == (503, 500, 503)
    assert (rfc[58], ast[58], fs["BEARERCAPABILITY_NOTAVAIL"]) == (503, 488, 503)
    assert (rfc[88], fs["INCOMPATIBLE_DESTINATION"]) == (503, 488)
    assert 88 not in ast and ASTERISK_Q850_DEFAULT["5"] == 603
    assert (rfc[16], ASTERISK_Q850_DEFAULT["1"], FREESWITCH_Q850_DEFAULT["*"]) == (None, 603, 480)
    assert (rfc[127], ast[127], fs["NORMAL_UNSPECIFIED"]) == (500, 500, 480)


def test_count_disagreements_among_the_three() -> None:
    codes = set(RFC3398_SIP) | set(ASTERISK_SIP) | set(FREESWITCH_SIP)
    differ = sorted(c for c in codes if len({repr(sip_to_q850(d, c)) for d in EXPECTED}) > 1)
    print(f"\nSIP codes listed by any dialect: {len(codes)}; the three disagree on {len(differ)}: {differ}")
    assert 30 <= len(differ) <= 45
    assert {408, 480, 487, 488, 503} <= set(differ)


def test_loader_reads_the_dialects_the_same_way() -> None:
    from callcause.mapping.tables import builtin_tables

    dialects = builtin_tables().dialects
    assert dialects["rfc3398"].q850_for_sip(480) == 18
    assert dialects["asterisk"].q850_for_sip(480) == 19
    assert dialects["freeswitch"].q850_for_sip(480) == 18
    assert dialects["asterisk"].q850_for_sip(599) == 34      # 5xx default
    assert dialects["asterisk"].q850_for_sip(302) == 23      # newest; before 22.9: 16
    assert dialects["asterisk"].q850_for_sip(301) == 16      # below 400: AST_CAUSE_NORMAL
    assert dialects["rfc3398"].q850_for_sip(487) is None     # no mapping
    assert dialects["freeswitch"].q850_for_sip(487) == 16    # ORIGINATOR_CANCEL, reported as 16
    assert dialects["freeswitch"].q850_for_sip(499) == 31    # NORMAL_UNSPECIFIED default
    assert dialects["asterisk"].sip_for_q850(16) == 603
    assert dialects["freeswitch"].sip_for_q850(16) == 480
    assert dialects["rfc3398"].sip_for_q850(16) is None


# --- versions: what each release line had, from the release tags ----------------------------
@pytest.mark.parametrize(("version", "sip302", "q850_23"), [
    ("20.18.2", 16, 603), ("20.19.0", 23, 302),                     # 20 LTS got it in 20.19.0
    ("21.10.2", 16, 603),                                           # 21 ended before the change
    ("22.8.2", 16, 603), ("22.9.0", 23, 302), ("22.10.1", 23, 302),
    ("23.2.2", 16, 603), ("23.3.0", 23, 302), ("24.0.0", 23, 302),  # later lines branched with it
    ("18.26.4", 16, 603), ("certified-20.7-cert3", 16, 603),
    ("22.9.0-rc1", 23, 302), (None, 23, 302), ("garbage", 23, 302),  # unknown: the newest
])
def test_asterisk_302_by_version(version: str | None, sip302: int, q850_23: int) -> None:
    from callcause.mapping.tables import builtin_tables

    d = builtin_tables().dialect("asterisk", version)
    assert (d.q850_for_sip(302), d.sip_for_q850(23)) == (sip302, q850_23)
    assert d.q850_for_sip(486) == 17 and d.q850_for_sip(480) == 19     # the rest is unchanged
    # the same releases stopped letting a Reason header set the cause of a failure response
    assert d.reason_sets_cause is (sip302 == 16)


@pytest.mark.parametrize(("version", "s607", "s608", "s428", "stale"), [
    ("1.10.6", 21, 31, 31, None), ("1.8.7", 21, 31, 31, None),
    ("1.10.7", 16, 21, 16, 403), ("1.10.12-release~64bit", 16, 21, 16, 403), (None, 16, 21, 16, 403),
])
def test_freeswitch_1_10_7_by_version(version, s607, s608, s428, stale) -> None:
    from callcause.mapping.tables import builtin_tables

    d = builtin_tables().dialect("freeswitch", version)
    assert (d.q850_for_sip(607), d.q850_for_sip(608), d.q850_for_sip(428)) == (s607, s608, s428)
    assert d.name_to_sip.get("STALE_DATE") == stale
    assert d.reason_sets_cause
    assert d.sip_to_name.get(607) == ("CALL_REJECTED" if s607 == 21 else "UNWANTED")


def test_dialect_name_with_version() -> None:
    from callcause.mapping.tables import builtin_tables

    t = builtin_tables()
    assert t.dialect("asterisk@22.8").q850_for_sip(302) == 16
    assert t.dialect("asterisk@22.10").q850_for_sip(302) == 23
    assert t.dialect("asterisk") is t.dialects["asterisk"]


def test_the_memo_of_versions_keeps_texts_a_pbx_could_send() -> None:
    """Versions come off the wire: the table of each is remembered, but not for a version text
    no PBX sends (a hostile header of megabytes), which still gets the newest table."""
    from callcause.mapping.tables import builtin_tables

    tables = builtin_tables()
    newest = tables.dialect("freeswitch")
    assert tables.dialect("freeswitch", "1.10.12-release") is tables.dialect("freeswitch", "1.10.12-release")
    junk = "9" * 100_000
    assert tables.dialect("freeswitch", junk).q850_for_sip(486) == newest.q850_for_sip(486)
    assert ("freeswitch", junk) not in tables._by_asked
    assert ("freeswitch", "1.10.12-release") in tables._by_asked
    # digits of other scripts are no version number either (int() would take them)
    from callcause.mapping.tables import parse_version

    assert parse_version("\u0661.\u0661\u0660") is None and parse_version("1.10.12-release") == (1, 10, 12)
