"""The servers under test: the mock upstream, and tollgate with its own PostgreSQL, Redis and token."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import sys
import urllib.request
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import asyncpg

from bench.processes import Server, start
from gateway.core import migrate
from gateway.accounts import access_tokens
from gateway.accounts import users
from gateway.accounts import api_keys
from devkit.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

BENCH_EMAIL = "bench@tollgate.local"
DEVICE_ID = "bench-device-1"
TOKEN_HOURS = 2
DATABASE_NAME = "tollgate"
# The CLI as installed in this interpreter's environment (what `tollgate` on PATH would run), and
# the dev kit's, which runs from the checkout.
TOLLGATE = [sys.executable, "-m", "gateway.cli"]
DEVKIT = [sys.executable, "-m", "devkit"]
# Run from the checkout: an editable install whose finder maps `gateway` as a namespace package
# cannot read gateway/lua/*.lua through importlib.resources from any other directory.
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Database:
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str
    token: str


def start_mock(directory: Path, port: int) -> Server:
    return start("mock upstream", [*DEVKIT, "mock-upstream", "--host", "127.0.0.1", "--port", str(port)],
                 directory / "mock.log", cwd=ROOT)


async def create_database(admin_url: str, name: str) -> str:
    """A new database `name` on the server of `admin_url`, migrated; its URL."""
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    database_url = admin_url.rsplit("/", 1)[0] + "/" + name
    await migrate.apply(database_url)
    return database_url


async def _prepare_database(admin_url: str) -> tuple[str, str]:
    """Create and migrate the database; an enterprise (unlimited) user and a fresh token."""
    database_url = await create_database(admin_url, DATABASE_NAME)
    connection = await asyncpg.connect(database_url)
    try:
        user_id = await users.ensure_client(connection, email=BENCH_EMAIL, plan="enterprise")
        issued = await access_tokens.issue(connection, user_id=user_id, hours=TOKEN_HOURS, scope="full",
                                    now=dt.datetime.now(dt.timezone.utc))
    finally:
        await connection.close()
    return database_url, issued.token


def start_database(directory: Path, stopping: list) -> Database:
    """Embedded PostgreSQL + Redis; each is appended to `stopping` as soon as it runs."""
    postgres = EmbeddedPostgres(directory / "postgres", free_port())
    stopping.append(postgres.stop)
    postgres.start(for_tests=True)  # fsync off: the warm hot path makes no queries anyway
    redis = EmbeddedRedis(directory / "redis", free_port())
    stopping.append(redis.stop)
    redis.start()
    database_url, token = asyncio.run(_prepare_database(postgres.url))
    return Database(postgres, redis, database_url, token)


def tollgate_env(database: Database, *, target_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update({
        "TOLLGATE_DATABASE_URL": database.database_url,
        "TOLLGATE_REDIS_URL": database.redis.url,
        "TOLLGATE_TARGET_URL": target_url,
        "TOLLGATE_JWT_SECRET": secrets.token_urlsafe(48),
        "TOLLGATE_HOST": "127.0.0.1",
        "TOLLGATE_PORT": str(port),
        # Per-IP limiting would count wrk's every request from 127.0.0.1; the plan is unlimited too.
        "TOLLGATE_IP_LIMIT_PER_MIN": "0",
        "TOLLGATE_PLAN_LIMITS_PER_MIN": "free=100,premium=500,enterprise=0",
        # `serve` refuses the development mail sender (decision 0014); the bench sends no mail.
        "TOLLGATE_MAIL_SENDER": "none",
    })
    return env


def start_tollgate(directory: Path, database: Database, *, target_url: str, port: int,
                   workers: int, extra_env: dict[str, str] | None = None, checkout: Path = ROOT,
                   name: str = "tollgate") -> Server:
    """`tollgate serve` run from `checkout` (its code is imported: the cwd leads sys.path), logged
    to `directory/<name>.log`."""
    argv = [*TOLLGATE, "serve", "--workers", str(workers)]
    env = {**tollgate_env(database, target_url=target_url, port=port), **(extra_env or {})}
    return start(name, argv, directory / f"{name}.log", cwd=checkout, env=env)


async def _prepare_ai(database_url: str, credits_micro: int) -> str:
    """An unlimited API key for the bench user, and `credits_micro` granted to its account."""
    import ledger  # the ledger package at the checkout's root, as gateway/dev.py uses it

    now = dt.datetime.now(dt.timezone.utc)
    connection = await asyncpg.connect(database_url)
    try:
        user_id = await connection.fetchval("SELECT id FROM users WHERE email = $1", BENCH_EMAIL)
        async with connection.transaction():
            await ledger.move(connection, key="bench:ai-credits",
                              debit=await ledger.system_id(connection, "adjustments"),
                              credit=await ledger.user_account(connection, user_id), amount_micro=credits_micro,
                              kind="adjustment", now=now, user_id=user_id, description="bench credits")
        created = await api_keys.create(connection, user_id=user_id, name="bench", allowed_models=[],
                                        ip_allowlist=[], rpm_limit=0, tpm_limit=0, now=now, expires_at=None)
    finally:
        await connection.close()
    return created.key


def prepare_ai(database: Database, credits_micro: int) -> str:
    """The API key the AI bench calls tollgate with (no RPM/TPM limit, plan enterprise, funded)."""
    return asyncio.run(_prepare_ai(database.database_url, credits_micro))


AI_METERING = """
SELECT (SELECT count(*) FROM ai_usage) AS usage_rows,
       (SELECT count(*) FROM ai_usage WHERE outcome = 'ok' AND charged_micro > 0) AS charged_rows,
       (SELECT coalesce(sum(charged_micro), 0) FROM ai_usage) AS charged_micro,
       (SELECT count(*) FROM transfers WHERE kind = 'usage' AND phase = 'pending') AS holds,
       (SELECT count(*) FROM transfers WHERE kind = 'usage' AND phase = 'post_pending') AS holds_posted,
       (SELECT count(*) FROM transfers WHERE kind = 'usage' AND phase = 'void_pending') AS holds_voided"""


async def _ai_metering(database_url: str) -> dict[str, int]:
    connection = await asyncpg.connect(database_url)
    try:
        return {name: int(value) for name, value in (await connection.fetchrow(AI_METERING)).items()}
    finally:
        await connection.close()


def ai_metering(database: Database) -> dict[str, int]:
    """What tollgate has recorded of AI calls so far: usage rows, charges, holds and their resolutions."""
    return asyncio.run(_ai_metering(database.database_url))


def database_pids(database: Database) -> dict[str, int]:
    """The postmaster and redis-server pids, for CPU accounting (both run detached from us)."""
    pids: dict[str, int] = {}
    postmaster = database.postgres.data_dir / "cluster" / "postmaster.pid"
    redis_pid = database.redis.data_dir / "redis.pid"
    if postmaster.exists():
        pids["postgres"] = int(postmaster.read_text().split("\n", 1)[0])
    if redis_pid.exists():
        pids["redis"] = int(redis_pid.read_text().strip())
    return pids


def open_browser_session(tollgate_url: str, token: str) -> str:
    """A browser session of the bench token, as the desktop client opens one: the Cookie header to send."""
    request = urllib.request.Request(tollgate_url + "/api/v1/proxy/session", method="POST",
                                     headers={"X-Access-Token": token, "X-Device-ID": DEVICE_ID})
    with urllib.request.urlopen(request, timeout=10) as response:
        jar: SimpleCookie = SimpleCookie()
        for value in response.headers.get_all("Set-Cookie") or []:
            jar.load(value)
    return f"tollgate_session={jar['tollgate_session'].value}"
