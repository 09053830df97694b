"""Usage reports: /api/v1/usage for the caller, /api/v1/admin/usage for staff (everyone or one user;
a manager their clients). AI calls grouped by day, model, key or provider (calls, tokens, credits —
the credits exactly what the ledger charged), every single call, and the desktop path's proxy
sessions per access token and day; as JSON, or as CSV or JSON Lines streamed row by row."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

import ledger
from gateway.accounts import directory, session_usage
from gateway.ai import usage_report
from gateway.api.web_auth import current_user, now, require_role
from gateway.core import exports
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from gateway.core.errors import BadRequest, Unprocessable
from gateway.core.json_body import json_response
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only, query_choice, query_day, query_id

FORMATS = ("json", *exports.FORMATS)
DEFAULT_DAYS, DAYS_MAX = 30, 366
# A JSON answer holds at most this many rows; beyond, the export formats stream them all.
JSON_ROWS_MAX = 10_000
MEASURES = ("calls", "input_tokens", "cached_input_tokens", "output_tokens")
GROUP_FIELDS = {"day": ("day",), "model": ("provider", "model"), "provider": ("provider",),
                "key": ("key_id", "user_id", "key_prefix", "key_name")}
CALL_FIELDS = ("id", "created_at", "request_id", "user_id", "key_id", "provider", "model", "input_tokens",
               "cached_input_tokens", "output_tokens", "credits", "credits_micro", "outcome", "stream",
               "usage_source", "latency_ms")
SESSION_FIELDS = ("day", "token_id", "user_id", "sessions", "devices", "requests", "bytes_in", "bytes_out")
Row = dict[str, Any]


def _span(request: web.Request, user_id: int | None) -> usage_report.Span:
    """from..to, whole UTC days (to included); by default the last DEFAULT_DAYS days up to today."""
    today = now(request).date()
    end = query_day(request, "to") or today
    try:  # the default start before 0001-01-01, or the end of 9999-12-31, is past what a date holds
        start = query_day(request, "from") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        if not 0 <= (end - start).days < DAYS_MAX:
            raise BadRequest(f"from..to must run forward and span at most {DAYS_MAX} days", code="invalid_query")
        midnight = dt.datetime.combine(start, dt.time(), dt.timezone.utc)
        return usage_report.Span(midnight, midnight + dt.timedelta(days=(end - start).days + 1), user_id)
    except OverflowError as error:
        raise BadRequest("from..to must lie between 0001-01-01 and 9999-12-30", code="invalid_query") from error


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def _group_row(grouping: str) -> Callable[[Any], Row]:
    def convert(record: Any) -> Row:
        row = {name: _plain(record[name]) for name in GROUP_FIELDS[grouping]}
        row.update({name: record[name] for name in MEASURES})
        row.update(credits=ledger.format_micro(record["charged_micro"]), credits_micro=record["charged_micro"])
        return row
    return convert


def _call_row(record: Any) -> Row:
    row = {name: _plain(record[name]) for name in CALL_FIELDS if name in record.keys()}
    row.update(key_id=record["api_key_id"], credits=ledger.format_micro(record["charged_micro"]),
               credits_micro=record["charged_micro"])
    return {name: row[name] for name in CALL_FIELDS}


def _session_row(record: Any) -> Row:
    return {name: _plain(record[name]) for name in SESSION_FIELDS}


async def _answer(request: web.Request, statement: str, arguments: list[object], fields: tuple[str, ...],
                  convert: Callable[[Any], Row], meta: Row, export_format: str) -> web.StreamResponse:
    """JSON (with totals of the measures) or a streamed export of the statement's rows, read from the
    replica when there is one (decision 0024): the caller and their scope were checked on the primary."""
    database = request.app[REPORTS_DATABASE]
    if export_format == "json":
        records = await database.fetch(f"{statement} LIMIT {JSON_ROWS_MAX + 1}", *arguments)
        if len(records) > JSON_ROWS_MAX:
            raise Unprocessable(f"more than {JSON_ROWS_MAX} rows: ask for format=csv or jsonl, or a shorter range",
                                code="report_too_large")
        items = [convert(record) for record in records]
        totals = {name: sum(item[name] for item in items) for name in fields
                  if name in (*MEASURES, "credits_micro", "sessions", "requests", "bytes_in", "bytes_out")}
        if "credits_micro" in totals:
            totals["credits"] = ledger.format_micro(totals["credits_micro"])
        return json_response({**meta, "items": items, "totals": totals})
    rows = (convert(record) async for record in usage_report.stream(database, statement, arguments))
    response = await exports.start(request, export_format, f"{meta['report']}-{meta['from']}-{meta['to']}")
    if export_format == "csv":
        await exports.write_csv(response, fields, _cells(rows, fields))
    else:
        await exports.write_jsonl(response, rows)
    return response


def _text(value: object) -> str:
    """A CSV cell: free text defused, true/false as in JSON, no value empty."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return exports.cell(value)
    return "" if value is None else str(value)


async def _cells(rows: AsyncIterator[Row], fields: tuple[str, ...]) -> AsyncIterator[list[str]]:
    async for row in rows:
        yield [_text(row[name]) for name in fields]


async def _report(request: web.Request, kind: str, scope: int | None, user_id: int | None) -> web.StreamResponse:
    span = _span(request, user_id)
    export_format = query_choice(request, "format", FORMATS) or "json"
    meta: Row = {"report": kind, "from": span.start.date().isoformat(),
                 "to": (span.end - dt.timedelta(days=1)).date().isoformat(), "user_id": user_id}
    if kind == "calls":
        statement, arguments = usage_report.calls_statement(scope, span)
        return await _answer(request, statement, arguments, CALL_FIELDS, _call_row, meta, export_format)
    if kind == "sessions":
        statement, arguments = session_usage.statement(scope, span.start, span.end, user_id)
        return await _answer(request, statement, arguments, SESSION_FIELDS, _session_row, meta, export_format)
    grouping = query_choice(request, "group_by", tuple(usage_report.GROUPINGS)) or "day"
    statement, arguments = usage_report.grouped_statement(grouping, scope, span)
    fields = (*GROUP_FIELDS[grouping], *MEASURES, "credits", "credits_micro")
    return await _answer(request, statement, arguments, fields, _group_row(grouping),
                         {**meta, "group_by": grouping}, export_format)


def _mine(kind: str, parameters: tuple[str, ...]):
    async def handler(request: web.Request) -> web.StreamResponse:
        """The caller's own usage."""
        request[CALL].route = "usage"
        user = await current_user(request)
        allow_only(request, *parameters)
        return await _report(request, kind, None, user.id)
    return handler


def _staff(kind: str, parameters: tuple[str, ...]):
    async def handler(request: web.Request) -> web.StreamResponse:
        """Everyone's usage (admins), their clients' (managers), or one user's in the actor's scope."""
        request[CALL].route = "admin"
        actor = await require_role(request, "admin", "manager")
        allow_only(request, "user", *parameters)
        scope = directory.scope_of(actor)
        user_id = query_id(request, "user")
        if user_id is not None:
            await directory.get_user(request.app[DATABASE], scope, user_id)
        return await _report(request, kind, scope, user_id)
    return handler


def add_routes(app: web.Application) -> None:
    span = ("from", "to", "format")
    for prefix, make in (("/api/v1/usage", _mine), ("/api/v1/admin/usage", _staff)):
        app.router.add_get(prefix, make("ai", (*span, "group_by")))
        app.router.add_get(f"{prefix}/calls", make("calls", span))
        app.router.add_get(f"{prefix}/sessions", make("sessions", span))
