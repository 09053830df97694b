"""The command line as a user runs it: serve --workers 2, the embedded dev run, and the admin commands."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import pytest

import ledger

from gateway.accounts import access_tokens
from devkit.embedded import free_port
from tests.conftest import JWT_SECRET, make_token, proxy_headers

# The console script exactly as the README's commands run it (not `python -m`, which would hide
# a broken install by importing from the working directory).
TOLLGATE = [str(Path(sys.executable).parent / "tollgate")]
# The dev kit runs from the checkout, as scripts/run.sh runs it.
DEVKIT = [sys.executable, "-m", "devkit"]
ROOT = Path(__file__).resolve().parent.parent
PROXY_SERIES = re.compile(r'^tollgate_http_requests_total\{[^}]*route="proxy"[^}]*\} (\S+)$', re.M)


def gateway_env(servers, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    # `serve` refuses the default log mail sender (decision 0014); tests/test_mail.py covers that.
    env.update({"TOLLGATE_DATABASE_URL": servers.database_url, "TOLLGATE_REDIS_URL": servers.redis_url,
                "TOLLGATE_JWT_SECRET": JWT_SECRET, "TOLLGATE_MAIL_SENDER": "none", **extra})
    return env


def run_cli(servers, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TOLLGATE, *args], env=gateway_env(servers), capture_output=True,
                          text=True, timeout=60)


async def wait_until_up(url: str, process, seconds: float = 30.0) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds * 10)):
            assert process.returncode is None, "gateway exited early"
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


async def wait_for_workers(base: str, count: int, seconds: float = 30.0) -> None:
    """Both workers count themselves in once their start-up (pools, Redis) is done."""
    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds * 10)):
            async with session.get(base + "/metrics") as response:
                if re.search(rf"^tollgate_workers {count}\.0$", await response.text(), re.M):
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{count} workers did not come up")


async def stop(process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()


async def test_two_workers_share_one_port_and_report_each_others_requests(servers, database,
                                                                          mock_target):
    issued = await make_token(database)
    limited = await make_token(database, email="premium@example.com", plan="premium")
    port = free_port()
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port),
                      TOLLGATE_PLAN_LIMITS_PER_MIN="free=1000,premium=5,enterprise=0", TOLLGATE_MAIL_SENDER="none")
    process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(base + "/health", process)
        await wait_for_workers(base, 2)
        requests_n = 40
        # A fresh connection per request lets the kernel spread them over both workers.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(requests_n):
                async with session.get(base + "/api/v1/proxy/echo/x",
                                       headers=proxy_headers(issued.token)) as response:
                    assert response.status == 200
            statuses = []
            for _ in range(12):
                async with session.get(base + "/api/v1/proxy/echo/x",
                                       headers=proxy_headers(limited.token)) as response:
                    statuses.append(response.status)
            scrapes = []
            for _ in range(6):
                async with session.get(base + "/metrics") as response:
                    scrapes.append(await response.text())
        # The premium limit (5/min) holds across both workers: Redis keeps one window.
        assert sorted(statuses) == [200] * 5 + [429] * 7
        for text in scrapes:
            assert sum(float(v) for v in PROXY_SERIES.findall(text)) == requests_n + 12
            assert re.search(r"^tollgate_workers 2\.0$", text, re.M)
    finally:
        await stop(process)


def worker_pids(master_pid: int) -> set[int]:
    """The master's worker processes: its spawned children (the resource tracker is not one)."""
    pids = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                command = cmdline.read()
        except OSError:
            continue  # gone meanwhile
        if parent == master_pid and b"spawn_main" in command:
            pids.add(int(entry))
    return pids


