"""`callcause explain` for every notation, as text and JSON, and its errors."""

from __future__ import annotations

import json

import pytest

from callcause.cli import main


def explain_json(capsys, *args: str) -> dict:
    assert main(["explain", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("text", "sip", "q850", "category"), [
    ("486", 486, 17, "busy"),
    ("SIP/2.0 486 Busy Here", 486, 17, "busy"),
    ("SIP 486 Busy Here", 486, 17, "busy"),            # Asterisk HANGUPCAUSE(<chan>,tech)
    ("sip:486", 486, 17, "busy"),                      # FreeSWITCH proto_specific_hangup_cause
    ("480 No money left", 480, None, "billing"),
    ("SIP/2.0 403 Wrong Guess", 403, None, None),
    ("q850:34", None, 34, "congestion"),
    ("cause=34", None, 34, "congestion"),
    ('Reason: Q.850;cause=34;text="Circuit/channel congestion"', None, 34, "congestion"),
    ("USER_BUSY", None, 17, "busy"),
    ("AST_CAUSE_CONGESTION", None, 34, "congestion"),
    ("PRI_CAUSE_USER_BUSY", None, 17, "busy"),
    ("0x8290", None, 16, None),
    ("82 90", None, 16, None),
    ("Cause i = 0x829F08 - Normal, unspecified", None, 31, None),
    ("BUSY", None, None, "busy"),                      # Asterisk DialStatus
    ("CHANUNAVAIL", None, None, None),
    ("Cause: 17", None, 17, "busy"),                   # an AMI header line pasted as is
    ("Hangup-Cause: ORIGINATOR_CANCEL", None, 16, "cancelled"),
])
def test_notations(capsys, text, sip, q850, category):
    doc = explain_json(capsys, text)
    assert set(doc) >= {"sip", "q850", "pbx", "cause", "rule", "collapsed", "dialects"}
    if sip is not None:
        assert doc["sip"]["code"] == sip
    if q850 is not None:
        assert doc["q850"]["cause"] == q850
    if category is not None:
        assert doc["cause"]["category"] == category
    assert doc["cause"]["summary"] and doc["cause"]["detail"] and doc["cause"]["advice"]


def test_dss1_fields(capsys):
    doc = explain_json(capsys, "Cause i = 0x829F08 - Normal, unspecified")
    assert doc["dss1"]["location"] == 2 and doc["dss1"]["location_abbr"] == "LN"
    assert doc["dss1"]["coding_standard"] == 0 and doc["dss1"]["diagnostic"] == "08"
    assert doc["q850"]["location"] == "LN"


def test_dialects_disagree_on_480(capsys):
    doc = explain_json(capsys, "480")
    assert doc["dialects"]["rfc3398"]["q850"] == 18
    assert doc["dialects"]["asterisk"]["q850"] == 19
    assert doc["dialects"]["freeswitch"]["q850"] == 18
    assert doc["dialects"]["freeswitch"]["cause"] == "NO_USER_RESPONSE"


def test_dialect_option_changes_the_q850(capsys):
    assert explain_json(capsys, "503", "--dialect", "asterisk")["q850"]["cause"] == 34
    assert explain_json(capsys, "503", "--dialect", "freeswitch")["q850"]["cause"] == 41
    assert explain_json(capsys, "503")["q850"]["cause"] == 41


def test_freeswitch_487_is_collapsed(capsys):
    doc = explain_json(capsys, "sip:487")
    assert doc["collapsed"] is True and doc["dialects"]["freeswitch"]["cause"] == "ORIGINATOR_CANCEL"


def test_q850_dialects_map_back_to_sip(capsys):
    doc = explain_json(capsys, "q850:34")
    assert doc["dialects"]["rfc3398"]["sip"] == 503


def test_text_output_is_aligned_and_complete(capsys):
    assert main(["explain", "480 No money left"]) == 0
    out = capsys.readouterr().out
    for label in ("SIP", "Q.850", "Category", "Dialects", "Summary", "Detail", "Advice", "Rule"):
        assert label in out
    assert "phrase/no_money_left" in out


MALFORMED = [
    "", "   ", "999", "1000", "q850:200", "cause=abc", "SIP/2.0 48 Busy", "SIP/2.0 999 Nope",
    "sip:99", "0x82", "0x8", "q850:", "0x0290", "Reason: Q.850;cause=x", "Reason: ;cause=3",
    "AST_CAUSE_NOPE", "PRI_CAUSE_WHATEVER", "USER_BUZY", "hello world!", "486;tag=x",
    "Cause: seventeen", "DialStatus: MAYBE", "x" * 3000, "Cause i = 0x10",
    # digits that are not ASCII: `²` passes str.isdigit() and int() refuses it, `٣٤` int() reads
    "²", "Cause: ²", "TechCause: ²²²", "٣٤",
]


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_input_exit_2_one_line(capsys, bad):
    assert main(["explain", bad]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    assert "expected" in err or "understood" in err


def test_typo_gets_a_suggestion(capsys):
    main(["explain", "USER_BUZY"])
    assert "USER_BUSY" in capsys.readouterr().err


def test_language_option(capsys):
    doc = explain_json(capsys, "486", "--lang", "en-GB")
    assert doc["cause"]["lang"] == "en"
    assert main(["explain", "486", "--lang", "xx"]) == 2
