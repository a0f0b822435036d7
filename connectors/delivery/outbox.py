"""The durable outbox of the networked sinks (SQLite, WAL): storage only, no wire and no terminal.

A record is accepted once its row is committed here; it leaves only when its endpoint answered
2xx (the row is deleted) or it became a dead letter, which the CLI can list, replay and purge.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from callcause.errors import CallcauseError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint   TEXT NOT NULL,               -- the sink's name
    record_id  TEXT NOT NULL,               -- message id of a single delivery
    event_time TEXT NOT NULL,               -- RFC 3339 time of the hangup (payload timestamp)
    data       BLOB NOT NULL,               -- the record document, JSON, as it will be signed
    accepted   REAL NOT NULL,               -- epoch seconds the row was committed
    epoch      REAL NOT NULL,               -- start of the current retry period (accepted or a replay)
    next_at    REAL NOT NULL,               -- not before this time
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    dead       INTEGER NOT NULL DEFAULT 0,  -- 1: dead letter, waits for `callcause outbox retry`
    batch      TEXT                         -- message id of the batch this row was sent in
);
-- each index serves one query of the dispatcher without reading the records themselves
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (endpoint, dead, next_at, batch);
CREATE INDEX IF NOT EXISTS outbox_unformed ON outbox (endpoint, seq) WHERE dead = 0 AND batch IS NULL;
CREATE INDEX IF NOT EXISTS outbox_batch ON outbox (endpoint, batch) WHERE batch IS NOT NULL;
"""


class OutboxError(CallcauseError):
    """The outbox cannot store or read records: unwritable path, disk full, corrupt file."""


def explain_sqlite_error(path: str, exc: BaseException) -> str:
    """One line saying what went wrong with the outbox file and what to do about it."""
    text = str(exc)
    low = text.lower()
    if "full" in low:
        todo = "free disk space on that file system (records are kept in memory and retried meanwhile)"
    elif "readonly" in low or "read-only" in low or "permission" in low or "unable to open" in low:
        todo = "make the file and its directory writable by the daemon's user, or set `outbox:` elsewhere"
    elif "locked" in low or "busy" in low:
        todo = "another process holds a long write lock on the outbox; stop it"
    elif "malformed" in low or "not a database" in low:
        todo = "move the damaged file aside (keep it for inspection) and restart"
    else:
        todo = "check the file, its directory and the disk"
    return f"outbox {path}: {text}; {todo}"


@dataclass(slots=True)
class Row:
    seq: int
    record_id: str
    event_time: str
    data: bytes
    accepted: float
    epoch: float
    attempts: int
    batch: str | None


@dataclass(slots=True)
class Change:
    """An outcome of a delivery to store: delivered rows leave, failed ones are rescheduled or
    become dead letters."""

    seqs: Sequence[int]
    msg_id: str = ""              # the message id the rows were sent under
    delivered: bool = False
    attempts: int = 0
    next_at: float = 0.0
    error: str | None = None
    dead: bool = False


SYNC_MODES = ("interval", "every_record")


