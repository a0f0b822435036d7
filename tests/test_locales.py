"""Every locale is complete, keeps the numbers of the English text, and is really translated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from callcause.mapping.locales import FIELDS, SUPPORTED, Locales, resolve_language
from callcause.mapping.tables import builtin_tables

LOCALES = Path(__file__).parents[1] / "mapping" / "locales"
# ASCII word boundaries: a Cyrillic or CJK letter right beside a number must not hide it.
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:\.\d+)*(?![A-Za-z0-9_])")
CYRILLIC = re.compile(r"[\u0400-\u04FF]")
CJK = re.compile(r"[\u4E00-\u9FFF]")


def load(lang: str) -> dict[str, dict[str, str]]:
    data = yaml.safe_load((LOCALES / f"{lang}.yaml").read_text(encoding="utf-8"))
    return {f"{s}.{k}": v for s, entries in data.items() if not s.startswith("_") for k, v in entries.items()}


EN = load("en")
OTHER = [lang for lang in SUPPORTED if lang != "en" and (LOCALES / f"{lang}.yaml").exists()]


def test_english_covers_every_table_entry():
    t = builtin_tables()
    wanted = ({f"sip.{c}" for c in t.sip} | {f"q850.{v}" for v in t.q850} |
              {f"freeswitch.{n}" for n in t.freeswitch} | {f"phrase.{p.id}" for p in t.phrases} |
              {f"dial_status.{d}" for d in t.dial_status})
    missing = sorted(wanted - set(EN))
    assert not missing, f"en.yaml lacks {missing}"
    incomplete = [k for k, v in EN.items() if not all(isinstance(v.get(f), str) and v[f].strip() for f in FIELDS)]
    assert not incomplete, f"en.yaml entries without all three texts: {incomplete}"


def test_all_four_locales_exist():
    assert set(OTHER) == {"de", "ru", "zh"}


@pytest.mark.parametrize("lang", OTHER)
def test_locale_has_every_key_and_all_three_texts(lang):
    entries = load(lang)
    assert set(entries) == set(EN), (sorted(set(EN) - set(entries))[:10], sorted(set(entries) - set(EN))[:10])
    for key, entry in entries.items():
        for f in FIELDS:
            assert isinstance(entry.get(f), str) and entry[f].strip(), f"{lang}: {key}.{f} is empty"


@pytest.mark.parametrize("lang", OTHER)
def test_numbers_and_placeholders_match_english(lang):
    entries = load(lang)
    wrong = []
    for key, en in EN.items():
        for f in FIELDS:
            theirs = entries.get(key, {}).get(f, "")
            if sorted(set(NUMBER.findall(en[f]))) != sorted(set(NUMBER.findall(theirs))):
                wrong.append(f"{key}.{f}: en {sorted(set(NUMBER.findall(en[f])))} "
                             f"{lang} {sorted(set(NUMBER.findall(theirs)))}")
            if sorted(re.findall(r"\{\w+\}", en[f])) != sorted(re.findall(r"\{\w+\}", theirs)):
                wrong.append(f"{key}.{f}: placeholders differ")
    assert not wrong, "\n".join(wrong[:20])


@pytest.mark.parametrize("lang", OTHER)
def test_no_text_left_in_english(lang):
    entries = load(lang)
    bad = []
    for key, entry in entries.items():
        for f in FIELDS:
            text, en = entry[f], EN[key][f]
            if text.strip() == en.strip():
                bad.append(f"{key}.{f}: identical to English")
            elif lang == "ru" and not CYRILLIC.search(text):
                bad.append(f"{key}.{f}: no Cyrillic")
            elif lang == "zh" and not CJK.search(text):
                bad.append(f"{key}.{f}: no Chinese characters")
    assert not bad, "\n".join(bad[:20])


@pytest.mark.parametrize("lang", OTHER)
def test_glossary_exists(lang):
    assert (LOCALES / "glossary" / f"{lang}.md").exists()


def test_language_tags():
    assert [resolve_language(t) for t in ("de-AT", "ru-RU", "zh-CN", "zh-Hans", "EN", "fr", "")] == \
        ["de", "ru", "zh", "zh", "en", None, None]


def test_loader_serves_each_language():
    loc = Locales.load(LOCALES)
    for lang in OTHER:
        texts = loc.lookup(("sip.486",), lang)
        assert texts.lang == lang and texts.summary == load(lang)["sip.486"]["summary"]
