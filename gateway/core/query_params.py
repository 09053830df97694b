"""Query strings of the JSON API: typed, bounded parameters; anything else is a 400 invalid_query."""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from gateway.core.errors import BadRequest
from gateway.core.json_body import BIGINT_MAX, database_id

LIMIT_DEFAULT, LIMIT_MAX = 50, 200
# Digits only: int() alone would also take "+5", " 5", "1_000" and other scripts' digits.
NUMBER = re.compile(r"^[0-9]{1,19}$")
DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _invalid(name: str, expected: str) -> BadRequest:
    return BadRequest(f"query parameter {name!r} must be {expected}", code="invalid_query")


def _query(request: web.Request, name: str) -> str | None:
    """The parameter's value; absent and empty are the same (an empty form field filters nothing)."""
    value = request.query.get(name, "")
    return value if value != "" else None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = _query(request, name)
    if raw is None:
        return default
    if not NUMBER.match(raw) or not low <= int(raw) <= high:
        raise _invalid(name, f"an integer within {low}..{high}")
    return int(raw)


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = _query(request, name)
    if raw is not None and raw not in choices:
        raise _invalid(name, "one of " + ", ".join(choices))
    return raw


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = query_choice(request, name, ("true", "false"))
    return None if raw is None else raw == "true"


def query_id(request: web.Request, name: str) -> int | None:
    raw = _query(request, name)
    if raw is None:
        return None
    number = database_id(raw) if NUMBER.match(raw) else None
    if number is None:
        raise _invalid(name, "a positive integer id")
    return number


def query_text(request: web.Request, name: str, length_max: int) -> str | None:
    raw = _query(request, name)
    if raw is not None and (len(raw) > length_max or "\x00" in raw):
        raise _invalid(name, f"text of at most {length_max} characters")
    return raw


def page(request: web.Request) -> tuple[int, int]:
    """(skip, limit) of a list: skip 0.. (bigint), limit 1..LIMIT_MAX, default LIMIT_DEFAULT."""
    return (query_int(request, "skip", 0, 0, BIGINT_MAX),
            query_int(request, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX))


def like_pattern(text: str) -> str:
    """An (I)LIKE pattern matching `text` anywhere, its own % _ and \\ taken literally (ESCAPE '\\')."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def query_day(request: web.Request, name: str) -> dt.date | None:
    """A UTC day, YYYY-MM-DD; absent or empty is None."""
    raw = _query(request, name)
    if raw is None:
        return None
    try:
        if not DAY.match(raw):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError as error:
        raise _invalid(name, "a date (YYYY-MM-DD)") from error


def allow_only(request: web.Request, *names: str) -> None:
    """Refuse a query parameter the route does not know: a filter that would be ignored silently
    (and answer everything) is a 400 instead."""
    unknown = sorted(set(request.query) - set(names))
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}; this route takes "
                         f"{', '.join(names) or 'none'}", code="unknown_query_parameter")
