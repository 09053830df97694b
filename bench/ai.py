"""AI-route benchmark: the mock OpenAI API direct, through tollgate and through LiteLLM, in one run on loopback.

    python -m bench.ai [--seconds 5] [--connections 64] [--workers 1] [--no-peer]

Every request is `POST /openai/v1/chat/completions` (gpt-4o-mini, a one-line prompt, max_tokens),
whole and streamed. Everything it starts (mock, PostgreSQL, Redis, tollgate, LiteLLM) lives in a
temporary directory and is stopped on the way out, Ctrl-C included. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench import ai_report, litellm, profile, runs, wrk
from bench.processes import BenchError, cpu_seconds, get, wait_ready
from bench.proxy import ensure_tools, run_facts
from bench.stack import ai_metering, database_pids, prepare_ai, start_database, start_mock, start_tollgate
from devkit.embedded import free_port

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gpt-4o-mini"
CHAT_PATH = "/openai/v1/chat/completions"
LITELLM_CHAT_PATH = "/v1/chat/completions"
UPSTREAM_KEY = "sk-mock-bench"  # the mock accepts any key starting with sk-mock
# Far more than a run can spend: a call holds about 30 micro-credits (150-byte body, 10 tokens out).
CREDITS_MICRO = 10**14
SECONDS_MAX = 120
CONNECTIONS_MAX = 1024
WORKERS_MAX = 16
PROBE_TIMEOUT_S = 30.0
BODY_SHOWN_CHARS = 2000
# wrk leaves a request out of its latency figures (and counts a socket error) after this long; a
# gateway at 10-40 req/s with 64 connections queues for seconds, which belongs in its p99.
REQUEST_TIMEOUT_S = 20
# The usage log is flushed every second (TOLLGATE_USAGE_FLUSH_INTERVAL_S): wait that long and a bit.
USAGE_FLUSH_WAIT_S = 1.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ai", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="measured seconds per target and scenario")
    parser.add_argument("--warmup-seconds", type=int, default=2, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--workers", type=int, default=1, help="tollgate serve --workers, litellm --num_workers")
    parser.add_argument("--max-tokens", type=int, default=10, help="max_tokens of every request (mock: ≤ 20 words)")
    parser.add_argument("--scenarios", default="chat,chat-stream", help="comma-separated: chat, chat-stream")
    parser.add_argument("--no-peer", action="store_true", help="skip LiteLLM (its column reads n/a)")
    parser.add_argument("--no-peer-install", action="store_true",
                        help=f"use LiteLLM only if already installed in {litellm.VENV}")
    parser.add_argument("--peer-venv", type=Path, default=litellm.VENV, help="LiteLLM's own virtualenv")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--profile", action="store_true",
                        help="sample tollgate with py-spy during its measured runs (pip install py-spy)")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    checks = {"--seconds": 1 <= args.seconds <= SECONDS_MAX,
              "--warmup-seconds": 0 <= args.warmup_seconds <= SECONDS_MAX,
              "--connections": args.threads <= args.connections <= CONNECTIONS_MAX,
              "--threads": 1 <= args.threads <= 64, "--workers": 1 <= args.workers <= WORKERS_MAX,
              "--max-tokens": 1 <= args.max_tokens <= 20,
              "--scenarios": bool(args.scenarios) and set(args.scenarios) <= {"chat", "chat-stream"}}
    for name, ok in checks.items():
        if not ok:
            parser.error(f"{name} is out of range")
    if args.profile and profile.py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    return args


def request_body(max_tokens: int, *, stream: bool) -> bytes:
    body = {"model": MODEL, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "Say hello to the benchmark in a few words."}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """Status and body of one POST; a refused connection is status 0."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        return 0, str(error).encode()


