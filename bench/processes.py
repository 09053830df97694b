"""Processes the bench owns: system packages, start/stop with bounded waits, readiness, CPU time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

STOP_TIMEOUT_S = 15.0
READY_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 5.0
APT_TIMEOUT_S = 300
LOG_TAIL_CHARS = 2000
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The bench cannot go on; the message says why."""


def ensure_packages(binaries: dict[str, str]) -> None:
    """Install the Debian package of every missing binary (as root), or say which are missing."""
    missing = sorted({package for binary, package in binaries.items() if find_binary(binary) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(f"missing system packages: {' '.join(missing)} (install them or run as root)")
    print(f"==> apt-get install {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, timeout=APT_TIMEOUT_S).returncode != 0:
        # A fresh image may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=APT_TIMEOUT_S)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:
            raise BenchError(f"apt-get install {' '.join(missing)} failed:\n{done.stderr[-LOG_TAIL_CHARS:]}")


def find_binary(name: str) -> str | None:
    # /usr/sbin is not on every user's PATH, and nginx lives there.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")


@dataclass(slots=True)
class Server:
    """A started process in its own session, so Ctrl-C reaches the bench first and it stops them in order."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # tollgate serve passes it on to its workers
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own group: only what this bench started
            self.process.wait(STOP_TIMEOUT_S)


def start(name: str, argv: list[str], log_path: Path, *, cwd: Path | str = "/",
          env: dict[str, str] | None = None) -> Server:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True, cwd=cwd)
    return Server(name, process, log_path)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of one GET; a refused connection is status 0."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def wait_ready(server: Server, url: str) -> None:
    """Poll `url` until it answers 200; fail early with the log if the process died."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        if get(url)[0] == 200:
            return
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer 200 at {url} in {READY_TIMEOUT_S}s:\n{server.log_tail()}")


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, clock ticks) for every live process: its user and system time, and that of
    its children it has reaped — a PostgreSQL backend or autovacuum worker that exited during a
    measurement counts in the postmaster's, so a tree's sum loses nothing and counts nothing twice."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses; the fields after its last ")" do not.
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), sum(int(field) for field in fields[11:15]))
    return table


def cpu_seconds(root_pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named process together with all its descendants (live, or
    exited and reaped within the tree)."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _ticks) in table.items():
        children.setdefault(parent, []).append(pid)
    used: dict[str, float] = {}
    for name, root in root_pids.items():
        ticks, pending = 0, [root]
        while pending:
            pid = pending.pop()
            ticks += table.get(pid, (0, 0))[1]
            pending.extend(children.get(pid, ()))
        used[name] = ticks / CLOCK_TICKS_PER_S
    return used
