"""Admin UI at scale: 10,000 users and 1,000,000 ledger rows (bench/admin_ui_seed.py, made by
PostgreSQL itself), `tollgate serve` on them, and every page timed as an admin and as a manager,
plus the CSV export of the whole ledger (its speed and the server's peak memory).

    .venv/bin/python -m bench.admin_ui [--repeat 20] [--keep-temp]

Results: bench/results/admin-ui-<UTC timestamp>.json and bench/results/admin-ui-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

from bench.admin_ui_seed import MANAGER_CLIENTS, MANAGERS, TRANSFERS, USERS, seed
from bench.processes import BenchError, ensure_packages, start, wait_ready
from bench.stack import DATABASE_NAME, ROOT, TOLLGATE, Database, tollgate_env
from devkit.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from gateway.accounts import users
from gateway.core import migrate

RESULTS = ROOT / "bench" / "results"
PASSWORD = "bench admin password"
ADMIN, MANAGER = "user1@bench.local", "user2@bench.local"
BUDGET_MS = 100.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def admin_pages(today: dt.date) -> dict[str, str]:
    client = MANAGERS + 2 + USERS // 2
    return {
        "dashboard": "/admin/",
        "users": "/admin/users",
        "users: search": "/admin/users?search=user5000",
        "users: search by name": "/admin/users?search=Bench+User+777",
        "users: filters": "/admin/users?role=client&plan=premium&is_active=true",
        "users: a later page": "/admin/users?after=8000",
        "a user's page": f"/admin/users/{client}",
        "ledger": "/admin/ledger",
        "ledger: one user": f"/admin/ledger?user={client}",
        "ledger: type refund": "/admin/ledger?type=refund",
        "ledger: a date range": f"/admin/ledger?from={today - dt.timedelta(days=40)}"
                                f"&to={today - dt.timedelta(days=35)}",
        "ledger: refunds in a range": f"/admin/ledger?type=refund&from={today - dt.timedelta(days=50)}"
                                      f"&to={today - dt.timedelta(days=49)}",
        "audit log": "/admin/audit",
        "audit log: one action": "/admin/audit?action=credits.adjust",
        "AI usage (7 days)": "/admin/ai-usage",
        "AI usage (30 days)": f"/admin/ai-usage?from={today - dt.timedelta(days=29)}&to={today}",
        "proxy sessions (open)": "/admin/sessions",
        "proxy sessions (all)": "/admin/sessions?open=false",
        "settings": "/admin/settings",
    }


def manager_pages() -> dict[str, str]:
    client = MANAGERS + 2  # the first of the bench manager's clients
    return {"dashboard": "/admin/", "users": "/admin/users", "a client's page": f"/admin/users/{client}",
            "ledger": "/admin/ledger", "AI usage (7 days)": "/admin/ai-usage",
            "proxy sessions": "/admin/sessions?open=false"}


async def prepare(directory: Path, stopping: list) -> Database:
    postgres = EmbeddedPostgres(directory / "postgres", free_port())
    stopping.append(postgres.stop)
    postgres.start(for_tests=True)
    redis = EmbeddedRedis(directory / "redis", free_port())
    stopping.append(redis.stop)
    redis.start()
    connection = await asyncpg.connect(postgres.url)
    await connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    await connection.close()
    database_url = postgres.url.rsplit("/", 1)[0] + "/" + DATABASE_NAME
    await migrate.apply(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        print(f"seeding {USERS:,} users and {TRANSFERS:,} transfers ...", flush=True)
        await seed(connection)
        await connection.execute("UPDATE users SET password_hash = $1 WHERE id IN (1, 2)",
                                 users.hash_password(PASSWORD))
    finally:
        await connection.close()
    return Database(postgres, redis, database_url, "")


async def log_in(session: aiohttp.ClientSession, base: str, email: str) -> None:
    async with session.get(base + "/admin/login") as page:
        token = CSRF.search(await page.text()).group(1)  # type: ignore[union-attr]
    async with session.post(base + "/admin/login", data={"csrf_token": token, "email": email,
                                                         "password": PASSWORD}) as answer:
        if answer.status != 200 or "Dashboard" not in await answer.text():
            raise BenchError(f"could not log in as {email}: {answer.status}")


async def time_page(session: aiohttp.ClientSession, url: str, repeat: int) -> dict:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as answer:
            await answer.read()
            if answer.status != 200:
                raise BenchError(f"{url} answered {answer.status}")
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"median_ms": round(statistics.median(timings), 1),
            "p95_ms": round(timings[max(0, int(len(timings) * 0.95) - 1)], 1), "max_ms": round(timings[-1], 1)}


def peak_memory_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def time_export(session: aiohttp.ClientSession, url: str, pid: int) -> dict:
    before_kb = peak_memory_kb(pid)
    started = time.perf_counter()
    size = rows = 0
    first_byte_ms = None
    async with session.get(url) as answer:
        async for chunk in answer.content.iter_chunked(256 * 1024):
            if first_byte_ms is None:
                first_byte_ms = (time.perf_counter() - started) * 1000
            size += len(chunk)
            rows += chunk.count(b"\n")
    elapsed_s = time.perf_counter() - started
    return {"rows": rows - 1, "bytes": size, "seconds": round(elapsed_s, 2),
            "rows_per_s": round((rows - 1) / elapsed_s),
            "first_byte_ms": round(first_byte_ms or 0, 1), "peak_rss_before_kb": before_kb,
            "peak_rss_after_kb": peak_memory_kb(pid)}


async def measure(base: str, pid: int, repeat: int) -> dict:
    today = dt.datetime.now(dt.timezone.utc).date()
    results: dict = {"admin": {}, "manager": {}}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        started = time.perf_counter()
        await log_in(session, base, ADMIN)  # lands on the first dashboard: it rolls the closed days up
        results["first_dashboard_with_roll_up_ms"] = round((time.perf_counter() - started) * 1000, 1)
        for name, path in admin_pages(today).items():
            await time_page(session, base + path, 1)  # warm: plans cached, pages in memory
            results["admin"][name] = time_page_result = await time_page(session, base + path, repeat)
            print(f"  admin   {name:32} {time_page_result['median_ms']:7.1f} ms median, "
                  f"{time_page_result['p95_ms']:7.1f} p95", flush=True)
        results["export_all"] = await time_export(session, base + "/admin/ledger.csv", pid)
        results["export_one_user"] = await time_export(session, base + f"/admin/ledger.csv?user={USERS // 2}", pid)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await log_in(session, base, MANAGER)
        for name, path in manager_pages().items():
            await time_page(session, base + path, 1)
            results["manager"][name] = page_result = await time_page(session, base + path, repeat)
            print(f"  manager {name:32} {page_result['median_ms']:7.1f} ms median, {page_result['p95_ms']:7.1f} p95",
                  flush=True)
        results["export_manager"] = await time_export(session, base + "/admin/ledger.csv", pid)
    return results


def worker_pid(server_pid: int) -> int:
    """The one worker of `tollgate serve --workers 1` (the master's child), for its memory."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children")
    found = children.read_text().split() if children.exists() else []
    return int(found[0]) if found else server_pid


def summary(results: dict) -> str:
    lines = [f"# Admin UI bench ({results['started_at']})", "",
             f"{USERS:,} users ({MANAGERS} managers, the bench manager with {MANAGER_CLIENTS} clients), "
             f"{TRANSFERS:,} transfers, {results['seed']['ai_usage_rows']:,} AI usage rows; `tollgate serve "
             f"--workers 1`; each page {results['repeat']} times after one warm-up, one at a time. "
             f"Budget: {BUDGET_MS:.0f} ms.", "",
             "| who | page | median ms | p95 ms | max ms |", "|---|---|---:|---:|---:|"]
    for who in ("admin", "manager"):
        for name, timing in results[who].items():
            lines.append(f"| {who} | {name} | {timing['median_ms']} | {timing['p95_ms']} | {timing['max_ms']} |")
    over = [f"{who}: {name}" for who in ("admin", "manager") for name, t in results[who].items()
            if t["p95_ms"] > BUDGET_MS]
    lines += ["", f"Pages over budget (p95): {', '.join(over) if over else 'none'}.",
              "First dashboard after seeding (rolls up 28 closed days once): "
              f"{results['first_dashboard_with_roll_up_ms']} ms.", "", "| CSV export | rows | MB | s | rows/s | "
              "first byte ms | worker peak RSS before → after (MB) |", "|---|---:|---:|---:|---:|---:|---|"]
    for name in ("export_all", "export_one_user", "export_manager"):
        e = results[name]
        lines.append(f"| {name} | {e['rows']:,} | {e['bytes'] / 1e6:.1f} | {e['seconds']} | {e['rows_per_s']:,} | "
                     f"{e['first_byte_ms']} | {e['peak_rss_before_kb'] / 1024:.0f} → "
                     f"{e['peak_rss_after_kb'] / 1024:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_ui", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="requests per page (after one warm-up)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    ensure_packages({"redis-server": "redis-server"})
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-ui-", dir="/tmp"))
    directory.chmod(0o755)
    stopping: list = []
    results: dict = {"started_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "repeat": args.repeat}
    try:
        database = asyncio.run(prepare(directory, stopping))
        results["seed"] = {"ai_usage_rows": 300_000}
        port = free_port()
        argv_serve = [*TOLLGATE, "serve", "--workers", "1"]
        admin_port = free_port()  # the admin UI on a listener of its own (decision 0027)
        env = {**tollgate_env(database, target_url="http://127.0.0.1:9", port=port),
               "TOLLGATE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}"}
        server = start("tollgate", argv_serve, directory / "tollgate.log", cwd=ROOT, env=env)
        stopping.append(server.stop)
        base = f"http://127.0.0.1:{admin_port}"
        wait_ready(server, base + "/admin/login")
        results.update(asyncio.run(measure(base, worker_pid(server.process.pid), args.repeat)))
    finally:
        for stop in reversed(stopping):
            stop()
        if not args.keep_temp:
            shutil.rmtree(directory, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = results["started_at"].replace("-", "").replace(":", "")
    (RESULTS / f"admin-ui-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    text = summary(results)
    (RESULTS / "admin-ui-latest.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
