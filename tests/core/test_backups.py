"""`tollgate backup` and `tollgate restore`: a database with money in it, restored into a fresh one,
is up to date, balances to the micro-credit and keeps working."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

import asyncpg
import pytest

import ledger
from gateway.core.backups import without_password
from tests.support.accounts import deposit, register
from tests.support.processes import TOLLGATE, gateway_env
from tests.support.purchases import buy

ACCOUNTS = """SELECT id, kind, code, user_id, debits_posted, credits_posted, debits_pending, credits_pending
FROM accounts ORDER BY id"""


def tollgate(servers, database_url: str, *args: str) -> subprocess.CompletedProcess:
    environment = gateway_env(servers, TOLLGATE_DATABASE_URL=database_url)
    return subprocess.run([*TOLLGATE, *args], env=environment, capture_output=True, text=True, timeout=60)


@pytest.fixture
async def fresh_database(servers):
    """An empty database beside the test database, dropped afterwards."""
    name = "tollgate_restore_" + os.urandom(4).hex()
    admin = await asyncpg.connect(servers.admin_database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    yield servers.admin_database_url.rsplit("/", 1)[0] + "/" + name
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


async def money_in(gateway, database) -> int:
    """Deposits, a purchase, and an AI-style hold still open: every kind of balance there is."""
    ann = await register(gateway, "ann@example.com")
    bob = await register(gateway, "bob@example.com")
    await deposit(database, ann["id"], 120)
    await deposit(database, bob["id"], 7)
    await buy(gateway, ann, 12)
    account = await ledger.user_account(database, bob["id"])
    now = dt.datetime.now(dt.timezone.utc)
    revenue = await ledger.system_id(database, "revenue")
    async with database.acquire() as connection:
        await ledger.move(connection, key="open-hold", debit=account, credit=revenue, amount_micro=2_500_000,
                          kind="usage", now=now, user_id=bob["id"], hold_until=now + dt.timedelta(hours=1))
    return bob["id"]


async def test_a_backup_restored_into_a_fresh_database_reconciles_with_the_same_balances(
        servers, gateway, database, fresh_database, tmp_path):
    bob_id = await money_in(gateway, database)
    backup_path = tmp_path / "tollgate.dump"
    made = tollgate(servers, servers.database_url, "backup", "--output", str(backup_path))
    assert made.returncode == 0, made.stderr
    assert backup_path.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

    restored = tollgate(servers, fresh_database, "restore", "--input", str(backup_path))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "balanced" in restored.stdout
    checked = tollgate(servers, fresh_database, "migrate", "--check")
    assert (checked.returncode, checked.stdout.strip()) == (0, "schema is up to date")
    reconciled = tollgate(servers, fresh_database, "reconcile")
    assert reconciled.returncode == 0, reconciled.stdout

    copy = await asyncpg.connect(fresh_database)
    try:
        original = [dict(row) for row in await database.fetch(ACCOUNTS)]
        assert [dict(row) for row in await copy.fetch(ACCOUNTS)] == original
        assert await copy.fetchval("SELECT count(*) FROM transfers") == await database.fetchval(
            "SELECT count(*) FROM transfers")
        # The sequences came along: the restored ledger takes new transfers.
        await ledger.move(copy, key="after-restore", debit=await ledger.system_id(copy, "payment_clearing"),
                          credit=await ledger.user_account(copy, bob_id), amount_micro=1_000_000, kind="deposit",
                          now=dt.datetime.now(dt.timezone.utc), user_id=bob_id)
        assert (await ledger.reconcile(copy)).ok
    finally:
        await copy.close()


async def test_a_restore_refuses_a_database_that_is_not_empty(servers, database, tmp_path):
    backup_path = tmp_path / "tollgate.dump"
    assert tollgate(servers, servers.database_url, "backup", "--output", str(backup_path)).returncode == 0
    refused = tollgate(servers, servers.database_url, "restore", "--input", str(backup_path))
    assert refused.returncode == 1
    assert "not empty" in refused.stderr


def test_a_migrations_check_names_what_is_pending(servers, fresh_database):
    checked = tollgate(servers, fresh_database, "migrate", "--check")
    assert checked.returncode == 1
    assert "pending" in checked.stdout


@pytest.mark.parametrize("url, bare, password", [
    ("postgresql://app:s%40cret@db:5432/tollgate", "postgresql://app@db:5432/tollgate", "s@cret"),
    ("postgresql://app@db/tollgate", "postgresql://app@db/tollgate", None),
    ("postgres://:only@db/tollgate?sslmode=require", "postgres://db/tollgate?sslmode=require", "only"),
])
def test_the_password_leaves_the_command_line_for_the_environment(url, bare, password):
    assert without_password(url) == (bare, {"PGPASSWORD": password} if password else {})
