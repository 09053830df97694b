"""Every target of issue 13 in one command: the desktop path against the bare aiohttp proxy, the AI
path against LiteLLM and Portkey, 1 and 2 workers, serial latency over direct, the ledger, and a soak.

    python -m bench.all [--quick] [--soak-minutes 10] [--workers 1,2] [--no-peers]

Everything it starts lives in a temporary directory and is stopped on the way out, Ctrl-C
included. Results: bench/results/all-<UTC>.json and all-latest.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from bench import all_report, litellm, pairs, portkey, runs, soak, wrk
from bench.ai import CHAT_PATH, CREDITS_MICRO, LITELLM_CHAT_PATH, MODEL, UPSTREAM_KEY, check_answer, database_queries, \
    post, request_body
from bench.processes import BenchError, get, start, wait_ready
from bench.proxy import ensure_tools, run_facts
from bench.stack import DEVICE_ID, ai_metering, database_pids, prepare_ai, start_database, start_mock, start_tollgate
from devkit.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
PROXY_PREFIX = "/api/v1/proxy"
DESKTOP_PATH = "/health"
SLOW_CLIENTS = 10_000
AI_TIMEOUT_S = 20
# LiteLLM answers streamed calls at c64 seconds late: shorter slices would count none of its answers.
AI_SLICE_MIN_S = 5
USAGE_FLUSH_WAIT_S = 1.5
LEDGER_TIMEOUT_S = 600
# The bench's tollgate holds the soak's 10,000 slow clients from one address.
TOLLGATE_ENV = {"TOLLGATE_CONNECTIONS_MAX": "16384", "TOLLGATE_CONNECTIONS_PER_IP_MAX": "0"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per target, 2 slices, a 1-minute soak (~8 min)")
    parser.add_argument("--seconds", type=int, default=None, help="measured seconds per target (default 8, quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating slices per measurement (4, quick 2)")
    parser.add_argument("--soak-minutes", type=float, default=None, help="steady load minutes (default 10, quick 1)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--no-peers", action="store_true", help="skip LiteLLM and Portkey")
    parser.add_argument("--no-peer-install", action="store_true", help="use the peers only if already installed")
    parser.add_argument("--no-ledger", action="store_true", help="skip bench.ledger even if it exists")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep-temp", action="store_true")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (3 if args.quick else 8)
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.soak_minutes = args.soak_minutes if args.soak_minutes is not None else (1 if args.quick else 10)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    args.warmup_seconds = 1 if args.quick else 2
    args.paths = [DESKTOP_PATH]
    args.threads = 2
    args.profile = False
    if not args.workers or any(not 1 <= w <= 8 for w in args.workers) or not 1 <= args.seconds <= 120:
        parser.error("--workers 1..8 and --seconds 1..120")
    return args


class Stack:
    """What one run starts: the mock and stores once; per worker count tollgate, the bare proxy, the peers."""

    def __init__(self, args: argparse.Namespace, directory: Path, stopping: list) -> None:
        self.args, self.directory, self.stopping = args, directory, stopping
        self.mock_port = free_port()
        self.mock_url = f"http://127.0.0.1:{self.mock_port}"
        self.mock = start_mock(directory, self.mock_port)
        stopping.append(self.mock.stop)
        wait_ready(self.mock, self.mock_url + "/health")
        status, _ = post(self.mock_url + "/_mock/ai/latency", b'{"ms": 0, "chunk_ms": 0}', {})
        if status != 200:
            raise BenchError("the mock refused its latency setting")
        self.database = start_database(directory, stopping)
        self.api_key = prepare_ai(self.database, CREDITS_MICRO)
        self.peers: dict[str, dict] = {}

    def start_for(self, workers: int) -> list:
        """tollgate, the bare proxy and the peers with `workers`; returns their stop functions."""
        stops: list = []
        port = free_port()
        self.tollgate_url = f"http://127.0.0.1:{port}"
        ai_env = {"TOLLGATE_OPENAI_BASE_URL": self.mock_url + "/openai/v1", "TOLLGATE_OPENAI_API_KEYS": UPSTREAM_KEY}
        self.tollgate = start_tollgate(self.directory, self.database, target_url=self.mock_url, port=port,
                                       workers=workers, extra_env={**TOLLGATE_ENV, **ai_env})
        stops.append(self.tollgate.stop)
        wait_ready(self.tollgate, self.tollgate_url + "/health")
        self.tollgate_port = port
        bare_port = free_port()
        self.bare_url = f"http://127.0.0.1:{bare_port}"
        self.bare = start("bare proxy", [sys.executable, "-m", "bench.bare_proxy", "--port", str(bare_port),
                                         "--upstream", self.mock_url, "--workers", str(workers)],
                          self.directory / f"bare-{workers}.log", cwd=ROOT)
        stops.append(self.bare.stop)
        wait_ready(self.bare, self.bare_url + "/health")
        self.litellm = self.portkey = None
        if not self.args.no_peers:
            self._start_peers(workers, stops)
        return stops

    def _start_peers(self, workers: int, stops: list) -> None:
        try:
            litellm.ensure_installed(install=not self.args.no_peer_install)
            self.litellm = litellm.start_litellm(self.directory, port=free_port(), workers=workers, model=MODEL,
                                                 openai_base_url=self.mock_url + "/openai/v1",
                                                 upstream_key=UPSTREAM_KEY)
            stops.append(self.litellm.server.stop)
            self.peers["litellm"] = {"available": True, "version": self.litellm.version}
        except BenchError as error:
            self.peers["litellm"] = {"available": False, "reason": str(error).split("\n", 1)[0][:300]}
        try:
            portkey.ensure_installed(install=not self.args.no_peer_install)
            self.portkey = portkey.start_portkey(self.directory, port=free_port())
            stops.append(self.portkey.server.stop)
            self.peers["portkey"] = {"available": True, "version": self.portkey.version,
                                     "processes": "1 (Node, single process whatever --workers)",
                                     "streamed": portkey.STREAM_UNAVAILABLE}
        except BenchError as error:
            self.peers["portkey"] = {"available": False, "reason": str(error).split("\n", 1)[0][:300]}

    def roots(self) -> dict[str, int]:
        found = {"tollgate": self.tollgate.process.pid, "bare": self.bare.process.pid, "mock": self.mock.process.pid,
                 **database_pids(self.database)}
        if self.litellm is not None:
            found["litellm"] = self.litellm.server.process.pid
        if self.portkey is not None:
            found["portkey"] = self.portkey.server.process.pid
        return found


def desktop(stack: Stack, args: argparse.Namespace) -> dict:
    headers = {"X-Access-Token": stack.database.token, "X-Device-ID": DEVICE_ID}
    variants = {"direct": (stack.mock_url + DESKTOP_PATH, {}), "bare": (stack.bare_url + DESKTOP_PATH, {}),
                "tollgate": (stack.tollgate_url + PROXY_PREFIX + DESKTOP_PATH, headers)}
    for name, (url, sent) in variants.items():
        status, body = get(url, sent)
        if status != 200:
            raise BenchError(f"desktop {name} answered {status}: {body[:300]!r}")
    timing = dict(rounds=args.rounds, seconds=args.seconds, warmup_seconds=args.warmup_seconds, roots=stack.roots())
    loaded = pairs.measure(variants, threads=2, connections=args.connections, **timing)
    serial = pairs.measure(variants, threads=1, connections=1, **timing)
    return {"load": loaded, "serial": serial}


def ai(stack: Stack, args: argparse.Namespace) -> dict:
    bearer = {"Authorization": f"Bearer {stack.api_key}"}
    found: dict = {}
    for scenario in ("chat", "chat-stream"):
        body = request_body(10, stream=scenario == "chat-stream")
        variants = {"direct": (stack.mock_url + CHAT_PATH, {"Authorization": f"Bearer {UPSTREAM_KEY}"}),
                    "tollgate": (stack.tollgate_url + CHAT_PATH, bearer)}
        if stack.litellm is not None:
            variants["litellm"] = (stack.litellm.url + LITELLM_CHAT_PATH,
                                   {"Authorization": f"Bearer {stack.litellm.master_key}"})
        if stack.portkey is not None and scenario == "chat":
            variants["portkey"] = (stack.portkey.url + "/v1/chat/completions",
                                   stack.portkey.headers(stack.mock_url + "/openai/v1", UPSTREAM_KEY))
        for name, (url, headers) in variants.items():
            check_answer(name, scenario, *post(url, body, headers))
        script = stack.directory / f"{scenario}.lua"
        script.write_text(wrk.post_script(body))
        timing = dict(rounds=args.rounds, seconds=args.seconds, warmup_seconds=args.warmup_seconds,
                      roots=stack.roots(), script=script, timeout_s=AI_TIMEOUT_S, slice_min_s=AI_SLICE_MIN_S)
        time.sleep(USAGE_FLUSH_WAIT_S)
        before = metering(stack)
        loaded = pairs.measure(variants, threads=2, connections=args.connections, **timing)
        serial = pairs.measure(variants, threads=1, connections=1, **timing)
        time.sleep(USAGE_FLUSH_WAIT_S)
        after = metering(stack)
        counted = {name: after[name] - before[name] for name in after if name != "reconcile_ok"}
        counted["holds_open"] = counted["holds"] - counted["holds_posted"] - counted["holds_voided"]
        counted["answered"] = loaded["tollgate"]["wrk"]["requests"] + serial["tollgate"]["wrk"]["requests"]
        counted["reconcile_ok"] = after["reconcile_ok"]
        calls = counted["usage_rows"]
        counted["database_queries_per_call"] = round(counted["database_queries"] / calls, 1) if calls else None
        found[scenario] = {"load": loaded, "serial": serial, "metering": counted}
    return found


def metering(stack: Stack) -> dict:
    counts: dict = {**ai_metering(stack.database), "database_queries": database_queries(stack.tollgate_url),
                    "ai_calls": metric_total(stack.tollgate_url, "tollgate_ai_calls_total")}
    counts["reconcile_ok"] = asyncio.run(_reconciled(stack.database.database_url))
    return counts


def metric_total(tollgate_url: str, name: str) -> int:
    """A counter from tollgate's /metrics, summed over its labels and workers."""
    status, body = get(tollgate_url + "/metrics")
    if status != 200:
        raise BenchError(f"tollgate's /metrics answered {status}")
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                   if line.startswith(name + "{") or line.startswith(name + " ")))


