"""Which cause category counts as what in NER and SEER: the `trunk_classes.yaml` table.

The placements are data (cited in the table) so a site can move a category from the config
(`trunks.classes`) without touching code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from callcause.record import CATEGORIES

NER_CLASSES = ("effective", "network", "caller", "excluded")


def _table_path() -> Path:
    # installed, the mapping package sits beside this one (callcause.mapping); in the source
    # tree it is the top-level mapping/ folder
    from callcause import mapping

    return Path(mapping.__file__).resolve().parent / "tables" / "trunk_classes.yaml"


@dataclass(slots=True, frozen=True)
class ClassTable:
    """category -> NER class, and the SIP codes RFC 6076 counts as effective or leaves out."""

    ner: Mapping[str, str]
    seer_effective: frozenset[int]
    seer_excluded_classes: frozenset[int]     # 3 for 3xx
    # NER class -> positions in CATEGORIES of its categories: the rules read NER of every group
    # at every evaluation, and summing a few list items is cheaper than classifying each category
    positions: Mapping[str, tuple[int, ...]] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        positions = {cls: tuple(i for i, c in enumerate(CATEGORIES) if self.ner_class(c) == cls)
                     for cls in NER_CLASSES}
        object.__setattr__(self, "positions", positions)

    def ner_class(self, category: str) -> str:
        return self.ner.get(category, "network")

    def seer(self, sip: int | None, answered: bool) -> tuple[bool, bool] | None:
        """(counted, effective) for SEER; None when the leg is outside it."""
        if sip is None:
            return (True, True) if answered else None
        if sip // 100 in self.seer_excluded_classes:
            return None
        return True, sip in self.seer_effective

    def with_overrides(self, changes: Mapping[str, str]) -> ClassTable:
        return ClassTable({**self.ner, **changes}, self.seer_effective, self.seer_excluded_classes)


class ClassTableError(ValueError):
    pass


def parse_table(data: object, where: str) -> ClassTable:
    if not isinstance(data, dict) or not isinstance(data.get("ner"), dict) or not isinstance(data.get("seer"), dict):
        raise ClassTableError(f"{where}: expected `ner:` and `seer:` mappings")
    ner: dict[str, str] = {}
    for category, cls in data["ner"].items():
        if category not in CATEGORIES:
            raise ClassTableError(f"{where}: ner.{category}: not a callcause category")
        if cls not in NER_CLASSES:
            raise ClassTableError(f"{where}: ner.{category}: {cls!r} is not one of {', '.join(NER_CLASSES)}")
        ner[category] = cls
    missing = [c for c in CATEGORIES if c not in ner]
    if missing:
        raise ClassTableError(f"{where}: ner: no class for {', '.join(missing)}")
    seer = data["seer"]
    effective = frozenset(int(x) for x in seer.get("effective", []))
    excluded = frozenset(int(str(x)[0]) for x in seer.get("excluded_classes", []))
    return ClassTable(ner, effective, excluded)


@lru_cache(maxsize=1)
def builtin_classes() -> ClassTable:
    path = _table_path()
    return parse_table(yaml.safe_load(path.read_text(encoding="utf-8")), path.name)


def load_classes(overrides: Mapping[str, str] | None = None) -> ClassTable:
    """The shipped table with the config's `trunks.classes` changes applied."""
    table = builtin_classes()
    return table.with_overrides(overrides) if overrides else table
