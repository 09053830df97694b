"""A real PostgreSQL streaming replica of the test run's server: pg_basebackup -R as the postgres user,
started on its own port in hot standby; and waiting for it to replay what the primary wrote."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from devkit.embedded import free_port, postgres_bin_dir

CATCH_UP_S = 10.0


def _as_postgres(argv: list[str]) -> list[str]:
    # pg_basebackup writes files the server (the postgres user) must own; postgres refuses root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Replica:
    folder: Path
    port: int

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.folder / "data"),
                                     "-m", "immediate", "-w", "stop"]),
                       cwd="/", check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.folder, ignore_errors=True)


async def _setting(url: str, name: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(f"SHOW {name}")
    finally:
        await connection.close()


def start_replica(primary_url: str) -> Replica:
    """Copy the primary with pg_basebackup -R (it writes the standby's primary_conninfo) and start it."""
    # A standby refuses to replay with fewer connections than its primary allows.
    max_connections = asyncio.run(_setting(primary_url, "max_connections"))
    primary_port = str(urlsplit(primary_url).port)
    folder = Path(tempfile.mkdtemp(prefix="tollgate-replica-", dir="/tmp"))
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    folder.chmod(0o755)
    replica = Replica(folder, free_port())
    bin_dir = postgres_bin_dir()
    subprocess.run(_as_postgres([str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", primary_port,
                                 "-U", "postgres", "-D", str(folder / "data"), "-R", "-X", "stream",
                                 "--checkpoint=fast", "--no-sync"]),
                   cwd="/", check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
    options = (f"-c port={replica.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder} "
               f"-c max_connections={max_connections} -c hot_standby=on -c fsync=off -c wal_receiver_status_interval=1")
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "log"),
                                 "-o", options, "-w", "-t", "30", "start"]),
                   cwd="/", check=True, stdout=subprocess.DEVNULL, timeout=60)
    return replica


async def caught_up(primary: asyncpg.Pool, replica_url: str) -> None:
    """Wait until the replica has replayed everything the primary had written when this was called
    (the insert position: with synchronous_commit=off a commit may not be flushed yet)."""
    target = await primary.fetchval("SELECT pg_current_wal_insert_lsn()")
    connection = await asyncpg.connect(replica_url)
    try:
        for _ in range(int(CATCH_UP_S * 20)):
            if await connection.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target):
                return
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    raise AssertionError(f"the replica did not reach {target} in {CATCH_UP_S} s")
