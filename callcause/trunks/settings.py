"""The `trunks:` section of the config: windows, the group cap, class changes, destination
groups and the alert rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from callcause.config import Section
from callcause.record import CATEGORIES
from callcause.trunks.classes import NER_CLASSES
from callcause.trunks.destinations import DestinationConfig
from callcause.trunks.rolling import DEFAULT_WINDOWS
from callcause.trunks.rules import DEFAULT_RULES, Rule, parse_rules


@dataclass(slots=True)
class TrunksConfig:
    enabled: bool = True
    max_groups: int = 1000
    trunk_names: list[str] | None = None     # globs of the names that are trunks; None: all
    windows: tuple[float, ...] = DEFAULT_WINDOWS
    classes: dict[str, str] = field(default_factory=dict)
    destinations: DestinationConfig = field(default_factory=DestinationConfig)
    evaluate_every_s: float = 10.0
    resolution_s: int = 10          # finest bucket; not a config key (the demo uses 1 s)
    rules: list[Rule] = field(default_factory=lambda: list(DEFAULT_RULES))


def parse_trunks(sec: Section) -> TrunksConfig:
    cfg = TrunksConfig(enabled=sec.bool("enabled", True), max_groups=sec.int("max_groups", 1000, min=1),
                       trunk_names=sec.str_list("trunk_names", None))
    if cfg.trunk_names == []:
        raise sec.error("trunk_names", "an empty list would count no leg on any trunk",
                        fix='list globs of your trunks\' names, e.g. ["carrier-*"], or remove the key')
    windows = []
    wsec = sec.list("windows", None)
    if wsec is not None:
        for i, _item in enumerate(wsec):
            holder = Section({"window": wsec[i]}, file=sec.file, path=f"{sec.key_path('windows')}[{i}]",
                             line=sec.line_of("windows") or 0)
            windows.append(holder.duration("window", 60.0, minimum=10.0))
        if not windows:
            raise sec.error("windows", "no window given", fix="list e.g. [1m, 5m, 1h], or remove the key")
        cfg.windows = tuple(sorted(set(windows)))
    csec = sec.section("classes")
    for category in list(csec.data):
        if category not in CATEGORIES:
            raise csec.error(str(category), f"{category!r} is not a cause category",
                             fix=f"use one of: {', '.join(CATEGORIES)}")
        cfg.classes[category] = csec.str(category, choices=NER_CLASSES)
    csec.finish()
    dsec = sec.section("destinations")
    prefixes: dict[str, list[str]] = {}
    psec = dsec.section("prefixes")
    for name in list(psec.data):
        prefixes[str(name)] = psec.str_list(name)
    psec.finish()
    region = dsec.str("default_region", None)
    if region is not None:
        import phonenumbers

        if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise dsec.error("default_region", f"{region!r} is not a region the numbering-plan library knows",
                             fix="use an ISO 3166 code such as DE, GB, US")
        region = region.upper()
    cfg.destinations = DestinationConfig(numbering_plan=dsec.bool("numbering_plan", False),
                                         default_region=region, prefixes=prefixes)
    dsec.finish()
    cfg.evaluate_every_s = sec.duration("evaluate_every", 10.0, minimum=1.0)
    cfg.rules = parse_rules(sec, defaults=sec.bool("default_rules", True))
    sec.finish()
    return cfg
