"""Real brokers for the MQTT and AMQP sink tests: a mosquitto and a RabbitMQ on 127.0.0.1.

Each runs from the Debian package's binary with a temporary config, data directory and free
ports (RabbitMQ also with its own epmd port, node name and cookie), never as a system service,
and is stopped at the end. Also consumers that read everything back, and a small program
(`python tests/broker_support.py child ...`) running a broker sink in its own process so a test
can SIGKILL it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from webhook_helpers import make_record, wait_changed

MOSQUITTO = "/usr/sbin/mosquitto"
# /usr/sbin/rabbitmq-server is a wrapper that, run as root, switches to the `rabbitmq` user with
# su and loses the environment below; it runs this script, which we run directly instead
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
PASSWORD = "s3cret-broker-pw-7c41"                             # the tests' broker password
USER = "callcause"
FAST_RETRY = {"initial": 0.05, "max": 0.3, "max_age": "1h"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    """Until something accepts on 127.0.0.1:port; the server's log in the error otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s: {log.read_text(errors='replace')[-3000:]}")


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Mosquitto:
    """mosquitto with a listener on a free port, persistence in `home`, a password file, and
    optionally a TLS listener (certificates from trustme)."""

    def __init__(self, home: Path, *, tls: Any = None) -> None:
        self.home = home
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.proc: subprocess.Popen | None = None
        home.mkdir(parents=True, exist_ok=True)
        (home / "data").mkdir(exist_ok=True)
        passwords = home / "passwords"
        passwords.write_text("")
        subprocess.run(["/usr/bin/mosquitto_passwd", "-b", str(passwords), USER, PASSWORD], check=True,
                       capture_output=True)
        # as root, mosquitto would switch to the `mosquitto` user, who cannot read the temp dir
        lines = ["user root" if os.geteuid() == 0 else "", "per_listener_settings false",
                 "allow_anonymous false", f"password_file {passwords}",
                 "persistence true", f"persistence_location {home / 'data'}/", "autosave_interval 1",
                 "log_dest stdout", "log_type error", "log_type warning",
                 f"listener {self.port} 127.0.0.1", "max_inflight_messages 100"]
        if tls is not None:
            ca, cert = tls
            ca.cert_pem.write_to_path(str(home / "ca.pem"))
            cert.private_key_pem.write_to_path(str(home / "key.pem"))
            cert.cert_chain_pems[0].write_to_path(str(home / "cert.pem"))
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {home / 'ca.pem'}",
                      f"certfile {home / 'cert.pem'}", f"keyfile {home / 'key.pem'}"]
        (home / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        log = self.home / "mosquitto.log"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.home / "mosquitto.conf")],
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, 15, log)
        if self.tls_port:
            wait_port(self.tls_port, self.proc, 15, log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)     # SIGTERM: mosquitto saves its persistence file


