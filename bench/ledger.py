"""The ledger benchmark: AI settlements per second through the real code path (issue 13, decision 0021).

    .venv/bin/python -m bench.ledger                    # both paths, 10 s each after 2 s warm-up
    .venv/bin/python -m bench.ledger --seconds 5 --concurrency 256 --lanes 1 --batchers 2

Each settlement is what an AI call does to the ledger: a hold within the key's and the user's budgets
(reservation), then its post at the real cost with the call's usage row (settlement). Many concurrent
calls, spread over many users and API keys (a quarter of them with a budget), run against an embedded
PostgreSQL with its durable defaults (fsync and synchronous_commit on: a commit costs what it costs).

    direct    the path before group commit: one statement and one transaction per hold
              (ledger_move_within_budgets) and per settlement (ledger_resolve + the usage row)
    batched   ledger.Batcher: holds and settlements of concurrent calls in one ledger_batch call each

Reported per path: settlements/s, client statements and PostgreSQL commits per settlement, CPU µs per
settlement of PostgreSQL (all its processes) and of this Python process, the items per batch, and
`tollgate reconcile` after the run. Results: bench/results/ledger-<UTC>.json and ledger-latest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg

import ledger
from bench.processes import cpu_seconds
from devkit.embedded import EmbeddedPostgres, free_port
from gateway.accounts import api_keys, budgets, users
from gateway.ai import usage_log
from gateway.ai.usage_log import UsageRow
from gateway.core import migrate

RESULTS = Path(__file__).resolve().parent / "results"
HOLD_MICRO = 2_000
POST_MICRO = 1_234
FUNDS_MICRO = 10**12
COMMITS = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"


async def prepare(database_url: str, users_count: int) -> list[tuple[int, int, int]]:
    """(user id, account id, key id) per user, each funded, a quarter with budgets far from their limit."""
    await migrate.apply(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=4, max_size=8)
    clearing = await ledger.system_id(pool, "payment_clearing")
    now = dt.datetime.now(dt.timezone.utc)

    async def one(number: int) -> tuple[int, int, int]:
        async with pool.acquire() as connection:
            user_id = await users.ensure_client(connection, email=f"ledger-bench-{number}@tollgate.local")
            account = await ledger.user_account(connection, user_id)
            key = await api_keys.create(connection, user_id=user_id, name="bench", allowed_models=[],
                                        ip_allowlist=[], rpm_limit=0, tpm_limit=0, now=now, expires_at=None)
            await ledger.move(connection, key=f"bench:fund:{user_id}", debit=clearing, credit=account,
                              amount_micro=FUNDS_MICRO, kind="deposit", now=now, user_id=user_id)
            if number % 4 == 0:
                spec = budgets.BudgetSpec(limit_micro=10**14, period="month", alert_percent=0)
                await budgets.put(connection, user_id=user_id, key_id=None, spec=spec, now=now)
                await budgets.put(connection, user_id=user_id, key_id=key.id, spec=spec, now=now)
            return user_id, account, key.id

    try:
        return list(await asyncio.gather(*(one(number) for number in range(users_count))))
    finally:
        await pool.close()


class Path_:
    """One way of sending an AI call's hold and settlement; counts what it sent."""

    def __init__(self, name: str, pool: asyncpg.Pool, batchers: int, lanes: int) -> None:
        self.name, self.pool = name, pool
        self.batchers = [ledger.Batcher(pool, lanes=lanes) for _ in range(batchers)]
        self.statements = 0

    async def settle_one(self, number: int, principal: tuple[int, int, int], revenues: dict[str, int]) -> None:
        user_id, account, key_id = principal
        revenue = revenues[ledger.revenue_shard(user_id)]  # as gateway.ai.reservation credits it
        now = dt.datetime.now(dt.timezone.utc)
        call = f"bench:{os.getpid()}:{number}:{random.getrandbits(64):x}"
        hold_fields = {"key": f"ai:{call}:hold", "debit": account, "credit": revenue, "amount_micro": HOLD_MICRO,
                       "kind": "usage", "now": now, "user_id": user_id, "description": "openai bench-model",
                       "hold_until": now + dt.timedelta(hours=1),
                       "metadata": {"call": call, "key_id": key_id, "model": "bench-model"}}
        batcher = self.batchers[number % len(self.batchers)] if self.batchers else None
        if self.name == "batched" and batcher is not None:
            hold = await batcher.move(**hold_fields, budgeted=True, api_key_id=key_id)
        else:
            async with self.pool.acquire() as connection:
                hold = await ledger.move(connection, **hold_fields, statement=budgets.BUDGETED_MOVE, extra=(key_id,))
        row = UsageRow(call, key_id, user_id, "openai", "bench-model", 120, 0, 80, POST_MICRO, POST_MICRO, hold.id,
                       "ok", False, "upstream", 3, 2, dt.datetime.now(dt.timezone.utc))
        settle = {"key": f"ai:{call}:settle", "hold_id": hold.id, "now": row.created_at, "post_micro": POST_MICRO,
                  "metadata": {"cost_micro": POST_MICRO, "usage_source": "upstream"}}
        if batcher is not None and self.name == "batched":
            await batcher.resolve(**settle, expiring=True, usage=usage_log.columns(row), user_id=user_id)
        else:
            async with self.pool.acquire() as connection:
                await usage_log.resolve_with_row(connection, **settle, row=row)
            self.statements += 2

    def sent(self) -> tuple[int, int]:
        """(statements, items) sent so far: one statement per batch, or per direct call."""
        if self.name == "batched":
            return sum(b.batches for b in self.batchers), sum(b.items for b in self.batchers)
        return self.statements, self.statements


