"""Migrations: ordered, recorded, safe twice and concurrently."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gateway.core import migrate
from tests.support.database import fresh_database


async def test_migrations_apply_in_order_and_are_recorded(servers):
    url = await fresh_database(servers, "migrate_order")
    applied = await migrate.apply(url)
    assert applied == sorted(applied) and applied[0] == 1
    connection = await asyncpg.connect(url)
    versions = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
    await connection.close()
    assert [row["version"] for row in versions] == applied


async def test_migrating_twice_applies_nothing_the_second_time(servers):
    url = await fresh_database(servers, "migrate_twice")
    await migrate.apply(url)
    assert await migrate.apply(url) == []


async def test_concurrent_migrators_apply_each_migration_once(servers):
    url = await fresh_database(servers, "migrate_race")
    results = await asyncio.gather(*(migrate.apply(url) for _ in range(4)))
    flattened = sorted(v for result in results for v in result)
    assert flattened == [m.version for m in migrate.discover()]


async def test_a_changed_applied_migration_is_refused(servers):
    url = await fresh_database(servers, "migrate_changed")
    await migrate.apply(url)
    first = migrate.discover()[0]
    tampered = migrate.Migration(first.version, first.name, first.sql + "\n-- edited")
    with pytest.raises(migrate.MigrationError):
        await migrate.apply(url, [tampered])


async def test_a_failing_migration_leaves_no_trace(servers):
    url = await fresh_database(servers, "migrate_fail")
    broken = migrate.Migration(1, "broken", "CREATE TABLE half (id int); SELECT 1/0;")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await migrate.apply(url, [broken])
    connection = await asyncpg.connect(url)
    tables = await connection.fetchval("SELECT count(*) FROM pg_tables WHERE tablename = 'half'")
    recorded = await connection.fetchval("SELECT count(*) FROM schema_migrations")
    await connection.close()
    assert (tables, recorded) == (0, 0)