class Outbox:
    """One SQLite outbox file, with two connections: one accepts records, one keeps the books of
    deliveries (deleting, rescheduling). Each connection stays on one thread.

    `sync="every_record"`: each accepted record is fsynced before `add` returns (survives a power
    cut; costs an fsync per record). `sync="interval"`: `add` commits without fsync, which survives
    a crash or `kill -9` of the daemon, and `sync_wal()` fsyncs the log a few times a second, so a
    power cut loses at most that interval. Bookkeeping never fsyncs: losing it only means a record
    is sent again, which at-least-once delivery allows.
    """

    def __init__(self, path: str | os.PathLike[str], sync: str = "every_record") -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}")
        self.path = str(path)
        self.sync = sync
        self._accept: sqlite3.Connection | None = None
        self._book: sqlite3.Connection | None = None
        self._aux: sqlite3.Connection | None = None

    # --- opening -------------------------------------------------------------------------

    def _connect(self, synchronous: str, autocheckpoint: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        if not autocheckpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def open(self) -> Outbox:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"outbox {self.path}: cannot create its directory: {exc.strerror}; "
                              "create it and make it writable by the daemon's user, "
                              "or set `outbox:` elsewhere") from None
        try:
            # every_record: SQLite checkpoints (copies the log into the database, with fsyncs)
            # after commits, on the outbox thread. interval: the commits run on the event loop,
            # so checkpoints are left to sync_wal() on the outbox thread.
            interval = self.sync == "interval"
            self._accept = self._connect("NORMAL" if interval else "FULL", autocheckpoint=not interval)
            mode = self._accept.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (got {mode})")
            self._accept.executescript(_SCHEMA)
            self._accept.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            # a write probe: a read-only file opens fine and fails only on the first record
            self._accept.execute("BEGIN IMMEDIATE")
            self._accept.execute("ROLLBACK")
            self._book = self._connect("NORMAL", autocheckpoint=not interval)
            self._aux = self._connect("NORMAL")      # checkpoints and counting, on the sink's thread
        except sqlite3.Error as exc:
            self.close()
            raise OutboxError(explain_sqlite_error(self.path, exc)) from None
        return self

    def sync_wal(self, checkpoint: bool = False) -> None:
        """Make every record accepted so far survive a power cut (`sync="interval"`)."""
        try:
            fd = os.open(self.path + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutboxError(explain_sqlite_error(self.path, exc)) from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise OutboxError(explain_sqlite_error(self.path, exc)) from None
        finally:
            os.close(fd)
        if checkpoint and self._aux is not None:
            try:
                self._aux.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                raise OutboxError(explain_sqlite_error(self.path, exc)) from None

    def close(self) -> None:
        for conn in (self._aux, self._book, self._accept):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._accept = self._book = self._aux = None

    @property
    def accept_conn(self) -> sqlite3.Connection:
        if self._accept is None:
            raise OutboxError(f"outbox {self.path} is not open")
        return self._accept

    @property
    def book_conn(self) -> sqlite3.Connection:
        if self._book is None:
            raise OutboxError(f"outbox {self.path} is not open")
        return self._book

    # --- accepting -----------------------------------------------------------------------

    def add(self, endpoint: str, record_id: str, event_time: str, data: bytes,
            now: float, next_at: float) -> None:
        """Commit one record for one endpoint. A record written twice is sent twice: receivers
        deduplicate by its id, as at-least-once delivery requires anyway."""
        self.add_many(endpoint, [(record_id, event_time, data)], now, next_at)

    def add_many(self, endpoint: str, rows: Sequence[tuple[str, str, bytes]], now: float,
                 next_at: float) -> None:
        """Commit several `(record_id, event_time, data)` rows in one transaction: all or none,
        so a retried group never duplicates part of itself, and one commit serves them all."""
        conn = self.accept_conn
        try:
            with _transaction(conn):
                conn.executemany(
                    "INSERT INTO outbox (endpoint, record_id, event_time, data, accepted, epoch,"
                    " next_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(endpoint, rid, etime, data, now, now, next_at) for rid, etime, data in rows])
        except sqlite3.Error as exc:
            raise OutboxError(explain_sqlite_error(self.path, exc)) from None

    def add_dead(self, endpoint: str, record_id: str, event_time: str, data: bytes, error: str,
                 now: float) -> None:
        """Commit a row that is a dead letter from the start (a record that cannot be sent)."""
        conn = self.accept_conn
        try:
            with _transaction(conn):
                conn.execute(
                    "INSERT INTO outbox (endpoint, record_id, event_time, data, accepted, epoch,"
                    " next_at, last_error, dead) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    (endpoint, record_id, event_time, data, now, now, now, error))
        except sqlite3.Error as exc:
            raise OutboxError(explain_sqlite_error(self.path, exc)) from None

    # --- delivering ----------------------------------------------------------------------

    def apply(self, changes: Iterable[Change]) -> None:
        """Store the outcomes of finished deliveries in one transaction."""
        conn = self.book_conn
        with _transaction(conn):
            _apply(conn, changes)

    def settle_and_pick(self, changes: Iterable[Change], endpoint: str, limit: int,
                        exclude: Collection[int] = ()) -> list[tuple[Row, float]]:
        """`apply(changes)`, then `waiting(endpoint, limit, exclude)`, in one transaction: the
        dispatcher's every turn is one lock and one commit instead of two."""
        conn = self.book_conn
        with _transaction(conn):
            _apply(conn, changes)
            return self.waiting(endpoint, limit, exclude) if limit > 0 else []

    def waiting(self, endpoint: str, limit: int, exclude: Collection[int] = ()) -> list[tuple[Row, float]]:
        """The rows that wait for `endpoint`, soonest first (due or not), with their `next_at`;
        `exclude` (rows being sent) is left out here, so their data is not read for nothing."""
        skip = f" AND seq NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        cur = self.book_conn.execute(
            "SELECT seq, record_id, event_time, data, accepted, epoch, attempts, batch, next_at"
            f" FROM outbox WHERE endpoint = ? AND dead = 0{skip} ORDER BY next_at, seq LIMIT ?",
            (endpoint, *exclude, limit))
        return [(_row(r), r[8]) for r in cur.fetchall()]

    def unformed(self, endpoint: str, limit: int) -> list[tuple[int, float, str]]:
        """(seq, next_at, record_id) of rows not yet in a batch, oldest first."""
        return self.book_conn.execute(
            "SELECT seq, next_at, record_id FROM outbox WHERE endpoint = ? AND dead = 0 AND batch IS NULL"
            " ORDER BY seq LIMIT ?", (endpoint, limit)).fetchall()

    def due_batches(self, endpoint: str, now: float, limit: int) -> list[str]:
        """Batches formed earlier whose retry is due, soonest first."""
        rows = self.book_conn.execute(
            "SELECT batch, MIN(next_at) AS at FROM outbox WHERE endpoint = ? AND dead = 0"
            " AND next_at <= ? AND batch IS NOT NULL GROUP BY batch ORDER BY at LIMIT ?",
            (endpoint, now, limit)).fetchall()
        return [r[0] for r in rows]

    def next_batch_retry(self, endpoint: str, now: float) -> float | None:
        return self.book_conn.execute(
            "SELECT MIN(next_at) FROM outbox WHERE endpoint = ? AND dead = 0 AND next_at > ?"
            " AND batch IS NOT NULL", (endpoint, now)).fetchone()[0]

    def batch_rows(self, endpoint: str, batch: str) -> list[Row]:
        cur = self.book_conn.execute(
            "SELECT seq, record_id, event_time, data, accepted, epoch, attempts, batch, next_at"
            " FROM outbox WHERE endpoint = ? AND batch = ? AND dead = 0 ORDER BY seq",
            (endpoint, batch))
        return [_row(r) for r in cur.fetchall()]

    def form_batch(self, endpoint: str, seqs: Sequence[int], batch: str, next_at: float) -> list[Row]:
        """Persist a batch's members, so its retries carry the same webhook-id and records."""
        conn = self.book_conn
        marks = ",".join("?" * len(seqs))
        with _transaction(conn):
            conn.execute(f"UPDATE outbox SET batch = ?, next_at = ? WHERE seq IN ({marks})",
                         (batch, next_at, *seqs))
        return self.batch_rows(endpoint, batch)

    def stats(self, endpoint: str) -> tuple[int, float | None]:
        """(rows waiting, `accepted` time of the oldest) for one endpoint; dead letters excluded.
        Counting reads the whole index: the sink calls it on its own thread, now and then."""
        conn = self._aux or self.book_conn
        count = conn.execute("SELECT COUNT(*) FROM outbox WHERE endpoint = ? AND dead = 0",
                             (endpoint,)).fetchone()[0]
        return int(count), self.oldest(endpoint, conn)

    def oldest(self, endpoint: str, conn: sqlite3.Connection | None = None) -> float | None:
        """Walks the table from its oldest row (no index: one less to update per record)."""
        row = (conn or self._aux or self.book_conn).execute(
            "SELECT accepted FROM outbox WHERE endpoint = ? AND dead = 0 ORDER BY seq LIMIT 1",
            (endpoint,)).fetchone()
        return row[0] if row else None

    # --- inspecting, replaying, cleaning (the CLI) ----------------------------------------

    def listing(self, *, dead_only: bool, endpoint: str | None, limit: int) -> list[tuple]:
        where, args = _filters(dead_only=dead_only, endpoint=endpoint)
        cur = self.book_conn.execute(
            "SELECT record_id, endpoint, dead, attempts, last_error, accepted, next_at, batch"
            f" FROM outbox {where} ORDER BY seq LIMIT ?", (*args, limit))
        return cur.fetchall()

    def counts(self) -> list[tuple[str, int, int]]:
        """(endpoint, waiting, dead) for every endpoint in the file."""
        return self.book_conn.execute(
            "SELECT endpoint, SUM(dead = 0), SUM(dead = 1) FROM outbox GROUP BY endpoint"
            " ORDER BY endpoint").fetchall()

    def retry_dead(self, *, endpoint: str | None, record_id: str | None, now: float) -> int:
        """Queue dead letters again, with a fresh retry period; returns how many."""
        where, args = _filters(dead_only=True, endpoint=endpoint, record_id=record_id)
        conn = self.accept_conn
        with _transaction(conn):
            return conn.execute(
                "UPDATE outbox SET dead = 0, attempts = 0, next_at = ?, epoch = ?,"
                f" last_error = NULL {where}", (now, now, *args)).rowcount

    def purge(self, *, dead_only: bool, endpoint: str | None, record_id: str | None) -> int:
        where, args = _filters(dead_only=dead_only, endpoint=endpoint, record_id=record_id)
        conn = self.accept_conn
        with _transaction(conn):
            return conn.execute(f"DELETE FROM outbox {where}", args).rowcount


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error; sqlite errors become `OutboxError`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            self.conn.execute("COMMIT")
            return False
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            path = self.conn.execute("PRAGMA database_list").fetchone()[2]
            raise OutboxError(explain_sqlite_error(path, exc)) from None
        return False


_DELETE_CHUNK = 500     # seqs per DELETE, well under SQLite's limit of bound parameters


def _apply(conn: sqlite3.Connection, changes: Iterable[Change]) -> None:
    """The statements of `Outbox.apply`, inside the caller's transaction: every delivered row
    leaves in one DELETE (most outcomes are deliveries), failures are updated change by change."""
    done: list[int] = []
    for ch in changes:
        if ch.delivered:
            done.extend(ch.seqs)
        else:
            marks = ",".join("?" * len(ch.seqs))
            conn.execute(
                f"UPDATE outbox SET attempts = ?, next_at = ?, last_error = ?, dead = ? WHERE seq IN ({marks})",
                (ch.attempts, ch.next_at, ch.error, 1 if ch.dead else 0, *ch.seqs))
    for i in range(0, len(done), _DELETE_CHUNK):
        chunk = done[i:i + _DELETE_CHUNK]
        conn.execute(f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk)


def _row(r: tuple) -> Row:
    return Row(seq=r[0], record_id=r[1], event_time=r[2], data=bytes(r[3]), accepted=r[4], epoch=r[5],
               attempts=r[6], batch=r[7])


def _filters(*, dead_only: bool, endpoint: str | None, record_id: str | None = None) -> tuple[str, tuple]:
    clauses, args = ["1 = 1"], []
    if dead_only:
        clauses.append("dead = 1")
    if endpoint is not None:
        clauses.append("endpoint = ?")
        args.append(endpoint)
    if record_id is not None:
        clauses.append("(record_id = ? OR batch = ?)")
        args.extend([record_id, record_id])
    return "WHERE " + " AND ".join(clauses), tuple(args)
