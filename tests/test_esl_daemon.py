"""`callcause run` with a FreeSWITCH source: config file in, JSON Lines records out, clean stop."""

from __future__ import annotations

import asyncio
import json
import threading

import esl_support as S

from callcause.connectors.simulator.esl import EslServer


async def test_daemon_records_freeswitch_hangups_and_stops_cleanly(tmp_path, caplog) -> None:
    with EslServer(S.PASSWORD) as server:
        daemon, written, run = S.daemon_until(S.daemon_config(tmp_path, server.port), 2)
        assert await server.subscribed(1)
        server.send_events(S.frames("freeswitch-sip486-busy.txt") + S.frames("freeswitch-sip603-decline.txt"))
        await asyncio.wait_for(written.wait(), 10)
        assert daemon.readiness() == {"source:fs-daemon": True, "sink:log:" + str(tmp_path / "records.jsonl"): True}
        daemon.stop.set()
        assert await asyncio.wait_for(run, 15) == 0
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [(d["source"]["kind"], d["cause"]["category"], d["sip"]["code"], d["pbx"]["disposition"])
            for d in lines] == [("freeswitch", "busy", 486, "recv_refuse"),
                                ("freeswitch", "rejected", 603, "recv_refuse")]
    assert lines[0]["cause"]["hangup_source"] == "callee" and lines[0]["source"]["version"] == "1.10.12-release"
    assert not [t for t in threading.enumerate() if t.name == "callcause-esl"]   # the ESL hub ended too
    assert S.PASSWORD not in caplog.text
