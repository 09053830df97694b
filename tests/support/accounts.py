"""Users, access tokens and credits made for a test, through the API or straight in PostgreSQL."""

from __future__ import annotations

import datetime as dt

import asyncpg

import ledger
from gateway.accounts import access_tokens, users


async def make_token(pool: asyncpg.Pool, *, email: str = "user@example.com", hours: float = 24,
                     scope: str = "full", plan: str = "free", now: dt.datetime | None = None):
    user_id = await users.ensure_client(pool, email=email, plan=plan)
    return await access_tokens.issue(pool, user_id=user_id, hours=hours, scope=scope,
                              now=now or dt.datetime.now(dt.timezone.utc))


def proxy_headers(token: str, device: str = "device-1", **extra: str) -> dict[str, str]:
    return {"X-Access-Token": token, "X-Device-ID": device, **extra}


async def register(gateway, email: str = "ann@example.com", username: str | None = None,
                   password: str = "correct horse battery", **extra) -> dict:
    """Register through the API and log in; returns the user JSON plus its tokens and headers."""
    body = {"email": email, "username": username or email.split("@")[0].replace("+", "_"),
            "password": password, "full_name": "Test User", **extra}
    response = await gateway.post("/api/v1/auth/register", json=body)
    assert response.status == 201, await response.text()
    user = await response.json()
    return {**user, **await login(gateway, email, password)}


async def login(gateway, email: str, password: str = "correct horse battery") -> dict:
    """The login answer plus ready-made Authorization headers."""
    response = await gateway.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status == 200, await response.text()
    tokens = await response.json()
    return {**tokens, "headers": {"Authorization": f"Bearer {tokens['access_token']}"}}


async def deposit(pool: asyncpg.Pool, user_id: int, credits: int, key: str | None = None) -> None:
    """Credit a user's account from payment clearing, as a provider payment would."""
    import uuid

    account = await ledger.user_account(pool, user_id)
    clearing = await ledger.system_id(pool, "payment_clearing")
    async with pool.acquire() as connection:
        await ledger.move(connection, key=key or f"test-deposit:{uuid.uuid4().hex}", debit=clearing,
                          credit=account, amount_micro=credits * ledger.MICRO_PER_CREDIT, kind="deposit",
                          now=dt.datetime.now(dt.timezone.utc), user_id=user_id)


ADMIN = {"email": "root@example.com", "password": "correct horse battery"}


async def admin_headers(gateway, database) -> dict[str, str]:
    await users.ensure_admin(database, email=ADMIN["email"], password=ADMIN["password"])
    response = await gateway.post("/api/v1/auth/login", json=ADMIN)
    assert response.status == 200
    return {"Authorization": "Bearer " + (await response.json())["access_token"]}


async def balance_of(database, user_id: int) -> int:
    return (await ledger.balance(database, user_id)).available_micro


async def admin(gateway, database) -> dict:
    await users.ensure_admin(database, email="root@example.com", password="admin password 1")
    login = await gateway.post("/api/v1/auth/login", json={"email": "root@example.com", "password": "admin password 1"})
    tokens = await login.json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}
