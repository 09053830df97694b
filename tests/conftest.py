"""Shared fixtures: a real PostgreSQL and Redis started once per run, a mock target, the gateway."""

from __future__ import annotations

import asyncio
import re
from importlib import resources
import datetime as dt
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis_asyncio
from aiohttp.test_utils import TestServer

import ledger

from gateway.core import migrate
from devkit import mock_target as target_mock
from gateway.accounts import access_tokens
from gateway.accounts import users
from gateway.app import create_app
from gateway.core.clock import ManualClock
from gateway.core.config import Secret, Settings
from gateway.core.connections import GatewayRunner
from devkit.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from gateway.server import start_metrics_site

RESET_DATABASE = """
SET session_replication_role = replica;  -- the append-only triggers stay on for everyone else
TRUNCATE transfers, audit_log, proxy_sessions, access_tokens, referral_rewards, refresh_tokens,
         magic_links, bundles, ai_usage, api_keys, model_prices, credential_cache_outbox,
         device_bindings RESTART IDENTITY;
DELETE FROM accounts WHERE kind = 'user';
UPDATE accounts SET debits_posted = 0, credits_posted = 0, debits_pending = 0, credits_pending = 0;
DELETE FROM users;
RESET session_replication_role;
"""
# The default bundles, re-seeded before each test from the migration that defines them.
SEED_BUNDLES = re.search(r"INSERT INTO bundles .*?;", (resources.files("migrations")
                         / "0003_economy.sql").read_text(), re.S).group(0)
SEED_PRICES = re.search(r"INSERT INTO model_prices .*?;", (resources.files("migrations")
                        / "0004_ai.sql").read_text(), re.S).group(0)
JWT_SECRET = "test-secret-" + "x" * 40


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str
    admin_database_url: str


@pytest.fixture(scope="session")
def servers() -> Servers:
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-test-", dir="/tmp"))
    data_dir.chmod(0o755)  # the postgres system user must traverse it
    postgres = EmbeddedPostgres(data_dir / "postgres", free_port())
    redis = EmbeddedRedis(data_dir / "redis", free_port())
    postgres.start(for_tests=True)
    redis.start()
    database_url = postgres.url.rsplit("/", 1)[0] + "/tollgate_test"

    async def prepare() -> None:
        connection = await asyncpg.connect(postgres.url)
        await connection.execute("CREATE DATABASE tollgate_test")
        await connection.close()
        await migrate.apply(database_url)

    asyncio.run(prepare())
    yield Servers(database_url, redis.url, postgres.url)
    redis.stop()
    postgres.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def database(servers: Servers):
    """A pool on the test database, emptied (and Redis flushed) before each test."""
    pool = await asyncpg.create_pool(servers.database_url, min_size=1, max_size=4)
    await pool.execute(RESET_DATABASE)
    await pool.execute(SEED_BUNDLES)
    await pool.execute(SEED_PRICES)
    client = redis_asyncio.from_url(servers.redis_url)
    await client.flushdb()
    await client.aclose()
    yield pool
    # Every test that touched the database leaves the books balanced.
    report = await ledger.reconcile(pool)
    await pool.close()
    assert report.ok, report.text()


@pytest.fixture
async def redis_client(servers: Servers):
    client = redis_asyncio.from_url(servers.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def mock_target(aiohttp_server):
    """The mock target upstream, a real aiohttp server on loopback."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = await aiohttp_server(target_mock.build_app(public_base_url=base), port=port)
    assert str(server.make_url("")).rstrip("/") == base
    return base


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def make_settings(servers: Servers, target_url: str, port: int, **changes) -> Settings:
    settings = Settings(
        database_url=Secret(servers.database_url), redis_url=Secret(servers.redis_url),
        host="127.0.0.1", port=port, target_url=target_url,
        public_url=f"http://127.0.0.1:{port}", jwt_secret=Secret(JWT_SECRET),
        session_flush_interval_s=3600, upstream_read_timeout_s=5.0,
    )
    return settings.replace(**changes)


class Outbox:
    """A mail sender that keeps what it was given, for tests to read."""

    def __init__(self) -> None:
        self.sent: list = []

    async def send(self, mail) -> None:
        self.sent.append(mail)


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


class GatewayTestServer(TestServer):
    """aiohttp's test server running the gateway the way `tollgate serve` does (GatewayRunner)."""

    async def _make_runner(self, **kwargs) -> GatewayRunner:
        return GatewayRunner(self.app, **kwargs)


@pytest.fixture
def gateway_factory(servers, database, mock_target, clock, outbox, aiohttp_client):
    """Start a gateway (settings overridable per test) in front of the mock target."""

    async def start(target_url: str | None = None, **changes):
        port = free_port()
        settings = make_settings(servers, target_url or mock_target, port, **changes)
        app = create_app(settings, clock=clock, mailer=outbox)
        client = await aiohttp_client(GatewayTestServer(app, port=port))
        await start_metrics_site(client.server.runner, settings)
        client.settings = settings
        return client

    return start


@pytest.fixture
async def gateway(gateway_factory):
    return await gateway_factory()


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


# -- Redis faults: a Redis of the test's own to freeze, and a relay to cut --------------------

@pytest.fixture
def frozen_redis():
    """A Redis of this test's own, which the test can freeze (SIGSTOP) and thaw (SIGCONT)."""
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-redis-", dir="/tmp"))
    redis = EmbeddedRedis(data_dir, free_port())
    redis.start()
    pid_file = data_dir / "redis.pid"
    for _ in range(100):  # a daemonized Redis writes its pid file just after it listens
        if pid_file.exists() and pid_file.read_text().strip():
            break
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    yield redis, pid
    os.kill(pid, signal.SIGCONT)
    redis.stop()


class Partition:
    """A TCP relay in front of Redis that the test can cut: while cut, nothing reaches Redis and
    every connection is dropped — a network blip after which Redis returns with all its data."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.cut = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            for writer in list(self.writers):
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        self.writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    if self.cut:
                        break
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.writers.difference_update((writer, upstream_writer))

    async def close(self) -> None:
        self.set_cut(True)
        self.server.close()


@pytest.fixture
async def partition(frozen_redis):
    redis, _ = frozen_redis
    relay = Partition(redis.port)
    url = await relay.start()
    yield relay, url
    await relay.close()
