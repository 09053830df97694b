"""The audit log (admins): every action with its actor, target and address, newest first, filtered
by action, actor and target, in keyset pages."""

from __future__ import annotations

from aiohttp import web

from admin_ui import pages
from gateway.accounts import audit
from gateway.core.app_keys import REPORTS_DATABASE
from gateway.core.query_params import query_id, query_text

PAGE_SIZE = 50
TEXT_MAX = 200


@pages.staff_page("admin")
async def audit_log(request: web.Request) -> web.Response:
    """GET /admin/audit?action&actor&target_type&target_id&before."""
    filters = audit.Filters(query_text(request, "action", TEXT_MAX), query_id(request, "actor"),
                            query_text(request, "target_type", TEXT_MAX), query_text(request, "target_id", TEXT_MAX))
    rows = await audit.entries(request.app[REPORTS_DATABASE], filters, limit=PAGE_SIZE + 1,
                               before_id=query_id(request, "before"))
    query = {name: value for name, value in request.query.items() if name not in ("before", "notice")}
    return pages.render(request, "audit.html", {
        "rows": [{**dict(row), "details": audit.details_of(row)} for row in rows[:PAGE_SIZE]],
        "query": query, "first_page": "before" in request.query,
        "next_before": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None})
