"""The webhook sink: records signed per Standard Webhooks and POSTed over HTTP(S).

The outbox and its dispatcher (`connectors/delivery/`) accept, retry and dead-letter; this
module is the HTTP transport: it signs a delivery, POSTs it, and reads the answer as done,
retry (honouring Retry-After on 429/503) or refused (other 3xx/4xx: a dead letter at once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from callcause import __version__, metrics
from callcause.config import Config, Secret, Section
from callcause.connectors.delivery.dispatcher import (
    Delivery,
    DeliveryOptions,
    OutboxSink,
    Outcome,
    outbox_path,
    parse_delivery_options,
    parse_tls,
)
from callcause.tls import client_context, warn_unverified
from callcause.wire import ascii_digits

log = logging.getLogger("callcause.webhook")

SECRET_PREFIX = "whsec_"
RETRY_AFTER_STATUSES = (429, 503)
TRANSIENT_4XX = (408, 409, 425, 429)
RESERVED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
                    "content-length", "host", "transfer-encoding")


# --- configuration ----------------------------------------------------------------------

@dataclass(slots=True, kw_only=True)
class WebhookConfig(DeliveryOptions):
    url: str = field(repr=False)       # may hold credentials (user:pass@, ?token=); see display_url
    secrets: list[Secret]
    kind: str = "webhook"
    headers: dict[str, Secret] = field(default_factory=dict)
    timeout_s: float = 10.0
    tls_verify: bool = True
    ca_file: str | None = None
    allow_insecure_http: bool = False

    @property
    def display_url(self) -> str:
        """The url without credentials or query, safe to log."""
        return safe_url(self.url)


def safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def decode_secret(value: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError (without the value) when malformed."""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError("does not start with whsec_")
    raw = value[len(SECRET_PREFIX):]
    try:
        # unpadded base64 is common in copied secrets; the reference library accepts it too
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64 after whsec_") from None
    if not key:
        raise ValueError("is empty after whsec_")
    return key


def _parse_secrets(sec: Section) -> list[Secret]:
    secrets: list[Secret] = []
    for i, value in enumerate(sec.str_list("secrets", [])):
        secrets.append(_checked_secret(sec, "secrets", value, f"item {i + 1}"))
    for file_key in ("secrets_file", "secret_file"):
        path = sec.str(file_key, None)
        if path is None:
            continue
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise sec.error(file_key, f"cannot read the secrets file {path!r}: {exc.strerror}",
                            fix="check the path and that the daemon's user may read it") from None
        values = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not values:
            raise sec.error(file_key, f"the secrets file {path!r} holds no secret",
                            fix="write one whsec_... secret per line")
        for n, value in enumerate(values):
            secrets.append(_checked_secret(sec, file_key, value, f"secret {n + 1} of {path!r}"))
    if not secrets:
        raise sec.error("secrets", "a webhook needs at least one signing secret",
                        fix="add `secrets: [\"${WEBHOOK_SECRET}\"]` (whsec_ + base64) or `secrets_file:`")
    return secrets


def _checked_secret(sec: Section, key: str, value: str, which: str) -> Secret:
    try:
        decode_secret(value)
    except ValueError as exc:
        # the message names the entry, never its value
        raise sec.error(key, f"{which} {exc}",
                        fix="use a Standard Webhooks secret: whsec_ followed by base64 of 24-64 random "
                            "bytes, e.g. whsec_$(head -c 32 /dev/urandom | base64)") from None
    return Secret(value)


