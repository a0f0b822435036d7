"""Cause lines copied from vendor debug output and documentation, each read one way or refused.

Every input below is the format a real tool prints, with its source; where the tool's own
documentation shows a complete line, that line is used as printed.
"""

from __future__ import annotations

import json

import pytest

from callcause.cli import main
from callcause.mapping.notation import vendor_names
from callcause.mapping.tables import builtin_tables


def explain_json(capsys, text: str) -> dict:
    assert main(["explain", text, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


# (input, Q.850 cause, location abbreviation or None, category or None), source
READ = [
    # Abilis CPX tutorial 8.8, chapter 93.1 "Disconnection code's format" (abilis.net):
    # "Example: CAUSE: 82 90" = location 82 (LN), cause 90 (normal call clearing).
    pytest.param("CAUSE: 82 90", 16, "LN", "answered", id="abilis-cpx"),
    pytest.param("CAUSE: 84 91", 17, "RLN", "busy", id="abilis-cpx-remote-network-busy"),
    # libpri q931.c dump_cause(), as chan_dahdi prints it with `pri set debug on`: the first
    # line carries coding standard and location, the second the cause value and its class.
    pytest.param("> Cause (len= 2) [ Ext: 1  Coding: CCITT (ITU) standard (0)  Spare: 0  "
                 "Location: Public network serving the local user (2)\n"
                 ">                  Ext: 1  Cause: User busy (17), class = Normal Event (1) ]",
                 17, "LN", "busy", id="libpri-dump-cause-both-lines"),
    pytest.param("<                  Ext: 1  Cause: Normal Clearing (16), class = Normal Event (1) ]",
                 16, None, "answered", id="libpri-dump-cause-second-line"),
    # libpri q931.c prints every information element as raw octets first ("> [04 03 80 90 a2]"
    # for a bearer capability in a public chan_dahdi debug paste); 08 is the cause element.
    pytest.param("> [08 02 81 90]", 16, "LPN", "answered", id="libpri-raw-cause-ie"),
    # Asterisk channels/sig_pri.c: ast_verb(3, "Span %d: Channel %d/%d got hangup, cause %d\n"),
    # with the logger's prefix as a full log line shows it.
    pytest.param("[Dec  3 07:00:00] VERBOSE[2211][C-00000004] sig_pri.c: "
                 "Span 1: Channel 0/1 got hangup, cause 16", 16, None, "answered", id="sig-pri-hangup"),
    # ... and "Span %d: Channel %d/%d got hangup request, cause %d\n".
    pytest.param("    -- Span 2: Channel 0/3 got hangup request, cause 17", 17, None, "busy",
                 id="sig-pri-hangup-request"),
    # FreeSWITCH libs/freetdm ftmod_sangoma_isdn_trace.c (Sangoma's ISDN stack), which prints the
    # cause element as "  %s:" (the element name) then "coding:%s(%d) location:%s(%d) val:%s(%d)"
    # with the names of its dcodQ931BcCodingStandardTable / IelocationTable / CauseCodeTable.
    pytest.param("  Cause:coding:ITU-T(0) location:Public network, local user(2) "
                 "val:Normal call clearing(16)", 16, "LN", "answered", id="sangoma-freetdm-isdn-trace"),
    pytest.param("coding:ITU-T(0) location:Private network, remote user(5) val:User busy(17)",
                 17, "RPN", "busy", id="sangoma-freetdm-without-element-name"),
    # Wireshark epan/dissectors/packet-q931.c, field hf_q931_cause_value "Cause value"
    # (q931.cause_value, mask 0x7f), as `tshark -V` shows it with its bit mask.
    pytest.param(".001 0000 = Cause value: Normal call clearing (16)", 16, None, "answered",
                 id="wireshark-q931"),
    # Wireshark epan/dissectors/packet-isup.c, field hf_isup_cause_indicator "Cause indicator"
    # (isup.cause_indicator, Q.850 value strings), in a REL message.
    pytest.param(".001 0001 = Cause indicator: User busy (17)", 17, None, "busy", id="wireshark-isup"),
    pytest.param("Cause indicator: No circuit/channel available (34)", 34, None, "congestion",
                 id="wireshark-isup-no-mask"),
    # Avaya IP Office System Monitor, "Cause Codes (ISDN)" (documentation.avaya.com):
    # "Cause=16, Normal call clearing" in a CMExtnTx: CMReleaseComp trace.
    pytest.param("Cause=16, Normal call clearing", 16, None, "answered", id="ip-office-monitor"),
    # AudioCodes Mediant User's Manual, CDR field "Termination Reason [410]" (syslog title
    # TrmReason), values GWAPP_*; see mapping/tables/vendor_names.yaml.
    pytest.param("TrmReason: GWAPP_USER_BUSY", 17, None, "busy", id="audiocodes-trmreason"),
    pytest.param("GWAPP_NO_ANSWER_FROM_USER_ALERTED", 19, None, "no_answer", id="audiocodes-name"),
    # Cisco IOS `debug voip ccapi inout`; Cisco's "Details of Cause Codes and Debug Values for VoIP"
    # lists the CCAPI cause values in hexadecimal (CC_CAUSE_NORM = 0x10, CC_CAUSE_BUSY = 0x11).
    pytest.param("ccCallDisconnect (callID=0x1B, cause=0x11 tag=0x0)", 17, None, "busy", id="cisco-ccapi"),
    pytest.param("cause=0x10", 16, None, "answered", id="cisco-ccapi-bare"),
    # Cisco IOS `debug isdn q931` (Cisco document 8607, "Understanding debug isdn q931
    # Disconnect Cause Codes"), as printed there without a space after '='.
    pytest.param("Cause i =0x829F08 - Normal,unspecified or Special intercept, call blocked group "
                 "restriction", 31, "LN", None, id="cisco-debug-isdn-q931"),
]


@pytest.mark.parametrize(("text", "q850", "location", "category"), READ)
def test_debug_line_reads_as(capsys, text, q850, location, category):
    doc = explain_json(capsys, text)
    assert doc["q850"]["cause"] == q850
    assert doc["q850"]["location"] == location
    if category is not None:
        assert doc["cause"]["category"] == category


def test_abilis_line_keeps_the_whole_cause_element(capsys):
    doc = explain_json(capsys, "CAUSE: 82 90")
    assert (doc["dss1"]["coding_standard"], doc["dss1"]["location"], doc["dss1"]["octets"]) == (0, 2, "8290")


def test_libpri_both_lines_give_the_coding_standard(capsys):
    doc = explain_json(capsys, "> Cause (len= 2) [ Ext: 1  Coding: National standard (2)  Spare: 0  "
                               "Location: User (0)\n>   Ext: 1  Cause: User busy (17), class = Normal Event (1) ]")
    assert (doc["dss1"]["coding_standard"], doc["dss1"]["location"]) == (2, 0)


def test_sig_pri_line_betrays_asterisk(capsys):
    doc = explain_json(capsys, "Span 1: Channel 0/1 got hangup, cause 34")
    assert doc["q850"]["cause"] == 34 and doc["cause"]["category"] == "congestion"


REFUSED = [
    # Abilis documents F0 and FF as "CPX internal code", not a Q.850 location.
    ("CAUSE: F0 90", "internal code"),
    ("CAUSE: FF 90", "internal code"),
    # A libpri dump of another element (bearer capability) must not be read as a cause.
    ("> [04 03 80 90 a2]", "not a cause"),
    ("> [08 03 81 90]", "length octet"),
    # libpri prints class = cause >> 4; a line where they disagree is not libpri's.
    ("Ext: 1  Cause: User busy (17), class = Normal Event (2) ]", "class 2"),
    # IP Office numbers its own causes from 103 up.
    ("Cause=111, Some IP Office reason", "103"),
    # h323-disconnect-cause is hexadecimal on Cisco gateways (h323-disconnect-cause=10 for
    # cause 16) and decimal on AudioCodes (its manual: h323-disconnect-cause=16).
    ("h323-disconnect-cause=10", "hexadecimal"),
    ("GWAPP_NOT_A_REASON", "AudioCodes"),
    ("TrmReason: RELEASE_BECAUSE_NOANSWER", "no table knows"),
    ("Cause value: Normal call clearing (200)", "outside 0-127"),
    ("Cause:coding:ITU-T(0) location:User(0) val:Unknown(130)", "outside 0-127"),
    ("ccCallDisconnect (callID=0x1B, cause=0x90 tag=0x0)", "outside 0-127"),
    ("Cause:coding:ITU-T(7) location:User(0) val:User busy(17)", "coding standard 7"),
]


@pytest.mark.parametrize(("bad", "says"), REFUSED)
def test_ambiguous_or_foreign_lines_are_refused(capsys, bad, says):
    assert main(["explain", bad]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and "\n" not in err and "Traceback" not in err
    assert says in err and "expected" in err


def test_vendor_names_point_at_known_q850_causes():
    q850 = builtin_tables().q850
    names = vendor_names()
    assert len(names) >= 20
    for name, (vendor, value) in names.items():
        assert vendor == "audiocodes" and name.startswith("GWAPP_")
        assert value in q850, name
