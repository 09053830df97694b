"""The run's people and credentials: a client with credits, a JWT, an API key and a desktop token,
and the credentials that must never pass — revoked ones (used once, so caches held them) and unknown ones."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import aiohttp
import asyncpg

import ledger
from gateway.accounts import access_tokens

PASSWORD = "chaos run password"
EMAIL = "chaos@tollgate.local"
DEVICE_ID = "chaos-device-1"
CREDITS = 10_000_000  # enough for any run: purchases cost 1 credit, AI calls a fraction of one


@dataclass
class People:
    user_id: int
    jwt_headers: dict[str, str]
    api_key: str
    proxy_token: str
    revoked_token: str
    revoked_key: str
    unknown_token: str
    unknown_key: str

    def proxy_headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Access-Token": token or self.proxy_token, "X-Device-ID": DEVICE_ID}


async def _json(response: aiohttp.ClientResponse, expected: int) -> dict:
    if response.status != expected:
        raise RuntimeError(f"{response.method} {response.url.path}: {response.status} {await response.text()}")
    return await response.json()


async def login(session: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with session.post(base + "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}) as response:
        return {"Authorization": "Bearer " + (await _json(response, 200))["access_token"]}


async def _grant(database_url: str, user_id: int) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        async with connection.transaction():
            await ledger.move(connection, key="chaos:credits", debit=await ledger.system_id(connection, "adjustments"),
                              credit=await ledger.user_account(connection, user_id),
                              amount_micro=CREDITS * ledger.MICRO_PER_CREDIT, kind="adjustment",
                              now=dt.datetime.now(dt.timezone.utc), user_id=user_id, description="chaos credits")
    finally:
        await connection.close()


async def _used_then_revoked(session: aiohttp.ClientSession, base: str, jwt: dict[str, str],
                             key: str, key_id: int, token: str, token_id: int) -> None:
    """Use a key and a token once (so Redis caches them as valid), then revoke both through the API."""
    async with session.get(base + "/api/v1/proxy/api/data", headers={"X-Access-Token": token,
                                                                      "X-Device-ID": DEVICE_ID}) as response:
        assert response.status == 200, await response.text()
    async with session.post(base + "/openai/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": "gpt-4o-mini", "max_tokens": 8,
                                  "messages": [{"role": "user", "content": "hi"}]}) as response:
        assert response.status == 200, await response.text()
    async with session.delete(f"{base}/api/v1/keys/{key_id}", headers=jwt) as response:
        assert response.status in (200, 204), await response.text()
    async with session.delete(f"{base}/api/v1/tokens/{token_id}", headers=jwt) as response:
        await _json(response, 200)


async def make_people(base: str, database_url: str) -> People:
    async with aiohttp.ClientSession() as session:
        async with session.post(base + "/api/v1/auth/register", json={
                "email": EMAIL, "username": "chaos", "password": PASSWORD, "full_name": "Chaos Run"}) as response:
            user_id = (await _json(response, 201))["id"]
        await _grant(database_url, user_id)
        jwt = await login(session, base)
        keys = []
        for name in ("load", "revoked"):
            async with session.post(base + "/api/v1/keys", json={"name": name}, headers=jwt) as response:
                keys.append(await _json(response, 201))
        tokens = []
        for _ in range(2):
            async with session.post(base + "/api/v1/tokens/purchase", json={"duration_hours": 24},
                                    headers=jwt) as response:
                tokens.append((await _json(response, 201))["tokens"][0])
        await _used_then_revoked(session, base, jwt, keys[1]["key"], keys[1]["id"], tokens[1]["token"],
                                 tokens[1]["id"])
    return People(user_id, jwt, keys[0]["key"], tokens[0]["token"], tokens[1]["token"], keys[1]["key"],
                  unknown_token=access_tokens.generate(), unknown_key="tg_" + secrets.token_urlsafe(32))
