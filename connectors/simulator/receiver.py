"""A webhook receiver on 127.0.0.1 that verifies Standard Webhooks signatures (demo, tests, bench).

It plays the developer on the other side: it checks `webhook-signature` against the shared
secret, rejects stale timestamps, and counts deliveries by `webhook-id`, so a repeated
delivery is recognised as such.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass, field


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: float = 300.0,
           now: float | None = None) -> bool:
    """True when one of the `v1,` signatures matches and the timestamp is fresh."""
    try:
        msg_id, ts = headers["webhook-id"], int(headers["webhook-timestamp"])
        raw = secret.removeprefix("whsec_")
        key = base64.b64decode(raw + "=" * (-len(raw) % 4))
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - ts) > tolerance:
        return False
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest())
    for sig in headers.get("webhook-signature", "").split():
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


@dataclass
class WebhookReceiver:
    secret: str
    host: str = "127.0.0.1"
    port: int = 0
    status: int = 200                         # what to answer (tests flip it)
    verified: int = 0
    rejected: int = 0
    ids: Counter[str] = field(default_factory=Counter)
    records: list[dict] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _changed: asyncio.Condition | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    async def start(self) -> WebhookReceiver:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def wait_records(self, count: int, timeout: float) -> bool:
        """Wait until `count` distinct record ids were received and verified."""
        assert self._changed is not None

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len({r["id"] for r in self.records}) >= count)
        try:
            await asyncio.wait_for(_wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:   # keep-alive: one connection carries many deliveries
                line = await reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                ok = verify(self.secret, headers, body)
                if ok and self.status < 300:
                    self.verified += 1
                    self.ids[headers["webhook-id"]] += 1
                    doc = json.loads(body)
                    data = doc["data"]
                    assert self._changed is not None
                    async with self._changed:
                        self.records.extend(data if isinstance(data, list) else [data])
                        self._changed.notify_all()
                elif not ok:
                    self.rejected += 1
                status = self.status if ok else 401
                reason = {200: "OK", 401: "Unauthorized"}.get(status, "Status")
                writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
