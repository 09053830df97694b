"""Fixtures of the core tests: an admin and a client, logged in, for hostile-input requests; a real
Redis Cluster for the Redis client's tests."""

from __future__ import annotations

import pytest

from gateway.accounts import users
from tests.support.accounts import deposit, register
from tests.support.redis_cluster import LocalRedisCluster

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


@pytest.fixture(scope="module")
def redis_cluster():
    """A real Redis Cluster (3 masters, a replica each) for the module's tests."""
    cluster = LocalRedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(redis_cluster, database) -> LocalRedisCluster:
    """The module's cluster, emptied before the test (after the database fixture emptied its Redis)."""
    redis_cluster.flush()
    return redis_cluster
