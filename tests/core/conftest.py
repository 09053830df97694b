"""Fixtures of the core tests: an admin and a client, logged in, for hostile-input requests."""

from __future__ import annotations

import pytest

from gateway.accounts import users
from tests.support.accounts import deposit, register

ADMIN_PASSWORD = "admin password 1"


@pytest.fixture
async def people(gateway, database):
    """An admin and a client (with credits), both logged in."""
    await users.ensure_admin(database, email="root@example.com", password=ADMIN_PASSWORD)
    login = await gateway.post("/api/v1/auth/login", json={"email": "root@example.com", "password": ADMIN_PASSWORD})
    admin = {"Authorization": "Bearer " + (await login.json())["access_token"]}
    client = await register(gateway, "client@example.com")
    await deposit(database, client["id"], 10)
    return {"admin": admin, "client": client["headers"], "client_id": client["id"], None: {}}
