"""The gateway's CPU per metered AI call, whole and streamed, in a short bounded run on loopback.

    python -m bench.ai_pairs [--seconds 6] [--rounds 3] [--baseline /path/to/other/checkout]
                             [--baseline-env TOLLGATE_NAME=value ...]

`POST /openai/v1/chat/completions` (bench.ai's body) against the mock upstream, answering at once.
The figure is tollgate's process CPU time over the measured slices divided by the calls wrk
counted: on a shared machine the rate drifts with the other load, the CPU a call costs much less.
With `--baseline`, a second tollgate runs from that checkout (same PostgreSQL, Redis and key) and
the two are measured in alternating slices (bench/pairs.py), so a before/after comparison sees the
same machine; `--baseline-env NAME=VALUE` (repeatable) sets a TOLLGATE_ setting of the baseline alone,
which with no `--baseline` runs this checkout: two settings compared (e.g. the ledger's lanes).
PostgreSQL's CPU (all its processes) is counted per variant too, during that variant's slices: the
two gateways share it, but only one is loaded at a time. After the run the metering is checked
exact: every usage row has its hold, none is left open, and the rows cover every call wrk counted
(bench/README.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import pairs, profile, runs, wrk
from bench.ai import CHAT_PATH, CREDITS_MICRO, UPSTREAM_KEY, USAGE_FLUSH_WAIT_S, check_answer, post, request_body
from bench.processes import BenchError, wait_ready
from bench.proxy import ensure_tools
from bench.stack import ROOT, ai_metering, database_pids, prepare_ai, start_database, start_mock, start_tollgate
from devkit.embedded import free_port

SCENARIOS = {"whole": False, "streamed": True}  # name -> "stream": true
SECONDS_MAX = 60
ROUNDS_MAX = 10
CONNECTIONS_MAX = 256
MAX_TOKENS = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ai_pairs", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=6, help="measured seconds per scenario and variant")
    parser.add_argument("--rounds", type=int, default=3, help="slices each variant's seconds are cut into")
    parser.add_argument("--warmup-seconds", type=int, default=1, help="unmeasured seconds before each scenario")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--scenarios", default="whole,streamed", help="comma-separated: whole, streamed")
    parser.add_argument("--baseline", type=Path, help="another checkout, measured in the same slices")
    parser.add_argument("--baseline-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a TOLLGATE_ setting of the baseline gateway alone (repeatable)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the tollgate variant with py-spy while it is measured (pip install py-spy)")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    checks = {"--seconds": 1 <= args.seconds <= SECONDS_MAX, "--rounds": 1 <= args.rounds <= ROUNDS_MAX,
              "--warmup-seconds": 0 <= args.warmup_seconds <= SECONDS_MAX,
              "--connections": 1 <= args.threads <= args.connections <= CONNECTIONS_MAX,
              "--scenarios": bool(args.scenarios) and set(args.scenarios) <= set(SCENARIOS),
              "--baseline": args.baseline is None or (args.baseline / "gateway" / "cli.py").is_file(),
              "--baseline-env": all(setting_pair(text) is not None for text in args.baseline_env)}
    for name, ok in checks.items():
        if not ok:
            parser.error({"--baseline": "--baseline: no checkout there",
                          "--baseline-env": "--baseline-env: NAME=VALUE with a TOLLGATE_ name"}.get(
                name, f"{name} is out of range"))
    if args.profile and profile.py_spy() is None:
        parser.error("--profile needs py-spy (pip install py-spy)")
    return args


def setting_pair(text: str) -> tuple[str, str] | None:
    """'TOLLGATE_NAME=value' as (name, value); None for anything else."""
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("TOLLGATE_") or not name[len("TOLLGATE_"):].replace("_", "").isalnum():
        return None
    return name, value


def cpu_us_per_call(cpu_s: float, calls: int) -> float:
    """Process CPU time over the calls served in it, in microseconds (0 when nothing was served)."""
    return round(cpu_s * 1e6 / calls, 1) if calls else 0.0


def metering_check(before: dict[str, int], after: dict[str, int], calls_counted: int) -> dict:
    """The metering between two readings: exact when rows = holds = resolved holds and the rows cover
    every call wrk counted (more rows: the calls in flight when a slice ended, and the warm-ups)."""
    found = {name: after[name] - before[name] for name in after}
    found["holds_open"] = found["holds"] - found["holds_posted"] - found["holds_voided"]
    found["calls_counted"] = calls_counted
    found["exact"] = (found["usage_rows"] == found["holds"] and found["holds_open"] == 0
                      and found["usage_rows"] >= calls_counted)
    return found


def start_gateways(args: argparse.Namespace, directory: Path, stopping: list) -> tuple[dict, dict, object]:
    """The mock, the stores, a funded key and each gateway: variants (name -> url, headers), the
    gateways' pids by name, and the stores (for the metering readings)."""
    mock_url = f"http://127.0.0.1:{free_port()}"
    mock = start_mock(directory, int(mock_url.rsplit(":", 1)[1]))
    stopping.append(mock.stop)
    wait_ready(mock, mock_url + "/health")
    status, answer = post(mock_url + "/_mock/ai/latency", b'{"ms": 0, "chunk_ms": 0}', {})
    if status != 200:
        raise BenchError(f"the mock refused its latency setting ({status}): {answer[:200]!r}")
    database = start_database(directory, stopping)
    api_key = prepare_ai(database, CREDITS_MICRO)
    checkouts = {"tollgate": ROOT}
    if args.baseline is not None or args.baseline_env:
        checkouts["baseline"] = (args.baseline or ROOT).resolve()
    settings = dict(pair for pair in map(setting_pair, args.baseline_env) if pair is not None)
    variants, pids = {}, {}
    for name, checkout in checkouts.items():
        port = free_port()
        server = start_tollgate(directory, database, target_url=mock_url, port=port, workers=1, checkout=checkout,
                                name=name, extra_env={"TOLLGATE_OPENAI_BASE_URL": mock_url + "/openai/v1",
                                                      "TOLLGATE_OPENAI_API_KEYS": UPSTREAM_KEY,
                                                      **(settings if name == "baseline" else {})})
        stopping.append(server.stop)
        wait_ready(server, f"http://127.0.0.1:{port}/health")
        variants[name] = (f"http://127.0.0.1:{port}{CHAT_PATH}", {"Authorization": f"Bearer {api_key}"})
        pids[name] = server.process.pid
    return variants, {**pids, **database_pids(database)}, database


