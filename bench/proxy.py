"""Proxy benchmark: the mock upstream direct, behind nginx and behind tollgate (its desktop path with the
headers, and with a browser session's cookie), in one run on loopback.

    python -m bench.proxy [--seconds 10] [--connections 64] [--workers 1]

Everything it starts (mock, nginx, PostgreSQL, Redis, tollgate) lives in a temporary directory and
is stopped on the way out, Ctrl-C included. See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench import pairs, profile, report, runs, wrk
from bench.nginx import start_nginx
from bench.processes import BenchError, cpu_seconds, ensure_packages, get, wait_ready
from bench.stack import DEVICE_ID, database_pids, open_browser_session, start_database, start_mock, start_tollgate
from devkit.embedded import EmbeddedError, free_port, postgres_bin_dir

ROOT = Path(__file__).resolve().parents[1]
PROXY_PREFIX = "/api/v1/proxy"
# A tiny route (pure proxy overhead), the HTML page tollgate rewrites, and a 16 KiB streamed body.
DEFAULT_PATHS = ("/health", "/", "/big?bytes=16384")
SECONDS_MAX = 600
CONNECTIONS_MAX = 10_000
WORKERS_MAX = 16
PATHS_MAX = 10
BODY_SHOWN_CHARS = 2000
PACKAGES = {"wrk": "wrk", "nginx": "nginx", "redis-server": "redis-server"}
# tollgate's desktop path with the headers and with a browser session's cookie: measured in turns.
PAIR = ("tollgate", "tollgate-cookie")
# --limits: windows that count every request but never refuse one (wrk's all come from 127.0.0.1).
LIMITS_ENV = {"TOLLGATE_IP_LIMIT_PER_MIN": "1000000000",
              "TOLLGATE_PLAN_LIMITS_PER_MIN": "free=100,premium=500,enterprise=1000000000"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per target and path")
    parser.add_argument("--warmup-seconds", type=int, default=2, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--workers", type=int, default=1, help="tollgate serve --workers, nginx worker_processes")
    parser.add_argument("--paths", default=",".join(DEFAULT_PATHS), help="comma-separated upstream paths")
    parser.add_argument("--rounds", type=int, default=4,
                        help="slices in which tollgate's header and cookie variants take turns (bench/pairs.py)")
    parser.add_argument("--limits", action="store_true",
                        help="tollgate's IP and plan windows on (limits too high to refuse): every Redis window"
                             " of the desktop path counted, as in a deployment with its limits")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--profile", action="store_true",
                        help="sample tollgate with py-spy during its measured runs (pip install py-spy);"
                             " the sampler takes CPU from the servers, so keep such numbers apart")
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    checks = {"--seconds": 1 <= args.seconds <= SECONDS_MAX,
              "--warmup-seconds": 0 <= args.warmup_seconds <= SECONDS_MAX,
              "--connections": args.threads <= args.connections <= CONNECTIONS_MAX,
              "--threads": 1 <= args.threads <= 64, "--workers": 1 <= args.workers <= WORKERS_MAX,
              "--rounds": 1 <= args.rounds <= 20,
              "--paths": 1 <= len(args.paths) <= PATHS_MAX and all(p.startswith("/") for p in args.paths)}
    for name, ok in checks.items():
        if not ok:
            parser.error(f"{name} is out of range")
    if args.profile and profile.py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    return args


def ensure_tools() -> None:
    packages = dict(PACKAGES)
    try:
        postgres_bin_dir()
    except EmbeddedError:
        packages["initdb"] = "postgresql"  # not on PATH even when installed; only asked for when missing
    ensure_packages(packages)


def run_facts(args: argparse.Namespace) -> dict:
    started = dt.datetime.now(dt.timezone.utc)
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    return {
        "started_utc": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "started_utc_compact": started.strftime("%Y%m%dT%H%M%SZ"),
        "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain")),
        "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.platform(),
        "seconds": args.seconds, "warmup_seconds": args.warmup_seconds, "connections": args.connections,
        "threads": args.threads, "workers": args.workers, "paths": args.paths, "profiled": args.profile,
        # bench.all and bench.ai have no --limits, bench.ai no --rounds.
        "pair_rounds": getattr(args, "rounds", None), "limits": getattr(args, "limits", False),
        # Other work on the machine skews everything; a high value before the run says so.
        "load_average_1m_before": round(os.getloadavg()[0], 2),
    }


def verify(bases: dict[str, tuple[str, dict]], paths: list[str], mock_url: str, tollgate_url: str) -> dict:
    """Every target answers 200 on every path before any load; tollgate really rewrites the HTML."""
    checks: dict[str, object] = {}
    for path in paths:
        for target, (base, headers) in bases.items():
            status, body = get(base + path, headers)
            if status != 200:
                raise BenchError(f"{target} answered {status} on {base + path}:\n"
                                 f"{body[:BODY_SHOWN_CHARS].decode(errors='replace')}")
            if target == "tollgate" and path == "/":
                checks["html_rewritten"] = mock_url.encode() not in body and tollgate_url.encode() in body
                checks["html_bytes"] = len(body)
    if checks.get("html_rewritten") is False:
        print("warning: tollgate's HTML still holds the upstream URL; the rewrite is not being measured")
    return checks


def measure_one(url: str, headers: dict, args: argparse.Namespace, roots: dict[str, int],
                profile_path: Path | None = None) -> dict:
    """Warm up, then one measured wrk run with the CPU time of each process tree around it."""
    load = dict(threads=args.threads, connections=args.connections, headers=headers)
    if args.warmup_seconds:
        wrk.run(url, seconds=args.warmup_seconds, **load)
    sampler = profile.start(roots["proxy"], args.seconds, profile_path) if profile_path else None
    before = cpu_seconds(roots)
    result = wrk.run(url, seconds=args.seconds, **load)
    after = cpu_seconds(roots)
    used = {name: round(after[name] - before[name], 3) for name in roots}
    per_request = {name: round(s * 1e6 / result.requests, 1) if result.requests else 0.0
                   for name, s in used.items()}
    found = {"url": url, "wrk": result.as_dict(), "cpu_s": used, "cpu_us_per_request": per_request}
    if sampler is not None:
        error = profile.finish(sampler, args.seconds)
        found["profile"] = profile.summarise(profile_path.read_text()) if not error else {"error": error}
    return found


def measure(args: argparse.Namespace, directory: Path, stopping: list) -> dict:
    mock_port, nginx_port, tollgate_port = free_port(), free_port(), free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    mock = start_mock(directory, mock_port)
    stopping.append(mock.stop)
    wait_ready(mock, mock_url + "/health")
    nginx = start_nginx(directory, port=nginx_port, upstream_port=mock_port, workers=args.workers)
    stopping.append(nginx.stop)
    wait_ready(nginx, f"http://127.0.0.1:{nginx_port}/health")
    database = start_database(directory, stopping)
    tollgate_url = f"http://127.0.0.1:{tollgate_port}"
    tollgate = start_tollgate(directory, database, target_url=mock_url, port=tollgate_port,
                              workers=args.workers, extra_env=LIMITS_ENV if args.limits else None)
    stopping.append(tollgate.stop)
    wait_ready(tollgate, tollgate_url + "/health")
    headers = {"X-Access-Token": database.token, "X-Device-ID": DEVICE_ID}
    # The same desktop path through a browser session's cookie instead of the headers (decision 0020).
    cookie = {"Cookie": open_browser_session(tollgate_url, database.token)}
    bases = {"direct": (mock_url, {}), "nginx": (f"http://127.0.0.1:{nginx_port}", {}),
             "tollgate": (tollgate_url + PROXY_PREFIX, headers),
             "tollgate-cookie": (tollgate_url + PROXY_PREFIX, cookie)}
    checks = verify(bases, args.paths, mock_url, tollgate_url)
    roots = {"direct": {"mock": mock.process.pid},
             "nginx": {"proxy": nginx.process.pid, "mock": mock.process.pid},
             "tollgate": {"proxy": tollgate.process.pid, "mock": mock.process.pid, **database_pids(database)}}
    roots["tollgate-cookie"] = roots["tollgate"]
    results: dict = {"run": run_facts(args), "checks": checks, "paths": {}, "ratios": {}}
    for number, path in enumerate(args.paths):
        by_target = results["paths"][path] = {}
        for target, (base, target_headers) in bases.items():
            if target in PAIR and not args.profile:
                continue  # measured together below
            profiled = args.profile and target.startswith("tollgate")
            profile_path = directory / f"py-spy-{number}-{target}.txt" if profiled else None
            by_target[target] = measure_one(base + path, target_headers, args, roots[target], profile_path)
        if not args.profile:
            by_target.update(pairs.measure(
                {target: (bases[target][0] + path, bases[target][1]) for target in PAIR}, rounds=args.rounds,
                seconds=args.seconds, warmup_seconds=args.warmup_seconds, threads=args.threads,
                connections=args.connections, roots=roots["tollgate"]))
        for target, found in by_target.items():
            print(f"  {path:<20} {target:<15} {found['wrk']['requests_per_s']:>9,.0f} req/s"
                  f"  p50 {found['wrk']['latency_p50_ms']:.2f} ms  p99 {found['wrk']['latency_p99_ms']:.2f} ms",
                  flush=True)
        results["ratios"][path] = report.ratios(by_target)
    results["run"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    minutes = len(args.paths) * 4 * (args.seconds + args.warmup_seconds) / 60
    print(f"tollgate proxy bench: {len(args.paths)} path(s) × 4 targets, about {minutes:.1f} min of load",
          flush=True)

    def measured(directory: Path, stopping: list) -> dict:
        ensure_tools()
        return measure(args, directory, stopping)

    results = runs.run("tollgate-bench-", args.keep_temp, measured)
    if isinstance(results, int):
        return results
    print("\n" + report.text(results))
    json_path = report.write(results, args.results_dir)
    print(f"\nwritten: {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}"
          f" and {args.results_dir / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
