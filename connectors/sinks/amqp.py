"""The AMQP sink: records published to RabbitMQ (AMQP 0-9-1) with publisher confirms.

The outbox and its dispatcher accept, retry and dead-letter; this module is the AMQP transport.
A delivery is done when the broker confirms it (basic.ack). Messages are persistent and
published `mandatory`: a message no queue is bound for comes back and is retried instead of
being dropped by the broker, so a missing binding shows as a retrying outbox, not as loss.

Client: aio-pika (asyncio, on aiormq and pamqp): publisher confirms awaited per message, a
returned message raised as an error, TLS through an ssl.SSLContext. aiormq alone would do the
same with more bookkeeping of channels here; aio-pika's "robust" reconnection is not used, as
the outbox already retries and a reconnection must not replay a publish behind its back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError, PublishError

from callcause import metrics
from callcause.config import Config, Section
from callcause.connectors.delivery.broker import (
    BrokerOptions,
    ConnectPacing,
    NameTemplate,
    body_type,
    parse_broker,
    url_path,
)
from callcause.connectors.delivery.dispatcher import (
    Delivery,
    OutboxSink,
    Outcome,
    outbox_path,
    parse_delivery_options,
)
from callcause.tls import warn_unverified

log = logging.getLogger("callcause.amqp")

SCHEMES = {"amqp": (5672, False), "amqps": (5671, True)}
EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")


@dataclass(slots=True, kw_only=True)
class AmqpConfig(BrokerOptions):
    kind: str = "amqp"
    vhost: str = "/"
    exchange: str = "callcause"
    exchange_type: str = "topic"
    declare: bool = False                  # declare the exchange (durable) on connect
    routing_key: NameTemplate
    persistent: bool = True
    mandatory: bool = True                 # unroutable messages come back and are retried


def parse_config(sec: Section) -> AmqpConfig:
    """Read one `sinks:` entry of kind amqp."""
    url = sec.str("url")
    cfg = AmqpConfig(url=url, name="", routing_key=NameTemplate(sec, "routing_key", "{instance}.{source}.{category}",
                                                                unsafe=".*#"))
    parse_broker(sec, cfg, schemes=SCHEMES, example="amqps://rabbitmq.example.com/telephony")
    cfg.vhost = url_path(cfg) or "/"
    cfg.name = sec.str("name", f"{cfg.kind}:{cfg.host}")
    cfg.exchange = sec.str("exchange", "callcause")
    cfg.exchange_type = sec.str("exchange_type", "topic", choices=EXCHANGE_TYPES)
    cfg.declare = sec.bool("declare", False)
    if cfg.declare and not cfg.exchange:
        raise sec.error("declare", "the default exchange (\"\") cannot be declared", fix="name an `exchange:`")
    cfg.persistent = sec.bool("persistent", True)
    cfg.mandatory = sec.bool("mandatory", True)
    cfg.timeout_s = sec.duration("timeout", 10.0, minimum=0.05)
    parse_delivery_options(sec, cfg)
    return cfg


def build(cfg: AmqpConfig, config: Config) -> AmqpSink:
    return AmqpSink(cfg, outbox_path(cfg, config), config.language, instance=config.instance)


class AmqpTransport:
    """One AMQP connection and confirming channel, opened on the first delivery and again after
    either breaks."""

    def __init__(self, cfg: AmqpConfig, instance: str) -> None:
        self.cfg = cfg
        self.instance = instance
        self._conn: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        self._pacing = ConnectPacing()

    @property
    def connected(self) -> bool:
        return self._exchange is not None

    async def open(self) -> None:
        if self.cfg.tls and not self.cfg.tls_verify:
            warn_unverified(log, f"amqp {self.cfg.name}")
        with contextlib.suppress(ConnectionError):
            await self._connected()

    async def _connected(self) -> AbstractExchange:
        if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
            return self._exchange
        async with self._lock:
            if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
                return self._exchange
            refused = self._pacing.recent()
            if refused is not None:
                raise ConnectionError(refused)
            try:
                if self._conn is None or self._conn.is_closed:
                    await self._close_connection()
                    ctx = self.cfg.ssl_context()
                    self._conn = await aio_pika.connect(
                        host=self.cfg.host, port=self.cfg.port, virtualhost=self.cfg.vhost,
                        login=self.cfg.username or "guest",
                        password=self.cfg.password.reveal() if self.cfg.password is not None else "guest",
                        ssl=ctx is not None, ssl_context=ctx, timeout=self.cfg.timeout_s,
                        client_properties={"connection_name": f"callcause {self.instance} {self.cfg.name}"})
                self._channel = await self._conn.channel(publisher_confirms=True, on_return_raises=True)
                if self.cfg.declare:
                    self._exchange = await self._channel.declare_exchange(
                        self.cfg.exchange, self.cfg.exchange_type, durable=True, timeout=self.cfg.timeout_s)
                elif self.cfg.exchange:
                    self._exchange = await self._channel.get_exchange(self.cfg.exchange, ensure=False)
                else:
                    self._exchange = self._channel.default_exchange
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                why = self._pacing.failed(_why(exc))
                await self._close_connection()
                raise ConnectionError(why) from None
            self._pacing.succeeded()
            log.info("amqp %s: connected to %s, exchange %r", self.cfg.name, self.cfg.display_url, self.cfg.exchange)
            return self._exchange

    async def _close_connection(self) -> None:
        conn, self._conn, self._channel, self._exchange = self._conn, None, None, None
        if conn is not None:
            with contextlib.suppress(*CONNECTION_EXCEPTIONS, TimeoutError):
                await asyncio.wait_for(conn.close(), 2.0)

    async def close(self) -> None:
        async with self._lock:
            await self._close_connection()

    async def _drop(self, exchange: AbstractExchange) -> None:
        async with self._lock:
            if self._exchange is exchange:
                await self._close_connection()

    async def deliver(self, unit: Delivery) -> Outcome:
        try:
            exchange = await self._connected()
        except ConnectionError as exc:
            return Outcome.retry(f"cannot connect to {self.cfg.display_url}: {exc}", kind="unreachable",
                                 todo="is the broker running and reachable, do the exchange and the "
                                      "credentials exist?")
        key = self.cfg.routing_key.fill(unit, self.instance)
        message = aio_pika.Message(
            unit.body, content_type="application/json", message_id=unit.msg_id, type=body_type(unit.body),
            app_id="callcause", headers={"instance": self.instance},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT if self.cfg.persistent else None)
        try:
            await exchange.publish(message, key, mandatory=self.cfg.mandatory, timeout=self.cfg.timeout_s)
        except PublishError:
            return Outcome.retry(f"no queue is bound to exchange {self.cfg.exchange!r} for routing key {key!r}",
                                 kind="unroutable", todo="bind a queue for it; the broker would otherwise drop it")
        except DeliveryError as exc:
            return Outcome.retry(f"the broker refused the message: {_why(exc)}", kind="nack")
        except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
            await self._drop(exchange)
            return Outcome.retry(f"publish with routing key {key!r} failed: {_why(exc)}", kind="amqp_error")
        return Outcome.done()


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")[:300]


class AmqpSink(OutboxSink):
    """One exchange: its outbox rows, its AMQP connection, its dispatcher."""

    def __init__(self, cfg: AmqpConfig, outbox_path: str, language: str = "en", *, instance: str) -> None:
        self.amqp = AmqpTransport(cfg, instance)
        super().__init__(cfg, outbox_path, language, self.amqp, where=f"amqp {cfg.name} ({cfg.display_url})",
                         deliveries=metrics.BROKER_DELIVERIES, log=log, labels={"kind": "amqp"})
