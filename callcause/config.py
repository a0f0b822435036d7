"""The daemon's configuration: YAML with line numbers, `${ENV}`, secrets, strict keys.

Every error names the file, the line, the key and the fix. Each connector declares its own
options with `Section` (see `connectors/asterisk/source.py`); this module owns the file format and the
top-level keys of design.md section 6.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from callcause.errors import ConfigError

LANGUAGES = ("en", "de", "ru", "zh")


# --- YAML with line numbers -------------------------------------------------------------

class LinedDict(dict):
    """A mapping read from YAML that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: dict[str, int]


class LinedList(list):
    """A sequence read from YAML that remembers its line and the line of each item."""

    line: int = 0
    item_lines: list[int]


# libyaml's parser (CSafeLoader) is ten times faster than PyYAML's pure-Python one and gives
# the same marks, so file:line positions stay; PyYAML built without libyaml falls back.
SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(SafeLoader):  # type: ignore[valid-type,misc]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LinedDict:
    loader.flatten_mapping(node)
    out = LinedDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"key {key!r} appears twice", file=loader.name,
                              line=key_node.start_mark.line + 1, fix="keep one of them")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LinedList:
    out = LinedList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: str | Path, text: str | None = None) -> Any:
    """Parse a YAML file into `LinedDict`/`LinedList`; syntax errors become `ConfigError`."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", file=name,
                              fix="check the path, or pass -c with the right file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the file: {exc}", file=name) from None
    loader = _LineLoader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"not valid YAML: {exc.problem or exc}", file=name, line=line,
                          fix="check indentation and quoting on that line") from None
    finally:
        loader.dispose()


# --- Secrets and ${ENV} -------------------------------------------------------------------

class Secret:
    """A password or key: its repr and str never show the value, so it cannot leak into a log."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# --- Typed reading of one mapping ---------------------------------------------------------

_MISSING: Any = object()


