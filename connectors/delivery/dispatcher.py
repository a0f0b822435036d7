"""A sink that accepts records into the durable outbox and hands them to a transport.

`write()` commits a record to the outbox (that is acceptance); one dispatcher per sink sends what
is due with bounded concurrency, retries with backoff and jitter (or the far side's own wait),
and turns records it cannot deliver into dead letters (`callcause outbox list|retry|purge`).
The transport knows the wire (HTTP, a broker); this module knows nothing about it: it gives the
transport one `Delivery` at a time and stores the `Outcome` the transport returns.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import functools
import hashlib
import json
import logging
import random
import ssl
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from prometheus_client import Counter

from callcause import metrics
from callcause.config import Config, Section, parse_language
from callcause.connectors.delivery.outbox import SYNC_MODES, Change, Outbox, OutboxError, Row
from callcause.errors import ConfigError
from callcause.pii import PiiPolicy, parse_pii
from callcause.pipeline import Sink
from callcause.problems import ProblemLog
from callcause.record import CATEGORIES, RECORD_TYPE, SEVERITIES, CauseRecord, iso_time
from callcause.tls import client_context

BATCH_TYPE = "call.hangup.batch"
T = TypeVar("T")


# --- options every outbox-backed sink shares -------------------------------------------------

@dataclass(slots=True, frozen=True)
class Filters:
    """`only:` which records go to this sink; empty lists mean all."""

    categories: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    failures_only: bool = False       # drop calls that were answered and ended normally

    def wants(self, record: CauseRecord) -> bool:
        category = record.category
        if self.categories and category not in self.categories:
            return False
        if self.severities and record.severity not in self.severities:
            return False
        if self.sources and record.clues.source_name not in self.sources:
            return False
        return not (self.failures_only and category == "answered")


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits between half and all of
    min(max, initial * 2^(n-1)); a record still undelivered after `max_age` is a dead letter."""

    initial_s: float = 5.0
    max_s: float = 3600.0
    max_age_s: float = 86400.0

    def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** min(max(attempts - 1, 0), 60))
        return base / 2 + rand() * base / 2


@dataclass(slots=True, frozen=True)
class BatchPolicy:
    max_records: int = 100
    max_wait_s: float = 1.0


@dataclass(slots=True, kw_only=True)
class DeliveryOptions:
    """The keys of a `sinks:` entry that say which records go out and how they are retried;
    each transport's config extends it with its own (url, broker, topic ...)."""

    uses_outbox: ClassVar[bool] = True   # config.py refuses such a sink without `outbox:`

    name: str
    kind: str
    only: Filters = field(default_factory=Filters)
    language: str | None = None        # None: the top-level `language`
    pii: PiiPolicy = field(default_factory=PiiPolicy)
    batch: BatchPolicy | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    concurrency: int = 4
    grace_s: float = 5.0
    outbox_sync: str = "interval"      # or "every_record": fsync per accepted record
    alerts: bool = False               # also deliver trunk.alert events (opt-in)


def parse_delivery_options(sec: Section, cfg: DeliveryOptions) -> None:
    """Read the shared keys (`only`, `language`, `pii`, `batch`, `retry`, `concurrency`, `grace`,
    `outbox_sync`) of one sink entry into `cfg`."""
    only = sec.section("only")
    cfg.only = Filters(
        categories=tuple(only.str_list("categories", [], choices=CATEGORIES)),
        severities=tuple(only.str_list("severities", [], choices=SEVERITIES)),
        sources=tuple(only.str_list("sources", [])),
        failures_only=only.bool("failures_only", False),
    )
    only.finish()
    cfg.language = parse_language(sec, "language", None)
    cfg.pii = parse_pii(sec.section("pii"))
    if sec.has("batch"):
        bsec = sec.section("batch")
        cfg.batch = BatchPolicy(max_records=bsec.int("max_records", 100, min=1, max=10_000),
                                max_wait_s=bsec.duration("max_wait", 1.0))
        bsec.finish()
    rsec = sec.section("retry")
    cfg.retry = RetryPolicy(initial_s=rsec.duration("initial", 5.0, minimum=0.001),
                            max_s=rsec.duration("max", 3600.0, minimum=0.001),
                            max_age_s=rsec.duration("max_age", 86400.0))
    rsec.finish()
    cfg.concurrency = sec.int("concurrency", 4, min=1, max=256)
    cfg.grace_s = sec.duration("grace", 5.0)
    cfg.outbox_sync = sec.str("outbox_sync", "interval", choices=SYNC_MODES)
    cfg.alerts = sec.bool("alerts", False)


