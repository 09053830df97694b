"""The ledger explorer: transfers filtered by user, type and date range, newest first in keyset
pages; and the same selection as CSV, streamed row by row from a database cursor."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

from aiohttp import web

import ledger
from admin_ui import pages
from gateway.accounts import directory, ledger_entries
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from gateway.core import exports
from gateway.core.errors import BadRequest
from gateway.core.query_params import NUMBER, query_choice, query_id

PAGE_SIZE = 50
CSV_COLUMNS = ("id", "created_at", "type", "phase", "amount", "from_account", "to_account", "user_id",
               "user_email", "description")


async def filters_of(request: web.Request) -> ledger_entries.Filters:
    """The filters of the query string; a user outside the actor's scope is a 404."""
    user_id = query_id(request, "user")
    if user_id is not None:
        await directory.get_user(request.app[DATABASE], pages.scope(request), user_id)
    start, end = pages.query_day(request, "from"), pages.query_day(request, "to")
    if end == dt.date.max:  # the filter ends the day after `to`, which no date holds
        raise BadRequest("query parameter 'to' must be before 9999-12-31", code="invalid_query")
    return ledger_entries.Filters(user_id, query_choice(request, "type", ledger.KINDS),
                                  pages.midnight(start) if start else None,
                                  pages.midnight(end + dt.timedelta(days=1)) if end else None)


def _cursor(request: web.Request) -> ledger_entries.Cursor | None:
    raw = request.query.get("before", "")
    if not raw:
        return None
    stamp, _, number = raw.rpartition("_")
    try:
        return ledger_entries.Cursor(dt.datetime.fromisoformat(stamp), int(number)) if NUMBER.match(number) else None
    except ValueError as error:
        raise BadRequest("query parameter 'before' is not a page cursor", code="invalid_query") from error


@pages.staff_page()
async def explorer(request: web.Request) -> web.Response:
    """GET /admin/ledger?user&type&from&to&before."""
    filters = await filters_of(request)
    rows = await ledger_entries.page(request.app[REPORTS_DATABASE], pages.scope(request), filters,
                                     cursor=_cursor(request), limit=PAGE_SIZE + 1)
    last = rows[PAGE_SIZE - 1] if len(rows) > PAGE_SIZE else None
    query = {name: value for name, value in request.query.items() if name not in ("before", "notice")}
    return pages.render(request, "ledger.html", {
        "rows": rows[:PAGE_SIZE], "kinds": ledger.KINDS, "query": query, "first_page": "before" in request.query,
        "next_before": f"{last['created_at'].isoformat()}_{last['id']}" if last else None})


def _csv_row(row) -> list[str]:
    return [str(row["id"]), row["created_at"].isoformat(), row["kind"], row["phase"],
            ledger.format_micro(row["amount_micro"]), f"{row['debit_code']}:{row['debit_account_id']}",
            f"{row['credit_code']}:{row['credit_account_id']}", str(row["user_id"] or ""),
            exports.cell(row["email"]), exports.cell(row["description"])]


async def _csv_rows(request: web.Request, filters: ledger_entries.Filters) -> AsyncIterator[list[str]]:
    async for row in ledger_entries.stream(request.app[REPORTS_DATABASE], pages.scope(request), filters):
        yield _csv_row(row)


@pages.staff_page()
async def export(request: web.Request) -> web.StreamResponse:
    """GET /admin/ledger.csv?user&type&from&to: every match, streamed in chunks as it is read."""
    filters = await filters_of(request)
    response = await exports.start(request, "csv", f"ledger-{pages.now(request):%Y%m%dT%H%M%SZ}",
                                   pages.SECURITY_HEADERS)
    await exports.write_csv(response, CSV_COLUMNS, _csv_rows(request, filters))
    return response
