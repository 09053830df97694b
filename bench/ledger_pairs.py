"""PostgreSQL's CPU per AI settlement for two versions of the ledger's batch, in one database.

    python -m bench.ledger_pairs [--baseline-function migrations/0019_ledger_batch_leaner.sql]
                                 [--baseline-sql "..."] [--sql "..."] [--rounds 10] [--seconds 3]

What bench.ledger's batched path does (holds within budgets, then their posts with usage rows, through
ledger.Batcher), measured in alternating slices (A B B A …) so the machine's other load and the
tables' growth fall on both alike. The variant is this checkout's `ledger_batch`; the baseline is the
last `CREATE OR REPLACE FUNCTION ledger_batch` of `--baseline-function` (a migration file), created
beside it as `ledger_batch_baseline` with the current function's settings, or the current function
again (a control run: the two should read alike). `--baseline-sql` / `--sql` run before each slice
of the baseline / the variant: a schema state each (e.g. a key dropped for one, put back NOT VALID
for the other). The figure is the CPU time of all PostgreSQL's processes during a variant's slices
over the settlements they completed; `tollgate reconcile` runs after the last slice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg

import ledger
from bench.ledger import Path_, drive, prepare
from bench.processes import cpu_seconds
from ledger.batches import BATCH
from devkit.embedded import EmbeddedPostgres, free_port

BASELINE = "ledger_batch_baseline"
DEFINITION = re.compile(r"CREATE OR REPLACE FUNCTION ledger_batch\(p_items jsonb\).*?\$\$;", re.DOTALL)
SETTINGS = "SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE oid = 'ledger_batch(jsonb)'::regprocedure"


def baseline_definition(migration: str) -> str:
    """The migration's last definition of ledger_batch, renamed to the baseline's name."""
    found = DEFINITION.findall(migration)
    if not found:
        raise ValueError("no CREATE OR REPLACE FUNCTION ledger_batch(p_items jsonb) ... $$; in the file")
    return found[-1].replace("FUNCTION ledger_batch(", f"FUNCTION {BASELINE}(", 1)


def setting_clauses(proconfig: list[str]) -> list[str]:
    """ALTER FUNCTION clauses giving the baseline the current function's settings (name=value)."""
    clauses = []
    for item in proconfig:
        name, _, value = item.partition("=")
        if not re.fullmatch(r"[a-z_.]+", name) or not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError(f"unexpected function setting {item!r}")
        clauses.append(f"ALTER FUNCTION {BASELINE}(jsonb) SET {name} = {value}")
    return clauses


async def install_baseline(database_url: str, migration: Path | None) -> str:
    """The statement the baseline's batcher calls: the baseline function, or ledger_batch itself."""
    if migration is None:
        return BATCH
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(baseline_definition(migration.read_text()))
        for clause in setting_clauses(list(await connection.fetchval(SETTINGS))):
            await connection.execute(clause)
    finally:
        await connection.close()
    return BATCH.replace("ledger_batch(", f"{BASELINE}(")


async def run(database_url: str, postmaster: int, principals: list, arguments: argparse.Namespace) -> dict:
    statement = await install_baseline(database_url, arguments.baseline_function)
    pool = await asyncpg.create_pool(database_url, min_size=arguments.connections, max_size=arguments.connections)
    revenues = {code: await ledger.system_id(pool, code) for code in ledger.REVENUE_SHARDS}
    paths = {name: Path_("batched", pool, 1, arguments.lanes) for name in ("baseline", "variant")}
    for batcher in paths["baseline"].batchers:
        batcher.statement = statement
    setup = {"baseline": arguments.baseline_sql, "variant": arguments.sql}
    totals = {name: {"settlements": 0, "seconds": 0.0, "cpu_s": 0.0, "batches": 0, "items": 0} for name in paths}
    for name in paths:  # warm-up: plans cached, connections open
        if setup[name]:
            await pool.execute(setup[name])
        await drive(paths[name], principals, revenues, arguments.concurrency, arguments.warmup_seconds)
    names = list(paths)
    for number in range(arguments.rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            if setup[name]:
                await pool.execute(setup[name])
            batches, items = paths[name].sent()
            cpu_before, started = cpu_seconds({"postgres": postmaster})["postgres"], time.perf_counter()
            settlements = await drive(paths[name], principals, revenues, arguments.concurrency, arguments.seconds)
            elapsed, cpu_after = time.perf_counter() - started, cpu_seconds({"postgres": postmaster})["postgres"]
            total = totals[name]
            total["settlements"] += settlements
            total["seconds"] += elapsed
            total["cpu_s"] += cpu_after - cpu_before
            total["batches"] += paths[name].sent()[0] - batches
            total["items"] += paths[name].sent()[1] - items
            print(f"slice {number + 1} {name}: {settlements} settlements, "
                  f"{us_per(cpu_after - cpu_before, settlements):.1f} µs PostgreSQL CPU each", flush=True)
    for path in paths.values():
        for batcher in path.batchers:
            await batcher.close()
    report = await ledger.reconcile(pool)
    await pool.close()
    return {"totals": totals, "reconcile": report.text()}


def us_per(cpu_s: float, settlements: int) -> float:
    return cpu_s / settlements * 1e6 if settlements else 0.0


def table(result: dict) -> str:
    lines = ["variant     settlements/s   PostgreSQL CPU µs/settlement   items/batch"]
    for name, total in result["totals"].items():
        rate = total["settlements"] / total["seconds"] if total["seconds"] else 0.0
        per_batch = total["items"] / total["batches"] if total["batches"] else 0.0
        lines.append(f"{name:<10} {rate:>14,.0f} {us_per(total['cpu_s'], total['settlements']):>30.1f} "
                     f"{per_batch:>13.1f}")
    lines.append(f"reconcile: {result['reconcile']}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_pairs", description=__doc__.split("\n")[0])
    parser.add_argument("--baseline-function", type=Path, help="a migration file: its last ledger_batch")
    parser.add_argument("--baseline-sql", default="", help="SQL run before each baseline slice")
    parser.add_argument("--sql", default="", help="SQL run before each variant slice")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0, help="per slice")
    parser.add_argument("--warmup-seconds", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--lanes", type=int, default=2)
    arguments = parser.parse_args(argv)
    if not (1 <= arguments.rounds <= 40 and 0 < arguments.seconds <= 60 and 0 <= arguments.warmup_seconds <= 60
            and 1 <= arguments.users <= 100_000 and 1 <= arguments.concurrency <= 4096
            and 2 <= arguments.connections <= 100 and 1 <= arguments.lanes <= 16):
        parser.error("an argument is out of bounds")
    if arguments.baseline_function is not None and not arguments.baseline_function.is_file():
        parser.error(f"no such file: {arguments.baseline_function}")
    return arguments


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tollgate-bench-ledger-pairs-"))
    os.chmod(directory, 0o755)
    postgres = EmbeddedPostgres(directory / "postgres", free_port())
    try:
        postgres.start()  # durable defaults, as bench.ledger
        postmaster = int((postgres.data_dir / "cluster" / "postmaster.pid").read_text().split()[0])
        principals = asyncio.run(prepare(postgres.url, arguments.users))
        result = asyncio.run(run(postgres.url, postmaster, principals, arguments))
    finally:
        postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(table(result))
    return result


if __name__ == "__main__":
    main()
