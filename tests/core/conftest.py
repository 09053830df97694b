"""Fixtures of the core tests: an admin and a client, logged in, for hostile-input requests; a real
Redis Cluster for the Redis client's tests; a Redis of a test's own to restart."""

from __future__ import annotations

import socket
import tempfile
import time
from pathlib import Path

import pytest

from gateway.accounts import users
from devkit.embedded import EmbeddedRedis, free_port
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


@pytest.fixture
def restartable_redis():
    """A Redis of this test's own, and a function that stops it and returns once its port is closed;
    `start()` brings it back on the same port (data and script cache gone)."""
    redis = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="tollgate-redis-", dir="/tmp")), free_port())
    redis.start()

    def stop() -> None:
        redis.stop()
        for _ in range(250):  # SIGTERM: Redis closes its port on its own time
            try:
                socket.create_connection(("127.0.0.1", redis.port), timeout=0.2).close()
            except OSError:
                break
            time.sleep(0.02)

    yield redis, stop
    redis.stop()
