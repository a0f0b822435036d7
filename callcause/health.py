"""`/metrics`, `/healthz`, `/readyz`, `/trunks` and `/report` over plain HTTP on the daemon's own event loop.

Metrics are rendered by the official Prometheus client; the server itself is a few lines of
asyncio so that it shares the loop with the pipeline and adds no thread or dependency.
`/healthz` answers while the loop runs; `/readyz` answers 200 only when every source is
connected and every sink says it can accept records (e.g. the outbox is writable).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from callcause.errors import ConfigError

log = logging.getLogger("callcause.health")

Readiness = Callable[[], dict[str, bool]]   # component name -> ready?


def parse_listen(value: str, where: str = "metrics.listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{value!r} is not host:port", key=where, fix='write e.g. "127.0.0.1:9464"')
    return host.strip("[]") or "0.0.0.0", int(port)


class HealthServer:
    def __init__(self, listen: str, readiness: Readiness,
                 trunks: Callable[[], dict[str, Any]] | None = None,
                 report: Callable[[], Awaitable[str]] | None = None) -> None:
        self.host, self.port = parse_listen(listen)
        self.readiness = readiness
        self.trunks = trunks          # the /trunks body (trunk health figures and firing alerts)
        self.report = report          # the /report page (HTML of the daemon's recent legs)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("metrics and health on http://%s:%d/metrics", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            while await asyncio.wait_for(reader.readline(), timeout=5) not in (b"\r\n", b"\n", b""):
                pass   # headers are not needed for these three read-only endpoints
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if len(parts) < 2 or parts[0] not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
            elif path == "/trunks" and self.trunks is not None:
                status, ctype = "200 OK", "application/json"
                body = json.dumps(self.trunks(), ensure_ascii=False).encode()
            elif path == "/report" and self.report is not None:
                status, ctype = "200 OK", "text/html; charset=utf-8"
                body = (await self.report()).encode()
            elif path == "/healthz":
                status, ctype, body = "200 OK", "text/plain", b"ok\n"
            elif path == "/readyz":
                parts_ready = self.readiness()
                ok = all(parts_ready.values())
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps({"ready": ok, "components": parts_ready}).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"try /metrics, /healthz or /readyz\n"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n").encode()
            writer.write(head + (body if parts and parts[0] != "HEAD" else b""))
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass   # a scraper that went away is not worth a log line
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
