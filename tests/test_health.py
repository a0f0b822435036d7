"""The metrics and health endpoints over real HTTP, parsed with the official client's parser."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from callcause import metrics
from callcause.errors import ConfigError
from callcause.health import HealthServer, parse_listen


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_metrics_healthz_readyz():
    ready = {"source:pbx-1": True, "sink:outbox": True}
    server = HealthServer("127.0.0.1:0", lambda: dict(ready))
    await server.start()
    try:
        metrics.RECORDS.labels(source="pbx-1", category="busy").inc()
        status, body = await http_get(server.port, "/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families["callcause_records"].samples}
        assert samples[("callcause_records_total", (("category", "busy"), ("source", "pbx-1")))] >= 1
        assert (await http_get(server.port, "/healthz"))[0] == 200
        status, body = await http_get(server.port, "/readyz")
        assert status == 200 and json.loads(body)["ready"] is True
        ready["source:pbx-1"] = False       # a source dropped: readiness flips
        status, body = await http_get(server.port, "/readyz")
        assert status == 503 and json.loads(body)["components"]["source:pbx-1"] is False
        assert (await http_get(server.port, "/nope"))[0] == 404
    finally:
        await server.close()


@pytest.mark.parametrize("bad", ["9464", "host:", "host:port", "host:70000"])
def test_listen_must_be_host_port(bad):
    with pytest.raises(ConfigError):
        parse_listen(bad)
