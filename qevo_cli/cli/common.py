"""What every command shares: error handling, consoles, JSON output."""
from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from ..errors import QevoError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2

out = Console()                      # tables and reports
err = Console(stderr=True)           # errors and progress, so stdout stays clean for --json


def handle_errors(func: F) -> F:
    """Turn a QevoError into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QevoError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def check_png(path, option: str) -> None:
    """A figure's output file must end in .png: the one line otherwise names it and the option."""
    if path is not None and path.suffix.lower() != ".png":
        raise QevoError(f"got {path.suffix or 'no suffix'}, expected a .png file", path=path, field=option)


def print_json(data: Any) -> None:
    """Write `data` as JSON to stdout and nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"cannot serialise {type(value).__name__}")
