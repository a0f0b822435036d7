"""An outbox that cannot store records: one clear error, sources back-pressured, nothing lost."""

from __future__ import annotations

import asyncio
import logging

import pytest
from webhook_helpers import FixedExplainer, Receiver, free_port, make_record, make_sink

from callcause.connectors.delivery.outbox import OutboxError
from callcause.pipeline import Pipeline
from callcause.record import HangupClues


async def test_unusable_outbox_path_stops_start_with_a_clear_message(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    sink = make_sink("http://127.0.0.1:9/hook", blocker / "outbox.db", name="nowhere")
    with pytest.raises(OutboxError) as err:
        await sink.start()
    message = str(err.value)
    assert str(blocker / "outbox.db") in message
    assert "cannot create its directory" in message and "set `outbox:` elsewhere" in message

    sink = make_sink("http://127.0.0.1:9/hook", tmp_path, name="a-directory")     # a directory, not a file
    with pytest.raises(OutboxError) as err:
        await sink.start()
    assert str(tmp_path) in str(err.value) and "unable to open database file" in str(err.value)


async def test_write_before_start_is_refused_not_dropped(tmp_path):
    sink = make_sink("http://127.0.0.1:9/hook", tmp_path / "outbox.db", name="unstarted")
    with pytest.raises(OutboxError):
        await sink.write(make_record(1))


class LogWatch(logging.Handler):
    """Counts log lines containing a text and wakes a waiter (no polling)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.changed.set()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def wait_for(self, text: str, n: int, timeout: float = 10.0) -> None:
        async def loop() -> None:
            while self.count(text) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)


async def test_disk_full_back_pressures_the_pipeline_and_loses_nothing(tmp_path):
    port = free_port()       # the receiver is down at first, so deliveries free no space
    sink = make_sink(f"http://127.0.0.1:{port}/hook", tmp_path / "outbox.db", name="full-disk")
    receiver = Receiver(port)
    await sink.start()
    watch = LogWatch()
    logging.getLogger("callcause").addHandler(watch)
    pipeline = Pipeline(FixedExplainer(), [sink])
    runner = asyncio.create_task(pipeline.run())
    try:
        # SQLite's own page limit produces the very error of a full disk (SQLITE_FULL)
        conn = sink._outbox.accept_conn
        pages = (await sink._db(conn.execute, "PRAGMA page_count")).fetchone()[0]
        await sink._db(conn.execute, f"PRAGMA max_page_count = {pages}")
        clues = [HangupClues(source_name="pbx-test", source_kind="asterisk", leg_id=f"leg.{i}")
                 for i in range(30)]
        for c in clues:
            pipeline.emit(c)
        # the pipeline retries the same record; our error line appears once, not per retry
        await watch.wait_for("cannot write record", 3)
        assert watch.count("database or disk is full") >= 3
        assert watch.count("not accepted: outbox") == 1
        assert any("free disk space" in line for line in watch.lines)
        assert pipeline.records < 30
        assert sink.ready is False              # /readyz: this sink accepts nothing now
        await sink._db(conn.execute, "PRAGMA max_page_count = 1073741823")    # space again
        await asyncio.wait_for(pipeline.queue.join(), 10)
        assert sink.ready is True
        await receiver.start()
        await receiver.wait_until(lambda: len(receiver.delivered) == 30)
    finally:
        runner.cancel()
        logging.getLogger("callcause").removeHandler(watch)
        await sink.close()
        await receiver.stop()
    assert pipeline.records == 30
