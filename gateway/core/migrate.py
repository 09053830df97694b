"""Migrations: numbered SQL files applied in order, once each, under a PostgreSQL advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

# Any constant works as long as every tollgate process uses the same one.
ADVISORY_LOCK_KEY = 0x7011_6A7E
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(Exception):
    """A migration file is malformed or an applied one was changed afterwards."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("migrations").iterdir():
        match = FILE_PATTERN.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {versions}")
    return found


async def apply(database_url: str, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations; returns the versions applied by this call."""
    migrations = discover() if migrations is None else migrations
    connection = await asyncpg.connect(database_url)
    try:
        # A session-level lock serialises concurrent migrators; the loser then sees the work done.
        await connection.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
        try:
            await connection.execute(CREATE_TABLE)
            rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
            applied = {row["version"]: row["checksum"] for row in rows}
            done: list[int] = []
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.version:04d}_{migration.name} changed after it was applied"
                        )
                    continue
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        migration.version, migration.name, migration.checksum,
                    )
                done.append(migration.version)
            return done
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)
    finally:
        await connection.close()


async def pending(database_url: str, migrations: list[Migration] | None = None) -> list[int]:
    """The versions not applied yet, applying nothing (`tollgate migrate --check`); an applied
    migration changed since raises MigrationError, as `apply` would."""
    migrations = discover() if migrations is None else migrations
    connection = await asyncpg.connect(database_url)
    try:
        applied: dict[int, str] = {}
        if await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
            applied = {row["version"]: row["checksum"] for row in rows}
    finally:
        await connection.close()
    changed = [f"{m.version:04d}_{m.name}" for m in migrations if applied.get(m.version, m.checksum) != m.checksum]
    if changed:
        raise MigrationError(f"migration(s) changed after they were applied: {', '.join(changed)}")
    return [m.version for m in migrations if m.version not in applied]
