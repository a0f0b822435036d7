"""Overrides: validation errors with file:line and fix, matching, scoping, texts per language."""

from __future__ import annotations

from pathlib import Path

import pytest

from callcause.errors import ConfigError
from callcause.mapping.overrides import load_overrides
from callcause.mapping.translator import Translator
from callcause.record import HangupClues

EXAMPLE = Path(__file__).parents[1] / "config" / "overrides.yaml"


def leg(**kw) -> HangupClues:
    base = dict(source_name="pbx-eu-1", source_kind="asterisk", leg_id="1")
    base.update(kw)
    return HangupClues(**base)


def test_example_file_is_valid_and_applies():
    tr = Translator.load(EXAMPLE)
    assert len(tr.overrides) == 2
    e = tr.explain(leg(sip_code=480, sip_reason="Insufficient balance", trunk="carrier-x-eu"))
    assert e.rule == "override:carrier-x-balance"
    assert (e.category, e.severity, e.retryable, e.fault) == ("billing", "error", False, "local")
    en, de = tr.texts(e, "en"), tr.texts(e, "de")
    assert en.summary.startswith("Our account with Carrier X")
    assert de.summary.startswith("Das Guthaben")
    assert en.detail  # fields the override leaves out come from the built-in texts


def test_scope_by_trunk_and_source():
    tr = Translator.load(EXAMPLE)
    # Same code and phrase on another trunk: the built-in meaning stays.
    assert tr.explain(leg(sip_code=480, sip_reason="balance", trunk="other")).rule.startswith("builtin:")
    assert tr.explain(leg(sip_code=603, trunk="desk-12")).rule == "override:desk-phones-dnd"
    assert tr.explain(leg(sip_code=603, trunk="desk-12", source_name="pbx-us-1")).rule == "builtin:sip/603"


BROKEN = {
    "unknown key": ("overrides:\n  - match: {sip: 486}\n    set: {category: busy}\n    colour: red\n", 4, "colour"),
    "unknown match key": ("overrides:\n  - match: {sipp: 486}\n    set: {category: busy}\n", 2, "sipp"),
    "bad category": ("overrides:\n  - match: {sip: 486}\n    set: {category: bussy}\n", 3, "category"),
    "bad regex": ("overrides:\n  - match: {reason: '(unclosed'}\n    set: {category: busy}\n", 2, "reason"),
    "code out of range": ("overrides:\n  - match: {sip: 86}\n    set: {category: busy}\n", 2, "sip"),
    "no criterion": ("overrides:\n  - match: {source: pbx-eu-1}\n    set: {category: busy}\n", 2, "match"),
    "changes nothing": ("overrides:\n  - match: {sip: 486}\n    set: {}\n", 3, "set"),
    "bad language": ("overrides:\n  - match: {sip: 486}\n    set:\n      texts: {fr: {summary: x}}\n", 4, "fr"),
    "bad text field": ("overrides:\n  - match: {sip: 486}\n    set:\n      texts:\n        en: {sumary: x}\n",
                       5, "sumary"),
    "retryable not bool": ("overrides:\n  - match: {sip: 486}\n    set: {retryable: maybe}\n", 3, "retryable"),
    "not a list": ("overrides: {sip: 486}\n", 1, "overrides"),
    "yaml syntax": ("overrides:\n  - match: {sip: 486\n", 3, None),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_overrides_name_file_line_and_fix(tmp_path, name):
    text, line, key = BROKEN[name]
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_overrides(path)
    msg = str(err.value)
    assert str(path) in msg
    assert err.value.line == line, msg
    if key:
        assert key in msg
    assert err.value.fix or "fix" in msg
