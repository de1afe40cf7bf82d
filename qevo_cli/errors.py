"""The one exception type qevo raises for problems the user can fix.

The CLI turns a `QevoError` into a single line on stderr and exit code 2; library
users catch it like any other exception.
"""
from __future__ import annotations

from pathlib import Path


class QevoError(Exception):
    """A problem with the user's input: a file, a field in it, or a setting."""

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None):
        self.message = message   # the problem alone; path and field are kept apart, not parsed back out
        self.path = str(path) if path is not None else None
        self.field = field
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(field)
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def at(self, path: str | Path | None = None, field: str | None = None) -> "QevoError":
        """The same problem located in `path` (the file it came from) and under `field` (a key holding it)."""
        inner = self.field if field is None else f"{field}.{self.field}" if self.field else field
        return QevoError(self.message, path=path if path is not None else self.path, field=inner)


def first_line(err: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message, for one-line reports (default: the exception's type name)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else (type(err).__name__ if default is None else default)
