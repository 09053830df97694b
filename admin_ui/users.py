"""Users: the change list (search by email, name or id; filters by role, plan and state; keyset
pages) and a user's page (profile, plan, balance, ledger entries, access tokens, API keys, proxy
sessions, and the actions staff may take)."""

from __future__ import annotations

import secrets

from aiohttp import web

import ledger
from admin_ui import pages
from gateway.accounts import directory, user_credentials, users
from gateway.payments import store as payment_store
from gateway.core.app_keys import DATABASE, REPORTS_DATABASE, SETTINGS
from gateway.core.json_body import database_id
from gateway.core.query_params import NUMBER, query_bool, query_choice, query_id, query_text
from gateway.proxy import session_reports

PAGE_SIZE = 50
SEARCH_MAX = 200


def filters_of(request: web.Request) -> directory.UserFilters:
    return directory.UserFilters(query_text(request, "search", SEARCH_MAX), query_choice(request, "role", users.ROLES),
                                 query_choice(request, "plan", users.PLANS), query_bool(request, "is_active"))


@pages.staff_page()
async def user_list(request: web.Request) -> web.Response:
    """GET /admin/users?search&role&plan&is_active&after."""
    filters = filters_of(request)
    after = query_id(request, "after")
    rows = await directory.find_users(request.app[REPORTS_DATABASE], pages.scope(request), filters, limit=PAGE_SIZE + 1,
                                      after_id=after)
    query = {name: value for name, value in request.query.items() if name not in ("after", "notice")}
    return pages.render(request, "users.html", {
        "rows": rows[:PAGE_SIZE], "filters": filters, "roles": users.ROLES, "plans": users.PLANS,
        "next_after": rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None, "query": query,
        "first_page": after is not None})


def path_id(request: web.Request, name: str) -> int | None:
    raw = request.match_info[name]
    return database_id(raw) if NUMBER.match(raw) else None


@pages.staff_page()
async def user_page(request: web.Request) -> web.Response:
    """GET /admin/users/{id}: 404 outside the actor's scope."""
    database, scope, at = request.app[DATABASE], pages.scope(request), pages.now(request)
    user = await directory.get_user(database, scope, path_id(request, "user_id"))
    balance = await ledger.balance(database, user["id"])
    entries = (await ledger.history.entries(database, balance.account_id, limit=20)
               if balance.account_id is not None else [])
    is_admin = pages.staff(request).role == "admin"
    return pages.render(request, "user.html", {
        "user": user, "balance": balance, "entries": entries, "at": at,
        "tokens": await user_credentials.tokens(database, user["id"], active_only=False, at=at, limit=50),
        "keys": await user_credentials.keys(database, user["id"]),
        "sessions": await session_reports.sessions(database, scope, open_only=False, user_id=user["id"],
                                                   before_id=None, limit=20),
        "payments": await payment_store.staff_page(database, scope, status=None, provider=None, user_id=user["id"],
                                                   before_id=None, limit=10),
        "managers": await directory.managers(database) if is_admin else [],
        "roles": users.ROLES, "plans": users.PLANS if is_admin else directory.MANAGER_PLANS,
        "is_admin": is_admin, "idempotency_key": secrets.token_urlsafe(16),
        "device_idle_s": request.app[SETTINGS].device_idle_s,
    })
