"""Proxy sessions: who uses the desktop path on which device, from where, how much — open ones by
default, newest first in keyset pages, within the actor's scope."""

from __future__ import annotations

from aiohttp import web

from admin_ui import pages
from gateway.accounts import directory
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from gateway.core.query_params import query_bool, query_id
from gateway.proxy import session_reports

PAGE_SIZE = 50


@pages.staff_page()
async def session_list(request: web.Request) -> web.Response:
    """GET /admin/sessions?open=true|false&user&before."""
    scope = pages.scope(request)
    user_id = query_id(request, "user")
    if user_id is not None:
        await directory.get_user(request.app[DATABASE], scope, user_id)  # the scope as it is now: the primary
    open_only = query_bool(request, "open") is not False
    rows = await session_reports.sessions(request.app[REPORTS_DATABASE], scope, open_only=open_only, user_id=user_id,
                                          before_id=query_id(request, "before"), limit=PAGE_SIZE + 1)
    query = {name: value for name, value in request.query.items() if name not in ("before", "notice")}
    return pages.render(request, "sessions.html", {
        "rows": rows[:PAGE_SIZE], "open_only": open_only, "user_id": user_id, "query": query,
        "first_page": "before" in request.query,
        "next_before": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None})