def measure(args: argparse.Namespace, directory: Path, stopping: list) -> dict:
    variants, pids, database = start_gateways(args, directory, stopping)
    results: dict = {"run": {"seconds": args.seconds, "rounds": args.rounds, "connections": args.connections,
                             "threads": args.threads, "workers": 1,
                             "baseline": str(args.baseline) if args.baseline else None,
                             "baseline_env": args.baseline_env},
                     "scenarios": {}}
    for scenario in args.scenarios:
        body = request_body(MAX_TOKENS, stream=SCENARIOS[scenario])
        for name, (url, headers) in variants.items():
            check_answer(name, "chat-stream" if SCENARIOS[scenario] else "chat", *post(url, body, headers))
        script = directory / f"{scenario}.lua"
        script.write_text(wrk.post_script(body))
        time.sleep(USAGE_FLUSH_WAIT_S)
        before = ai_metering(database)
        # The sampler covers the whole scenario (the other variant's slices and the warm-ups too).
        sampled_s = len(variants) * (args.seconds + args.warmup_seconds) + 2
        sampler = profile.start(pids["tollgate"], sampled_s, directory / f"{scenario}.py-spy") if args.profile else None
        found = pairs.measure(variants, rounds=args.rounds, seconds=args.seconds,
                              warmup_seconds=args.warmup_seconds, threads=args.threads,
                              connections=args.connections, roots=pids, script=script)
        if sampler is not None:
            error = profile.finish(sampler, sampled_s)
            raw = (directory / f"{scenario}.py-spy").read_text() if not error else ""
            results.setdefault("profiles", {})[scenario] = profile.attribute(raw) if raw else {"error": error}
        time.sleep(USAGE_FLUSH_WAIT_S)
        calls = sum(result["wrk"]["requests"] for result in found.values())
        scenario_results = results["scenarios"][scenario] = {
            "metering": metering_check(before, ai_metering(database), calls)}
        for name, result in found.items():
            if result["wrk"]["non_2xx_3xx"] or result["wrk"]["socket_errors"]:
                raise BenchError(f"{scenario} {name}: errors in the run: {result['wrk']}")
            scenario_results[name] = {
                "requests_per_s": result["wrk"]["requests_per_s"], "calls": result["wrk"]["requests"],
                "gateway_cpu_us_per_call": cpu_us_per_call(result["cpu_s"][name], result["wrk"]["requests"]),
                "postgres_cpu_us_per_call": cpu_us_per_call(result["cpu_s"].get("postgres", 0.0),
                                                            result["wrk"]["requests"]),
                "latency_p50_ms": result["wrk"]["latency_p50_ms"], "latency_p99_ms": result["wrk"]["latency_p99_ms"]}
        if not scenario_results["metering"]["exact"]:
            raise BenchError(f"{scenario}: the metering is not exact: {scenario_results['metering']}")
    return results


def text(results: dict) -> str:
    lines = ["scenario  variant     req/s    gateway CPU µs/call   PostgreSQL CPU µs/call   p50 ms   p99 ms"]
    for scenario, found in results["scenarios"].items():
        for name, row in found.items():
            if name == "metering":
                continue
            lines.append(f"{scenario:<9} {name:<9} {row['requests_per_s']:>8,.0f}"
                         f" {row['gateway_cpu_us_per_call']:>14.1f}        "
                         f"{row.get('postgres_cpu_us_per_call', 0.0):>14.1f}           {row['latency_p50_ms']:>7.2f}"
                         f"  {row['latency_p99_ms']:>7.2f}")
        metering = found["metering"]
        lines.append(f"{scenario:<9} metering: {metering['usage_rows']} rows, {metering['holds']} holds, "
                     f"{metering['holds_open']} open, {metering['calls_counted']} calls counted: "
                     f"{'exact' if metering['exact'] else 'NOT EXACT'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def measured(directory: Path, stopping: list) -> dict:
        ensure_tools()
        return measure(args, directory, stopping)

    results = runs.run("tollgate-bench-ai-pairs-", args.keep_temp, measured)
    if isinstance(results, int):
        return results
    print(text(results))
    for scenario, found in results.get("profiles", {}).items():
        print(f"\n{scenario}: tollgate's samples by the innermost project function ({found.get('samples')} samples)")
        for frame, share in found.get("innermost_project_pct", []):
            print(f"  {share:5.1f}%  {frame}")
        for frame, share in found.get("project_inclusive_pct", []):
            print(f"  incl {share:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