class RabbitMQ:
    """rabbitmq-server as a plain process: own node name, ports, epmd, cookie, data and logs.

    `default_user`/`default_pass` in its config create the tests' user on first start; `guest`
    is left to the loopback defaults. A TLS listener serves the trustme certificate."""

    def __init__(self, home: Path, *, tls: Any = None) -> None:
        self.home = home
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"cctest{uuid.uuid4().hex[:8]}@localhost"
        self.proc: subprocess.Popen | None = None
        for sub in ("mnesia", "log", "home"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        lines = [f"listeners.tcp.default = 127.0.0.1:{self.port}", f"default_user = {USER}",
                 f"default_pass = {PASSWORD}", "default_permissions.configure = .*",
                 "default_permissions.read = .*", "default_permissions.write = .*",
                 "log.console = false", "log.file.level = warning"]
        if tls is not None:
            ca, cert = tls
            ca.cert_pem.write_to_path(str(home / "ca.pem"))
            cert.private_key_pem.write_to_path(str(home / "key.pem"))
            cert.cert_chain_pems[0].write_to_path(str(home / "cert.pem"))
            lines += [f"listeners.ssl.default = 127.0.0.1:{self.tls_port}",
                      f"ssl_options.cacertfile = {home / 'ca.pem'}",
                      f"ssl_options.certfile = {home / 'cert.pem'}",
                      f"ssl_options.keyfile = {home / 'key.pem'}", "ssl_options.verify = verify_none"]
        (home / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (home / "enabled_plugins").write_text("[].\n")
        self.env = {**os.environ, "HOME": str(home / "home"), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(self.dist_port), "ERL_EPMD_PORT": str(self.epmd_port),
                    "RABBITMQ_MNESIA_BASE": str(home / "mnesia"), "RABBITMQ_LOG_BASE": str(home / "log"),
                    "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
                    "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid")}

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}/"

    @property
    def consumer_url(self) -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/"

    def start(self, timeout: float = 120) -> RabbitMQ:
        log = self.home / "server.log"
        self.proc = subprocess.Popen([RABBITMQ_SERVER], env=self.env, cwd=self.home, stdout=log.open("ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, self.proc, timeout, log)
        if self.tls_port:
            wait_port(self.tls_port, self.proc, timeout, log)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                stop_process(self.proc, timeout=30)
            # the server script's children (the VM) share its process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc = None

    def stop_epmd(self) -> None:
        epmd = sorted(glob.glob("/usr/lib/erlang/erts-*/bin/epmd"))
        if epmd:
            subprocess.run([epmd[-1], "-kill"], env=self.env, capture_output=True, timeout=10, check=False)

    def restart(self) -> None:
        self.stop()
        self.start()


# --- consumers that read everything back ------------------------------------------------------

def record_ids(body: bytes) -> list[str]:
    data = json.loads(body)["data"]
    return [d["id"] for d in data] if isinstance(data, list) else [data["id"]]


class MqttConsumer:
    """Subscribes (QoS 1, persistent session) and collects what arrives, as messages and ids."""

    def __init__(self, port: int, topic: str = "callcause/#", *, client_id: str | None = None) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id or f"consumer-{uuid.uuid4().hex[:8]}"
        self.messages: list[Any] = []
        self.ids: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> MqttConsumer:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def _run(self) -> None:
        import aiomqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        # MQTT 5 with a session that outlives the connection: what arrives while the consumer
        # is away (broker restart) waits for it
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", self.port, identifier=self.client_id, username=USER,
                                          password=PASSWORD, protocol=aiomqtt.ProtocolVersion.V5,
                                          clean_start=False, properties=props) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
                        if message.topic.matches("callcause/+/status"):
                            continue
                        for rid in record_ids(message.payload):
                            self.ids[rid] = self.ids.get(rid, 0) + 1
                        self._changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)     # the broker restarts: come back to the same session

    async def wait_for(self, ids: set[str], timeout: float = 30) -> None:
        await wait_changed(self._changed, lambda: ids <= set(self.ids), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def amqp_queue(url: str, exchange: str, binding: str = "#") -> tuple[Any, Any]:
    """A durable queue bound to a (declared) topic exchange: (connection, queue)."""
    import aio_pika

    conn = await aio_pika.connect(url)
    channel = await conn.channel()
    ex = await channel.declare_exchange(exchange, "topic", durable=True)
    queue = await channel.declare_queue(f"q-{exchange}", durable=True)
    await queue.bind(ex, binding)
    return conn, queue


async def amqp_drain(url: str, queue_name: str, want: set[str],
                     timeout: float = 30) -> tuple[list[Any], dict[str, int]]:
    """Read messages until every id of `want` arrived (acknowledging them): (messages, id counts)."""
    import aio_pika

    conn = await aio_pika.connect(url)
    messages: list[Any] = []
    ids: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(queue_name, ensure=True)
        while not want <= set(ids):
            message = await queue.get(fail=False)
            if message is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(want - set(ids))} record(s) never arrived")
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            messages.append(message)
            for rid in record_ids(message.body):
                ids[rid] = ids.get(rid, 0) + 1
    finally:
        await conn.close()
    return messages, ids


