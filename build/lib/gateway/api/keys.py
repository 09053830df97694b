"""/api/v1/keys: a user's API keys for the AI routes — create (shown once), list, revoke."""

from __future__ import annotations

import datetime as dt
import ipaddress

from aiohttp import web

from gateway.accounts import audit
from gateway.accounts import api_keys
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.api.web_auth import current_user, now

FIELDS = ("name", "allowed_models", "ip_allowlist", "rpm_limit", "tpm_limit", "expires_in_hours")
LIST_MAX, NAME_MAX, MODEL_MAX, LIMIT_MAX, HOURS_MAX = 100, 100, 200, 10_000_000, 24 * 3660
SELECT_MINE = """
SELECT id, prefix, name, allowed_models, ip_allowlist::text[] AS ip_allowlist, rpm_limit, tpm_limit,
       created_at, expires_at, revoked_at
FROM api_keys WHERE user_id = $1 ORDER BY id DESC"""


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


def key_json(row, when: dt.datetime) -> dict:
    return {"id": row["id"], "prefix": row["prefix"], "name": row["name"],
            "allowed_models": list(row["allowed_models"]), "ip_allowlist": list(row["ip_allowlist"]),
            "rpm_limit": row["rpm_limit"], "tpm_limit": row["tpm_limit"],
            "created_at": row["created_at"].isoformat(),
            "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
            "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
            "active": row["revoked_at"] is None and (row["expires_at"] is None or row["expires_at"] > when)}


async def create_key(request: web.Request) -> web.Response:
    request[CALL].route = "keys"
    user = await current_user(request)
    body = await read_object(request)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    name = field(body, "name", str, required=False, default="").strip()
    if len(name) > NAME_MAX:
        raise BadRequest(f"name: up to {NAME_MAX} characters", code="invalid_field")
    hours = field(body, "expires_in_hours", int, required=False)
    if hours is not None and not 1 <= hours <= HOURS_MAX:
        raise BadRequest(f"expires_in_hours: 1 to {HOURS_MAX}, or null for none", code="invalid_field")
    models, networks = _strings(body, "allowed_models", MODEL_MAX), _networks(body)
    rpm, tpm = _limit(body, "rpm_limit"), _limit(body, "tpm_limit")
    when = now(request)
    expires_at = when + dt.timedelta(hours=hours) if hours else None
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        new = await api_keys.create(connection, user_id=user.id, name=name, allowed_models=models,
                                    ip_allowlist=networks, rpm_limit=rpm, tpm_limit=tpm, now=when,
                                    expires_at=expires_at)
        await audit.record(connection, actor_id=user.id, action="api_key.create", target_type="api_key",
                           target_id=new.id, request=request, details={"prefix": new.prefix})
    return json_response({"id": new.id, "key": new.key, "prefix": new.prefix, "name": name,
                          "allowed_models": models, "ip_allowlist": networks, "rpm_limit": rpm,
                          "tpm_limit": tpm, "expires_at": expires_at.isoformat() if expires_at else None},
                         status=201)


async def list_keys(request: web.Request) -> web.Response:
    request[CALL].route = "keys"
    user = await current_user(request)
    rows = await request.app[DATABASE].fetch(SELECT_MINE, user.id)
    when = now(request)
    return json_response({"items": [key_json(row, when) for row in rows]})


async def revoke_key(request: web.Request) -> web.Response:
    """DELETE /api/v1/keys/{id}: refused from the next request on; another user's key is a 404."""
    request[CALL].route = "keys"
    user = await current_user(request)
    key_id = database_id(request.match_info["key_id"])
    key_hash = None
    if key_id is not None:
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
    app.router.add_delete("/api/v1/keys/{key_id}", revoke_key)
