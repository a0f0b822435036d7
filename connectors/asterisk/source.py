"""The Asterisk source: logs in to the manager interface (AMI) and turns hangups into clues.

Read top to bottom: the config (`parse_config`), then `AmiSource.run`, which connects
through panoramisk with our wire protocol (`protocol.py`), asks the server to filter, keeps
a ping watchdog, feeds events to the correlator (`correlate.py`) and reconnects with
exponential backoff and jitter, forever, until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from dataclasses import dataclass, field
from typing import Any

from callcause import metrics
from callcause.config import Config, Secret, Section
from callcause.connectors.asterisk.correlate import EVENTS, VARIABLES, Correlator, CorrelatorSettings
from callcause.connectors.asterisk.protocol import AmiManager, AmiProtocol
from callcause.errors import ConfigError
from callcause.pipeline import Emit, Source
from callcause.problems import ProblemLog
from callcause.tls import client_context, warn_unverified

log = logging.getLogger("callcause.connectors.ami")

# Server-side filters (the `Filter` action, Asterisk 10+, legacy regex form that every
# version understands). A filter is a POSIX extended regex matched against the whole event
# text, which starts `Event: <Name>\r\n`; `^` anchors the name and `[[:space:]]` ends it,
# so `Hangup` does not also admit HangupRequest/HangupHandlerRun. examples/asterisk has the
# same lines for manager.conf `eventfilter`.
# VarSet and Cdr are left out: the examples' hangup handlers publish the same facts in a
# UserEvent and DialEnd carries DIALSTATUS, so they would only cost parsing time. Without a
# filter (or with eventfilter lines that admit them) they are still read.
FILTERS = (
    "^Event: (Newchannel|DialBegin|DialState|DialEnd|Dial|HangupRequest|SoftHangupRequest|Hangup"
    "|UserEvent|Shutdown)[[:space:]]",
    "^Event: Newstate[[:space:]].*ChannelState: [56][[:space:]]",   # 5 Ringing: post-dial delay
    "^Event: CEL[[:space:]].*EventName: HANGUP[[:space:]]",
)


# --- config ------------------------------------------------------------------------------

@dataclass(slots=True)
class AmiTls:
    enabled: bool = False
    ca_file: str | None = None         # None = the system's trust store
    verify: bool = True                # check the certificate and the host name


@dataclass(slots=True)
class AmiConfig:
    name: str
    host: str
    username: str
    secret: Secret = field(repr=True)   # Secret's repr hides the value
    port: int = 5038
    tls: AmiTls = field(default_factory=AmiTls)
    use_filter: bool = True             # ask Asterisk to send only the events we read
    ping_interval: float = 10.0         # seconds between Pings
    ping_timeout: float = 5.0           # no Pong within this: reconnect
    connect_timeout: float = 10.0       # TCP connect + banner + login
    reconnect_min: float = 1.0          # first backoff delay
    reconnect_max: float = 60.0         # backoff cap
    leg_ttl: float = 6 * 3600.0         # unfinished legs are evicted after this
    max_legs: int = 200_000             # and never more than this many are kept
    hangup_grace: float = 2.0           # wait for clues Asterisk sends after a Hangup
    kind: str = "asterisk"


def parse_config(sec: Section) -> AmiConfig:
    """The `sources:` entry of `kind: asterisk` (design.md section 6)."""
    tls = sec.section("tls")
    tls_cfg = AmiTls(enabled=tls.bool("enabled", False), ca_file=tls.str("ca_file", None),
                     verify=tls.bool("verify", True))
    tls.finish()
    cfg = AmiConfig(
        name=sec.str("name"),
        host=sec.str("host", "127.0.0.1"),
        port=sec.int("port", 5039 if tls_cfg.enabled else 5038, min=1, max=65535),
        username=sec.str("username"),
        secret=sec.secret("secret"),
        tls=tls_cfg,
        use_filter=sec.bool("use_filter", True),
        ping_interval=sec.float("ping_interval", 10.0, min=0.05),
        ping_timeout=sec.float("ping_timeout", 5.0, min=0.05),
        connect_timeout=sec.float("connect_timeout", 10.0, min=0.05),
        reconnect_min=sec.float("reconnect_min", 1.0, min=0.01),
        reconnect_max=sec.float("reconnect_max", 60.0, min=0.01),
        leg_ttl=sec.float("leg_ttl", 6 * 3600.0, min=1.0),
        max_legs=sec.int("max_legs", 200_000, min=100),
        hangup_grace=sec.float("hangup_grace", 2.0, min=0.0),
    )
    if cfg.reconnect_max < cfg.reconnect_min:
        raise sec.error("reconnect_max", "reconnect_max is smaller than reconnect_min",
                        fix="make reconnect_max at least reconnect_min")
    if cfg.tls.ca_file and not cfg.tls.enabled:
        raise tls.error("ca_file", "ca_file is set but TLS is not enabled",
                        fix="add `enabled: true` under tls, or remove ca_file")
    return cfg


def build(cfg: AmiConfig, config: Config | None = None) -> AmiSource:
    return AmiSource(cfg, record_internal_legs=bool(config and config.record_internal_legs))


# --- the source ----------------------------------------------------------------------------

class LoginFailed(Exception):
    """Asterisk refused the username/secret (never carries the secret)."""


class AmiSource(Source):
    """One Asterisk server. `run(emit)` until cancelled; `connected` while logged in."""

    def __init__(self, cfg: AmiConfig, *, record_internal_legs: bool = False) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.where = f"source {cfg.name} ({cfg.host}:{cfg.port})"
        self.problems = ProblemLog(self.where)
        self.correlator: Correlator | None = None
        self.record_internal_legs = record_internal_legs
        self.manager: AmiManager | None = None
        self.protocol: AmiProtocol | None = None
        self.version: str | None = None
        self.connections = 0                  # successful logins, for tests and logs
        self.filter_active = False
        self._connected = False
        self._up = metrics.SOURCE_UP.labels(source=cfg.name)
        self._reconnects = metrics.SOURCE_RECONNECTS.labels(source=cfg.name)
        self._events = metrics.SOURCE_EVENTS.labels(source=cfg.name)
        self.logged_in = asyncio.Event()      # set after each login, cleared on loss

    @property
    def connected(self) -> bool:
        return self._connected

    def _ssl(self) -> ssl.SSLContext | bool:
        tls = self.cfg.tls
        return client_context(tls.ca_file, tls.verify) if tls.enabled else False

    async def run(self, emit: Emit) -> None:
        settings = CorrelatorSettings(
            source_name=self.cfg.name, record_internal_legs=self.record_internal_legs,
            leg_ttl=self.cfg.leg_ttl, max_legs=self.cfg.max_legs, grace=self.cfg.hangup_grace)
        self.correlator = Correlator(settings, emit, self.problems)
        if self.cfg.tls.enabled and not self.cfg.tls.verify:
            warn_unverified(log, self.where, "the manager login and every event")
        sweeper = asyncio.create_task(self._sweep(), name=f"{self.name}-sweep")
        delay = self.cfg.reconnect_min
        attempt = 0
        try:
            while True:
                attempt += 1
                if attempt > 1:
                    self._reconnects.inc()
                try:
                    await self._session()
                    delay = self.cfg.reconnect_min      # we were logged in: start over
                except asyncio.CancelledError:
                    raise
                except LoginFailed as exc:
                    log.error("%s: login failed for user %r: %s; retrying in %.1f s",
                              self.where, self.cfg.username, exc, delay)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    log.warning("%s: connection failed: %s; retrying in %.1f s",
                                self.where, _why(exc), delay)
                except Exception:   # a bug in one session must cost that session, not the source
                    log.exception("%s: the session failed unexpectedly; reconnecting in %.1f s",
                                  self.where, delay)
                finally:
                    self._lost()
                # full jitter on the upper half: spreads reconnects of many daemons
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.cfg.reconnect_max)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            self._lost()
            self.correlator.flush()

    def _lost(self) -> None:
        if self.manager is not None:
            self.manager.close()
            self.manager = None
        if self._connected:
            self._connected = False
            self.logged_in.clear()
            self._up.set(0)
            if self.correlator is not None:
                self.correlator.disconnected()

    def _protocol_factory(self) -> AmiProtocol:
        proto = AmiProtocol()
        proto.on_event = self.correlator.feed if self.correlator else None
        proto.wanted = EVENTS | {"shutdown", "coreshowchannel", "coreshowchannelscomplete"}
        proto.gate = self._gate
        proto.problems = self.problems
        proto.on_frame = self._events.inc
        self.protocol = proto
        return proto

    def _gate(self, name: str, raw: bytes) -> bool:
        """Cheap byte checks before parsing: the firehose is mostly VarSet and CEL."""
        if name == "varset":
            i = raw.find(b"\r\nVariable: ")
            if i < 0:
                return False
            j = raw.find(b"\r\n", i + 12)
            return raw[i + 12:j if j >= 0 else None].decode("ascii", "replace") in VARIABLES
        if name == "cel":
            if self.correlator is not None:
                self.correlator.cel_active = True
            return b"\r\nEventName: HANGUP\r\n" in raw
        if name == "newstate":
            return b"\r\nChannelState: 6\r\n" in raw
        if name == "shutdown":
            log.warning("%s: Asterisk is shutting down; reconnecting", self.where)
            if self.protocol is not None and self.protocol.transport is not None:
                self.protocol.transport.close()
            return False
        return True

    async def _session(self) -> None:
        """One connection: connect, log in, filter, then watch until it is lost."""
        loop = asyncio.get_running_loop()
        # panoramisk must be built and connected inside the running loop (3.12+ warns else)
        manager = AmiManager(host=self.cfg.host, port=self.cfg.port, ssl=self._ssl(), loop=loop,
                             protocol_factory=self._protocol_factory, ping_delay=1 << 30,
                             reconnect_timeout=1 << 30)
        self.manager = manager
        connecting = manager.connect()
        try:
            await asyncio.wait_for(asyncio.shield(connecting), self.cfg.connect_timeout)
        except BaseException:
            connecting.cancel()
            raise
        await asyncio.wait({manager.ready, manager.lost}, return_when=asyncio.FIRST_COMPLETED)
        if manager.lost.done():
            exc = manager.lost.result()
            raise exc if isinstance(exc, BaseException) else ConnectionError("connection closed")
        await self._login(manager)
        self._connected = True
        self.connections += 1
        self._up.set(1)
        self.version = await self._core_version(manager)
        if self.correlator is not None:
            self.correlator.version = self.version
        if self.cfg.use_filter:
            await self._add_filters(manager)
        await self._reconcile(manager)
        log.info("%s: logged in as %r (Asterisk %s, AMI %s)%s", self.where, self.cfg.username,
                 self.version or "version unknown",
                 self.protocol.version if self.protocol else "?",
                 ", server-side filter on" if self.filter_active else "")
        self.logged_in.set()
        await self._watch(manager)

    async def _action(self, manager: AmiManager, action: dict[str, Any],
                      timeout: float | None = None) -> Any:
        """Send an action; raise ConnectionError if the connection goes first."""
        future = manager.send_action(action)
        done, _ = await asyncio.wait({future, manager.lost},
                                     timeout=timeout or self.cfg.connect_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if future in done:
            return future.result()
        future.cancel()
        if manager.lost.done():
            raise ConnectionError(f"connection closed during {action['Action']}")
        raise TimeoutError(f"no answer to {action['Action']} within "
                           f"{timeout or self.cfg.connect_timeout:.1f} s")

    async def _login(self, manager: AmiManager) -> None:
        # The secret goes on the wire and nowhere else: not into panoramisk's config,
        # not into any log line or exception.
        reply = await self._action(manager, {"Action": "Login", "Username": self.cfg.username,
                                             "Secret": self.cfg.secret.reveal(), "Events": "on"})
        if not reply.success:
            raise LoginFailed(f"Asterisk answered {reply.get('message') or 'an error'!r}; check "
                              f"username and secret in the config and the [{self.cfg.username}] "
                              f"section of manager.conf")

    async def _core_version(self, manager: AmiManager) -> str | None:
        """Asterisk's version from CoreSettings (needs write=system or reporting)."""
        try:
            reply = await self._action(manager, {"Action": "CoreSettings"})
        except TimeoutError:
            return None
        return (reply.get("asteriskversion") or None) if reply.success else None

    async def _add_filters(self, manager: AmiManager) -> None:
        self.filter_active = False
        for regex in FILTERS:
            reply = await self._action(manager, {"Action": "Filter", "Operation": "Add",
                                                 "Filter": regex})
            if not reply.success:
                self.problems.report(
                    "filter_refused",
                    f"Asterisk refused the event filter ({reply.get('message') or 'error'}); "
                    "reading the unfiltered stream",
                    "give the AMI user write=system, or set eventfilter lines in manager.conf "
                    "(examples/asterisk/manager.conf)", count=False)
                return
        self.filter_active = True

    async def _reconcile(self, manager: AmiManager) -> None:
        """After a reconnect, record the legs that ended while we were away."""
        if self.correlator is None or not any(leg.gap for leg in self.correlator.legs.values()):
            return
        try:
            replies = await self._action(manager, {"Action": "CoreShowChannels"}, timeout=30.0)
        except TimeoutError:
            return
        if not isinstance(replies, list) or not replies or not replies[0].success:
            return
        alive = {str(r.get("uniqueid")) for r in replies[1:] if r.get("uniqueid")}
        gone = self.correlator.reconcile(alive)
        if gone:
            log.warning("%s: %d call leg(s) ended while disconnected; recorded as incomplete",
                        self.where, gone)

    async def _watch(self, manager: AmiManager) -> None:
        """Ping with a timeout: a silent peer is a lost connection (panoramisk never notices)."""
        while not manager.lost.done():
            done, _ = await asyncio.wait({manager.lost}, timeout=self.cfg.ping_interval)
            if done:
                break
            try:
                await self._action(manager, {"Action": "Ping"}, timeout=self.cfg.ping_timeout)
            except TimeoutError:
                log.warning("%s: no answer to Ping within %.1f s; reconnecting",
                            self.where, self.cfg.ping_timeout)
                self.problems.report("ping_timeout", "the server stopped answering", count=False)
                return
        exc = manager.lost.result()
        log.warning("%s: connection lost%s; reconnecting", self.where,
                    f" ({_why(exc)})" if exc else "")

    async def _sweep(self) -> None:
        interval = max(0.01, min(0.25, self.cfg.hangup_grace / 4 or 0.25))
        while True:
            await asyncio.sleep(interval)
            if self.correlator is not None:
                try:
                    self.correlator.sweep()
                except Exception as exc:   # the sweeper must outlive any one leg
                    self.correlator.failed("the periodic sweep", exc)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text


__all__ = ["AmiConfig", "AmiSource", "AmiTls", "ConfigError", "build", "parse_config"]
