"""Shared fixtures: a real PostgreSQL and Redis started once per run, a mock target, the gateway;
helpers live in tests/support/."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis_asyncio
from aiosmtpd.controller import Controller

import ledger
from devkit import mock_target as target_mock
from devkit.fake_payments import cryptocloud as fake_cryptocloud, robokassa as fake_robokassa, stripe as fake_stripe
from devkit.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from gateway.app import create_app
from gateway.core import migrate
from gateway.core.clock import ManualClock
from gateway.server import start_admin_site, start_metrics_site
from tests.support.accounts import deposit, register
from tests.support.database import RESET_DATABASE, SEED_BUNDLES, SEED_PRICES, Servers
from tests.support.mail import Inbox
from tests.support.gateways import GatewayTestClient, GatewayTestServer, Outbox, make_settings
from tests.support.payments import Fakes, new_fakes
from tests.support.store_faults import Partition


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
def smtp_server():
    """A real SMTP server on loopback: (port, Inbox)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


@pytest.fixture
def aiohttp_client_cls():
    """Every test client: paths under /admin go to the admin UI's own listener when it has one."""
    return GatewayTestClient


@pytest.fixture
def gateway_factory(servers, database, mock_target, clock, outbox, aiohttp_client):
    """Start a gateway (settings overridable per test) in front of the mock target; its admin UI on a
    listener of its own (decision 0027) unless the test says where it goes."""

    async def start(target_url: str | None = None, **changes):
        port = free_port()
        if "admin_on_main_origin" not in changes:
            changes.setdefault("admin_listen", f"127.0.0.1:{free_port()}")
        settings = make_settings(servers, target_url or mock_target, port, **changes)
        app = create_app(settings, clock=clock, mailer=outbox)
        client = await aiohttp_client(GatewayTestServer(app, port=port))
        await start_metrics_site(client.server.runner, settings)
        await start_admin_site(client.server.runner, settings)
        client.settings = settings
        return client

    return start


@pytest.fixture
async def gateway(gateway_factory):
    return await gateway_factory()


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


@pytest.fixture
async def partition(frozen_redis):
    redis, _ = frozen_redis
    relay = Partition(redis.port)
    url = await relay.start()
    yield relay, url
    await relay.close()


# -- a referrer and a referee: refunds, referral bonuses and the referrals page --------

@pytest.fixture
async def pair(gateway, database):
    """A referrer and the referee who registered with their code, the referee holding 300 credits."""
    referrer = await register(gateway, "referrer@example.com")
    referee = await register(gateway, "referee@example.com", referral_code=referrer["referral_code"])
    await deposit(database, referee["id"], 300)
    return referrer, referee


# -- payments: the fake providers on loopback, and a gateway with every provider switched on ----

@pytest.fixture
async def fakes(aiohttp_server) -> Fakes:
    stripe, cryptocloud, robokassa = new_fakes()
    urls = {}
    for name, fake, build in (("stripe", stripe, fake_stripe.build_app), ("cryptocloud", cryptocloud,
                              fake_cryptocloud.build_app), ("robokassa", robokassa, fake_robokassa.build_app)):
        server = await aiohttp_server(build(fake), port=free_port())
        urls[name] = str(server.make_url("")).rstrip("/")
        fake.public_base_url = urls[name]
    return Fakes(stripe, cryptocloud, robokassa, urls)


@pytest.fixture
def pay_gateway_factory(gateway_factory, fakes):
    """A gateway whose payment providers are the fakes (settings overridable), and the fakes call it back."""

    async def start(**changes):
        client = await gateway_factory(**fakes.settings(**changes))
        fakes.point_at(client.settings.public_url)
        return client

    return start


@pytest.fixture
async def pay_gateway(pay_gateway_factory):
    return await pay_gateway_factory()
