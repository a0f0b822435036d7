"""Destination groups from the called number: the user's prefix groups, else the E.164
country and number type as the `phonenumbers` library (Google's libphonenumber metadata)
reads them.

Numbering plans change every month; a maintained library keeps up, a hand-written prefix
table does not. Results are cached per number because parsing costs tens of microseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

UNKNOWN = "unknown"
_TYPES = {
    PhoneNumberType.FIXED_LINE: "fixed", PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_or_mobile", PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium", PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip", PhoneNumberType.PERSONAL_NUMBER: "personal", PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan", PhoneNumberType.VOICEMAIL: "voicemail",
}


@dataclass(slots=True, frozen=True)
class DestinationConfig:
    numbering_plan: bool = False           # country/type from E.164 numbers
    default_region: str | None = None      # ISO region for numbers dialled without +, e.g. "DE"
    prefixes: Mapping[str, Sequence[str]] = field(default_factory=dict)   # group name -> prefixes

    @property
    def enabled(self) -> bool:
        return self.numbering_plan or bool(self.prefixes)


MAX_NUMBER = 64            # characters of a called number worth grouping


class Destinations:
    """Maps a called number to its group name (`DE/mobile`, a prefix group, or `unknown`)."""

    def __init__(self, cfg: DestinationConfig, cache_size: int = 8192) -> None:
        self.cfg = cfg
        # longest prefix first, so `+4915` wins over `+49`
        self._prefixes = sorted(((p, name) for name, ps in cfg.prefixes.items() for p in ps),
                                key=lambda item: -len(item[0]))
        self._cached = lru_cache(maxsize=cache_size)(self._group)

    def group(self, number: str | None) -> str:
        # numbers come off the wire and the cache keeps them: one longer than any dial string
        # (a hostile megabyte) is no destination
        if number is not None and len(number) > MAX_NUMBER:
            return UNKNOWN
        return self._cached(number)

    def _group(self, number: str | None) -> str:
        if not number:
            return UNKNOWN
        digits = number.strip()
        for prefix, name in self._prefixes:
            if digits.startswith(prefix):
                return name
        if not self.cfg.numbering_plan:
            return UNKNOWN
        if digits.startswith("00"):
            digits = "+" + digits[2:]
        try:
            parsed = phonenumbers.parse(digits, None if digits.startswith("+") else self.cfg.default_region)
        except phonenumbers.NumberParseException:
            return UNKNOWN
        region = phonenumbers.region_code_for_number(parsed)
        if not region or region == "ZZ":
            return UNKNOWN
        kind = _TYPES.get(phonenumbers.number_type(parsed), UNKNOWN)
        return f"{region}/{kind}"