# units of a duration written as text (`500ms`, `30s`, `5m`, `24h`, `2d`)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Section:
    """Typed, strict access to one mapping of a config file.

    Each getter records the key as known; `finish()` rejects the keys nobody asked for, so
    a typo (`hots:`) is an error with its line, not a silently ignored setting.
    """

    def __init__(self, data: Any, *, file: str, path: str, line: int = 0,
                 env: dict[str, str] | None = None) -> None:
        if data is None:
            data = LinedDict()
            data.line, data.key_lines = line, {}
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping (key: value lines), found {type(data).__name__}",
                              file=file, line=line or None, key=path or None,
                              fix="write it as indented `key: value` lines")
        self.data = data
        self.file = file
        self.path = path
        self.line = getattr(data, "line", line) or line
        self.env = os.environ if env is None else env
        self._known: set[str] = set()

    # location helpers
    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def line_of(self, key: str) -> int | None:
        lines = getattr(self.data, "key_lines", {})
        return lines.get(key) or self.line or None

    def error(self, key: str, message: str, fix: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.line_of(key), key=self.key_path(key), fix=fix)

    def has(self, key: str) -> bool:
        return key in self.data

    def _raw(self, key: str, default: Any) -> Any:
        self._known.add(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise ConfigError("required key is missing", file=self.file, line=self.line or None,
                                  key=self.key_path(key), fix=f"add `{key}:` to this section")
            return default
        return self.data[key]

    def _interpolate(self, key: str, value: str) -> str:
        def repl(match: re.Match[str]) -> str:
            name, fallback = match.group(1), match.group(2)
            if name in self.env:
                return self.env[name]
            if fallback is not None:
                return fallback
            raise self.error(key, f"environment variable {name} is not set",
                             fix=f"export {name}=... before starting, or write ${{{name}:-default}}")
        return _ENV_RE.sub(repl, value)

    # getters
    def str(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(key, f"expected text, found {type(value).__name__}", fix="write a plain value")
        value = self._interpolate(key, str(value))
        if choices is not None and value not in choices:
            raise self.error(key, f"{value!r} is not one of {', '.join(choices)}",
                             fix=f"use one of: {', '.join(choices)}")
        return value

    def _number(self, key: str, default: Any, kind: type, what: str, example: str) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if isinstance(value, str):
            value = self._interpolate(key, value)
            try:
                value = kind(value)
            except ValueError:
                raise self.error(key, f"expected {what}, found {value!r}", fix=f"write e.g. {example}") from None
        accepted = int if kind is int else int | float
        if isinstance(value, bool) or not isinstance(value, accepted):
            raise self.error(key, f"expected {what}, found {type(value).__name__}", fix=f"write e.g. {example}")
        return kind(value)

    def int(self, key: str, default: Any = _MISSING, *, min: int | None = None,
            max: int | None = None) -> Any:
        value = self._number(key, default, int, "a whole number", "5038 (digits only)")
        if value is default and default is not _MISSING:
            return value
        if (min is not None and value < min) or (max is not None and value > max):
            raise self.error(key, f"{value} is out of range",
                             fix=f"use a number from {min if min is not None else '-inf'} to "
                                 f"{max if max is not None else 'inf'}")
        return value

    def float(self, key: str, default: Any = _MISSING, *, min: float | None = None) -> Any:
        value = self._number(key, default, float, "a number", "2.5")
        if value is default and default is not _MISSING:
            return value
        if min is not None and value < min:
            raise self.error(key, f"{value} is below {min}", fix=f"use {min} or more")
        return value

    def duration(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        """Seconds as a number (`30`, `0.5`) or with a unit (`500ms`, `30s`, `5m`, `24h`, `2d`)."""
        raw = self.data.get(key) if isinstance(self.data, dict) else None
        if not isinstance(raw, str):
            return self.float(key, default, min=minimum)
        text = self.str(key).strip().lower()
        unit = ""
        try:
            value: float | None = float(text)
        except ValueError:
            unit = next((u for u in sorted(_DURATION_UNITS, key=len, reverse=True) if text.endswith(u)), "")
            try:
                value = float(text[: -len(unit)]) * _DURATION_UNITS[unit] if unit else None
            except ValueError:
                value = None
        if value is None:
            raise self.error(key, f"expected a duration, found {text!r}", fix="write e.g. 30, 30s, 5m, 24h")
        if value < minimum:
            raise self.error(key, f"{text} is below {minimum:g} s", fix=f"use {minimum:g}{'s' if unit else ''} or more")
        return value

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key, default)
        if isinstance(value, bool):
            return value
        if value is default and default is not _MISSING:
            return value
        raise self.error(key, f"expected true or false, found {value!r}", fix="write true or false")

    def list(self, key: str, default: Any = _MISSING) -> Any:
        value = self._raw(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, found {type(value).__name__}",
                             fix="write a YAML list, e.g. [a, b] or `- a` lines")
        return value

    def str_list(self, key: str, default: Any = _MISSING, *, choices: tuple[str, ...] | None = None) -> Any:
        """A list of text values; a single value is accepted as a list of one."""
        if isinstance(self.data.get(key), str | int) and not isinstance(self.data.get(key), bool):
            self._known.add(key)
            items = [self.data[key]]
        else:
            items = self.list(key, default)
            if items is default and default is not _MISSING:
                return items
        out = []
        for item in items:
            if not isinstance(item, str | int) or isinstance(item, bool):
                raise self.error(key, f"expected a list of text values, found {item!r}")
            text = self._interpolate(key, str(item))
            if choices is not None and text not in choices:
                raise self.error(key, f"{text!r} is not one of {', '.join(choices)}",
                                 fix=f"use values from: {', '.join(choices)}")
            out.append(text)
        return out

    def section(self, key: str, *, required: bool = False) -> Section:
        value = self._raw(key, _MISSING if required else None)
        return Section(value, file=self.file, path=self.key_path(key), line=self.line_of(key) or 0,
                       env=dict(self.env))

    def sections(self, key: str) -> Iterator[Section]:
        """Each mapping of a list (e.g. `sources:`), with its own line for errors."""
        items = self.list(key, [])
        lines = getattr(items, "item_lines", [0] * len(items))
        for i, (item, line) in enumerate(zip(items, lines, strict=False)):
            yield Section(item, file=self.file, path=f"{self.key_path(key)}[{i}]", line=line,
                          env=dict(self.env))

    def secret(self, key: str, *, required: bool = True) -> Secret | None:
        """A secret inline (`key: ...`, `${ENV}` allowed) or from a file (`key_file: path`)."""
        file_key = f"{key}_file"
        inline, from_file = self.has(key), self.has(file_key)
        self._known.update({key, file_key})
        if inline and from_file:
            raise self.error(file_key, f"both {key} and {file_key} are set", fix="keep only one of them")
        if from_file:
            path = self.str(file_key)
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise self.error(file_key, f"cannot read the secret file {path!r}: {exc.strerror}",
                                 fix="check the path and that the daemon's user may read it") from None
            if not value:
                raise self.error(file_key, f"the secret file {path!r} is empty", fix="write the secret into it")
            return Secret(value)
        if inline:
            value = self.str(key)
            if not value:
                raise self.error(key, "the secret is empty", fix=f"set it, or use {file_key}")
            return Secret(value)
        if required:
            raise ConfigError("required key is missing", file=self.file, line=self.line or None,
                              key=self.key_path(key), fix=f"add `{key}: ${{ENV_VAR}}` or `{file_key}: /path`")
        return None

    def finish(self) -> None:
        """Reject keys nobody asked for: a typo must not be silently ignored."""
        for key in self.data:
            if key not in self._known:
                known = ", ".join(sorted(self._known)) or "none"
                raise self.error(key, f"unknown key {key!r}", fix=f"remove it or use one of: {known}")


# --- The top level ------------------------------------------------------------------------

# kind -> the module implementing it. Each such module has `parse_config(Section)` returning its
# config object and `build(cfg, config)` returning the running source or sink; it is imported
# only when a config names its kind. Connectors own their options; this table only says where.
SOURCE_KINDS = {
    "asterisk": "callcause.connectors.asterisk.source",
    "freeswitch": "callcause.connectors.freeswitch.source",
}
SINK_KINDS = {
    "log": "callcause.connectors.sinks.log",
    "webhook": "callcause.connectors.sinks.webhook",
    "mqtt": "callcause.connectors.sinks.mqtt",
    "amqp": "callcause.connectors.sinks.amqp",
}


def connector(module: str, attribute: str) -> Callable[..., Any]:
    """`parse_config` or `build` of the module that implements a kind."""
    import importlib

    return getattr(importlib.import_module(module), attribute)


@dataclass(slots=True)
class MetricsConfig:
    listen: str | None = None     # "host:port"; None = no metrics endpoint


@dataclass(slots=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "text"          # text | json


@dataclass(slots=True)
class Config:
    file: str
    language: str = "en"
    instance: str = ""            # this daemon's name in every record; "" = the host name
    sources: list[Any] = field(default_factory=list)
    sinks: list[Any] = field(default_factory=list)
    overrides: str | None = None
    outbox: str | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    record_internal_legs: bool = False
    trunks: Any = None            # callcause.trunks.settings.TrunksConfig
    report: Any = None            # callcause.report.live.ReportConfig


INSTANCE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")


def default_instance() -> str:
    """The host name, as far as it fits INSTANCE_RE (a container's may not)."""
    import socket

    name = re.sub(r"[^A-Za-z0-9._:@-]", "-", socket.gethostname())[:64].lstrip("._:@-")
    return name or "callcause"


def parse_language(sec: Section, key: str, default: Any) -> Any:
    """A language tag (`de`, `de-AT`, `zh-Hans`) resolved to a supported locale, or an error."""
    from callcause.mapping.locales import resolve_language

    value = sec.str(key, default)
    if value is None:
        return None
    lang = resolve_language(value)
    if lang is None:
        raise sec.error(key, f"language {value!r} is not supported",
                        fix=f"use one of: {', '.join(LANGUAGES)}")
    return lang


def parse_config(data: Any, file: str, env: dict[str, str] | None = None) -> Config:
    top = Section(data, file=file, path="", line=1, env=env)
    cfg = Config(file=file)
    cfg.language = parse_language(top, "language", "en")
    cfg.instance = top.str("instance", default_instance())
    if not INSTANCE_RE.fullmatch(cfg.instance):
        raise top.error("instance", f"{cfg.instance!r} cannot name a daemon in topics and routing keys",
                        fix="use letters, digits and . _ - : @ (at most 64), e.g. `instance: pbx-berlin-1`")
    names: dict[str, int | None] = {}
    for sec in top.sections("sources"):
        kind = sec.str("kind", choices=tuple(SOURCE_KINDS))
        parsed = connector(SOURCE_KINDS[kind], "parse_config")(sec)
        sec.finish()
        name = parsed.name
        if name in names:
            raise sec.error("name", f"source name {name!r} is used twice (also at line {names[name]})",
                            fix="give every source its own name")
        names[name] = sec.line_of("name")
        cfg.sources.append(parsed)
    mapping = top.section("mapping")
    cfg.overrides = mapping.str("overrides", None)
    cfg.record_internal_legs = mapping.bool("record_internal_legs", False)
    mapping.finish()
    sink_names: dict[str, int | None] = {}
    for sec in top.sections("sinks"):
        kind = sec.str("kind", choices=tuple(SINK_KINDS))
        parsed = connector(SINK_KINDS[kind], "parse_config")(sec)
        sec.finish()
        # a networked sink's name keys its queue in the outbox: two sinks must never share one
        name = getattr(parsed, "name", None)
        if name is not None and name in sink_names:
            raise sec.error("name" if sec.has("name") else "kind",
                            f"sink name {name!r} is used twice (also at line {sink_names[name]})",
                            fix="give each sink its own `name:`")
        sink_names[name] = sec.line
        cfg.sinks.append(parsed)
    cfg.outbox = top.str("outbox", None)
    needing = [sink for sink in cfg.sinks if getattr(sink, "uses_outbox", False)]
    if cfg.outbox is None and needing:
        raise top.error("sinks", f"a {needing[0].kind} sink needs the durable outbox, and `outbox:` is not set",
                        fix="add a top-level `outbox: /var/lib/callcause/outbox.sqlite3`")
    metrics = top.section("metrics")
    cfg.metrics = MetricsConfig(listen=metrics.str("listen", None))
    if cfg.metrics.listen is not None:
        from callcause.health import parse_listen

        try:
            parse_listen(cfg.metrics.listen)
        except ConfigError as exc:
            raise metrics.error("listen", exc.message, fix=exc.fix) from None
    metrics.finish()
    log = top.section("logging")
    cfg.logging = LoggingConfig(
        level=log.str("level", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        format=log.str("format", "text", choices=("text", "json")),
    )
    log.finish()
    from callcause.trunks.settings import parse_trunks

    cfg.trunks = parse_trunks(top.section("trunks"))
    from callcause.report.live import parse_report

    cfg.report = parse_report(top.section("report"))
    top.finish()
    return cfg


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read, validate and return the config; raises `ConfigError` naming file, line, key, fix."""
    return parse_config(load_yaml(path), str(path), env=env)
