"""/api/v1/keys: a user's API keys for the AI routes — create (shown once), list with the spend of
their budgets, change (PATCH), rotate, revoke. Changes reach the hot path on the key's next request:
the database queues the cache refresh with the change (migration 0013) and the handler pushes it."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any

from aiohttp import web

from gateway.accounts import api_keys, audit, budgets
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.api.web_auth import current_user, now
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only

FIELDS = ("name", "allowed_models", "ip_allowlist", "rpm_limit", "tpm_limit", "expires_in_hours", "expires_at",
          "budget")
LIST_MAX, NAME_MAX, MODEL_MAX, LIMIT_MAX, HOURS_MAX = 100, 100, 200, 10_000_000, 24 * 3660
SELECT_MINE = """
SELECT id, prefix, name, allowed_models, ip_allowlist::text[] AS ip_allowlist, rpm_limit, tpm_limit,
       created_at, expires_at, revoked_at, rotated_at, previous_expires_at
FROM api_keys WHERE user_id = $1 AND ($2::bigint IS NULL OR id = $2) ORDER BY id DESC"""


def _strings(body: dict, name: str, max_length: int) -> list[str]:
    values = field(body, name, list, required=False, default=[])
    if len(values) > LIST_MAX or not all(isinstance(v, str) and 0 < len(v) <= max_length for v in values):
        raise BadRequest(f"{name}: up to {LIST_MAX} non-empty strings", code="invalid_field")
    return list(dict.fromkeys(values))


def _networks(body: dict) -> list[str]:
    networks = []
    for value in _strings(body, "ip_allowlist", 64):
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError as error:
            raise BadRequest(f"ip_allowlist: {value!r} is not an IP address or CIDR block",
                             code="invalid_field") from error
    return networks


def _limit(body: dict, name: str) -> int:
    value = field(body, name, int, required=False, default=0)
    if not 0 <= value <= LIMIT_MAX:
        raise BadRequest(f"{name}: 0 (none) to {LIMIT_MAX}", code="invalid_field")
    return value


def _expiry(body: dict, when: dt.datetime) -> dt.datetime | None:
    """expires_in_hours (1..HOURS_MAX) or expires_at (ISO 8601 with an offset, in the future); null = never."""
    if "expires_in_hours" in body and "expires_at" in body:
        raise BadRequest("give expires_in_hours or expires_at, not both", code="invalid_field")
    if "expires_at" in body:
        raw = field(body, "expires_at", str, required=False)
        if raw is None:
            return None
        try:
            at = dt.datetime.fromisoformat(raw)
        except ValueError as error:
            raise BadRequest("expires_at: an ISO 8601 date and time", code="invalid_field") from error
        if at.tzinfo is None or not when < at <= when + dt.timedelta(hours=HOURS_MAX):
            raise BadRequest("expires_at: a future time with its UTC offset", code="invalid_field")
        return at
    hours = field(body, "expires_in_hours", int, required=False)
    if hours is not None and not 1 <= hours <= HOURS_MAX:
        raise BadRequest(f"expires_in_hours: 1 to {HOURS_MAX}, or null for none", code="invalid_field")
    return when + dt.timedelta(hours=hours) if hours else None


def _settings(body: dict, when: dt.datetime) -> dict[str, Any]:
    """The key settings the body names (a PATCH changes only those), validated."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    settings: dict[str, Any] = {}
    if "name" in body:
        settings["name"] = (field(body, "name", str, required=False) or "").strip()
        if len(str(settings["name"])) > NAME_MAX:
            raise BadRequest(f"name: up to {NAME_MAX} characters", code="invalid_field")
    if "allowed_models" in body:
        settings["allowed_models"] = _strings(body, "allowed_models", MODEL_MAX)
    if "ip_allowlist" in body:
        settings["ip_allowlist"] = _networks(body)
    for name in ("rpm_limit", "tpm_limit"):
        if name in body:
            settings[name] = _limit(body, name)
    if "expires_in_hours" in body or "expires_at" in body:
        settings["expires_at"] = _expiry(body, when)
    return settings


def key_json(row, when: dt.datetime, budget=None) -> dict:
    return {"id": row["id"], "prefix": row["prefix"], "name": row["name"],
            "allowed_models": list(row["allowed_models"]), "ip_allowlist": list(row["ip_allowlist"]),
            "rpm_limit": row["rpm_limit"], "tpm_limit": row["tpm_limit"],
            "created_at": row["created_at"].isoformat(),
            "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
            "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
            "rotated_at": row["rotated_at"].isoformat() if row["rotated_at"] else None,
            # Until when the secret before the last rotation is still accepted.
            "previous_secret_expires_at": row["previous_expires_at"].isoformat()
            if row["previous_expires_at"] and row["previous_expires_at"] > when else None,
            "active": row["revoked_at"] is None and (row["expires_at"] is None or row["expires_at"] > when),
            "budget": budgets.budget_json(budget)}


