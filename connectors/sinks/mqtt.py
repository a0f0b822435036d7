"""The MQTT sink: records published to an MQTT broker (3.1.1 or 5), QoS 1 by default.

The outbox and its dispatcher accept, retry and dead-letter; this module is the MQTT transport.
A delivery is done when the broker acknowledges it (PUBACK for QoS 1, PUBCOMP for QoS 2), so
at-least-once holds end to end. The daemon keeps a retained status message (`online`) on its
status topic and leaves the broker a Last Will (`offline`), so a consumer sees a daemon die.

Client: aiomqtt (asyncio over paho-mqtt, the Eclipse reference client): MQTT 5 and 3.1.1, QoS
1/2 acknowledgements awaited per message, Last Will, TLS through an ssl.SSLContext. Compared
with gmqtt (asyncio-native, MQTT 5, but its publish does not wait for the PUBACK, so
acknowledgement would be ours to track) and with paho-mqtt alone (threads and callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from dataclasses import dataclass

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from callcause import __version__, metrics
from callcause.config import Config, Section
from callcause.connectors.delivery.broker import (
    BrokerOptions,
    ConnectPacing,
    NameTemplate,
    body_type,
    parse_broker,
)
from callcause.connectors.delivery.dispatcher import (
    Delivery,
    OutboxSink,
    Outcome,
    outbox_path,
    parse_delivery_options,
)
from callcause.record import iso_time
from callcause.tls import warn_unverified

log = logging.getLogger("callcause.mqtt")

SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}
PROTOCOLS = {"5": aiomqtt.ProtocolVersion.V5, "3.1.1": aiomqtt.ProtocolVersion.V311}


@dataclass(slots=True, kw_only=True)
class MqttConfig(BrokerOptions):
    kind: str = "mqtt"
    protocol: str = "5"
    client_id: str | None = None          # None: callcause-<instance>-<sink name>
    topic: NameTemplate
    qos: int = 1
    retain: bool = False
    status_topic: str = "callcause/{instance}/status"   # "" = no status, no Last Will
    keepalive_s: int = 30


def parse_config(sec: Section) -> MqttConfig:
    """Read one `sinks:` entry of kind mqtt."""
    url = sec.str("url")
    cfg = MqttConfig(url=url, name="", topic=NameTemplate(sec, "topic", "callcause/{instance}/{source}/{category}",
                                                          unsafe="/+#"))
    parse_broker(sec, cfg, schemes=SCHEMES, example="mqtts://broker.example.com:8883")
    cfg.name = sec.str("name", f"{cfg.kind}:{cfg.host}")
    protocol = sec.data.get("protocol") if isinstance(sec.data, dict) else None
    cfg.protocol = str(protocol) if isinstance(protocol, int | float) and not isinstance(protocol, bool) \
        else sec.str("protocol", "5")
    if cfg.protocol not in PROTOCOLS:
        raise sec.error("protocol", f"MQTT protocol {cfg.protocol!r} is not supported",
                        fix='use 5 or "3.1.1"')
    cfg.client_id = sec.str("client_id", None)
    cfg.qos = sec.int("qos", 1, min=0, max=2)
    cfg.retain = sec.bool("retain", False)
    cfg.status_topic = sec.str("status_topic", cfg.status_topic)
    if any(c in cfg.status_topic.replace("{instance}", "") for c in "{}+#"):
        raise sec.error("status_topic", "the status topic may use only {instance} and no wildcards",
                        fix="write e.g. callcause/{instance}/status, or \"\" for none")
    cfg.keepalive_s = sec.int("keepalive", 30, min=5, max=3600)
    cfg.timeout_s = sec.duration("timeout", 10.0, minimum=0.05)
    parse_delivery_options(sec, cfg)
    return cfg


def build(cfg: MqttConfig, config: Config) -> MqttSink:
    return MqttSink(cfg, outbox_path(cfg, config), config.language, instance=config.instance)


class MqttTransport:
    """One MQTT connection, opened on the first delivery and again after it breaks."""

    def __init__(self, cfg: MqttConfig, instance: str) -> None:
        self.cfg = cfg
        self.instance = instance
        # brokers need only accept letters and digits in a client id (MQTT 3.1.1, 3.1.3.1)
        self.client_id = cfg.client_id or re.sub(r"[^A-Za-z0-9_-]", "-", f"callcause-{instance}-{cfg.name}")
        self.status_topic = cfg.status_topic.replace("{instance}", instance.replace("/", "_"))
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._pacing = ConnectPacing()

    def _status(self, state: str) -> bytes:
        doc = {"instance": self.instance, "status": state, "version": __version__}
        if state == "online":
            doc["since"] = iso_time(time.time())
        return json.dumps(doc, separators=(",", ":")).encode()

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def open(self) -> None:
        if self.cfg.qos == 0:
            log.warning("mqtt %s: qos 0 has no acknowledgement; a record the broker loses is lost "
                        "(the outbox counts it delivered once written to the socket)", self.cfg.name)
        if self.cfg.tls and not self.cfg.tls_verify:
            warn_unverified(log, f"mqtt {self.cfg.name}")
        # connect now if the broker is there; if not, deliveries retry and connect later
        with contextlib.suppress(aiomqtt.MqttError):
            await self._connected()

    async def _connected(self) -> aiomqtt.Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is not None:
                return self._client
            refused = self._pacing.recent()
            if refused is not None:
                raise aiomqtt.MqttError(refused)
            will = None
            if self.status_topic:
                will = aiomqtt.Will(self.status_topic, self._status("offline"), qos=1, retain=True)
            client = aiomqtt.Client(
                self.cfg.host, self.cfg.port, identifier=self.client_id,
                username=self.cfg.username,
                password=self.cfg.password.reveal() if self.cfg.password is not None else None,
                protocol=PROTOCOLS[self.cfg.protocol], will=will, keepalive=self.cfg.keepalive_s,
                timeout=self.cfg.timeout_s, tls_context=self.cfg.ssl_context(),
                max_inflight_messages=max(20, self.cfg.concurrency), logger=log)
            # aiomqtt warns above this many unacknowledged publishes; `concurrency` is the bound here
            client.pending_calls_threshold = self.cfg.concurrency + 10
            try:
                await client.__aenter__()
                _no_delay(client)
                if self.status_topic:
                    await client.publish(self.status_topic, self._status("online"), qos=1, retain=True)
            except aiomqtt.MqttError as exc:
                why = self._pacing.failed(_why(exc))
                await _quietly_close(client)
                raise aiomqtt.MqttError(why) from None
            self._pacing.succeeded()
            log.info("mqtt %s: connected to %s as %s (MQTT %s)", self.cfg.name, self.cfg.display_url,
                     self.client_id, self.cfg.protocol)
            self._client = client
            return client

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
            if client is None:
                return
            if self.status_topic:
                # a clean stop says so itself: the broker sends the Will only when a client dies
                with contextlib.suppress(aiomqtt.MqttError):
                    await client.publish(self.status_topic, self._status("offline"), qos=1, retain=True,
                                         timeout=min(self.cfg.timeout_s, 2.0))
            await _quietly_close(client)

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
                await _quietly_close(client)

    def _properties(self, unit: Delivery, kind: str) -> Properties | None:
        if self.cfg.protocol != "5":
            return None          # MQTT 3.1.1 has no properties; the id is in the body
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        props.UserProperty = [("id", unit.msg_id), ("type", kind), ("instance", self.instance)]
        return props

    async def deliver(self, unit: Delivery) -> Outcome:
        try:
            client = await self._connected()
        except aiomqtt.MqttError as exc:
            return Outcome.retry(f"cannot connect to {self.cfg.display_url}: {exc}", kind="unreachable",
                                 todo="is the broker running and reachable, and are the credentials right?")
        topic = self.cfg.topic.fill(unit, self.instance)
        try:
            await client.publish(topic, unit.body, qos=self.cfg.qos, retain=self.cfg.retain,
                                 properties=self._properties(unit, body_type(unit.body)))
        except aiomqtt.MqttError as exc:
            await self._drop(client)
            return Outcome.retry(f"publish to {topic} failed: {_why(exc)}", kind="mqtt_error")
        return Outcome.done()


def _why(exc: aiomqtt.MqttError) -> str:
    text = str(exc)
    if isinstance(exc, aiomqtt.MqttCodeError) and exc.rc is not None:
        text = f"{text} ({exc.rc})"
    return text.replace("\n", " ")


def _no_delay(client: aiomqtt.Client) -> None:
    """Send each publish at once. paho leaves Nagle's algorithm on, which holds a publish
    written right after another until the broker's TCP acknowledgement of the first: with
    several deliveries in flight, that costs more than the records' own round trips."""
    sock = client._client.socket()     # aiomqtt keeps paho's client; it has no option for this
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _quietly_close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError, RuntimeError, OSError):
        await client.__aexit__(None, None, None)
    # aiomqtt keeps a dropped connection as the exception of a future that only a publish or a
    # reader retrieves; closed without either, asyncio would log "Future exception was never
    # retrieved" with a bare MqttCodeError when the client is collected. The drop was already
    # handled (and logged) by whoever closes it.
    gone = getattr(client, "_disconnected", None)
    if isinstance(gone, asyncio.Future) and gone.done() and not gone.cancelled():
        gone.exception()


class MqttSink(OutboxSink):
    """One broker topic tree: its outbox rows, its MQTT connection, its dispatcher."""

    def __init__(self, cfg: MqttConfig, outbox_path: str, language: str = "en", *, instance: str) -> None:
        self.mqtt = MqttTransport(cfg, instance)
        super().__init__(cfg, outbox_path, language, self.mqtt, where=f"mqtt {cfg.name} ({cfg.display_url})",
                         deliveries=metrics.BROKER_DELIVERIES, log=log, labels={"kind": "mqtt"})
