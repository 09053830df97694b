"""Token bundles: their rows and the rules of creating, changing and (softly) deleting them, each
audited — for the JSON API and the admin UI alike."""

from __future__ import annotations

from typing import Any

import asyncpg

import ledger
from gateway.accounts import access_tokens, audit
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import field

COLUMNS = "id, name, description, token_count, duration_hours, scope, price_micro, is_active, created_at"
SELECT_LISTED = f"SELECT {COLUMNS} FROM bundles WHERE deleted_at IS NULL AND is_active ORDER BY price_micro, id"
SELECT_ALL = f"SELECT {COLUMNS} FROM bundles WHERE deleted_at IS NULL ORDER BY price_micro, id"
SELECT_ONE = f"SELECT {COLUMNS} FROM bundles WHERE id = $1 AND deleted_at IS NULL"
INSERT = f"""
INSERT INTO bundles (name, description, token_count, duration_hours, scope, price_micro, is_active)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"""
UPDATE = f"""
UPDATE bundles SET name = $2, description = $3, token_count = $4, duration_hours = $5, scope = $6,
                   price_micro = $7, is_active = $8, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"""
SOFT_DELETE = """
UPDATE bundles SET deleted_at = now(), is_active = false WHERE id = $1 AND deleted_at IS NULL RETURNING id"""
FIELDS = ("name", "description", "token_count", "duration_hours", "scope", "price", "is_active")
TOKEN_COUNT_MAX, NAME_MAX, DESCRIPTION_MAX = 100, 100, 1000


def validated(body: dict, current: asyncpg.Record | None = None) -> list[Any]:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    required = current is None

    def pick(name: str, kind: type):
        return field(body, name, kind, required=required, default=current[name] if current else None)

    name = pick("name", str).strip()
    description = field(body, "description", str, required=False,
                        default=current["description"] if current is not None else "")
    count = pick("token_count", int)
    hours = pick("duration_hours", int)
    scope = field(body, "scope", str, required=False, default=current["scope"] if current is not None else "full")
    is_active = field(body, "is_active", bool, required=False,
                      default=current["is_active"] if current is not None else True)
    if "price" in body or required:
        try:
            price = ledger.parse_credits(field(body, "price", str))
        except ledger.MoneyError as error:
            raise BadRequest(str(error), code="invalid_amount") from error
    else:
        assert current is not None, "a new bundle requires its price"
        price = current["price_micro"]
    if not 0 < len(name) <= NAME_MAX or len(description) > DESCRIPTION_MAX:
        raise BadRequest(f"name: 1-{NAME_MAX} characters, description up to {DESCRIPTION_MAX}",
                         code="invalid_field")
    if not 1 <= count <= TOKEN_COUNT_MAX:
        raise BadRequest(f"token_count: 1-{TOKEN_COUNT_MAX}", code="invalid_field")
    if not 1 <= hours <= 24 * 366:
        raise BadRequest("duration_hours: 1-8784", code="invalid_field")
    if scope not in access_tokens.SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(access_tokens.SCOPES)}", code="invalid_scope")
    if price <= 0:
        raise BadRequest("price must be positive", code="invalid_amount")
    return [name, description, count, hours, scope, price, is_active]



def _not_found() -> NotFound:
    return NotFound("no such bundle", code="bundle_not_found")


async def listed(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """The bundles on sale, cheapest first."""
    return await db.fetch(SELECT_LISTED)


async def every(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """Every bundle not deleted, on sale or not."""
    return await db.fetch(SELECT_ALL)


async def one(db: asyncpg.Pool | asyncpg.Connection, bundle_id: int | None) -> asyncpg.Record | None:
    return await db.fetchrow(SELECT_ONE, bundle_id) if bundle_id else None


async def create(pool: asyncpg.Pool, body: dict[str, Any], *, actor_id: int, ip: str) -> asyncpg.Record:
    values = validated(body)
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(INSERT, *values)
        await audit.record(connection, actor_id=actor_id, action="bundle.create", target_type="bundle",
                           target_id=row["id"], ip=ip, details={"price_micro": row["price_micro"]})
    return row


async def update(pool: asyncpg.Pool, bundle_id: int | None, body: dict[str, Any], *, actor_id: int,
                 ip: str) -> asyncpg.Record:
    if not body:
        raise BadRequest("nothing to change", code="empty_patch")
    async with pool.acquire() as connection, connection.transaction():
        current = await connection.fetchrow(SELECT_ONE + " FOR UPDATE", bundle_id) if bundle_id else None
        if current is None:
            raise _not_found()
        row = await connection.fetchrow(UPDATE, bundle_id, *validated(body, current))
        await audit.record(connection, actor_id=actor_id, action="bundle.update", target_type="bundle",
                           target_id=bundle_id, ip=ip, details={"fields": sorted(body)})
    return row


async def delete(pool: asyncpg.Pool, bundle_id: int | None, *, actor_id: int, ip: str) -> None:
    """Soft delete: bought tokens keep their bundle; the bundle is no longer listed or sold."""
    async with pool.acquire() as connection, connection.transaction():
        deleted = await connection.fetchval(SOFT_DELETE, bundle_id) if bundle_id else None
        if deleted is None:
            raise _not_found()
        await audit.record(connection, actor_id=actor_id, action="bundle.delete", target_type="bundle",
                           target_id=bundle_id, ip=ip)
