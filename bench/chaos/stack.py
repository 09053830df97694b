"""The system under faults: PostgreSQL, Redis, the mock upstream behind a fault relay, a fake Stripe,
and `tollgate serve --workers 2`, each started, stopped and restarted by the chaos run."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.chaos.relay import FaultRelay
from bench.processes import Server, start
from bench.stack import DEVKIT, ROOT, TOLLGATE, create_database
from devkit.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, postgres_bin_dir
from devkit.fake_payments import stripe as fake_stripe

DATABASE_NAME = "tollgate_chaos"
UPSTREAM_KEY = "sk-mock-chaos"  # the mock accepts any key starting with sk-mock
READY_TIMEOUT_S = 60.0
PROBE_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 30


@dataclass
class Stack:
    """Everything the run started, with what the faults need to reach it."""

    directory: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str
    relay: FaultRelay
    stripe: fake_stripe.FakeStripe
    port: int
    env: dict[str, str]
    stopping: list = field(default_factory=list)  # callables, run in reverse order
    mock: Server | None = None
    tollgate: Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "tollgate.log"

    def worker_pids(self) -> list[int]:
        """The gateway's worker processes: the master's children that multiprocessing spawned."""
        assert self.tollgate is not None
        master = self.tollgate.process.pid
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                command = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            if parent == master and b"spawn_main" in command:
                found.append(int(entry.name))
        return sorted(found)

    async def stop(self) -> None:
        while self.stopping:
            step = self.stopping.pop()
            result = step()
            if asyncio.iscoroutine(result):
                await result


def _pg_ctl(postgres: EmbeddedPostgres, *args: str) -> None:
    argv = [str(postgres_bin_dir() / "pg_ctl"), "-D", str(postgres.data_dir / "cluster"), *args]
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, cwd="/", check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=STOP_TIMEOUT_S)


def kill_postgres(postgres: EmbeddedPostgres) -> None:
    """Stop PostgreSQL at once, as a crash would (immediate: no checkpoint, recovery on start)."""
    _pg_ctl(postgres, "-m", "immediate", "-w", "stop")


def start_postgres(postgres: EmbeddedPostgres) -> None:
    # Durable commits, as in production: with the tests' synchronous_commit=off an immediate stop
    # loses commits PostgreSQL had already acknowledged — the run would blame the gateway for them.
    postgres.start(for_tests=False)


def redis_pid(redis: EmbeddedRedis) -> int | None:
    pid_file = redis.data_dir / "redis.pid"
    for _ in range(100):  # a daemonized Redis writes its pid file just after it listens
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text())
        time.sleep(0.02)
    return None


def kill_redis(redis: EmbeddedRedis) -> None:
    """SIGKILL: nothing saved, nothing flushed gracefully (it runs without persistence anyway)."""
    pid = redis_pid(redis)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        (redis.data_dir / "redis.pid").unlink(missing_ok=True)
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)


def gateway_env(database_url: str, redis_url: str, *, port: int, relay_url: str, stripe: fake_stripe.FakeStripe,
                stripe_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update({
        "TOLLGATE_DATABASE_URL": database_url, "TOLLGATE_REDIS_URL": redis_url,
        "TOLLGATE_TARGET_URL": relay_url, "TOLLGATE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TOLLGATE_JWT_SECRET": secrets.token_urlsafe(48), "TOLLGATE_HOST": "127.0.0.1", "TOLLGATE_PORT": str(port),
        "TOLLGATE_WORKERS": "2", "TOLLGATE_MAIL_SENDER": "none",
        "TOLLGATE_IP_LIMIT_PER_MIN": "0", "TOLLGATE_AUTH_IP_LIMIT_PER_MIN": "0",
        "TOLLGATE_PLAN_LIMITS_PER_MIN": "free=0,premium=0,enterprise=0",
        "TOLLGATE_OPENAI_BASE_URL": relay_url + "/openai/v1", "TOLLGATE_OPENAI_API_KEYS": UPSTREAM_KEY,
        # Short timeouts and hold lifetimes, so a fault's effects (and their clean-up) fit the run.
        "TOLLGATE_UPSTREAM_READ_TIMEOUT_S": "4", "TOLLGATE_AI_READ_TIMEOUT_S": "4",
        "TOLLGATE_AI_DRAIN_TIMEOUT_S": "4", "TOLLGATE_AI_HOLD_TTL_S": "15", "TOLLGATE_HOLD_EXPIRY_INTERVAL_S": "1",
        "TOLLGATE_DATABASE_TIMEOUT_S": "3", "TOLLGATE_USAGE_FLUSH_INTERVAL_S": "0.5",
        "TOLLGATE_SESSION_FLUSH_INTERVAL_S": "2", "TOLLGATE_CREDENTIAL_OUTBOX_POLL_S": "1",
        # A worker killed on purpose is replaced; allow more deaths than the run causes.
        "TOLLGATE_WORKER_RESTARTS_MAX": "50",
        "TOLLGATE_CREDIT_PRICES": "USD=1.00", "TOLLGATE_STRIPE_API_KEY": stripe.api_key,
        "TOLLGATE_STRIPE_WEBHOOK_SECRET": stripe.webhook_secret, "TOLLGATE_STRIPE_BASE_URL": stripe_url,
        # The re-check task would credit payments whose webhook the run withholds: keep it out of the way.
        "TOLLGATE_PAYMENT_RECHECK_DELAY_S": "86400", "TOLLGATE_PAYMENT_RECHECK_INTERVAL_S": "86400",
        "TOLLGATE_LOG_LEVEL": "INFO",
    })
    return env


async def _serve_fake_stripe(stack_stopping: list, fake: fake_stripe.FakeStripe) -> str:
    runner = web.AppRunner(fake_stripe.build_app(fake), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stack_stopping.append(runner.cleanup)
    return f"http://127.0.0.1:{port}"


async def wait_healthy(url: str, timeout_s: float, process: Server | None = None) -> float | None:
    """Seconds until `url` answered 200 (None if it did not within `timeout_s`)."""
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as session:
        while time.monotonic() - started < timeout_s:
            if process is not None and process.process.poll() is not None:
                raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
    return None


async def start_stack(directory: Path) -> Stack:
    """Start everything; on failure, stop what had started and raise."""
    stopping: list = []
    try:
        postgres = EmbeddedPostgres(directory / "postgres", free_port())
        stopping.append(lambda: kill_postgres(postgres))
        start_postgres(postgres)
        redis = EmbeddedRedis(directory / "redis", free_port())
        stopping.append(lambda: kill_redis(redis))
        redis.start()
        database_url = await create_database(postgres.url, DATABASE_NAME)
        mock_port = free_port()
        mock = start("mock upstream", [*DEVKIT, "mock-upstream", "--host", "127.0.0.1", "--port", str(mock_port)],
                     directory / "mock.log", cwd=ROOT)
        stopping.append(mock.stop)
        if await wait_healthy(f"http://127.0.0.1:{mock_port}/health", READY_TIMEOUT_S, mock) is None:
            raise RuntimeError(f"the mock upstream did not come up:\n{mock.log_tail()}")
        relay = FaultRelay(mock_port)
        await relay.start()
        stopping.append(relay.close)
        port = free_port()
        stripe = fake_stripe.FakeStripe(api_key="sk_test_" + secrets.token_hex(12),
                                        webhook_secret="whsec_" + secrets.token_hex(16),
                                        webhook_url=f"http://127.0.0.1:{port}/api/v1/webhooks/stripe")
        stripe.public_base_url = await _serve_fake_stripe(stopping, stripe)
        env = gateway_env(database_url, redis.url, port=port, relay_url=f"http://127.0.0.1:{relay.port}",
                          stripe=stripe, stripe_url=stripe.public_base_url)
        stack = Stack(directory, postgres, redis, database_url, relay, stripe, port, env, stopping, mock)
        stack.tollgate = start("tollgate", [*TOLLGATE, "serve"], stack.log_path, cwd=ROOT, env=env)
        stopping.append(stack.tollgate.stop)
        if await wait_healthy(stack.url + "/health", READY_TIMEOUT_S, stack.tollgate) is None:
            raise RuntimeError(f"tollgate did not come up:\n{stack.tollgate.log_tail()}")
        return stack
    except BaseException:
        for step in reversed(stopping):
            result = step()
            if asyncio.iscoroutine(result):
                await result
        raise


def reconcile(stack: Stack) -> tuple[bool, str]:
    """`tollgate reconcile` as an operator runs it: its exit status and its last lines."""
    done = subprocess.run([*TOLLGATE, "reconcile"], env=stack.env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    return done.returncode == 0, (done.stdout + done.stderr)[-600:]
