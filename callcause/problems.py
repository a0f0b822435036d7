"""One clear, rate-limited log line per kind of problem, and a count of every occurrence.

A flood of garbage on a socket must not flood the log: the first occurrence of a kind is
logged at once, later ones at most every `interval` seconds with how many were suppressed;
every occurrence is counted in `callcause_malformed_input_total`.
"""

from __future__ import annotations

import logging
import time

from callcause import metrics

log = logging.getLogger("callcause")


class ProblemLog:
    def __init__(self, where: str, interval: float = 60.0) -> None:
        self.where = where              # e.g. "source pbx-eu-1 (127.0.0.1:5038)"
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, kind: str, what: str, todo: str = "", *, level: int = logging.WARNING,
               count: bool = True, source: str | None = None) -> None:
        """Count one problem of `kind`; log it unless the same kind was logged recently."""
        if count:
            metrics.MALFORMED.labels(source=source or self.where, kind=kind).inc()
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        suppressed = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        more = f" ({suppressed} more of this kind since the last report)" if suppressed else ""
        hint = f"; {todo}" if todo else ""
        log.log(level, "%s: %s: %s%s%s", self.where, kind, what, hint, more)