def database_queries(tollgate_url: str) -> int:
    """tollgate_database_queries_total from tollgate's /metrics (all workers): statements sent to PostgreSQL."""
    status, body = get(tollgate_url + "/metrics")
    if status != 200:
        raise BenchError(f"tollgate's /metrics answered {status}")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("tollgate_database_queries_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def tollgate_metering(database, tollgate_url: str) -> dict[str, int]:
    """Counters of what tollgate recorded so far: usage rows, holds, charges, PostgreSQL statements."""
    return {**ai_metering(database), "database_queries": database_queries(tollgate_url)}


def check_answer(target: str, scenario: str, status: int, body: bytes) -> dict:
    """A 200 whose body is a real chat completion (usage present) or a stream that reached [DONE]."""
    shown = body[:BODY_SHOWN_CHARS].decode(errors="replace")
    if status != 200:
        raise BenchError(f"{target} answered {status} to the {scenario} probe:\n{shown}")
    if scenario == "chat":
        try:
            parsed = json.loads(body)
            content = parsed["choices"][0]["message"]["content"]
            usage = parsed["usage"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise BenchError(f"{target}'s {scenario} answer is not a chat completion:\n{shown}") from None
        return {"content": content, "usage": usage, "bytes": len(body)}
    events = [line[6:] for line in body.decode(errors="replace").split("\n") if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        raise BenchError(f"{target}'s {scenario} answer does not end with data: [DONE]:\n{shown}")
    return {"events": len(events), "bytes": len(body)}


def measure_one(url: str, headers: dict, script: Path, args: argparse.Namespace, roots: dict[str, int],
                label: str, profile_path: Path | None = None,
                metering: Callable[[], dict[str, int]] | None = None) -> dict:
    """Warm up, then one measured wrk run with each process tree's CPU time (and tollgate's metering
    records) around it; any non-2xx answer or socket error in either run stops the bench."""
    load = dict(threads=args.threads, connections=args.connections, headers=headers, script=script,
                timeout_s=REQUEST_TIMEOUT_S)
    if args.warmup_seconds:
        _require_clean(wrk.run(url, seconds=args.warmup_seconds, **load), f"{label} (warm-up)")
        if metering is not None:
            time.sleep(USAGE_FLUSH_WAIT_S)  # the warm-up's calls settled and logged before counting
    recorded_before = metering() if metering is not None else None
    sampler = profile.start(roots["gateway"], args.seconds, profile_path) if profile_path else None
    before = cpu_seconds(roots)
    result = wrk.run(url, seconds=args.seconds, **load)
    after = cpu_seconds(roots)
    error = profile.finish(sampler, args.seconds) if sampler is not None else None
    _require_clean(result, label)
    used = {name: round(after[name] - before[name], 3) for name in roots}
    per_request = {name: round(s * 1e6 / result.requests, 1) if result.requests else 0.0
                   for name, s in used.items()}
    found = {"url": url, "wrk": result.as_dict(), "cpu_s": used, "cpu_us_per_request": per_request}
    if sampler is not None:
        found["profile"] = ({**profile.summarise(profile_path.read_text()),
                             **profile.attribute(profile_path.read_text())} if not error else {"error": error})
    if metering is not None:
        time.sleep(USAGE_FLUSH_WAIT_S)
        recorded = metering()
        found["metering"] = {name: recorded[name] - recorded_before[name] for name in recorded}
        found["metering"]["holds_open"] = recorded["holds"] - recorded["holds_posted"] - recorded["holds_voided"]
        found["metering"]["requests"] = result.requests
        calls = found["metering"]["usage_rows"]
        found["metering"]["database_queries_per_call"] = (
            round(found["metering"]["database_queries"] / calls, 1) if calls else None)
    return found


def _require_clean(result: wrk.WrkResult, label: str) -> None:
    if result.non_2xx_3xx or result.socket_errors or not result.requests:
        raise BenchError(f"{label}: {result.non_2xx_3xx} non-2xx answers and {result.socket_errors} socket"
                         f" errors in {result.requests} requests: the run measured errors, not the route"
                         " (see the logs with --keep-temp)")


def start_peer(args: argparse.Namespace, directory: Path, stopping: list, mock_url: str) -> tuple[object, dict]:
    """LiteLLM if it can be installed and started; otherwise None and the precise reason."""
    if args.no_peer:
        return None, {"available": False, "reason": "skipped (--no-peer)"}
    try:
        litellm.ensure_installed(args.peer_venv, install=not args.no_peer_install)
        peer = litellm.start_litellm(directory, port=free_port(), openai_base_url=mock_url + "/openai/v1",
                                     upstream_key=UPSTREAM_KEY, model=MODEL, workers=args.workers,
                                     venv=args.peer_venv)
    except BenchError as error:
        print(f"warning: the peer is not available: {error}", file=sys.stderr, flush=True)
        return None, {"available": False, "reason": str(error).split("\n", 1)[0][:500]}
    stopping.append(peer.server.stop)
    how = (f"`litellm --config` from PyPI in {args.peer_venv}, --num_workers {args.workers}, model_list entry"
           f" openai/{MODEL} with api_base = the mock's /openai/v1, master key, no database, no retries")
    return peer, {"available": True, "version": peer.version, "how": how}


def measure(args: argparse.Namespace, directory: Path, stopping: list) -> dict:
    # The peer first: a first run installs it, which takes minutes the other servers need not idle through.
    mock_port, tollgate_port = free_port(), free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    if not args.no_peer:
        try:
            litellm.ensure_installed(args.peer_venv, install=not args.no_peer_install)
        except BenchError:
            pass  # start_peer repeats the check and records why
    mock = start_mock(directory, mock_port)
    stopping.append(mock.stop)
    wait_ready(mock, mock_url + "/health")
    status, answer = post(mock_url + "/_mock/ai/latency", b'{"ms": 0, "chunk_ms": 0}', {})
    if status != 200:
        raise BenchError(f"the mock refused its latency setting ({status}): {answer[:200]!r}")
    database = start_database(directory, stopping)
    api_key = prepare_ai(database, CREDITS_MICRO)
    tollgate_url = f"http://127.0.0.1:{tollgate_port}"
    tollgate = start_tollgate(directory, database, target_url=mock_url, port=tollgate_port, workers=args.workers,
                              extra_env={"TOLLGATE_OPENAI_BASE_URL": mock_url + "/openai/v1",
                                         "TOLLGATE_OPENAI_API_KEYS": UPSTREAM_KEY})
    stopping.append(tollgate.stop)
    wait_ready(tollgate, tollgate_url + "/health")
    peer, peer_facts = start_peer(args, directory, stopping, mock_url)

    targets: dict[str, tuple[str, dict[str, str], dict[str, int]]] = {
        "direct": (mock_url + CHAT_PATH, {"Authorization": f"Bearer {UPSTREAM_KEY}"},
                   {"mock": mock.process.pid}),
        "tollgate": (tollgate_url + CHAT_PATH, {"Authorization": f"Bearer {api_key}"},
                     {"gateway": tollgate.process.pid, "mock": mock.process.pid, **database_pids(database)}),
    }
    if peer is not None:
        targets["litellm"] = (peer.url + LITELLM_CHAT_PATH, {"Authorization": f"Bearer {peer.master_key}"},
                              {"gateway": peer.server.process.pid, "mock": mock.process.pid})

    facts = run_facts(argparse.Namespace(**vars(args), paths=[]))  # bench.proxy's facts, less its paths
    del facts["paths"]
    results: dict = {"run": {**facts, "scenarios": args.scenarios, "max_tokens": args.max_tokens, "model": MODEL},
                     "peer": peer_facts, "checks": {}, "scenarios": {}, "ratios": {}}
    bodies = {scenario: request_body(args.max_tokens, stream=scenario == "chat-stream") for scenario in args.scenarios}
    for scenario, body in bodies.items():
        for target, (url, headers, _roots) in targets.items():
            results["checks"][f"{scenario}/{target}"] = check_answer(target, scenario, *post(url, body, headers))
    for number, (scenario, body) in enumerate(bodies.items()):
        script = directory / f"{scenario}.lua"
        script.write_text(wrk.post_script(body))
        by_target = results["scenarios"][scenario] = {}
        for target, (url, headers, roots) in targets.items():
            profile_path = directory / f"py-spy-{number}.txt" if args.profile and target == "tollgate" else None
            metering = partial(tollgate_metering, database, tollgate_url) if target == "tollgate" else None
            found = by_target[target] = measure_one(url, headers, script, args, roots, f"{scenario} {target}",
                                                    profile_path, metering)
            wrk_found = found["wrk"]
            print(f"  {scenario:<12} {target:<9} {wrk_found['requests_per_s']:>8,.0f} req/s"
                  f"  p50 {wrk_found['latency_p50_ms']:.2f} ms  p99 {wrk_found['latency_p99_ms']:.2f} ms"
                  f"  CPU µs/req {found['cpu_us_per_request']}", flush=True)
        results["ratios"][scenario] = ai_report.ratios(by_target)
    results["run"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = 2 if args.no_peer else 3
    minutes = len(args.scenarios) * targets * (args.seconds + args.warmup_seconds) / 60
    print(f"tollgate AI bench: {len(args.scenarios)} scenario(s) × {targets} targets, about {minutes:.1f} min"
          " of load", flush=True)

    def measured(directory: Path, stopping: list) -> dict:
        ensure_tools()
        return measure(args, directory, stopping)

    results = runs.run("tollgate-bench-ai-", args.keep_temp, measured)
    if isinstance(results, int):
        return results
    print("\n" + ai_report.text(results))
    json_path = ai_report.write(results, args.results_dir)
    print(f"\nwritten: {json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path}"
          f" and {args.results_dir / 'ai-latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