async def drive(path: Path_, principals: list, revenues: dict[str, int], concurrency: int, seconds: float) -> int:
    """`concurrency` calls at a time, each a random user's, until `seconds` pass; settlements done."""
    done = 0
    deadline = time.monotonic() + seconds

    async def caller(number: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await path.settle_one(number, random.choice(principals), revenues)
            done += 1

    await asyncio.gather(*(caller(number) for number in range(concurrency)))
    return done


async def measure(name: str, database_url: str, postmaster: int, principals: list, arguments) -> dict:
    pool = await asyncpg.create_pool(database_url, min_size=arguments.connections, max_size=arguments.connections)
    path = Path_(name, pool, arguments.batchers if name == "batched" else 0, arguments.lanes)
    revenues = {code: await ledger.system_id(pool, code) for code in ledger.REVENUE_SHARDS}
    await drive(path, principals, revenues, arguments.concurrency, arguments.warmup_seconds)
    statements_before, items_before = path.sent()
    commits_before = await pool.fetchval(COMMITS)
    cpu_before = cpu_seconds({"postgres": postmaster})["postgres"]
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    settlements = await drive(path, principals, revenues, arguments.concurrency, arguments.seconds)
    elapsed = time.perf_counter() - started
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_after = cpu_seconds({"postgres": postmaster})["postgres"]
    statements_after, items_after = path.sent()
    for batcher in path.batchers:
        await batcher.close()
    await pool.close()  # the backends report their statistics as they exit
    await asyncio.sleep(1.0)
    connection = await asyncpg.connect(database_url)
    try:
        commits = await connection.fetchval(COMMITS) - commits_before
        report = await ledger.reconcile(connection)
    finally:
        await connection.close()
    python_s = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    statements = statements_after - statements_before
    return {
        "path": name, "settlements": settlements, "seconds": round(elapsed, 2),
        "settlements_per_s": round(settlements / elapsed),
        "statements_per_settlement": round(statements / max(settlements, 1), 3),
        "commits_per_settlement": round(commits / max(settlements, 1), 3),
        "items_per_batch": round((items_after - items_before) / max(statements, 1), 1) if name == "batched" else 1,
        "postgres_cpu_us_per_settlement": round((cpu_after - cpu_before) / max(settlements, 1) * 1e6),
        "python_cpu_us_per_settlement": round(python_s / max(settlements, 1) * 1e6),
        "reconcile": report.text(),
    }


def markdown(results: dict) -> str:
    head = ("| path | settlements/s | statements / settlement | commits / settlement | items / batch "
            "| PostgreSQL CPU µs / settlement | Python CPU µs / settlement | reconcile |\n"
            "|---|---:|---:|---:|---:|---:|---:|---|\n")
    rows = "".join(f"| {r['path']} | {r['settlements_per_s']:,} | {r['statements_per_settlement']} | "
                   f"{r['commits_per_settlement']} | {r['items_per_batch']} | {r['postgres_cpu_us_per_settlement']} | "
                   f"{r['python_cpu_us_per_settlement']} | {r['reconcile']} |\n" for r in results["paths"])
    a = results["arguments"]
    return (f"# Ledger bench ({results['started']})\n\n{a['users']} users with one API key each (a quarter with "
            f"budgets), {a['concurrency']} concurrent calls, {a['connections']} connections, "
            f"{a['batchers']} batcher(s) of {a.get('lanes', 1)} lane(s), {a['seconds']} s measured after "
            f"{a['warmup_seconds']} s warm-up; "
            f"load average {results['load_before']} before, {results['load_after']} after.\n\n{head}{rows}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=1000)
    # 512: as many calls per lane as one lane had at 256 (decision 0021, "Lanes"), so each lane's batches are as big.
    parser.add_argument("--concurrency", type=int, default=512, help="calls in flight at once")
    parser.add_argument("--connections", type=int, default=10, help="the pool (as TOLLGATE_DATABASE_POOL_MAX)")
    parser.add_argument("--batchers", type=int, default=1, help="batchers sharing the calls (workers)")
    parser.add_argument("--lanes", type=int, default=2, help="lanes per batcher (TOLLGATE_LEDGER_BATCH_LANES)")
    parser.add_argument("--paths", default="direct,batched")
    arguments = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-ledger-"))
    os.chmod(directory, 0o755)
    postgres = EmbeddedPostgres(directory / "postgres", free_port())
    results: dict = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
                     "arguments": vars(arguments), "load_before": os.getloadavg()[0], "paths": []}
    try:
        postgres.start()  # durable defaults: fsync and synchronous_commit on
        postmaster = int((postgres.data_dir / "cluster" / "postmaster.pid").read_text().split()[0])
        principals = asyncio.run(prepare(postgres.url, arguments.users))
        for name in arguments.paths.split(","):
            results["paths"].append(asyncio.run(measure(name, postgres.url, postmaster, principals, arguments)))
            print(json.dumps(results["paths"][-1]))
    finally:
        postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ledger-{results['started']}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "ledger-latest.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
