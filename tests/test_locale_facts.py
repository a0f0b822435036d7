"""Facts a native review found garbled, checked in every language so they cannot drift back.

test_locales.py checks that each locale is complete and keeps the English numbers; this file
checks what specific sentences say: who sends which SIP code for Q.850 18, that do-not-disturb
answers 486 (not a busy lamp), the forwarding term for a rang-out 480, the global reach of 603,
and the Chinese word for a ring timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

LOCALES = Path(__file__).parents[1] / "mapping" / "locales"


def text(lang: str, key: str, field: str = "detail") -> str:
    section, name = key.split(".", 1)
    data = yaml.safe_load((LOCALES / f"{lang}.yaml").read_text(encoding="utf-8"))
    entry = data[section].get(int(name) if name.isdigit() else name)
    return entry[field]


# FreeSWITCH sets 18 on a received 480 and sends 408 for it; Asterisk sets 18 on a received 408
# (mapping/tables/dialects.yaml: freeswitch sip_to_q850 480 -> 18, q850_to_sip 18 -> 408;
# asterisk sip_to_q850 408 -> 18).
Q850_18 = {
    "en": ("receives a SIP 480", "itself sends 408", "Asterisk sets it when it receives a SIP 408"),
    "de": ("wenn es ein SIP 480 empfängt", "sendet selbst 408", "Asterisk setzt ihn, wenn es ein SIP 408 empfängt"),
    "ru": ("когда получает SIP 480", "сам передаёт для неё 408", "Asterisk выставляет её при получении SIP 408"),
    "zh": ("FreeSWITCH 收到 SIP 480 时", "对此原因值发送的是 SIP 408", "Asterisk 收到 SIP 408 时"),
}


@pytest.mark.parametrize("lang", sorted(Q850_18))
def test_q850_18_freeswitch_receives_480_and_sends_408(lang):
    detail = text(lang, "q850.18")
    for phrase in Q850_18[lang]:
        assert phrase in detail, f"{lang}: {phrase!r} missing from {detail!r}"


# The old wordings that said FreeSWITCH sends 480 for cause 18.
@pytest.mark.parametrize(("lang", "wrong"), [("ru", "передаёт с этой причиной SIP 480"),
                                             ("zh", "对此原因发送 SIP 480"),
                                             ("en", "reports a SIP 480"),
                                             ("de", "meldet dazu SIP 480")])
def test_q850_18_never_says_freeswitch_sends_480(lang, wrong):
    assert wrong not in text(lang, "q850.18")


DND_486 = {
    "en": "do-not-disturb configured to reject with 486",
    "de": "Ruhe vor dem Telefon so eingerichtet, dass mit 486 abgewiesen wird",
    "ru": "режим «Не беспокоить» настроен на отказ с кодом 486",
    "zh": "免打扰设置为以 486 拒绝",
}
BUSY_LAMP = ("answer busy", "Besetztanzeige", "BLF", "индикация", "忙灯")


@pytest.mark.parametrize("lang", sorted(DND_486))
def test_sip_486_is_do_not_disturb_rejecting_not_a_busy_lamp(lang):
    detail = text(lang, "sip.486")
    assert DND_486[lang] in detail
    assert not [w for w in BUSY_LAMP if w in detail]


# Each glossary's term for call forwarding on no answer (CFNR), and the Q.850 cause it stands for.
CFNR = {"en": "call forwarding on no answer", "de": "Rufumleitung bei Nichtmelden",
        "ru": "переадресация при неответе", "zh": "无应答呼叫转移"}


@pytest.mark.parametrize("lang", sorted(CFNR))
def test_sip_480_rang_out_clause_uses_the_forwarding_term(lang):
    detail = text(lang, "sip.480")
    assert CFNR[lang] in detail and "19" in detail
    if lang != "en":
        assert CFNR[lang] in (LOCALES / "glossary" / f"{lang}.md").read_text(encoding="utf-8")


GLOBAL_6XX = {"en": "global failure", "de": "Global Failure", "ru": "Global Failure", "zh": "全局性失败"}


@pytest.mark.parametrize("lang", sorted(GLOBAL_6XX))
def test_sip_603_is_a_global_failure_unlike_486(lang):
    detail = text(lang, "sip.603")
    assert "6xx" in detail and GLOBAL_6XX[lang] in detail and "486" in detail


@pytest.mark.parametrize(("key", "field"), [("sip.487", "advice"), ("sip.180", "advice"),
                                            ("dial_status.NOANSWER", "detail")])
def test_zh_ringing_timeout_is_zhenling_chaoshi(key, field):
    zh = text("zh", key, field)
    assert "振铃超时" in zh and "拨号超时" not in zh


def test_zh_has_no_dial_timeout_where_no_digits_are_dialled():
    # 拨号超时 reads as the inter-digit timeout; no entry is about dialling digits too slowly.
    assert "拨号超时" not in (LOCALES / "zh.yaml").read_text(encoding="utf-8")


# Wordings the review replaced everywhere: outside the glossary, or calques.
OUTSIDE_GLOSSARY = {
    "de": ("Besetztanzeige", "Anrufbehandlung bei Nichtmelden"),
    "ru": ("индикация BLF", "оператор сети", "оператора сети", "оператору сети", "форкинг",
           "незарегистрированный код"),
    "zh": ("忙灯", "拨号超时", "网络运营方", "用户缺席", "并发通道"),
}


@pytest.mark.parametrize("lang", sorted(OUTSIDE_GLOSSARY))
def test_replaced_wordings_stay_gone(lang):
    body = (LOCALES / f"{lang}.yaml").read_text(encoding="utf-8")
    assert [w for w in OUTSIDE_GLOSSARY[lang] if w in body] == []
