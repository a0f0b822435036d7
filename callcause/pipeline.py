"""Sources -> translate -> record -> sinks, on one asyncio loop.

A source calls `emit(clues)` (plain function, safe from protocol callbacks); the pipeline
translates on its own task and hands the records to every sink in turn. Whatever queued up
while the sinks were busy goes to them as one group (`write_many`, where a sink has it), so
a burst costs one outbox commit instead of one per record. A sink that fails is retried with
backoff on the same records, so nothing accepted is dropped: the queue in front grows
instead, and sources may `await pipeline.writable()` to slow their reading.

Retrying helps only with failures that can pass (a full disk, a locked outbox). A record that
can never be written (it cannot be translated or rendered: a deterministic error) would hold
every later record behind it forever; it is logged with its id, counted in
`callcause_records_set_aside_total` and set aside (a sink with `set_aside` keeps it, e.g. as a
dead letter in its outbox), and the records after it flow.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from callcause import metrics
from callcause.record import CauseRecord, HangupClues, record_id

log = logging.getLogger("callcause.pipeline")

Emit = Callable[[HangupClues], None]

# Raised by rendering or serialising one particular record: retrying it raises them again.
# OSError and the sinks' own errors (OutboxError) are not among them: those may pass.
PERMANENT_ERRORS = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError,
                    RecursionError)


@runtime_checkable
class Source(Protocol):
    """A PBX connection. `run` connects, reconnects, and calls `emit` once per ended leg,
    until cancelled."""

    name: str

    @property
    def connected(self) -> bool: ...

    async def run(self, emit: Emit) -> None: ...


@runtime_checkable
class Sink(Protocol):
    """Where records go. `write` returns once the record is safely accepted."""

    name: str

    async def start(self) -> None: ...

    async def write(self, record: CauseRecord) -> None: ...

    # optional: `async def write_many(self, records)` accepting a group at once, all or none
    # optional: `async def set_aside(self, record, error)` keeping a record it can never write

    async def close(self) -> None: ...


class Explainer(Protocol):
    def explain(self, clues: HangupClues): ...

    def texts(self, explanation, lang: str): ...


class Pipeline:
    HIGH_WATER = 50_000
    GROUP = 256            # records handed to a sink at once, at most
    YIELD_EVERY = 32       # records processed between two yields to the event loop

    def __init__(self, translator: Explainer, sinks: Sequence[Sink], *, instance: str | None = None) -> None:
        self.translator = translator
        self.instance = instance          # stamped into every record: which daemon wrote it
        self.sinks = list(sinks)
        self.queue: asyncio.Queue[HangupClues] = asyncio.Queue()
        self._below_high_water = asyncio.Event()
        self._below_high_water.set()
        self.records = 0
        self.on_record: Callable[[CauseRecord], None] | None = None   # demo/tests observe here
        self.observers: list[Callable[[Sequence[CauseRecord]], None]] = []   # each batch, e.g. trunk health

    def emit(self, clues: HangupClues) -> None:
        self.queue.put_nowait(clues)
        if self.queue.qsize() >= self.HIGH_WATER:
            self._below_high_water.clear()

    async def writable(self) -> None:
        """Wait while the queue is above its high-water mark (back-pressure for sources)."""
        await self._below_high_water.wait()

    def build(self, clues: HangupClues) -> CauseRecord:
        translator = self.translator   # read once: a SIGHUP reload may swap it
        return CauseRecord(clues, translator.explain(clues), translator.texts, instance=self.instance)

    async def _deliver(self, sink: Sink, records: Sequence[CauseRecord]) -> None:
        write_many = getattr(sink, "write_many", None)
        pending = list(records)
        delay = 0.1
        written = 0   # counted once per group: a labelled counter takes a lock and lookups per call
        try:
            while pending:
                try:
                    if write_many is not None:
                        await write_many(pending)      # all or none: a retry duplicates nothing
                        written += len(pending)
                        pending = []
                    else:
                        await sink.write(pending[0])   # a retry resumes after what was written
                        written += 1
                        pending.pop(0)
                        if len(pending) % self.YIELD_EVERY == 0:
                            await asyncio.sleep(0)     # a file sink never suspends by itself
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a sink's failure must not lose the record
                    metrics.SINK_WRITES.labels(sink=sink.name, result="error").inc()
                    group = pending if write_many is not None else pending[:1]
                    if _permanent(exc, group):
                        if len(group) > 1:
                            # find the record(s) at fault: the others are written one by one
                            for record in group:
                                await self._deliver(sink, [record])
                            return
                        await self._set_aside(sink, pending.pop(0), exc)
                        delay = 0.1
                        continue
                    more = f" and {len(pending) - 1} more" if len(pending) > 1 else ""
                    log.error("sink %s: cannot write record %s%s: %s; retrying in %.1f s",
                              sink.name, pending[0].id, more, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            if written:
                metrics.SINK_WRITES.labels(sink=sink.name, result="ok").inc(written)

    async def _set_aside(self, sink: Sink, record: CauseRecord, exc: BaseException) -> None:
        metrics.RECORDS_SET_ASIDE.labels(sink=sink.name).inc()
        kept = ""
        set_aside = getattr(sink, "set_aside", None)
        if set_aside is not None:
            try:
                kept = await set_aside(record, f"{type(exc).__name__}: {exc}")
            except Exception as again:   # keeping it failed too: the log line is all that is left
                kept = f"; keeping it failed too ({again!r})"
        c = record.clues
        log.error("sink %s: record %s (source %s, leg %s) can never be written: %s: %s; set aside%s, "
                  "the records after it go on; please report this with the PBX's event",
                  sink.name, record.id, c.source_name, c.leg_id, type(exc).__name__, exc, kept)

    def _unbuildable(self, clues: HangupClues, exc: Exception) -> None:
        metrics.RECORDS_SET_ASIDE.labels(sink="translator").inc()
        log.error("record %s (source %s, leg %s) cannot be built from its clues: %r; set aside, the "
                  "records after it go on; please report this with the PBX's event",
                  record_id(clues.source_name, clues.leg_id), clues.source_name, clues.leg_id, exc)

    async def process(self, clues: HangupClues) -> CauseRecord | None:
        """One leg's record, written; None when it could not even be built (logged)."""
        records = await self.process_many([clues])
        return records[0] if records else None

    async def process_many(self, batch: Sequence[HangupClues]) -> list[CauseRecord]:
        records = []
        for clues in batch:
            try:
                records.append(self.build(clues))
            except Exception as exc:   # deterministic: retrying cannot help, and must not block
                self._unbuildable(clues, exc)
            if len(records) % self.YIELD_EVERY == 0:
                # let the socket readers run: Asterisk drops a manager client that does not
                # read for about 100 ms, and a thread sharing the GIL stretches every step
                await asyncio.sleep(0)
        for sink in self.sinks:
            await self._deliver(sink, records)
        now = time.monotonic()
        observe = metrics.EVENT_TO_RECORD.observe
        for record in records:
            observe(max(0.0, now - record.clues.received_at))
            self.records += 1
            if self.on_record is not None:
                self.on_record(record)
        self._count(records)
        for observe in self.observers:
            observe(records)
        return records

    @staticmethod
    def _count(records: Sequence[CauseRecord]) -> None:
        """The record counters, once per distinct label set of the group: `labels()` and `inc()`
        take a lock and a dict lookup each, which per record cost as much as writing the line."""
        seen: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        for record in records:
            sip, q850 = record.explanation.sip, record.explanation.q850
            seen[(record.clues.source_name, record.category, sip["class"] if sip else "none",
                  str(q850["cause"]) if q850 else "none")] += 1
        by_category: collections.Counter[tuple[str, str]] = collections.Counter()
        by_class: collections.Counter[tuple[str, str]] = collections.Counter()
        by_cause: collections.Counter[tuple[str, str]] = collections.Counter()
        for (src, category, sip_class, cause), n in seen.items():
            by_category[(src, category)] += n
            by_class[(src, sip_class)] += n
            by_cause[(src, cause)] += n
        for (src, category), n in by_category.items():
            metrics.RECORDS.labels(source=src, category=category).inc(n)
        for (src, sip_class), n in by_class.items():
            metrics.RECORDS_SIP_CLASS.labels(source=src, sip_class=sip_class).inc(n)
        for (src, cause), n in by_cause.items():
            metrics.RECORDS_Q850.labels(source=src, q850_cause=cause).inc(n)

    def _take(self, first: HangupClues) -> list[HangupClues]:
        batch = [first]
        while len(batch) < self.GROUP and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def run(self) -> None:
        """Consume clues until cancelled."""
        while True:
            batch = self._take(await self.queue.get())
            try:
                await self.process_many(batch)
            finally:
                for _ in batch:
                    self.queue.task_done()
                if self.queue.qsize() < self.HIGH_WATER // 2:
                    self._below_high_water.set()
            # A sink that never suspends (a log file) would otherwise keep the loop to itself
            # for as long as records keep coming, stalling the socket readers.
            await asyncio.sleep(0)

    async def drain(self) -> None:
        """Process what is queued (used on SIGTERM after the sources stopped)."""
        while not self.queue.empty():
            batch = self._take(self.queue.get_nowait())
            await self.process_many(batch)
            for _ in batch:
                self.queue.task_done()

    async def start_sinks(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception as exc:   # one sink's failure must not keep the others open
                log.error("sink %s: error while closing: %s", sink.name, exc)


def _permanent(exc: BaseException, records: Sequence[CauseRecord]) -> bool:
    """Will writing these records fail again however often it is tried? Yes for the errors
    of rendering a record, and for any error when one of them cannot even be rendered
    (`datetime` reports some out-of-range times as OSError)."""
    if isinstance(exc, PERMANENT_ERRORS):
        return True
    for record in records:
        try:
            json.dumps(record.document("en"), ensure_ascii=False).encode()
        except Exception:
            return True
    return False
