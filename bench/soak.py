"""The soak: tollgate's desktop path under steady load for minutes (RSS and open connections at the
start and the end), then 10,000 slow clients held open while other clients are still served."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import wrk
from bench.processes import BenchError, _process_table

CHUNK_S = 60
SLOW_READY_TIMEOUT_S = 240
RSS_SAMPLE_S = 0.5
MIB = 1024 * 1024


def tree(root: int) -> list[int]:
    """The root pid and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _ticks) in _process_table().items():
        children.setdefault(parent, []).append(pid)
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def rss_bytes(root: int) -> int:
    """Resident memory of the process tree (VmRSS summed; shared pages counted once per process)."""
    total = 0
    for pid in tree(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def open_sockets(root: int) -> int:
    """Sockets the process tree holds open: client connections plus its upstream, Redis and database pools."""
    count = 0
    for pid in tree(root):
        try:
            entries = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    count += os.readlink(entry.path).startswith("socket:")
                except OSError:
                    continue
    return count


def _sample(root: int) -> dict:
    return {"at_s": round(time.monotonic(), 1), "rss_mib": round(rss_bytes(root) / MIB, 1),
            "open_sockets": open_sockets(root)}


def steady_load(url: str, headers: dict[str, str], root: int, minutes: float, connections: int) -> dict:
    """wrk for `minutes` in one-minute runs, sampling the tree between them."""
    start = _sample(root)
    samples, runs = [start], []
    remaining_s = max(1, round(minutes * 60))
    while remaining_s > 0:
        seconds = min(CHUNK_S, remaining_s)
        runs.append(wrk.run(url, seconds=seconds, threads=2, connections=connections, headers=headers))
        samples.append(_sample(root))
        remaining_s -= seconds
    end = samples[-1]
    requests = sum(run.requests for run in runs)
    errors = sum(run.non_2xx_3xx + run.socket_errors for run in runs)
    growth = (end["rss_mib"] - start["rss_mib"]) / start["rss_mib"] if start["rss_mib"] else 0.0
    return {"minutes": minutes, "requests": requests, "errors": errors,
            "requests_per_s": round(requests / sum(run.duration_s for run in runs), 1),
            "latency_p95_ms_worst_minute": max(run.latency_p95_ms for run in runs),
            "rss_start_mib": start["rss_mib"], "rss_end_mib": end["rss_mib"], "rss_growth_pct": round(100 * growth, 2),
            "open_sockets_start": start["open_sockets"], "open_sockets_end": end["open_sockets"], "samples": samples}


def slow_clients(port: int, count: int, root: int, load_url: str, load_headers: dict[str, str], seconds: int,
                 directory: Path) -> dict:
    """`count` idle keep-alive clients held open while wrk serves others; the tree's peak RSS meanwhile."""
    rss_before = rss_bytes(root)
    argv = [sys.executable, "-m", "bench.slow_clients", "--port", str(port), "--count", str(count)]
    holder = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        ready = _ready_line(holder)
        held, failed = (int(n) for n in ready.split()[1:3])
        peak = [rss_bytes(root)]
        sockets_held = open_sockets(root)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(RSS_SAMPLE_S):
                peak.append(rss_bytes(root))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            served = wrk.run(load_url, seconds=seconds, threads=2, connections=64, headers=load_headers)
        finally:
            done.set()
            sampler.join()
        holder.stdin.close()
        last = holder.stdout.readline().split()
        still_held = int(last[1]) if len(last) == 2 and last[0] == "held" else None
    finally:
        if holder.poll() is None:
            holder.terminate()
        holder.wait(30)
    return {"slow_clients": count, "held": held, "failed_to_open": failed, "still_open_after_load": still_held,
            "open_sockets_while_held": sockets_held, "rss_before_mib": round(rss_before / MIB, 1),
            "rss_peak_mib": round(max(peak) / MIB, 1), "served_while_held": served.as_dict()}


def _ready_line(holder: subprocess.Popen) -> str:
    deadline = time.monotonic() + SLOW_READY_TIMEOUT_S
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(holder.stdout.readline()), daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    if not result or not result[0].startswith("ready"):
        raise BenchError(f"the slow clients were not all connected within {SLOW_READY_TIMEOUT_S} s")
    return result[0]