def outbox_path(cfg: DeliveryOptions, config: Config) -> str:
    """The outbox file a sink of this kind keeps its records in (config.py checks it is set)."""
    if not config.outbox:
        raise ConfigError(f"a {cfg.kind} sink needs a durable outbox", file=config.file, key="outbox",
                          fix="add a top-level `outbox: /var/lib/callcause/outbox.sqlite3`")
    return config.outbox


def parse_tls(sec: Section) -> tuple[bool, str | None]:
    """`tls: {verify, ca_file}` of a networked sink: (verify, CA bundle path), the bundle loaded
    once here so a wrong path is a config error, not a failure at the first delivery."""
    tls = sec.section("tls")
    verify = tls.bool("verify", True)
    ca_file = tls.str("ca_file", None)
    if ca_file is not None:
        try:
            client_context(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise tls.error("ca_file", f"cannot load the CA bundle {ca_file!r}: {exc}",
                            fix="point it to a PEM file with the CA certificate(s)") from None
    tls.finish()
    return verify, ca_file


# --- what goes over the wire, and what comes back ----------------------------------------------

ALERT_PREFIX = "al_"       # outbox rows of trunk.alert events: `al_<episode>.<state>`


def single_body(event_time: str, data: bytes, kind: str = RECORD_TYPE) -> bytes:
    """`{"type":"call.hangup","timestamp":<hangup time>,"data":<record>}`, byte-stable."""
    return b'{"type":"' + kind.encode() + b'","timestamp":"' + event_time.encode() \
        + b'","data":' + data + b"}"


def row_type(record_id: str) -> str:
    """The body `type` of an outbox row: the outbox stores ids, and alert ids say what they are."""
    from callcause.trunks.alerts import ALERT_TYPE

    return ALERT_TYPE if record_id.startswith(ALERT_PREFIX) else RECORD_TYPE


def batch_body(rows: Sequence[Row]) -> bytes:
    """`{"type":"call.hangup.batch","timestamp":<newest hangup>,"data":[<record>, ...]}`."""
    newest = max(r.event_time for r in rows)
    return b'{"type":"' + BATCH_TYPE.encode() + b'","timestamp":"' + newest.encode() \
        + b'","data":[' + b",".join(r.data for r in rows) + b"]}"


def batch_id(record_ids: Sequence[str]) -> str:
    """A batch's message id, derived from its members (and stored with them for the retries)."""
    digest = hashlib.sha256("\x00".join(record_ids).encode()).digest()
    return "ccb_" + base64.b32encode(digest[:16]).decode().rstrip("=")


@dataclass(slots=True)
class Delivery:
    """One message: a single record or a batch of them, with its id and its body."""

    msg_id: str
    body: bytes
    rows: list[Row]

    @property
    def seqs(self) -> list[int]:
        return [r.seq for r in self.rows]

    @property
    def attempts(self) -> int:
        return max(r.attempts for r in self.rows)

    @property
    def epoch(self) -> float:
        return min(r.epoch for r in self.rows)


@dataclass(slots=True, frozen=True)
class Outcome:
    """What a transport says of one delivery: done, retry (after its own wait, or after the
    backoff), or dead at once. `kind` names the problem in the log; `todo` says what to do."""

    delivered: bool = False
    error: str = ""
    dead: bool = False
    retry_after: float | None = None
    kind: str = "failed"
    todo: str = ""

    @classmethod
    def done(cls) -> Outcome:
        return cls(delivered=True)

    @classmethod
    def retry(cls, error: str, *, after: float | None = None, kind: str = "failed", todo: str = "") -> Outcome:
        return cls(error=error, retry_after=after, kind=kind, todo=todo)

    @classmethod
    def refused(cls, error: str, *, kind: str = "failed") -> Outcome:
        return cls(error=error, dead=True, kind=kind)


class Transport(Protocol):
    """The wire of one sink: connect, deliver one message at a time, disconnect. A new transport
    (HTTP, MQTT, AMQP, Kafka ...) is one module implementing these three methods."""

    async def open(self) -> None: ...

    async def deliver(self, unit: Delivery) -> Outcome: ...

    async def close(self) -> None: ...


# --- the sink -------------------------------------------------------------------------------

class OutboxSink(Sink):
    """One destination: its outbox rows, its transport, its dispatcher.

    Every sink has its own dispatcher and outbox thread, so a slow or dead destination never
    delays the others; the pipeline only waits for the outbox commit.
    """

    POLL_S = 2.0            # also picks up dead letters queued again by `callcause outbox retry`
    STATS_EVERY_S = 1.0
    RECOUNT_EVERY_S = 30.0
    SYNC_EVERY_S = 0.05     # outbox_sync: interval -- the most a power cut can lose
    CHECKPOINT_EVERY_S = 1.0

    def __init__(self, cfg: DeliveryOptions, outbox_path: str, language: str, transport: Transport, *,
                 where: str, deliveries: Counter, log: logging.Logger,
                 labels: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.lang = cfg.language or language
        self.outbox_path = outbox_path
        self.transport = transport
        # for /readyz: False while the outbox refuses records (a full disk); a receiver or
        # broker that is down does not count, the outbox keeps what it cannot deliver yet
        self.ready = True
        # counter labelled endpoint, result and whatever else `labels` names (e.g. the broker kind)
        self._deliveries = deliveries
        self._labels = dict(labels or {})
        self._log = log
        self._problems = ProblemLog(where)
        self._outbox: Outbox | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[int] = set()        # rows being sent, or whose outcome is not stored yet
        self._inflight_ids: set[str] = set()    # their message ids
        self._depth = 0                         # rows waiting, kept as a running count
        self._changes: list[Change] = []
        self._since_pick = 0
        self._partial_timed = False             # the dispatcher will wake for the partial batch
        self._closing = False
        self._failing = 0
        # under a backlog, a dispatcher turn (one outbox transaction: store outcomes, pick rows)
        # waits for this many finished deliveries, so one commit serves several of them; at
        # least 3/4 of the slots stay busy. Batches are few and large: each gets its own turn.
        self._refill = 1 if cfg.batch else max(1, cfg.concurrency // 4)
        self._backlog = False                   # the last turn found a due row for every free slot
        # deliveries read ahead by a turn (rows marked in flight, not sent yet): a slot whose
        # delivery finishes takes the next one from here at once, without waiting for a turn
        self._ready: collections.deque[Delivery] = collections.deque()
        self._read_ahead = self._refill if self._refill > 1 else 0
        self._counters: dict[str, Any] = {}
        self.peak_in_flight = 0                 # most concurrent deliveries seen (tests, bench)
        # tests and bench observe here: called once an outcome is stored in the outbox
        self.on_outcome: Callable[[Change], None] | None = None

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an outbox call. Without fsync (`outbox_sync: interval`) a call takes tens of
        microseconds and runs right here, which costs less than a hop to a thread and leaves one
        thread using the file, so no call ever waits for another's lock; with an fsync per record
        the calls run on this sink's own thread, never blocking the event loop."""
        if self._executor is None:
            raise OutboxError(f"{self.cfg.kind} {self.name}: the sink is not started")
        if self.cfg.outbox_sync == "interval":
            return fn(*args)
        return await self._in_thread(fn, *args)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise OutboxError(f"{self.cfg.kind} {self.name}: the sink is not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"outbox-{self.name}")
        outbox = Outbox(self.outbox_path, sync=self.cfg.outbox_sync)
        try:
            await self._in_thread(outbox.open)
        except OutboxError:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        self._outbox = outbox
        self._depth = (await self._in_thread(outbox.stats, self.name))[0]
        await self.transport.open()
        self._closing = False
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"{self.cfg.kind}-{self.name}")
        if self.cfg.outbox_sync == "interval":
            self._syncer = asyncio.create_task(self._sync_loop(), name=f"{self.cfg.kind}-{self.name}-sync")

    async def write(self, record: CauseRecord) -> None:
        """Return once the record is committed to the outbox (or is not for this sink)."""
        await self.write_many([record])

    async def write_many(self, records: Sequence[CauseRecord]) -> None:
        """Commit several records in one outbox transaction (all or none): the pipeline hands
        over what queued up meanwhile, so one commit serves a burst instead of one each."""
        wanted = [r for r in records if self.cfg.only.wants(r)]
        if not wanted:
            return
        if self._outbox is None:
            raise OutboxError(f"{self.cfg.kind} {self.name}: the sink is not started")
        rows = []
        for record in wanted:
            doc = self.cfg.pii.apply(record.document(self.lang))
            rows.append((record.id, doc["time"],
                         json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()))
        now = time.time()
        next_at = now + self.cfg.batch.max_wait_s if self.cfg.batch else now
        try:
            await self._db(self._outbox.add_many, self.name, rows, now, next_at)
            self._dirty.set()
            self._depth += len(rows)
            self.ready = True
        except OutboxError as exc:
            self.ready = False
            ids = wanted[0].id if len(wanted) == 1 else f"{wanted[0].id} and {len(wanted) - 1} more"
            self._problems.report("outbox_write", f"record {ids} not accepted: {exc}",
                                  "the pipeline retries it; nothing is dropped", level=logging.ERROR,
                                  count=False)
            raise
        self._since_pick += len(rows)
        if self.cfg.outbox_sync == "interval":
            # the commit did not suspend: yield once, or a caller with a backlog of records
            # would starve every other task (socket readers, deliveries) until it is through
            await asyncio.sleep(0)
        batch = self.cfg.batch
        if batch is None:
            # with most slots busy, the deliveries finishing will wake it soon enough
            if self.cfg.concurrency - len(self._tasks) >= self._refill:
                self._wake.set()
        # batching: wake the dispatcher for a full batch, or when it has no partial batch timed yet
        elif not self._partial_timed or self._since_pick >= batch.max_records:
            self._wake.set()

    async def set_aside(self, record: CauseRecord, error: str) -> str:
        """Keep a record the pipeline can never write as a dead letter, so `callcause outbox
        list --dead` shows it. Its document could not be rendered, so the row holds only what
        identifies it; `callcause outbox purge --id` removes it once looked at."""
        if self._outbox is None:
            raise OutboxError(f"{self.cfg.kind} {self.name}: the sink is not started")
        c = record.clues
        stub = {"id": record.id, "type": RECORD_TYPE, "instance": record.instance, "unwritable": error,
                "source": {"name": c.source_name, "kind": c.source_kind},
                "call": {"leg_id": str(c.leg_id), "call_id": str(c.call_id)}}
        now = time.time()
        await self._db(self._outbox.add_dead, self.name, record.id, iso_time(now),
                       json.dumps(stub, ensure_ascii=False).encode("utf-8", "replace"),
                       f"unwritable record: {error}", now)
        return f" as a dead letter in the outbox of {self.name} (`callcause outbox list --dead`)"

    @property
    def wants_alerts(self) -> bool:
        return self.cfg.alerts

    async def write_alerts(self, events: Sequence[Any]) -> None:
        """Commit trunk.alert events (callcause.trunks.alerts.AlertEvent) to the outbox, signed and
        retried like records; the row id is the event's message id (`al_<episode>.<state>`)."""
        if self._outbox is None:
            raise OutboxError(f"{self.cfg.kind} {self.name}: the sink is not started")
        rows = [(e.message_id, e.document(self.lang)["timestamp"],
                 json.dumps(e.data(self.lang), ensure_ascii=False, separators=(",", ":")).encode()) for e in events]
        now = time.time()
        await self._db(self._outbox.add_many, self.name, rows, now, now)
        self._dirty.set()
        self._depth += len(rows)
        self._wake.set()

    async def wait_delivered(self, patience: float) -> int:
        """Wait while the outbox empties: until no row waits, or until `patience` seconds pass
        without a row leaving it (a receiver that is down). For commands that end once their
        records are written (`callcause replay -c`): the daemon keeps delivering instead.
        Returns the rows still waiting; they stay for the next start."""
        if self._outbox is None:
            return 0
        left = (await self._in_thread(self._outbox.stats, self.name))[0]
        progress = time.monotonic()
        while left and time.monotonic() - progress < patience:
            self._wake.set()
            await asyncio.sleep(0.05)
            now_left = (await self._in_thread(self._outbox.stats, self.name))[0]
            if now_left < left:
                progress = time.monotonic()
            left = now_left
        return left

    async def close(self) -> None:
        """Finish in-flight deliveries within the grace period; what is left waits for the next start."""
        self._closing = True
        self._wake.set()
        if self._dispatcher is not None:
            # let it finish its current outbox call, so no outcome is lost on the way
            try:
                await asyncio.wait_for(asyncio.shield(self._dispatcher), self.cfg.grace_s)
            except TimeoutError:
                self._dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._dispatcher
            self._dispatcher = None
        for unit in self._ready:        # read ahead, never sent: they wait in the outbox as they are
            self._inflight.difference_update(unit.seqs)
            self._inflight_ids.discard(unit.msg_id)
        self._ready.clear()
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
            self._syncer = None
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.cfg.grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if pending:
                self._log.info("%s %s: %d request(s) still open after the %.1f s grace period; their "
                               "records stay in the outbox for the next start", self.cfg.kind, self.name,
                               len(pending), self.cfg.grace_s)
        if self._outbox is not None:
            changes, self._changes = self._changes, []
            try:
                if changes:
                    await self._db(self._outbox.apply, changes)
                    self._observe(changes)
                if self.cfg.outbox_sync == "interval":
                    await self._in_thread(self._outbox.sync_wal, False)
                depth, _ = await self._in_thread(self._outbox.stats, self.name)
                metrics.OUTBOX_DEPTH.labels(endpoint=self.name).set(depth)
            except OutboxError as exc:
                self._log.error("%s %s: %s (those records will be sent again)", self.cfg.kind, self.name, exc)
            await self._in_thread(self._outbox.close)
            self._outbox = None
        await self.transport.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    # --- dispatching -------------------------------------------------------------------

    def _observe(self, changes: list[Change]) -> None:
        if self.on_outcome is not None:
            for change in changes:
                self.on_outcome(change)

    async def _sync_loop(self) -> None:
        """`outbox_sync: interval`: fsync what was accepted, at most SYNC_EVERY_S after it."""
        last_checkpoint = time.monotonic()
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.SYNC_EVERY_S)
            self._dirty.clear()
            checkpoint = time.monotonic() - last_checkpoint >= self.CHECKPOINT_EVERY_S
            try:
                await self._in_thread(self._outbox.sync_wal, checkpoint)
            except OutboxError as exc:
                self._dirty.set()
                self._problems.report("outbox_sync", str(exc), level=logging.ERROR, count=False)
                continue
            if checkpoint:
                last_checkpoint = time.monotonic()

    async def _wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _dispatch(self) -> None:
        last_stats = last_count = -1e9
        while not self._closing:
            self._wake.clear()
            free = self.cfg.concurrency - len(self._tasks)
            # rows to read: enough for the free slots, plus the read-ahead (unbatched only)
            want = free if self.cfg.batch else free - len(self._ready) + self._read_ahead
            changes, self._changes = self._changes, []
            # rows whose outcome is stored by this very call may be picked again (e.g. Retry-After: 0)
            stored = {seq for ch in changes for seq in ch.seqs}
            stored_ids = {ch.msg_id for ch in changes}
            exclude = frozenset(self._inflight - stored)
            exclude_ids = frozenset(self._inflight_ids - stored_ids)
            self._since_pick = 0
            try:
                units, next_at = await self._db(self._pick, changes, want, exclude, exclude_ids, time.time())
            except asyncio.CancelledError:
                self._changes[:0] = changes     # stored by close() (twice at worst: harmless)
                raise
            except OutboxError as exc:
                self._changes[:0] = changes
                self._problems.report("outbox_read", str(exc), "delivery resumes once the outbox works",
                                      level=logging.ERROR, count=False)
                await self._wait(1.0)
                continue
            self._inflight.difference_update(stored)
            self._inflight_ids.difference_update(stored_ids)
            self._depth -= sum(len(ch.seqs) for ch in changes if ch.delivered or ch.dead)
            self._observe(changes)
            if self._closing:
                break             # rows not started stay waiting in the outbox
            for unit in units:
                self._inflight.update(unit.seqs)
                self._inflight_ids.add(unit.msg_id)
            self._ready.extend(units)
            while self._ready and len(self._tasks) < self.cfg.concurrency:
                task = asyncio.create_task(self._send(self._ready.popleft()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            self.peak_in_flight = max(self.peak_in_flight, len(self._tasks))
            self._backlog = len(units) >= want
            now = time.monotonic()
            if now - last_stats >= self.STATS_EVERY_S:
                last_stats = now
                if now - last_count >= self.RECOUNT_EVERY_S:
                    # the running count drifts when `callcause outbox retry|purge` changes rows
                    last_count = now
                    with contextlib.suppress(OutboxError):
                        self._depth = (await self._in_thread(self._outbox.stats, self.name))[0]
                await self._update_gauges()
            if want > 0 and len(units) == want:
                continue          # there may be more due: look again once a slot frees
            timeout = self.POLL_S if next_at is None else min(self.POLL_S, max(0.0, next_at - time.time()))
            await self._wait(timeout)
            # outcomes often arrive together (a broker acknowledges several messages in one
            # read): let the rest of them land, so one outbox transaction stores them all
            await asyncio.sleep(0)

    async def _update_gauges(self) -> None:
        if self._outbox is None:
            return
        try:
            oldest = await self._in_thread(self._outbox.oldest, self.name)
        except OutboxError:
            return
        metrics.OUTBOX_DEPTH.labels(endpoint=self.name).set(max(self._depth, 0))
        metrics.OUTBOX_OLDEST_AGE.labels(endpoint=self.name).set(
            max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    def _pick(self, changes: list[Change], free: int, exclude: frozenset[int], exclude_ids: frozenset[str],
              now: float) -> tuple[list[Delivery], float | None]:
        """Store finished outcomes, then choose up to `free` deliveries and say when to look again."""
        box = self._outbox
        assert box is not None
        units: list[Delivery] = []
        if self.cfg.batch is not None or free <= 0:
            if changes:
                box.apply(changes)     # a separate transaction: batches are few
            if free <= 0:
                return units, None
            return units, self._pick_batches(box, units, free, exclude_ids, now)
        for row, at in box.settle_and_pick(changes, self.name, free, exclude):
            if at > now:
                return units, at
            units.append(Delivery(row.record_id, single_body(row.event_time, row.data, row_type(row.record_id)),
                                  [row]))
            if len(units) == free:
                break
        return units, None

    def _pick_batches(self, box: Outbox, units: list[Delivery], free: int, exclude_ids: frozenset[str],
                      now: float) -> float | None:
        batch = self.cfg.batch
        assert batch is not None
        # batches formed earlier and due again keep their members and message id
        for msg_id in box.due_batches(self.name, now, free + len(exclude_ids)):
            if msg_id in exclude_ids:
                continue
            members = box.batch_rows(self.name, msg_id)
            if members:
                units.append(Delivery(msg_id, batch_body(members), members))
            if len(units) == free:
                return None
        next_at = box.next_batch_retry(self.name, now)
        # new batches: full ones at once, a partial one when its oldest record waited max_wait
        self._partial_timed = False
        while len(units) < free:
            rows = box.unformed(self.name, batch.max_records)
            if not rows:
                break
            if len(rows) < batch.max_records and rows[0][1] > now:
                next_at = rows[0][1] if next_at is None else min(next_at, rows[0][1])
                self._partial_timed = True
                break
            msg_id = batch_id([r[2] for r in rows])
            members = box.form_batch(self.name, [r[0] for r in rows], msg_id, now)
            units.append(Delivery(msg_id, batch_body(members), members))
        return next_at

    # --- one delivery ----------------------------------------------------------------------

    async def _send(self, unit: Delivery) -> None:
        """One slot: deliver, then go on with the next read-ahead delivery, if any."""
        while True:
            try:
                outcome = await self.transport.deliver(unit)
            except asyncio.CancelledError:
                # close() gave up waiting: the rows stay as they are and go out on the next start
                self._inflight.difference_update(unit.seqs)
                self._inflight_ids.discard(unit.msg_id)
                raise
            except Exception as exc:   # a bug must not wedge the rows in memory
                self._log.exception("%s %s: unexpected error while sending %s", self.cfg.kind, self.name,
                                    unit.msg_id)
                outcome = Outcome.retry(f"internal error: {type(exc).__name__}")
            self._changes.append(self._settle(unit, outcome))
            following = self._ready.popleft() if self._ready and not self._closing else None
            # with more rows due than slots, store outcomes a few at a time; otherwise at once,
            # so the last deliveries' outcomes are not held back
            if following is None or not self._backlog or len(self._changes) >= self._refill or self._closing:
                self._wake.set()
            if following is None:
                return
            unit = following

    def _count(self, result: str) -> None:
        counter = self._counters.get(result)
        if counter is None:     # looking the labelled child up costs more than counting
            counter = self._counters[result] = self._deliveries.labels(endpoint=self.name, result=result,
                                                                       **self._labels)
        counter.inc()

    def _settle(self, unit: Delivery, outcome: Outcome) -> Change:
        """Turn a transport's outcome into the change to store: delivered, rescheduled or dead."""
        if outcome.delivered:
            self._count("delivered")
            if self._failing:
                self._log.info("%s %s: the receiver accepts records again after %d failed attempt(s)",
                               self.cfg.kind, self.name, self._failing)
                self._failing = 0
            return Change(unit.seqs, msg_id=unit.msg_id, delivered=True)
        now = time.time()
        attempts = unit.attempts + 1
        self._failing += 1
        self._count("failed")
        wait = outcome.retry_after
        if wait is None:
            wait = self.cfg.retry.delay(attempts)
        deadline = unit.epoch + self.cfg.retry.max_age_s
        error = outcome.error
        if outcome.dead or now + wait > deadline:
            why = "the receiver refused it" if outcome.dead else \
                f"undelivered for {now - unit.epoch:.0f} s (retry.max_age {self.cfg.retry.max_age_s:g} s)"
            self._count("dead_lettered")
            self._problems.report(
                "dead_letter", f"{unit.msg_id} is a dead letter after {attempts} attempt(s), {why}: {error}",
                "fix the receiver, then `callcause outbox retry`", level=logging.ERROR, count=False)
            return Change(unit.seqs, msg_id=unit.msg_id, attempts=attempts, next_at=now, error=error, dead=True)
        self._count("retried")
        self._problems.report(outcome.kind, f"delivery of {unit.msg_id} failed ({error}); retrying in {wait:.3g} s",
                              outcome.todo, count=False)
        return Change(unit.seqs, msg_id=unit.msg_id, attempts=attempts, next_at=now + wait, error=error)
