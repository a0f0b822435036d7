"""Texts per language: which locale file answers a language tag, and English as a counted fallback.

Each `locales/<lang>.yaml` holds, per entry key (`sip.486`, `q850.17`, `freeswitch.MEDIA_TIMEOUT`,
`phrase.no_money_left`, `dial_status.BUSY`, `generic.sip_4xx`), a summary, a detail and an
advice. A text missing in the asked language is served in English and counted in
`callcause_locale_fallback_total`, never silently.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import yaml

from callcause.config import SafeLoader
from callcause.record import Texts

LOCALES_DIR = Path(__file__).parent / "locales"
SUPPORTED = ("en", "de", "ru", "zh")
FIELDS = ("summary", "detail", "advice")

log = logging.getLogger("callcause.locales")


def resolve_language(tag: str | None) -> str | None:
    """`de-AT` -> `de`, `zh-Hans`/`zh-CN` -> `zh`, `RU_ru` -> `ru`; None when unsupported.

    The Chinese texts are Simplified Chinese; Traditional tags (`zh-Hant`, `zh-TW`, `zh-HK`)
    still resolve to them, as they are more useful to a reader than English.
    """
    if not tag:
        return None
    base = tag.strip().replace("_", "-").split("-")[0].lower()
    return base if base in SUPPORTED else None


Entry = dict[str, str]


def _flatten(data: dict) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for section, entries in (data or {}).items():
        if section.startswith("_") or not isinstance(entries, dict):
            continue   # `_glossary` and similar notes for translators are not entries
        for key, entry in entries.items():
            if isinstance(entry, dict):
                out[f"{section}.{key}"] = {f: str(entry[f]) for f in FIELDS if entry.get(f)}
    return out


class _LocaleFiles(dict[str, dict[str, Entry]]):
    """lang -> entries, each file read the first time its language is asked for: a command
    that prints one language (`explain`) must not pay for parsing all four."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def __missing__(self, lang: str) -> dict[str, Entry]:
        path = self.directory / f"{lang}.yaml"
        if lang not in SUPPORTED or not path.exists():
            raise KeyError(lang)
        with path.open(encoding="utf-8") as fh:
            entries = self[lang] = _flatten(yaml.load(fh, Loader=SafeLoader))
        return entries

    def get(self, lang: str, default: dict[str, Entry] | None = None) -> dict[str, Entry] | None:  # type: ignore[override]
        try:
            return self[lang]
        except KeyError:
            return default


class Locales:
    """The locale files, flattened to `section.key -> {summary, detail, advice}`."""

    def __init__(self, entries: dict[str, dict[str, Entry]]) -> None:
        self.entries = entries
        self._warned: set[str] = set()

    @classmethod
    def load(cls, directory: Path = LOCALES_DIR) -> Locales:
        entries = _LocaleFiles(directory)
        if entries.get("en") is None:
            raise FileNotFoundError(f"the English locale {directory / 'en.yaml'} is missing")
        return cls(entries)

    def has(self, key: str, lang: str = "en") -> bool:
        return key in self.entries.get(lang, {})

    def lookup(self, keys: Iterable[str], lang: str,
               overrides: dict[str, dict[str, str]] | None = None) -> Texts:
        """Texts for the first key English knows, in `lang` where available.

        `overrides` (lang -> field -> text) replace single fields, e.g. from a user override.
        """
        keys = tuple(keys)
        en = self.entries["en"]
        key = next((k for k in keys if k in en), "generic.unknown")
        base = en.get(key, {})
        wanted = self.entries.get(lang, {}).get(key) if lang != "en" else base
        if lang != "en" and (wanted is None or any(f not in wanted for f in FIELDS)):
            from callcause import metrics  # here: `explain` need not load the metrics client

            metrics.LOCALE_FALLBACK.labels(lang=lang).inc()
            if lang not in self._warned:
                self._warned.add(lang)
                log.warning("locale %s lacks %s (and maybe more): serving English; "
                            "see callcause_locale_fallback_total", lang, key)
        merged = {f: (wanted or {}).get(f) or base.get(f, "") for f in FIELDS}
        served = lang if wanted else "en"
        if overrides:
            for f, text in (overrides.get(lang) or overrides.get("en") or {}).items():
                merged[f] = text
        return Texts(served, merged["summary"], merged["detail"], merged["advice"])


@cache
def builtin_locales() -> Locales:
    return Locales.load()
