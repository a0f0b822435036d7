"""Helpers of the webhook and outbox tests: records, sink configs, a scriptable HTTP receiver.

Also a small program (`python tests/webhook_helpers.py child ...`) that runs the real sink and
outbox in its own process, so the tests can SIGKILL and SIGTERM it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from callcause.config import Config, Section
from callcause.connectors.delivery.outbox import Change
from callcause.connectors.sinks.webhook import WebhookConfig, WebhookSink, parse_config
from callcause.record import CauseRecord, Explanation, HangupClues, Texts

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"        # the Standard Webhooks spec's example key
SECRET_2 = "whsec_c2Vjb25kLXNpZ25pbmcta2V5LWZvci1yb3RhdGlvbg=="

# Fast retries so the reliability tests run in seconds; the schedule itself is a config value.
FAST_RETRY = {"initial": 0.02, "max": 0.2, "max_age": "1h"}


def texts_for(explanation: Explanation, lang: str) -> Texts:
    return Texts(lang, f"summary of {explanation.category} ({lang})", "detail", "advice")


def make_record(i: int, *, source: str = "pbx-test", category: str = "busy", severity: str = "info",
                from_number: str | None = "+4930123456", to_number: str | None = "+4989123456",
                channel: str | None = "PJSIP/carrier-00000004") -> CauseRecord:
    """A record as the pipeline builds it: clues from a source and the translator's verdict
    (for a 486 Busy Here, as in the record example of the design)."""
    clues = HangupClues(source_name=source, source_kind="asterisk", leg_id=f"1795278963.{i}",
                        call_id="1795278963.3", channel=channel, direction="outbound",
                        from_number=from_number, to_number=to_number, answered=False, duration_s=4.2,
                        sip_code=486, sip_reason="Busy Here", q850=17, ended_at=1795278963.0 + i)
    explanation = Explanation(category=category, severity=severity, retryable=True, fault="none",
                              hangup_source="callee", rule="builtin:sip/486", collapsed=False,
                              text_keys=("sip.486",),
                              sip={"code": 486, "reason": "Busy Here", "standard_reason": "Busy Here",
                                   "class": "4xx"})
    return CauseRecord(clues, explanation, texts_for)



async def read_lines(proc: asyncio.subprocess.Process, into: list[str]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        into.append(line.decode().strip())


async def sigkill(proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
    """SIGKILL a child and read what it printed up to its death."""
    try:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
        await asyncio.wait_for(reader, 10)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


async def wait_changed(changed: asyncio.Event, condition: Callable[[], bool], timeout: float) -> None:
    """Re-check `condition` each time `changed` is set, for at most `timeout` seconds."""
    async def loop() -> None:
        while not condition():
            changed.clear()
            await changed.wait()
    await asyncio.wait_for(loop(), timeout)

class FixedExplainer:
    """A translator stand-in for pipeline tests that must not depend on the mapping tables."""

    def explain(self, clues: HangupClues) -> Explanation:
        return make_record(0).explanation

    def texts(self, explanation: Explanation, lang: str) -> Texts:
        return texts_for(explanation, lang)


def sink_config(url: str, **options: Any) -> WebhookConfig:
    """A webhook sink config read by the real parser from the given options."""
    data: dict[str, Any] = {"url": url, "secrets": [SECRET], "retry": dict(FAST_RETRY),
                            "timeout": 5, "grace": 2}
    if url.startswith("http://"):
        data["allow_insecure_http"] = True
    data.update(options)
    sec = Section(data, file="test.yaml", path="sinks[0]", line=1)
    cfg = parse_config(sec)
    sec.finish()
    return cfg


def make_sink(url: str, outbox: str | Path, **options: Any) -> WebhookSink:
    return WebhookSink(sink_config(url, **options), str(outbox), "en")


# --- a scriptable receiver ---------------------------------------------------------------

@dataclass
class Received:
    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def record_ids(self) -> list[str]:
        data = self.payload["data"]
        return [d["id"] for d in data] if isinstance(data, list) else [data["id"]]


Behaviour = Callable[[Received], Awaitable[web.StreamResponse]]


async def accept(_: Received) -> web.StreamResponse:
    return web.Response(status=204)


class Receiver:
    """A real HTTP server on 127.0.0.1 whose answer to each POST a test scripts."""

    def __init__(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.ssl_context = ssl_context
        self.behaviour: Behaviour = accept
        self.requests: list[Received] = []
        self.delivered: dict[str, int] = {}       # record id -> times acknowledged with 2xx
        self.active = 0
        self.peak_active = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ssl_context,
                           reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        got = Received(request.headers.get("webhook-id", ""), request.headers.get("webhook-timestamp", ""),
                       request.headers.get("webhook-signature", ""), await request.read(),
                       dict(request.headers))
        self.requests.append(got)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        self._changed.set()
        try:
            response = await self.behaviour(got)
        finally:
            self.active -= 1
        if 200 <= response.status < 300:
            for rid in got.record_ids:
                self.delivered[rid] = self.delivered.get(rid, 0) + 1
        self._changed.set()
        return response

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait for the receiver's state to satisfy `condition` (re-checked on every request)."""
        await wait_changed(self._changed, condition, timeout)


class Outcomes:
    """Observes a sink's delivery outcomes once stored (`sink.on_outcome`), so tests wait on events."""

    def __init__(self, sink: WebhookSink) -> None:
        self.changes: list[Change] = []
        self._changed = asyncio.Event()
        sink.on_outcome = self._seen

    def _seen(self, change: Change) -> None:
        self.changes.append(change)
        self._changed.set()

    @property
    def failures(self) -> int:
        return sum(1 for c in self.changes if not c.delivered)

    @property
    def dead(self) -> int:
        return sum(1 for c in self.changes if c.dead)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        await wait_changed(self._changed, condition, timeout)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the child process of the kill tests ---------------------------------------------------

async def _child(args: argparse.Namespace) -> int:
    sink = make_sink(args.url, args.outbox, concurrency=args.concurrency, outbox_sync=args.sync)
    await sink.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    for i in range(args.first, args.first + args.count):
        record = make_record(i)
        await sink.write(record)
        print("accepted", record.id, flush=True)     # only after the commit returned
    print("ready", flush=True)
    await stop.wait()
    await sink.close()
    print("closed", flush=True)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("child",))
    parser.add_argument("--url", required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--sync", default="interval")
    return asyncio.run(_child(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


__all__ = ["SECRET", "SECRET_2", "Config", "FixedExplainer", "Outcomes", "Receiver", "accept", "free_port",
           "make_record", "make_sink", "sink_config"]