async def _one(request: web.Request, user_id: int, key_id: int) -> dict:
    database, when = request.app[DATABASE], now(request)
    row = await database.fetchrow(SELECT_MINE, user_id, key_id)
    return key_json(row, when, (await budgets.of_keys(database, [key_id], when)).get(key_id))


async def create_key(request: web.Request) -> web.Response:
    request[CALL].route = "keys"
    user = await current_user(request)
    body = await read_object(request)
    when = now(request)
    given = _settings(body, when)
    budget = budgets.parse(body.get("budget"))
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        new = await api_keys.create(
            connection, user_id=user.id, now=when, name=given.get("name", ""),
            allowed_models=given.get("allowed_models", []), ip_allowlist=given.get("ip_allowlist", []),
            rpm_limit=given.get("rpm_limit", 0), tpm_limit=given.get("tpm_limit", 0),
            expires_at=given.get("expires_at"))
        await budgets.put(connection, user_id=user.id, key_id=new.id, spec=budget, now=when)
        await audit.record(connection, actor_id=user.id, action="api_key.create", target_type="api_key",
                           target_id=new.id, request=request, details={"prefix": new.prefix})
    return json_response({**await _one(request, user.id, new.id), "key": new.key}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    request[CALL].route = "keys"
    user = await current_user(request)
    allow_only(request)
    database, when = request.app[DATABASE], now(request)
    rows = await database.fetch(SELECT_MINE, user.id, None)
    spend = await budgets.of_keys(database, [row["id"] for row in rows], when)
    return json_response({"items": [key_json(row, when, spend.get(row["id"])) for row in rows]})


def _key_id(request: web.Request) -> int:
    key_id = database_id(request.match_info["key_id"])
    if key_id is None:
        raise NotFound("no such key", code="key_not_found")
    return key_id


async def patch_key(request: web.Request) -> web.Response:
    """PATCH /api/v1/keys/{id}: the fields given change, the others stay; a revoked key is a 404."""
    request[CALL].route = "keys"
    user = await current_user(request)
    key_id = _key_id(request)
    body = await read_object(request)
    when = now(request)
    changes = _settings(body, when)
    budget = budgets.parse(body.get("budget")) if "budget" in body else None
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        if not await api_keys.update(connection, key_id=key_id, user_id=user.id, changes=changes):
            raise NotFound("no such key", code="key_not_found")
        if "budget" in body:
            await budgets.put(connection, user_id=user.id, key_id=key_id, spec=budget, now=when)
        await audit.record(connection, actor_id=user.id, action="api_key.update", target_type="api_key",
                           target_id=key_id, request=request, details={"fields": sorted(body)})
    # The change queued its cache refresh with it (migration 0013): push it to Redis now.
    await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response(await _one(request, user.id, key_id))


async def rotate_key(request: web.Request) -> web.Response:
    """POST /api/v1/keys/{id}/rotate: a new secret (shown once); the old one works for the grace period."""
    request[CALL].route = "keys"
    user = await current_user(request)
    key_id = _key_id(request)
    grace_s = request.app[SETTINGS].api_key_rotation_grace_s
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        new = await api_keys.rotate(connection, key_id=key_id, user_id=user.id, now=now(request), grace_s=grace_s)
        if new is None:
            raise NotFound("no such key", code="key_not_found")
        await audit.record(connection, actor_id=user.id, action="api_key.rotate", target_type="api_key",
                           target_id=key_id, request=request, details={"prefix": new.prefix, "grace_s": grace_s})
    await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response({**await _one(request, user.id, key_id), "key": new.key})


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /api/v1/keys/{id}: refused from the next request on; another user's key is a 404."""
    request[CALL].route = "keys"
    user = await current_user(request)
    key_id = _key_id(request)
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        key_hash = await api_keys.revoke(connection, key_id=key_id, user_id=user.id, now=now(request))
        if key_hash is not None:
            await audit.record(connection, actor_id=user.id, action="api_key.revoke", target_type="api_key",
                               target_id=key_id, request=request)
    if key_hash is None:
        raise NotFound("no such key", code="key_not_found")
    # The revocation queued its cache refusal with it (decision 0015): push it to Redis now.
    await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response({"id": key_id, "revoked": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/keys", create_key)
    app.router.add_get("/api/v1/keys", list_keys)
    app.router.add_patch("/api/v1/keys/{key_id}", patch_key)
    app.router.add_post("/api/v1/keys/{key_id}/rotate", rotate_key)
    app.router.add_delete("/api/v1/keys/{key_id}", revoke_key)