async def _reconciled(database_url: str) -> bool:
    import ledger

    connection = await asyncpg.connect(database_url)
    try:
        return (await ledger.reconcile(connection)).ok
    finally:
        await connection.close()


def ledger_bench(args: argparse.Namespace) -> dict:
    """bench/ledger.py's own run, when the module exists (issue 13 part 1): its newest results file."""
    if args.no_ledger:
        return {"available": False, "reason": "skipped (--no-ledger)"}
    if not (ROOT / "bench" / "ledger.py").exists():
        return {"available": False, "reason": "bench/ledger.py does not exist in this checkout"}
    started = time.time()
    done = subprocess.run([sys.executable, "-m", "bench.ledger", "--seconds", str(args.seconds)], cwd=ROOT,
                          capture_output=True, text=True, timeout=LEDGER_TIMEOUT_S)
    written = [p for p in glob.glob(str(args.results_dir / "ledger-*.json")) if os.path.getmtime(p) >= started]
    if done.returncode != 0 or not written:
        return {"available": False, "reason": f"bench.ledger exited {done.returncode}: {done.stderr[-300:]}"}
    return {"available": True, "file": Path(max(written)).name, "results": json.loads(Path(max(written)).read_text())}


def measure(args: argparse.Namespace, directory: Path, stopping: list) -> dict:
    stack = Stack(args, directory, stopping)
    facts = run_facts(args)
    results: dict = {"run": {**facts, "quick": args.quick, "soak_minutes": args.soak_minutes,
                             "worker_counts": args.workers}, "workers": {}}
    for workers in args.workers:
        stops = stack.start_for(workers)
        try:
            print(f"== {workers} worker(s): desktop path", flush=True)
            section = {"desktop": desktop(stack, args)}
            print(f"== {workers} worker(s): AI path", flush=True)
            section["ai"] = ai(stack, args)
            if workers == args.workers[0]:
                section["soak"] = run_soak(stack, args)
            results["workers"][str(workers)] = section
        finally:
            for stop in reversed(stops):
                stop()
    results["peers"] = stack.peers
    print("== ledger", flush=True)
    results["ledger"] = ledger_bench(args)
    results["run"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return results


def run_soak(stack: Stack, args: argparse.Namespace) -> dict:
    print(f"== soak: {args.soak_minutes} min, then {SLOW_CLIENTS:,} slow clients", flush=True)
    headers = {"X-Access-Token": stack.database.token, "X-Device-ID": DEVICE_ID}
    url = stack.tollgate_url + PROXY_PREFIX + DESKTOP_PATH
    root = stack.tollgate.process.pid
    steady = soak.steady_load(url, headers, root, args.soak_minutes, args.connections)
    held = soak.slow_clients(stack.tollgate_port, SLOW_CLIENTS, root, url, headers, max(5, args.seconds * 2),
                             stack.directory)
    return {"steady": steady, "slow_clients": held}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def measured(directory: Path, stopping: list) -> dict:
        ensure_tools()
        return measure(args, directory, stopping)

    results = runs.run("tollgate-bench-all-", args.keep_temp, measured)
    if isinstance(results, int):
        return results
    summary = all_report.summarise(results)
    results["targets"] = summary
    print("\n" + all_report.markdown(results))
    json_path = all_report.write(results, args.results_dir)
    print(f"\nwritten: {json_path} and {args.results_dir / 'all-latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
