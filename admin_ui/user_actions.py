"""Actions on a user, as POSTs from their page: top up or deduct (with a reason and an idempotency
key), suspend / activate, change role, plan or manager, erase; revoke an access token or API key;
release a token's device binding. Each goes through the same function as the JSON API (rules,
manager scope, audit entry with actor, target and address) and then back to the user's page."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_ui import pages
from admin_ui.users import path_id
from gateway.accounts import adjustments, directory, erasure, user_credentials
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import DATABASE, REDIS
from gateway.core.errors import BadRequest
from gateway.core.json_body import CONTROL_CHARACTERS, database_id
from gateway.core.middleware import CALL
from gateway.proxy import session_reports

KEY_MAX = 64


def _user_page(user_id: int, notice: str) -> web.Response:
    return pages.redirect(f"/admin/users/{user_id}", notice)


def _text(fields: dict[str, str], name: str) -> str:
    value = fields.get(name, "")
    if CONTROL_CHARACTERS.search(value):
        raise BadRequest(f"{name} contains a control character", code="invalid_field")
    return value


@pages.staff_page("admin")
async def adjust(request: web.Request) -> web.Response:
    """POST /admin/users/{id}/adjust {credits, reason, idempotency_key}: a double submit moves money once."""
    fields = await pages.form(request)
    database = request.app[DATABASE]
    user = await directory.get_user(database, pages.scope(request), path_id(request, "user_id"))
    amount, reason = adjustments.parse_adjustment({"credits": _text(fields, "credits").strip(),
                                                   "reason": _text(fields, "reason")})
    key = _text(fields, "idempotency_key")
    if not 16 <= len(key) <= KEY_MAX or not key.replace("-", "").replace("_", "").isalnum():
        raise BadRequest("the form has no valid idempotency key; reload the page", code="invalid_idempotency_key")
    await adjustments.adjust_credits(database, user_id=user["id"], amount_micro=amount, reason=reason,
                                     key="ui:" + key, actor_id=pages.staff(request).id, now=pages.now(request),
                                     ip=request[CALL].client_ip)
    return _user_page(user["id"], "adjusted")


def _patch(fields: dict[str, str]) -> dict[str, Any]:
    """The form's one change as the JSON API's patch: is_active, role, plan or manager_id."""
    patch: dict[str, Any] = {}
    if "is_active" in fields:
        if fields["is_active"] not in ("true", "false"):
            raise BadRequest("is_active must be true or false", code="invalid_field")
        patch["is_active"] = fields["is_active"] == "true"
    for name in ("role", "plan"):
        if name in fields:
            patch[name] = fields[name]
    if "manager_id" in fields:
        raw = fields["manager_id"].strip()
        patch["manager_id"] = None if raw == "" else database_id(raw) if raw.isdigit() else -1
        if patch["manager_id"] == -1:
            raise BadRequest("manager_id must be a user id or empty", code="invalid_field")
    return directory.parse_patch(patch)


@pages.staff_page()
async def update(request: web.Request) -> web.Response:
    """POST /admin/users/{id}/update {is_active | role | plan | manager_id}."""
    patch = _patch({name: value for name, value in (await pages.form(request)).items() if name != "csrf_token"})
    row = await directory.update_user(request.app[DATABASE], request.app[CREDENTIAL_OUTBOX],
                                      actor=pages.staff(request), user_id=path_id(request, "user_id"),
                                      patch=patch, ip=request[CALL].client_ip)
    return _user_page(row["id"], "updated")


@pages.staff_page("admin")
async def erase(request: web.Request) -> web.Response:
    """POST /admin/users/{id}/erase {confirm: the user's email}."""
    fields = await pages.form(request)
    database = request.app[DATABASE]
    user = await directory.get_user(database, pages.scope(request), path_id(request, "user_id"))
    if fields.get("confirm", "").strip().lower() != user["email"].lower():
        raise BadRequest("type the user's email to confirm the erasure", code="confirmation_mismatch")
    await erasure.erase(database, request.app[REDIS], request.app[CREDENTIAL_OUTBOX], actor=pages.staff(request),
                        user_id=user["id"], at=pages.now(request), ip=request[CALL].client_ip)
    return _user_page(user["id"], "erased")


ACTIONS = (adjust, update, erase)


@pages.staff_page()
async def revoke_token(request: web.Request) -> web.Response:
    """POST /admin/tokens/{id}/revoke: at once, without a refund."""
    revoked = await user_credentials.force_revoke_token(
        request.app[DATABASE], request.app[CREDENTIAL_OUTBOX], actor=pages.staff(request),
        token_id=path_id(request, "token_id"), at=pages.now(request), ip=request[CALL].client_ip)
    return _user_page(revoked.user_id, "token_revoked")


@pages.staff_page()
async def revoke_key(request: web.Request) -> web.Response:
    """POST /admin/keys/{id}/revoke."""
    owner = await user_credentials.revoke_key(
        request.app[DATABASE], request.app[CREDENTIAL_OUTBOX], actor=pages.staff(request),
        key_id=path_id(request, "key_id"), at=pages.now(request), ip=request[CALL].client_ip)
    return _user_page(owner, "key_revoked")


@pages.staff_page()
async def release_device(request: web.Request) -> web.Response:
    """POST /admin/tokens/{id}/release: the token's device binding is freed for another device."""
    owner = await session_reports.release(
        request.app[DATABASE], request.app[REDIS], actor=pages.staff(request),
        token_id=path_id(request, "token_id"), at=pages.now(request), ip=request[CALL].client_ip)
    return _user_page(owner, "released")