async def refused(s: Any, caplog: Any, *texts: str, timeout: float = 15) -> None:
    """Start a sink the broker will not take records from, write one, and wait until the log
    says why (any of `texts`); the record stays in the outbox."""
    await s.start()
    try:
        await s.write(make_record(99))
        async with asyncio.timeout(timeout):
            while not any(t in caplog.text for t in texts):
                await asyncio.sleep(0.05)
    finally:
        await s.close()


# --- sinks as the daemon builds them ---------------------------------------------------------

def sink(kind: str, url: str, outbox: str | Path, *, instance: str = "test-pbx", **options: Any) -> Any:
    """A broker sink built by the daemon's own config reader and builder."""
    from callcause.config import SINK_KINDS, Config, Section, connector
    from callcause.daemon import build_connectors

    data: dict[str, Any] = {"kind": kind, "url": url, "retry": dict(FAST_RETRY), "timeout": 3, "grace": 2,
                            "username": USER, "password": PASSWORD}
    if url.startswith(("mqtt://", "amqp://")):
        data["allow_insecure"] = True
    data.update(options)
    data = {k: v for k, v in data.items() if v is not None}
    sec = Section(data, file="test.yaml", path="sinks[0]", line=1)
    cfg = connector(SINK_KINDS[sec.str("kind")], "parse_config")(sec)
    sec.finish()
    config = Config(file="test.yaml", sinks=[cfg], outbox=str(outbox), instance=instance)
    return build_connectors(config)[1][0]


# --- a sink in its own process, for kill -9 -------------------------------------------------

async def _child(args: argparse.Namespace) -> None:
    """The daemon's path: clues -> pipeline (instance stamped) -> outbox -> broker. A record is
    printed as accepted once every sink has it, as the daemon would acknowledge it."""
    from webhook_helpers import FixedExplainer

    from callcause.pipeline import Pipeline

    s = sink(args.kind, args.url, args.outbox, **json.loads(args.options))
    pipeline = Pipeline(FixedExplainer(), [s], instance="test-pbx")
    pipeline.on_record = lambda record: print(f"accepted {record.id}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await pipeline.start_sinks()
    print("ready", flush=True)
    runner = asyncio.create_task(pipeline.run())
    for i in range(args.first, args.first + args.count):
        pipeline.emit(make_record(i).clues)
        if i % 20 == 0:
            await asyncio.sleep(0.001)      # a stream, not one burst
    await stop.wait()
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await pipeline.drain()
    await pipeline.close_sinks()
    print("closed", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["child"])
    parser.add_argument("--kind", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--options", default="{}")
    asyncio.run(_child(parser.parse_args()))


if __name__ == "__main__":
    main()


def alert_delivery(msg_id: str = "al_test_1"):
    """A document of another type than a hangup, as the dispatcher would hand it over (trunk
    alerts): the transports must send it as it is, its `type` kept."""
    from callcause.connectors.delivery.dispatcher import Delivery
    from callcause.connectors.delivery.outbox import Row

    # the shape of callcause.trunks.alerts.AlertEvent.data(), which names no instance
    data = {"id": msg_id, "type": "trunk.alert", "rule": "ner_low", "state": "firing",
            "scope": {"source": "pbx-test", "trunk": "carrier", "direction": "outbound"},
            "figure": "ner", "time": "2026-11-21T16:30:02.123Z"}
    raw = json.dumps(data, separators=(",", ":")).encode()
    body = b'{"type":"trunk.alert","timestamp":"2026-11-21T16:30:02.123Z","data":' + raw + b"}"
    return Delivery(msg_id, body, [Row(1, msg_id, data["time"], raw, 0.0, 0.0, 0, None)])