def parse_config(sec: Section) -> WebhookConfig:
    """Read one `sinks:` entry of kind webhook (design.md section 6)."""
    url = sec.str("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise sec.error("url", "expected an http(s) url with a host", fix="write e.g. https://hooks.example.com/callcause")
    allow_insecure = sec.bool("allow_insecure_http", False)
    if parts.scheme == "http" and not allow_insecure:
        raise sec.error("url", "plain http:// sends records and signatures unencrypted",
                        fix="use https://, or add `allow_insecure_http: true` to this sink if the "
                            "network path is trusted")
    cfg = WebhookConfig(url=url, secrets=_parse_secrets(sec), name=sec.str("name", parts.hostname),
                        allow_insecure_http=allow_insecure)
    hsec = sec.section("headers")
    for key in list(hsec.data):
        if not isinstance(key, str) or not key or any(c in key for c in " :\t\r\n"):
            raise hsec.error(str(key), f"{key!r} is not a header name", fix="write e.g. X-Api-Key: ${API_KEY}")
        if key.lower() in RESERVED_HEADERS:
            raise hsec.error(key, f"{key} is set by callcause itself", fix="remove it")
        cfg.headers[key] = Secret(hsec.str(key))
    hsec.finish()
    cfg.timeout_s = sec.duration("timeout", 10.0, minimum=0.05)
    cfg.tls_verify, cfg.ca_file = parse_tls(sec)
    parse_delivery_options(sec, cfg)
    return cfg


def build(cfg: WebhookConfig, config: Config) -> WebhookSink:
    return WebhookSink(cfg, outbox_path(cfg, config), config.language)


# --- Standard Webhooks --------------------------------------------------------------------

def sign(keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` per key,
    space-separated, so a receiver holding either secret during a rotation accepts it."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
                    for k in keys)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent
    or unreadable."""
    if not value:
        return None
    value = value.strip()
    if ascii_digits(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)




# --- the sink -------------------------------------------------------------------------------

class HttpTransport:
    """POSTs one signed delivery to the endpoint and says what became of it."""

    def __init__(self, cfg: WebhookConfig) -> None:
        self.cfg = cfg
        self._keys = [decode_secret(s.reveal()) for s in cfg.secrets]
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.cfg.tls_verify:
            return False
        return client_context(self.cfg.ca_file)

    async def open(self) -> None:
        if urlsplit(self.cfg.url).scheme == "https" and not self.cfg.tls_verify:
            warn_unverified(log, f"webhook {self.cfg.name}")
        connector = aiohttp.TCPConnector(limit=self.cfg.concurrency, ssl=self._ssl(), keepalive_timeout=30)
        headers = {"user-agent": f"callcause/{__version__}"}
        headers.update({k: v.reveal() for k, v in self.cfg.headers.items()})
        self._session = aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, unit: Delivery) -> Outcome:
        session = self._session
        assert session is not None
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": unit.msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._keys, unit.msg_id, timestamp, unit.body),
        }
        try:
            async with session.post(self.cfg.url, data=unit.body, headers=headers,
                                    allow_redirects=False) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                answer = await resp.content.read(65536)
        except TimeoutError:
            return Outcome.retry(f"no answer within {self.cfg.timeout_s:g} s", kind="timeout")
        except aiohttp.ClientConnectorCertificateError as exc:
            return Outcome.retry(f"TLS certificate not trusted: {exc.certificate_error}", kind="tls",
                                 todo="set tls.ca_file to the CA that signed the receiver's certificate")
        except aiohttp.ClientSSLError as exc:
            return Outcome.retry(f"TLS failed: {exc}", kind="tls")
        except aiohttp.ClientConnectorError as exc:
            return Outcome.retry(f"cannot connect: {exc.os_error.strerror or exc.os_error}",
                                 kind="unreachable", todo="is the receiver running and reachable?")
        except aiohttp.ClientError as exc:
            return Outcome.retry(f"{type(exc).__name__}: {exc}", kind="http_error")
        if 200 <= status < 300:
            return Outcome.done()
        text = answer[:200].decode("utf-8", "replace").replace("\n", " ").replace("\r", " ").strip()
        error = f"HTTP {status}" + (f": {text}" if text else "")
        if 300 <= status < 500 and status not in TRANSIENT_4XX:
            return Outcome.refused(error, kind=f"http_{status}")
        wait = parse_retry_after(retry_after, time.time()) if status in RETRY_AFTER_STATUSES else None
        return Outcome.retry(error, after=wait, kind=f"http_{status}")


class WebhookSink(OutboxSink):
    """One endpoint: its outbox rows, its HTTP connection pool, its dispatcher."""

    def __init__(self, cfg: WebhookConfig, outbox_path: str, language: str = "en") -> None:
        super().__init__(cfg, outbox_path, language, HttpTransport(cfg),
                         where=f"webhook {cfg.name} ({cfg.display_url})",
                         deliveries=metrics.WEBHOOK_DELIVERIES, log=log)
