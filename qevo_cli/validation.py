"""One way to validate: profiles (profile_schema.py) and search settings (config.py) are pydantic models, and
`as_qevo_error` words the first problem of either as one line naming the key."""
from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from .errors import QevoError
from .quantities import short as _short


def as_qevo_error(error: ValidationError, path: str | None) -> QevoError:
    """The first validation problem as one line: the key path and what was expected. Told apart by pydantic's
    error type and context, never by its English message."""
    problem = error.errors(include_url=False)[0]
    location = [_key_text(part) for part in problem["loc"]]
    kind = problem["type"]
    context = problem.get("ctx") or {}
    got = _short(problem.get("input"))
    if "[key]" in location:
        location.remove("[key]")
    if kind == "unknown_key":
        location.append(_key_text(context["key"]))
        close = difflib.get_close_matches(context["key"], context["known"].split(", "), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        message = f"unknown key{hint}, expected one of {context['known']}"
    elif kind == "schema_version":
        location = ["schema_version"]
        message = problem["msg"]   # our own PydanticCustomError's text
    elif kind == "value_error":    # our validators' ValueError: its text is the message
        message = str(context["error"])
    elif kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "missing, expected a value for this required key"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"got {got}, expected a mapping"
    elif kind == "list_type":
        message = f"got {got}, expected a list"
    elif kind == "literal_error":
        message = f"got {got}, expected {context['expected']}"
    elif kind == "string_pattern_mismatch":
        message = f"got {got}, expected text matching {context['pattern']}"
    elif kind in ("too_short", "too_long"):
        bound = context.get("min_length") if kind == "too_short" else context.get("max_length")
        message = f"expected {'at least' if kind == 'too_short' else 'at most'} {bound} item{'s' * (bound != 1)}"
    elif kind in ("bool_type", "bool_parsing"):
        message = f"got {got}, expected true or false"
    else:
        message = f"got {got}, not a valid value here ({kind})"
    field = ".".join(location) or None
    return QevoError(" ".join(message.split()), path=path, field=field)


def _key_text(part: Any) -> str:
    # Keys are shown bare unless they hold spaces or control characters, which would hide them.
    text = str(part)
    return text if text and text.isprintable() and " " not in text else repr(text)
