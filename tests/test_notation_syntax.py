"""Notations that need no table: Reason headers (RFC 3326/6432/8606) and the DSS1 cause IE."""

from __future__ import annotations

import pytest

from callcause.errors import NotationError
from callcause.mapping.notation import decode_cause_ie, parse_reason_header


def test_reason_q850_with_text():
    [rh] = parse_reason_header('Reason: Q.850;cause=34;text="Circuit/channel congestion"')
    assert (rh.protocol, rh.cause, rh.text, rh.location) == ("Q.850", 34, "Circuit/channel congestion", None)


def test_reason_several_values_and_commas_inside_text():
    # RFC 6432 allows one SIP and one Q.850 value in the same header; a text may hold commas.
    hs = parse_reason_header('SIP;cause=480;text="Temporarily, Unavailable", Q.850;cause=18;text="No answer"')
    assert [(h.protocol, h.cause) for h in hs] == [("SIP", 480), ("Q.850", 18)]
    assert hs[0].text == "Temporarily, Unavailable"


def test_reason_rfc8606_location():
    [rh] = parse_reason_header("Q.850;cause=16;location=LN")
    assert rh.location == "LN" and rh.cause == 16


def test_reason_freeswitch_variable_form():
    # FreeSWITCH's variable_sip_reason, as seen in the public ESL captures (after URL-decoding).
    [rh] = parse_reason_header('Q.850;cause=21;text="CALL_REJECTED"')
    assert (rh.cause, rh.text) == (21, "CALL_REJECTED")


@pytest.mark.parametrize("bad", ["Reason: Q.850;cause=abc", "Reason: ;cause=3", "Reason:", "Q.850;text=x"])
def test_reason_malformed(bad):
    with pytest.raises(NotationError) as err:
        parse_reason_header(bad)
    assert "expected" in str(err.value) and "\n" not in str(err.value)


def test_dss1_two_octets():
    info = decode_cause_ie(bytes.fromhex("8290"), "0x8290")
    assert (info["coding_standard"], info["location"], info["cause"], info["diagnostic"]) == (0, 2, 16, None)


def test_dss1_with_diagnostic():
    info = decode_cause_ie(bytes.fromhex("829F08"), "x")
    assert (info["location"], info["cause"], info["diagnostic"]) == (2, 31, "08")


def test_dss1_with_recommendation_octet():
    # Octet 3 without its extension bit is followed by octet 3a (recommendation, here Q.931 = 0).
    info = decode_cause_ie(bytes.fromhex("0380A2"), "x")
    assert (info["location"], info["recommendation"], info["cause"]) == (3, 0, 34)


def test_dss1_full_ie_with_identifier_and_length():
    info = decode_cause_ie(bytes.fromhex("08028291"), "x")
    assert (info["location"], info["cause"]) == (2, 17)


@pytest.mark.parametrize("octets", ["82", "0290", "8210"])
def test_dss1_malformed(octets):
    with pytest.raises(NotationError):
        decode_cause_ie(bytes.fromhex(octets), octets)


def test_reason_lenient_keeps_the_good_values():
    # What a PBX hands over is not ours to reject: one bad value costs only itself.
    hs = parse_reason_header('Q.850;cause=abc, SIP;cause=503;text="x", garbage', lenient=True)
    assert [(h.protocol, h.cause) for h in hs] == [("SIP", 503)]
    assert parse_reason_header("nothing useful", lenient=True) == []


@pytest.mark.parametrize("bad", ["\u00b2", "\u0663", "1" * 5001, "0123"],
                         ids=["superscript-two", "arabic-indic-three", "5001-digits", "four-digits"])
def test_reason_cause_is_one_to_three_ascii_digits(bad):
    # str.isdigit() accepts these, int() refuses the first and the third: a bad value must not raise
    # anything but NotationError, and in lenient mode it costs only itself
    hs = parse_reason_header(f"Q.850;cause={bad}, SIP;cause=486", lenient=True)
    assert [(h.protocol, h.cause) for h in hs] == [("SIP", 486)]
    with pytest.raises(NotationError, match="cause number"):
        parse_reason_header(f"Q.850;cause={bad}")
