"""Settings (admins): model prices (edited through the same rules as the JSON API), the access-token
prices and plan limits this gateway runs with (from its configuration, shown read-only), and the
token bundles (create, change, delete)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_ui import pages
from admin_ui.users import path_id
from gateway.accounts import access_tokens, bundles
from gateway.ai import price_table
from gateway.ai.providers import PROVIDERS
from gateway.ai.resources import AI
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.errors import BadRequest
from gateway.core.middleware import CALL

PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok")


@pages.staff_page("admin")
async def settings(request: web.Request) -> web.Response:
    """GET /admin/settings."""
    table = request.app[AI].prices
    await table.load()  # what is stored, not this worker's last refresh
    config = request.app[SETTINGS]
    return pages.render(request, "settings.html", {
        "prices": sorted(table.prices.values(), key=lambda p: (p.provider, p.model)), "providers": PROVIDERS,
        "token_prices": sorted(config.token_prices.items()), "plan_limits": sorted(config.plan_limits_per_min.items()),
        "bundles": await bundles.every(request.app[DATABASE]), "scopes": access_tokens.SCOPES})


@pages.staff_page("admin")
async def save_price(request: web.Request) -> web.Response:
    """POST /admin/settings/prices {model, provider, input_per_mtok, output_per_mtok, cached_input_per_mtok,
    max_output_tokens}."""
    fields = await pages.form(request)
    body: dict[str, Any] = {name: fields.get(name, "").strip() for name in PRICE_FIELDS}
    if fields.get("provider"):
        body["provider"] = fields["provider"]
    if fields.get("max_output_tokens", "").strip():
        body["max_output_tokens"] = _integer(fields, "max_output_tokens")
    table = request.app[AI].prices
    change = price_table.parse_change(fields.get("model", "").strip(), body, table)
    await price_table.save(request.app[DATABASE], table, change, actor_id=pages.staff(request).id,
                           ip=request[CALL].client_ip)
    return pages.redirect("/admin/settings", "price_saved")


def _integer(fields: dict[str, str], name: str) -> int:
    raw = fields.get(name, "").strip()
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"{name} must be a whole number", code="invalid_field")
    return int(raw)


def _bundle_body(fields: dict[str, str]) -> dict[str, Any]:
    """The bundle form as the JSON API's body (checked by the same rules)."""
    return {"name": fields.get("name", ""), "description": fields.get("description", ""),
            "token_count": _integer(fields, "token_count"), "duration_hours": _integer(fields, "duration_hours"),
            "scope": fields.get("scope", "full"), "price": fields.get("price", "").strip(),
            "is_active": fields.get("is_active") == "true"}


@pages.staff_page("admin")
async def create_bundle(request: web.Request) -> web.Response:
    """POST /admin/settings/bundles."""
    await bundles.create(request.app[DATABASE], _bundle_body(await pages.form(request)),
                         actor_id=pages.staff(request).id, ip=request[CALL].client_ip)
    return pages.redirect("/admin/settings", "bundle_saved")


@pages.staff_page("admin")
async def update_bundle(request: web.Request) -> web.Response:
    """POST /admin/settings/bundles/{id}."""
    await bundles.update(request.app[DATABASE], path_id(request, "bundle_id"),
                         _bundle_body(await pages.form(request)), actor_id=pages.staff(request).id,
                         ip=request[CALL].client_ip)
    return pages.redirect("/admin/settings", "bundle_saved")


@pages.staff_page("admin")
async def delete_bundle(request: web.Request) -> web.Response:
    """POST /admin/settings/bundles/{id}/delete."""
    await bundles.delete(request.app[DATABASE], path_id(request, "bundle_id"), actor_id=pages.staff(request).id,
                         ip=request[CALL].client_ip)
    return pages.redirect("/admin/settings", "bundle_deleted")
