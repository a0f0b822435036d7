"""The log sink: one JSON line per record in a file, one readable line per record on stdout.

The records the pipeline hands over together are written with a single `write` of complete
lines (O_APPEND), so other processes appending never interleave with a line; a write cut short
(a full disk) is completed on the pipeline's retry, never repeated. The file is reopened on SIGHUP
(`reopen()`) and whenever logrotate moved or deleted it (its inode changed).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from callcause.config import Config, Section, parse_language
from callcause.pii import PiiPolicy, parse_pii
from callcause.pipeline import Sink
from callcause.record import CauseRecord


@dataclass(slots=True)
class LogConfig:
    path: str | None = None             # JSON Lines file; None = no file
    stdout: str = "text"                # text | json | off
    language: str | None = None         # None = the top-level language
    name: str = "log"
    kind: str = "log"
    pii: PiiPolicy | None = None        # None = numbers and URIs kept as the PBX sent them
    alerts: bool = True                 # also write trunk.alert events


def parse_config(sec: Section) -> LogConfig:
    if isinstance(sec.data.get("stdout"), bool):
        # YAML 1.1 reads a bare `off` as false (and `on` as true)
        stdout = "text" if sec.bool("stdout") else "off"
    else:
        stdout = sec.str("stdout", "text", choices=("text", "json", "off"))
    cfg = LogConfig(path=sec.str("path", None), stdout=stdout,
                    language=parse_language(sec, "language", None))
    cfg.name = sec.str("name", f"log:{cfg.path}" if cfg.path else "log:stdout")
    cfg.alerts = sec.bool("alerts", True)
    if sec.has("pii"):
        cfg.pii = parse_pii(sec.section("pii"))
    else:
        sec.section("pii")   # known key, nothing to apply
    if cfg.path is None and cfg.stdout == "off":
        raise sec.error("stdout", "this log sink writes nowhere (no path, stdout: off)",
                        fix="set `path:` or `stdout: text`")
    return cfg


def build(cfg: LogConfig, config: Config | None = None) -> LogSink:
    lang = cfg.language or (config.language if config is not None else "en")
    return LogSink(cfg, lang)


def text_line(doc: dict[str, Any]) -> str:
    """The human-readable line: when, who, what and why, in one line."""
    call, cause = doc["call"], doc["cause"]
    sip = doc.get("sip") or {}
    q850 = doc.get("q850") or {}
    codes = " ".join(x for x in (
        f"SIP {sip['code']}" if sip.get("code") else "",
        f"Q.850 {q850['cause']}" if q850.get("cause") is not None else "",
        f"dial {doc['pbx']['dial_status']}" if (doc.get("pbx") or {}).get("dial_status") else "",
    ) if x)
    parties = f"{call.get('from') or '?'} -> {call.get('to') or '?'}"
    flags = " (incomplete)" if doc.get("incomplete") else ""
    return (f"{doc['time']} {doc['source']['name']} {call.get('channel') or call['leg_id']} "
            f"{parties} {cause['category']}/{cause['severity']} by {cause['hangup_source']}"
            f"{' [' + codes + ']' if codes else ''}: {cause['summary']}{flags}")


def json_line(doc: dict[str, Any]) -> bytes:
    """One compact UTF-8 JSON line. orjson renders a record in about a third of the standard
    library's time; what it refuses (an integer beyond 64 bits) goes through `json`, which either
    renders it or raises the error that sets the record aside."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:   # orjson.JSONEncodeError is a TypeError
        return (json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class LogSink(Sink):
    """A Sink (callcause.pipeline): `start`, `write(record)`, `close`, plus `reopen()`."""

    def __init__(self, cfg: LogConfig, lang: str, stdout: TextIO | None = None, *,
                 reader_may_leave: bool = False) -> None:
        self.cfg = cfg
        # Command-line use (`callcause replay | head`): a closed stdout means the reader is done,
        # so stop writing there instead of failing (the daemon retries, as for any sink).
        self.reader_may_leave = reader_may_leave
        self.reader_gone = False
        self.ready = True                 # for /readyz: False while its writes fail (disk full)
        self.name = cfg.name
        self.lang = lang
        self.stdout = stdout
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._reopen_wanted = False
        self._resume: tuple[Any, memoryview] | None = None   # see _emit

    async def start(self) -> None:
        if self.cfg.path:
            self._open()

    def _open(self) -> None:
        path = self.cfg.path
        assert path is not None
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        # O_APPEND: every write lands at the end as one unit, even with other writers
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(fd)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)

    def reopen(self) -> None:
        """Reopen the file at the next write (SIGHUP); safe to call from a signal handler."""
        self._reopen_wanted = True

    def _moved(self) -> bool:
        try:
            st = os.stat(self.cfg.path)  # type: ignore[arg-type]
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    async def write(self, record: CauseRecord) -> None:
        await self.write_many([record])

    async def write_many(self, records: Sequence[CauseRecord]) -> None:
        """A group of records, all or none, with one `write` for the file: every system call
        lets go of the GIL, and the FreeSWITCH reader waiting for it then takes it, so a call
        per record cost a thread switch per record."""
        docs = [record.document(self.lang) for record in records]
        if self.cfg.pii is not None:
            docs = [self.cfg.pii.apply(doc) for doc in docs]
        key = (len(records), records[0].id, records[-1].id) if records else None
        self._emit(key, docs, text_line)

    @property
    def wants_alerts(self) -> bool:
        return self.cfg.alerts

    async def write_alerts(self, events: Sequence[Any]) -> None:
        """trunk.alert events (callcause.trunks.alerts.AlertEvent): in the file as the webhook
        body (`{"type": "trunk.alert", "timestamp", "data"}`), on stdout as one line."""
        for event in events:
            self._emit(None, [event.document(self.lang)], lambda _doc, e=event: e.text_line(self.lang))

    def _emit(self, key: Any, docs: list[dict[str, Any]], as_text: Callable[[dict[str, Any]], str]) -> None:
        """Write `docs`; `ready` (for `/readyz`) says whether the last write went through."""
        try:
            self._write_out(key, docs, as_text)
        except Exception:
            self.ready = False
            raise
        self.ready = True

    def _write_out(self, key: Any, docs: list[dict[str, Any]], as_text: Callable[[dict[str, Any]], str]) -> None:
        """A write that fails part way (a full disk) leaves the rest of the group's bytes in
        `_resume`: the pipeline's retry of the same group (`key`) writes only those, so no line
        is written twice."""
        if self.cfg.path:
            if key is not None and self._resume is not None and self._resume[0] == key:
                view = self._resume[1]
            else:
                # rendered before anything is written: a record that cannot be rendered fails the
                # group with nothing written
                view = memoryview(b"".join([json_line(doc) for doc in docs]))
                if self._fd is None or self._reopen_wanted or self._moved():
                    self._reopen_wanted = False
                    self._open()
            while view:                      # a regular file takes it in one go; be sure
                self._resume = (key, view)
                written = os.write(self._fd, view)  # type: ignore[arg-type]
                view = view[written:]
            self._resume = (key, view)       # the file has all of it, should stdout fail now
        if self.cfg.stdout != "off" and not self.reader_gone:
            out = self.stdout or sys.stdout
            try:
                for doc in docs:
                    out.write((as_text(doc) if self.cfg.stdout == "text" else json.dumps(doc, ensure_ascii=False))
                              + "\n")
                out.flush()
            except BrokenPipeError:
                if not self.reader_may_leave:
                    raise
                self.reader_gone = True
        self._resume = None

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
