"""The translator: precedence of clues, the rule that decided, collapsed causes, texts."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from callcause.mapping.locales import FIELDS, Locales
from callcause.mapping.translator import Translator
from callcause.record import HangupClues, ReasonHeader


@pytest.fixture(scope="module")
def tr() -> Translator:
    return Translator.default()


def leg(kind: str = "asterisk", **kw) -> HangupClues:
    return HangupClues(source_name="pbx-1", source_kind=kind, leg_id="1.1", **kw)


def test_phrase_beats_reason_header_and_code(tr):
    e = tr.explain(leg("freeswitch", sip_code=480, sip_reason="No money left", q850=18,
                       reason_headers=[ReasonHeader("Q.850", 18, None)]))
    assert e.rule == "builtin:phrase/no_money_left"
    assert e.category == "billing"
    assert e.text_keys[0] == "phrase.no_money_left"


def test_reason_header_beats_sip_code(tr):
    # 503 with Reason: Q.850;cause=34 (capture asterisk-sip503-reason-q850-34): the header is sharper.
    e = tr.explain(leg(sip_code=503, reason_headers=[ReasonHeader("Q.850", 34, None)], q850=34))
    assert e.rule == "builtin:reason/q850/34"
    assert e.category == "congestion"


def test_sip_code_beats_pbx_name_and_q850(tr):
    e = tr.explain(leg("freeswitch", sip_code=486, pbx_cause="CALL_REJECTED", q850=21))
    assert e.rule == "builtin:sip/486" and e.category == "busy"
    assert e.sip == {"code": 486, "reason": "Busy Here", "standard_reason": "Busy Here", "class": "4xx",
                     "status": "standard"}


def test_pbx_name_beats_q850(tr):
    e = tr.explain(leg("freeswitch", pbx_cause="MEDIA_TIMEOUT", q850=16, answered=True))
    assert e.rule == "builtin:freeswitch/MEDIA_TIMEOUT"
    assert e.category == "media"


def test_dial_status_beats_q850(tr):
    # The caller's own Cause is 16 after a failed Dial(); DialStatus says what happened.
    e = tr.explain(leg(q850=16, dial_status="BUSY", answered=False))
    assert e.rule == "builtin:dialstatus/BUSY" and e.category == "busy"


def test_q850_alone(tr):
    e = tr.explain(leg(q850=34))
    assert e.rule == "builtin:q850/34" and e.category == "congestion"
    assert e.q850["name"] and e.q850["class"] == "resource unavailable"


def test_sip_2xx_does_not_hide_a_sharper_pbx_cause(tr):
    # FreeSWITCH reports sip_term_status 200 for every BYE; MEDIA_TIMEOUT is the real story.
    e = tr.explain(leg("freeswitch", sip_code=200, pbx_cause="MEDIA_TIMEOUT", q850=16, answered=True))
    assert e.rule == "builtin:freeswitch/MEDIA_TIMEOUT"


def test_answered_normal_clearing(tr):
    e = tr.explain(leg("freeswitch", sip_code=200, pbx_cause="NORMAL_CLEARING", q850=16, answered=True))
    assert e.category == "answered" and e.fault == "none" and not e.collapsed


def test_unanswered_normal_clearing_is_not_answered(tr):
    e = tr.explain(leg(q850=16, answered=False))
    assert e.category == "cancelled"
    assert e.text_keys[0] == "generic.unanswered_normal"


def test_freeswitch_cause_above_127_is_collapsed(tr):
    e = tr.explain(leg("freeswitch", pbx_cause="ORIGINATOR_CANCEL", q850=16, sip_code=None,
                       disposition="send_cancel"))
    assert e.collapsed is True
    assert e.category == "cancelled"
    assert e.q850["cause"] == 16


def test_asterisk_cancel_as_127_is_collapsed(tr):
    e = tr.explain(leg(q850=127, sip_code=487))
    assert e.collapsed is True and e.category == "cancelled"


def test_plain_busy_is_not_collapsed(tr):
    assert tr.explain(leg(q850=17, sip_code=486)).collapsed is False


def test_q850_is_derived_from_the_dialect_when_the_pbx_gave_none(tr):
    a = tr.explain(leg("asterisk", sip_code=480))
    f = tr.explain(leg("freeswitch", sip_code=480))
    assert (a.q850["cause"], a.q850["derived"]) == (19, True)
    assert f.q850["cause"] == 18
    assert a.q850["standard_for_sip"] == 18    # RFC 3398


def test_unknown_sip_code_falls_back_to_its_class(tr):
    e = tr.explain(leg(sip_code=459))
    assert e.rule == "builtin:sip/4xx"
    assert tr.texts(e, "en").summary


def test_nothing_known(tr):
    e = tr.explain(leg())
    assert e.rule == "builtin:none" and e.category == "unknown"
    assert tr.texts(e, "en").summary


def test_hangup_source_from_clues_or_freeswitch_hint(tr):
    assert tr.explain(leg(q850=16, hangup_source="callee")).hangup_source == "callee"
    assert tr.explain(leg(q850=17)).hangup_source == "unknown"


def test_every_rule_has_english_texts(tr):
    for clues in (leg(sip_code=486), leg(q850=17), leg(dial_status="CHANUNAVAIL"),
                  leg("freeswitch", pbx_cause="GATEWAY_DOWN"), leg(sip_code=403, sip_reason="Wrong Guess")):
        texts = tr.texts(tr.explain(clues), "en")
        assert all(getattr(texts, f) for f in FIELDS), clues


def test_missing_locale_falls_back_to_english_and_counts(tr):
    # A locale that lacks an entry serves English and counts it, never silently.
    loc = Locales({"en": tr.locales.entries["en"], "de": {}})
    before = REGISTRY.get_sample_value("callcause_locale_fallback_total", {"lang": "de"}) or 0
    texts = loc.lookup(("sip.486",), "de")
    after = REGISTRY.get_sample_value("callcause_locale_fallback_total", {"lang": "de"})
    assert texts.lang == "en" and texts.summary == tr.locales.entries["en"]["sip.486"]["summary"]
    assert after == before + 1
