"""The admin UI's routes under /admin/, its templates (Jinja2, autoescaped) and its static files;
mounted by gateway/app.py only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

import ledger
from admin_ui import (ai_usage, audit_page, dashboard, ledger_pages, login, pages, payments, proxy_sessions,
                      settings_pages, traffic, user_actions, users)
from gateway.core.app_keys import ERROR_SHAPE_PREFIXES

HERE = Path(__file__).parent


def _credits(micro: int | None) -> str:
    return "" if micro is None else ledger.format_micro(int(micro))


def _when(value: dt.datetime | None) -> str:
    return "" if value is None else value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def environment(app: web.Application) -> jinja2.Environment:
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    env.filters.update(credits=_credits, when=_when)
    return env


async def _to_dashboard(request: web.Request) -> web.Response:
    pages.admit(request)
    return web.Response(status=301, headers={"Location": "/admin/"})


def add_routes(app: web.Application) -> None:
    """Registered by gateway.app.create_app."""
    environment(app)
    app[ERROR_SHAPE_PREFIXES].append(("/admin", "page"))
    app.cleanup_ctx.append(traffic.traffic_ctx)
    app.on_response_prepare.append(pages.isolate)
    router = app.router
    router.add_static("/admin/static/", HERE / "static", append_version=False)
    router.add_get("/admin", _to_dashboard)
    router.add_get("/admin/login", login.login_page)
    router.add_post("/admin/login", login.log_in)
    router.add_post("/admin/logout", login.log_out)
    router.add_get("/admin/", dashboard.dashboard)
    router.add_get("/admin/users", users.user_list)
    router.add_get("/admin/users/{user_id}", users.user_page)
    for action in user_actions.ACTIONS:
        router.add_post(f"/admin/users/{{user_id}}/{action.__name__.replace('_', '-')}", action)
    router.add_post("/admin/tokens/{token_id}/revoke", user_actions.revoke_token)
    router.add_post("/admin/keys/{key_id}/revoke", user_actions.revoke_key)
    router.add_post("/admin/tokens/{token_id}/release", user_actions.release_device)
    router.add_get("/admin/ledger", ledger_pages.explorer)
    router.add_get("/admin/ledger.csv", ledger_pages.export)
    router.add_get("/admin/audit", audit_page.audit_log)
    router.add_get("/admin/ai-usage", ai_usage.report)
    router.add_get("/admin/sessions", proxy_sessions.session_list)
    router.add_get("/admin/payments", payments.payment_list)
    router.add_get("/admin/payments/{payment_id}", payments.payment_page)
    router.add_get("/admin/settings", settings_pages.settings)
    router.add_post("/admin/settings/prices", settings_pages.save_price)
    router.add_post("/admin/settings/bundles", settings_pages.create_bundle)
    router.add_post("/admin/settings/bundles/{bundle_id}", settings_pages.update_bundle)
    router.add_post("/admin/settings/bundles/{bundle_id}/delete", settings_pages.delete_bundle)
