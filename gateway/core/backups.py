"""Backups: the whole database to one file (pg_dump's custom format) and back into an empty
database (pg_restore), through the configured database URL (decision 0025)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import asyncpg

# Tables outside PostgreSQL's own schemas: a restore goes only into a database that has none.
USER_TABLES = """
SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"""
# A dump or restore of a large ledger takes a while; beyond this something is stuck.
TOOL_TIMEOUT_S = 6 * 3600


class BackupError(Exception):
    """A backup or restore could not be made; the message says why."""


def tool(name: str) -> str:
    """pg_dump or pg_restore: on PATH, else the newest in Debian's PostgreSQL folders."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]), reverse=True):
        if Path(folder, name).exists():
            return str(Path(folder, name))
    raise BackupError(f"{name} not found: install PostgreSQL's client programs (postgresql-client)")


def without_password(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL for the command line, and its password for the environment (PGPASSWORD): a command
    line is visible to every user of the machine, an environment only to the process's owner."""
    parts = urllib.parse.urlsplit(database_url)
    if parts.password is None:
        return database_url, {}
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    bare = parts._replace(netloc=f"{user}@{host}" if user else host)
    return urllib.parse.urlunsplit(bare), {"PGPASSWORD": urllib.parse.unquote(parts.password)}


def _run(argv: list[str], environment: dict[str, str]) -> None:
    done = subprocess.run(argv, env={**os.environ, **environment}, capture_output=True, text=True,
                          timeout=TOOL_TIMEOUT_S)
    if done.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def backup(database_url: str, path: str) -> int:
    """Dump the database to `path` in one consistent snapshot; returns its size in bytes.

    Written beside it first and renamed at the end: a file at `path` is always a whole backup.
    """
    url, environment = without_password(database_url)
    partial = f"{path}.partial"
    try:
        _run([tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", partial,
              "--dbname", url], environment)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return os.path.getsize(path)


async def user_tables(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval(USER_TABLES)
    finally:
        await connection.close()


def restore(database_url: str, path: str) -> None:
    """Restore a backup into an empty database, all or nothing (one transaction)."""
    if not os.path.isfile(path):
        raise BackupError(f"no backup file at {path}")
    if asyncio.run(user_tables(database_url)):
        raise BackupError("the database is not empty: restore into a new one (createdb), then point "
                          "TOLLGATE_DATABASE_URL at it")
    url, environment = without_password(database_url)
    _run([tool("pg_restore"), "--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges",
          "--dbname", url, path], environment)