async def eventually(predicate, seconds: float = 30.0) -> bool:
    for _ in range(int(seconds * 10)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(servers, database, mock_target, tmp_path):
    issued = await make_token(database)
    port, metrics_port = free_port(), free_port()
    env = gateway_env(servers, TOLLGATE_TARGET_URL=mock_target, TOLLGATE_PORT=str(port),
                      TOLLGATE_METRICS_PORT=str(metrics_port))
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                       stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until_up(base + "/health", process)
        await wait_for_workers(f"http://127.0.0.1:{metrics_port}", 2)
        first = worker_pids(process.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        assert await eventually(lambda: len(worker_pids(process.pid) - first) == 1)
        assert victim not in worker_pids(process.pid)
        await wait_for_workers(f"http://127.0.0.1:{metrics_port}", 2)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(20):
                async with session.get(base + "/api/v1/proxy/echo/x",
                                       headers=proxy_headers(issued.token)) as response:
                    assert response.status == 200
        assert process.returncode is None
    finally:
        await stop(process)
    assert process.returncode == 0
    assert f"worker {victim} exited" in log_path.read_text()


async def test_workers_that_keep_failing_at_start_make_the_master_exit_non_zero(servers, tmp_path):
    env = gateway_env(servers, TOLLGATE_TARGET_URL="http://127.0.0.1:9", TOLLGATE_PORT=str(free_port()),
                      TOLLGATE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
                      TOLLGATE_WORKER_RESTARTS_MAX="2", TOLLGATE_WORKER_RESTART_WINDOW_S="60")
    process = await asyncio.create_subprocess_exec(*TOLLGATE, "serve", "--workers", "2", env=env,
                                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, errors = await asyncio.wait_for(process.communicate(), 90)
    finally:
        await stop(process)
    assert process.returncode == 1
    assert b"giving up" in errors


async def test_the_dev_run_prints_curl_lines_that_work():
    data_dir = Path(tempfile.mkdtemp(prefix="tollgate-dev-test-", dir="/tmp"))
    data_dir.chmod(0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    env.update({"TOLLGATE_DATA_DIR": str(data_dir), "TOLLGATE_PORT": str(port)})
    log_path = data_dir / "dev-run.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(*DEVKIT, "dev", env=env, cwd=ROOT,
                                                       stdout=subprocess.PIPE, stderr=log_file)
    try:
        banner = ""
        while "Press Ctrl-C" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, f"dev run ended early:\n{banner}"
            banner += line.decode()
        # A password is printed once, when it is generated (decision 0014).
        admin_password = (data_dir / "admin_password").read_text().strip()
        assert f"admin@tollgate.local / {admin_password}   (generated now" in banner
        curl_lines = [line.strip().split("   #")[0] for line in banner.splitlines()
                      if line.strip().startswith("curl ")]
        assert len(curl_lines) >= 14
        outputs = []
        for line in curl_lines:
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, line
            outputs.append(done.stdout)
        joined = "\n".join(outputs)
        assert '"status":"ok"' in outputs[0]
        assert '"valid":true' in outputs[1]
        assert "HTTP/1.1 200" in outputs[2] and f"127.0.0.1:{port}/api/v1/proxy/page2" in outputs[2]
        assert json.loads(outputs[3])["path"] == "/echo/hello"
        assert "device_conflict" in outputs[4]
        assert "access_token" in outputs[5]
        assert len(json.loads(outputs[6])["items"]) == 4
        assert json.loads(outputs[7])["price"] == "1", outputs[7]
        assert [t["type"] for t in json.loads(outputs[8])["items"]][:2] == ["purchase", "adjustment"]
        assert json.loads(outputs[9])["usage"]["completion_tokens"] == 10
        assert "event: message_stop" in outputs[10]
        assert json.loads(outputs[11])["usageMetadata"]["candidatesTokenCount"] > 0
        assert ledger.parse_credits(json.loads(outputs[12])["balance"]["tokens_available"]) < 99 * 10**6
        assert "tollgate_http_requests_total" in joined
        # A magic link goes to this terminal (stdout), never to the log (stderr): M10.
        async with aiohttp.ClientSession() as session:
            async with session.post(f"http://127.0.0.1:{port}/api/v1/auth/magic-link",
                                    json={"email": "demo@tollgate.local"}) as response:
                assert response.status == 202
        printed = ""
        while "magic-link/verify?token=" not in printed:
            printed += (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        token = re.search(r"token=([A-Za-z0-9_-]{64})", printed).group(1)
        assert token not in log_path.read_text(errors="replace")
    finally:
        await stop(process)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_a_later_dev_start_names_the_password_files_instead_of_printing_them():
    from devkit import dev
    from gateway.core.config import Settings

    facts = {"admin_password": "", "demo_password": "", "admin_password_file": "/data/admin_password",
             "demo_password_file": "/data/demo_password", "demo_token": "t" * 64, "demo_api_key": "tg_key"}
    text = dev.banner(Settings(public_url="http://127.0.0.1:8080"), facts)
    assert "admin@tollgate.local / the password in /data/admin_password" in text
    assert '\\"password\\": \\"$(cat /data/admin_password)\\"' in text
    first = dev.banner(Settings(public_url="http://127.0.0.1:8080"), {**facts, "admin_password": "s3cret-pw"})
    assert "admin@tollgate.local / s3cret-pw   (generated now, shown once; kept in /data/admin_password)" in first


def test_create_admin_is_idempotent(servers, database):
    first = run_cli(servers, "create-admin", "--email", "boss@example.com", "--password", "long password 1")
    second = run_cli(servers, "create-admin", "--email", "boss@example.com", "--password", "long password 2")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split("user id")[1] == second.stdout.split("user id")[1]


def test_create_admin_refuses_a_short_password(servers, database):
    done = run_cli(servers, "create-admin", "--email", "boss@example.com", "--password", "short")
    assert done.returncode == 2


async def test_issue_token_prints_a_token_stored_only_as_its_hash(servers, database):
    done = run_cli(servers, "issue-token", "--email", "desk@example.com", "--hours", "2",
                   "--scope", "certificates_only")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert access_tokens.looks_valid(token)
    row = await database.fetchrow("SELECT scope, token_hash FROM access_tokens")
    assert row["scope"] == "certificates_only" and bytes(row["token_hash"]) == access_tokens.digest(token)


def test_issue_token_refuses_a_bad_scope_or_duration(servers, database):
    assert run_cli(servers, "issue-token", "--email", "d@example.com", "--hours", "1",
                   "--scope", "everything").returncode == 2
    assert run_cli(servers, "issue-token", "--email", "d@example.com", "--hours", "0").returncode == 2


async def test_revoke_token_revokes_and_writes_the_tombstone(servers, database, redis_client):
    issued = await make_token(database)
    done = run_cli(servers, "revoke-token", "--id", str(issued.id))
    assert done.returncode == 0 and f"token {issued.id} revoked" in done.stdout, done.stderr
    assert await redis_client.hget(f"tg:{{{access_tokens.digest(issued.token).hex()}}}:rec", "state") == "revoked"


async def test_revoke_token_with_redis_down_says_the_refusal_is_queued_in_one_line(servers, database):
    """ATTACK-2026-12-01 L13: the revocation was committed but the command printed a traceback.
    Now the refusal is queued with it (decision 0015): done, and said in one line."""
    issued = await make_token(database)
    env = {**gateway_env(servers), "TOLLGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    done = subprocess.run([*TOLLGATE, "revoke-token", "--id", str(issued.id)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and len(done.stdout.strip().splitlines()) == 1
    assert "revoked" in done.stdout and "queued" in done.stdout
    assert await database.fetchval("SELECT count(*) FROM credential_cache_outbox") == 1
    assert await database.fetchval("SELECT revoked_at FROM access_tokens WHERE id = $1", issued.id) is not None


def test_revoke_token_of_an_unknown_id_exits_1(servers, database):
    done = run_cli(servers, "revoke-token", "--id", "999999")
    assert done.returncode == 1 and "no token with id 999999" in done.stderr


def test_migrate_reports_an_up_to_date_schema(servers):
    done = run_cli(servers, "migrate")
    assert done.returncode == 0 and "up to date" in done.stdout


def test_serve_names_a_missing_setting():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLLGATE_")}
    done = subprocess.run([*TOLLGATE, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "TOLLGATE_DATABASE_URL" in done.stderr
