"""Reading the JSON API's answers: error codes and shapes, and counts of the rows a request must not write."""

from __future__ import annotations

import re


async def error_code(response) -> str:
    return (await response.json())["error"]["code"]


def link_token(mail) -> str:
    return re.search(r"token=([A-Za-z0-9_-]{64})", mail.text).group(1)


async def counts(database) -> tuple[int, int, int]:
    return (await database.fetchval("SELECT count(*) FROM transfers"),
            await database.fetchval("SELECT count(*) FROM access_tokens"),
            await database.fetchval("SELECT count(*) FROM audit_log"))


TABLES = ("users", "accounts", "api_keys", "bundles", "access_tokens", "transfers", "audit_log",
          "magic_links", "refresh_tokens")


async def row_counts(database) -> dict[str, int]:
    return {table: await database.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}


async def error_of(response, status: int) -> str:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"code", "message", "request_id"}
    return body["error"]["code"]


REGISTER = {"email": "new@example.com", "username": "newbie", "password": "long enough pw", "full_name": "New Bie"}
