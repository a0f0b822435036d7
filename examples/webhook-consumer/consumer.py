"""A minimal receiver of callcause webhooks: verify the signature, refuse stale timestamps,
process each record once. Standard library only; copy it and replace `handle_record`.

    WEBHOOK_SECRET=whsec_... python consumer.py --listen 127.0.0.1:8080
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_S = 300            # the Standard Webhooks recommendation: five minutes either way
MAX_BODY = 10 * 1024 * 1024


class Rejected(Exception):
    """A request that must not be processed; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    raw = secret[len("whsec_"):]
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def verify(keys: list[bytes], headers: Mapping[str, str], body: bytes, *, now: float | None = None,
           tolerance: float = TOLERANCE_S) -> str:
    """Check one request; return its webhook-id, or raise `Rejected`.

    The signed content is `{webhook-id}.{webhook-timestamp}.{raw body}`: verify the body bytes as
    received, before any JSON parsing. Any one valid `v1,` signature is enough, so the sender
    can rotate secrets (it signs with the old and the new one for a while).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get("webhook-id"), lower.get("webhook-timestamp"),
                                 lower.get("webhook-signature"))
    if not msg_id or not stamp or not signatures:
        raise Rejected(400, "missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent = int(stamp)
    except ValueError:
        raise Rejected(400, "webhook-timestamp is not a number of seconds") from None
    now = time.time() if now is None else now
    if abs(now - sent) > tolerance:
        # a replay of an old request, or a clock that is off: check NTP on both sides
        raise Rejected(400, f"webhook-timestamp is {now - sent:+.0f} s away from our clock")
    signed = f"{msg_id}.{stamp}.".encode() + body
    for key in keys:
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
        for candidate in signatures.split():
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return msg_id
    raise Rejected(401, "no valid signature")


class SeenIds:
    """The ids processed lately, to acknowledge a re-sent record without processing it twice.

    In memory and bounded; a production receiver keeps them where its data lives (a unique key
    on the record id in its database does it best).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._ids

    def add(self, key: str) -> None:
        with self._lock:
            self._ids[key] = None
            self._ids.move_to_end(key)
            if len(self._ids) > self.capacity:
                self._ids.popitem(last=False)


def handle_record(record: dict[str, Any]) -> None:
    """Replace with your own work: store it, open a ticket, update the CRM contact..."""
    cause = record["cause"]
    print(f"{record['id']} {record['call'].get('to')}: {cause['category']} - {cause['summary']}", flush=True)


class Consumer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], secrets: list[str], *,
                 handle: Callable[[dict[str, Any]], None] = handle_record,
                 tolerance: float = TOLERANCE_S) -> None:
        super().__init__(address, _Handler)
        self.keys = [secret_key(s) for s in secrets]
        self.handle = handle
        self.tolerance = tolerance
        self.seen = SeenIds()

    def receive(self, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        try:
            msg_id = verify(self.keys, headers, body, tolerance=self.tolerance)
        except Rejected as exc:
            return exc.status, str(exc)
        if "msg:" + msg_id in self.seen:
            return 200, "duplicate, already processed"
        payload = json.loads(body)
        # a batch (`call.hangup.batch`) holds several records; each keeps its own id, and a
        # record can come again inside a different batch, so deduplicate per record too
        records = payload["data"] if isinstance(payload["data"], list) else [payload["data"]]
        for record in records:
            if "rec:" + record["id"] not in self.seen:
                try:
                    self.handle(record)
                except Exception as exc:   # not processed: a 5xx makes callcause send it again
                    return 500, f"could not process {record['id']}: {type(exc).__name__}"
                self.seen.add("rec:" + record["id"])
        self.seen.add("msg:" + msg_id)
        return 204, ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"     # keep-alive: callcause reuses its connections
    server: Consumer

    def do_POST(self) -> None:      # the name http.server dispatches POST requests to
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._answer(413, "too large")
            return
        body = self.rfile.read(length)
        status, text = self.server.receive(self.headers, body)
        self._answer(status, text)

    def _answer(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass                        # one line per record from handle_record is enough


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Receive and verify callcause webhooks")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="host:port")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE_S, help="seconds of clock skew allowed")
    args = parser.parse_args(argv)
    secrets = os.environ.get("WEBHOOK_SECRET", "").split()
    if not secrets:
        print("set WEBHOOK_SECRET to the whsec_... secret(s) of the callcause sink", file=sys.stderr)
        return 2
    host, _, port = args.listen.rpartition(":")
    server = Consumer((host or "127.0.0.1", int(port)), secrets, tolerance=args.tolerance)
    print(f"listening on http://{args.listen}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
