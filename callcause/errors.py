"""Errors a user sees: each says what happened, where, and what to do about it."""

from __future__ import annotations


class CallcauseError(Exception):
    """Base of every error callcause raises on purpose."""


class ConfigError(CallcauseError):
    """A config or overrides file is wrong; start-up (or a reload) stops with this message.

    `file`, `line` and `key` locate the problem, `fix` tells the user what to write instead.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        head = f"{where}: " if where else ""
        key = f"{self.key}: " if self.key else ""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{head}{key}{self.message}{fix}"


class NotationError(CallcauseError):
    """Text that is not any notation of a SIP code, Q.850 cause or PBX cause name.

    The message says what was understood and what was expected, on one line.
    """
