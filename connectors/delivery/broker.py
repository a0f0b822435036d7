"""What every message-broker transport shares: its address, credentials, TLS and name templates.

MQTT and AMQP (and a Kafka transport, which would be one more module beside them) read the same
`url`, `username`/`password`, `tls:` and `allow_insecure` keys, and fill their topic or routing
key from the same fields of the document they send. Keeping that here leaves each broker module
with only its own wire.
"""

from __future__ import annotations

import json
import re
import ssl
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from callcause.config import Secret, Section
from callcause.connectors.delivery.dispatcher import Delivery, DeliveryOptions, parse_tls
from callcause.tls import client_context

# the fields a topic or routing-key template may use, and where a document keeps them: a
# record (call.hangup), else a trunk alert (trunk.alert, whose `scope` names the trunk)
TEMPLATE_FIELDS = {
    "instance": (("instance",),),
    "type": (("type",),),
    "source": (("source", "name"), ("scope", "source")),
    "source_kind": (("source", "kind"),),
    "trunk": (("call", "trunk"), ("scope", "trunk")),
    "direction": (("call", "direction"), ("scope", "direction")),
    "category": (("cause", "category"),),
    "severity": (("cause", "severity"),),
}
UNKNOWN = "none"           # a field the document lacks (an alert has no call, a leg no trunk)
MIXED = "mixed"            # a field whose value differs between the records of one batch
_TYPE_RE = re.compile(rb'\{"type":"([^"\\]+)"')


class ConnectPacing:
    """When a broker transport last failed to connect, and why. The dispatcher delivers
    several units at once; for a moment after a refusal each of them gets that reason at once
    instead of dialling the broker that just refused."""

    HOLD_S = 0.5

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failed: tuple[float, str] | None = None

    def recent(self) -> str | None:
        """Why the last connect failed, if it failed less than HOLD_S ago."""
        if self._failed is not None and self.clock() - self._failed[0] < self.HOLD_S:
            return self._failed[1]
        return None

    def failed(self, why: str) -> str:
        self._failed = (self.clock(), why)
        return why

    def succeeded(self) -> None:
        self._failed = None


@dataclass(slots=True, kw_only=True)
class BrokerOptions(DeliveryOptions):
    """The keys every broker sink has, beside `only`, `batch`, `retry` ... of any outbox sink."""

    url: str = field(repr=False)
    host: str = ""
    port: int = 0
    tls: bool = True
    tls_verify: bool = True
    ca_file: str | None = None
    allow_insecure: bool = False
    username: str | None = None
    password: Secret | None = None
    timeout_s: float = 10.0

    @property
    def display_url(self) -> str:
        """scheme://host:port/path, safe to log."""
        parts = urlsplit(self.url)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{parts.scheme}://{host}:{self.port}{parts.path}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an encrypted url (None for a plain one); verification is on
        unless `tls.verify: false`."""
        return client_context(self.ca_file, self.tls_verify) if self.tls else None


def parse_broker(sec: Section, cfg: BrokerOptions, *, schemes: dict[str, tuple[int, bool]], example: str) -> None:
    """Read `url` (scheme -> default port and whether it is TLS), credentials and `tls:` into cfg.

    Credentials go in `username`/`password` (which may be `${ENV}`), never in the url, so a url
    can be logged as it is written."""
    parts = urlsplit(cfg.url)
    if parts.scheme not in schemes or not parts.hostname:
        raise sec.error("url", f"expected a {' or '.join(s + '://' for s in schemes)} url with a host",
                        fix=f"write e.g. {example}")
    if parts.username or parts.password:
        raise sec.error("url", "the url holds credentials, which would end up in logs",
                        fix="move them to `username:` and `password: ${BROKER_PASSWORD}`")
    try:
        port = parts.port
    except ValueError:
        raise sec.error("url", "the port is not a number from 1 to 65535", fix=f"write e.g. {example}") from None
    default_port, cfg.tls = schemes[parts.scheme]
    cfg.host, cfg.port = parts.hostname, port or default_port
    cfg.allow_insecure = sec.bool("allow_insecure", False)
    if not cfg.tls and not cfg.allow_insecure:
        raise sec.error("url", f"plain {parts.scheme}:// sends records and the password unencrypted",
                        fix=f"use the TLS scheme ({', '.join(s for s, (_, t) in schemes.items() if t)}://), or "
                            "add `allow_insecure: true` to this sink if the network path is trusted")
    cfg.username = sec.str("username", None)
    password = sec.str("password", None)
    cfg.password = Secret(password) if password is not None else None
    if cfg.password is not None and cfg.username is None:
        raise sec.error("password", "a password without a username", fix="add `username:`")
    cfg.tls_verify, cfg.ca_file = parse_tls(sec)


def url_path(cfg: BrokerOptions) -> str:
    """The url's path without its leading slash, decoded (AMQP: the virtual host)."""
    return unquote(urlsplit(cfg.url).path[1:])


class NameTemplate:
    """A topic or routing key with `{field}` placeholders (TEMPLATE_FIELDS), filled per message.

    `unsafe` are the characters a value must not bring in (MQTT: `/ + #`, AMQP topic: `. * #`),
    since a trunk called `a/b` would otherwise add a level a consumer's filter does not expect.
    """

    def __init__(self, sec: Section, key: str, default: str, *, unsafe: str) -> None:
        self.text = sec.str(key, default)
        try:
            self.fields = {name for _, name, _, _ in string.Formatter().parse(self.text) if name is not None}
        except ValueError as exc:
            raise sec.error(key, f"{self.text!r} is not a template: {exc}",
                            fix="write placeholders as {category}; double a literal brace: {{") from None
        bad = sorted(f for f in self.fields if f not in TEMPLATE_FIELDS)
        if bad:
            raise sec.error(key, f"unknown placeholder(s) {', '.join('{' + b + '}' for b in bad)}",
                            fix=f"use any of {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}")
        self._table = str.maketrans({c: "_" for c in unsafe + "\x00"})

    def fill(self, unit: Delivery, instance: str) -> str:
        """The name for one delivery; `instance` (the daemon's) where a document has none."""
        if not self.fields:
            return self.text
        values: dict[str, str] = {}
        for row in unit.rows:
            doc = json.loads(row.data)
            for name in self.fields:
                if name == "type":
                    value = body_type(unit.body)
                else:
                    value = next((v for v in (_lookup(doc, path) for path in TEMPLATE_FIELDS[name]) if v), "")
                    if name == "instance":
                        value = value or instance
                if values.setdefault(name, value) != value:
                    values[name] = MIXED
        return self.text.format(**{k: (v or UNKNOWN).translate(self._table) for k, v in values.items()})


def _lookup(doc: object, path: tuple[str, ...]) -> str:
    for key in path:
        if not isinstance(doc, dict):
            return ""
        doc = doc.get(key)
    return "" if doc is None else str(doc)


def body_type(body: bytes) -> str:
    """The `type` of a message body (`call.hangup`, `call.hangup.batch`, or whatever else the
    dispatcher hands over), read without parsing the whole body when it starts with it."""
    match = _TYPE_RE.match(body)
    if match:
        return match.group(1).decode()
    try:
        return str(json.loads(body).get("type", ""))
    except (ValueError, AttributeError):
        return ""
