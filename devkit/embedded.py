"""Embedded servers: a private PostgreSQL and Redis in a data folder, for dev runs and tests."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT_S = 30.0
TEST_SERVER_FLAGS = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class EmbeddedError(Exception):
    """An embedded server could not be started."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(port: int, what: str, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.05)
    detail = log_path.read_text()[-2000:] if log_path and log_path.exists() else ""
    raise EmbeddedError(f"{what} did not open port {port} in {STARTUP_TIMEOUT_S}s\n{detail}")


def postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    for candidate in reversed(candidates):
        if Path(candidate, "initdb").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise EmbeddedError("PostgreSQL binaries not found (install postgresql, see scripts/bootstrap.sh)")


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the unprivileged system user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _postgres_owner() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@dataclass(frozen=True, slots=True)
class EmbeddedPostgres:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, *, for_tests: bool = False) -> None:
        bin_dir = postgres_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        uid, gid = _postgres_owner()
        os.chmod(self.data_dir, 0o755)
        os.chown(self.data_dir, uid, gid)
        cluster = self.data_dir / "cluster"
        if not (cluster / "PG_VERSION").exists():
            done = subprocess.run(
                _as_postgres_user([str(bin_dir / "initdb"), "-D", str(cluster), "-U", "postgres",
                                   "--auth=trust", "-E", "UTF8", "--no-sync"]),
                cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            if done.returncode != 0:
                raise EmbeddedError(f"initdb failed in {cluster} (every parent folder must be "
                                    f"traversable by the postgres user):\n{done.stderr[-2000:]}")
        if _port_open(self.port):
            return
        options = ["-c", f"port={self.port}", "-c", "listen_addresses=127.0.0.1",
                   "-c", f"unix_socket_directories={self.data_dir}", "-c", "max_connections=200"]
        if for_tests:
            options += list(TEST_SERVER_FLAGS)
        log_path = self.data_dir / "postgres.log"
        subprocess.run(
            _as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(cluster), "-l", str(log_path),
                               "-o", " ".join(options), "-w", "-t", "30", "start"]),
            cwd="/", check=True, stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, "PostgreSQL", log_path)

    def stop(self) -> None:
        cluster = self.data_dir / "cluster"
        if not (cluster / "postmaster.pid").exists():
            return
        subprocess.run(
            _as_postgres_user([str(postgres_bin_dir() / "pg_ctl"), "-D", str(cluster), "-m", "fast",
                               "-w", "stop"]),
            cwd="/", check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )


@dataclass(frozen=True, slots=True)
class EmbeddedRedis:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedError("redis-server not found (install redis-server, see scripts/bootstrap.sh)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _port_open(self.port):
            return
        log_path = self.data_dir / "redis.log"
        subprocess.run(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.data_dir),
             "--pidfile", str(self.data_dir / "redis.pid"), "--logfile", str(log_path)],
            check=True, stdout=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, "Redis", log_path)

    def stop(self) -> None:
        pid_file = self.data_dir / "redis.pid"
        if not pid_file.exists():
            return
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)
