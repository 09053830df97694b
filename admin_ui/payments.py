"""Payments: what each provider's checkouts became — staff see their scope's payments (a manager
their clients', an admin everyone's, guests' too), newest first in keyset pages, each with its
append-only history."""

from __future__ import annotations

from aiohttp import web

from admin_ui import pages
from gateway.accounts import directory
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE
from gateway.core.errors import NotFound
from gateway.core.json_body import database_id
from gateway.core.query_params import query_choice, query_id
from gateway.payments import store
from gateway.core.payment_settings import PROVIDERS

PAGE_SIZE = 50


@pages.staff_page()
async def payment_list(request: web.Request) -> web.Response:
    """GET /admin/payments?status&provider&user&before."""
    scope = pages.scope(request)
    user_id = query_id(request, "user")
    if user_id is not None:
        await directory.get_user(request.app[DATABASE], scope, user_id)  # 404 outside the scope
    rows = await store.staff_page(request.app[REPORTS_DATABASE], scope,
                                  status=query_choice(request, "status", store.STATUSES),
                                  provider=query_choice(request, "provider", PROVIDERS), user_id=user_id,
                                  before_id=query_id(request, "before"), limit=PAGE_SIZE + 1)
    query = {name: value for name, value in request.query.items() if name not in ("before", "notice")}
    return pages.render(request, "payments.html", {
        "rows": rows[:PAGE_SIZE], "statuses": store.STATUSES, "providers": PROVIDERS, "query": query,
        "first_page": "before" in request.query,
        "next_before": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None})


@pages.staff_page()
async def payment_page(request: web.Request) -> web.Response:
    """GET /admin/payments/{payment_id}: the payment and its history (404 outside the scope)."""
    database = request.app[REPORTS_DATABASE]
    payment = await store.staff_one(database, pages.scope(request), database_id(request.match_info["payment_id"]))
    if payment is None:
        raise NotFound("no such payment", code="payment_not_found")
    return pages.render(request, "payment.html", {
        "payment": payment, "history": await store.history(database, payment["id"])})
