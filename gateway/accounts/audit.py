"""Audit log: who did what to which target, from where; append-only (the database refuses changes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from aiohttp import web

INSERT = """
INSERT INTO audit_log (actor_id, action, target_type, target_id, ip, details)
VALUES ($1, $2, $3, $4, $5, $6::jsonb)"""


def client_ip(request: web.Request | None) -> str:
    from gateway.core.middleware import CALL

    if request is None:
        return ""
    call = request.get(CALL)
    return getattr(call, "client_ip", "") or request.remote or ""


async def record(connection: asyncpg.Connection | asyncpg.Pool, *, actor_id: int | None, action: str,
                 target_type: str = "", target_id: object = "", request: web.Request | None = None,
                 ip: str | None = None, details: dict[str, Any] | None = None) -> None:
    """Append one entry; call it inside the transaction of the change it describes."""
    await connection.execute(INSERT, actor_id, action, target_type, str(target_id),
                             client_ip(request) if ip is None else ip,
                             orjson.dumps(details or {}).decode())


# $5 a keyset cursor: entries older (smaller id) than it.
FILTERS = """
($1::text IS NULL OR action = $1) AND ($2::bigint IS NULL OR actor_id = $2)
AND ($3::text IS NULL OR target_type = $3) AND ($4::text IS NULL OR target_id = $4)
AND ($5::bigint IS NULL OR id < $5)"""
COUNT = f"SELECT count(*) FROM audit_log WHERE {FILTERS}"
SELECT = f"""
SELECT id, actor_id, action, target_type, target_id, ip, details, created_at FROM audit_log
WHERE {FILTERS} ORDER BY id DESC LIMIT $6 OFFSET $7"""


@dataclass(frozen=True, slots=True)
class Filters:
    action: str | None = None
    actor_id: int | None = None
    target_type: str | None = None
    target_id: str | None = None

    def arguments(self, before_id: int | None) -> tuple:
        return (self.action, self.actor_id, self.target_type, self.target_id, before_id)


async def count(db: asyncpg.Pool | asyncpg.Connection, filters: Filters) -> int:
    return await db.fetchval(COUNT, *filters.arguments(None))


async def entries(db: asyncpg.Pool | asyncpg.Connection, filters: Filters, *, limit: int, skip: int = 0,
                  before_id: int | None = None) -> list[asyncpg.Record]:
    """Entries newest first: a page by offset (the JSON API) or before an id (keyset, the admin UI)."""
    return await db.fetch(SELECT, *filters.arguments(before_id), limit, skip)


def details_of(row: asyncpg.Record) -> dict[str, Any]:
    details = row["details"]
    return orjson.loads(details) if isinstance(details, str) else details
