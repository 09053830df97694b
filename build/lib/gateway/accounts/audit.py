"""Audit log: who did what to which target, from where; append-only (the database refuses changes)."""

from __future__ import annotations

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
