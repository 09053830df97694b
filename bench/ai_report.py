"""The AI bench's results: table and ratios, printed and written as JSON plus ai-latest.md."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import _markdown_table, _text_table

TARGETS = ("direct", "tollgate", "litellm")
BASELINES = ("direct", "litellm")
CPU_COMPONENTS = ("gateway", "mock", "postgres", "redis")
MEASURE_HEADERS = ["scenario", "target", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket err",
                   "CPU µs/req: gateway", "mock", "postgres", "redis"]
RATIO_HEADERS = ["scenario", "req/s t/direct", "req/s t/litellm", "p50 t/direct", "p50 t/litellm",
                 "p99 t/direct", "p99 t/litellm", "CPU/req t/litellm (gateway)"]
METRICS = ("requests_per_s", "latency_p50_ms", "latency_p99_ms")
NOT_AVAILABLE = "n/a"
TOP_FRAMES = 15
CENSORED_MARK = "†"
CENSORED_BELOW_ROUNDS = 2


def ratios(by_target: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """tollgate divided by each baseline (None when the baseline did not run): below 1 is slower
    for req/s, above 1 is slower for latency and CPU."""
    tollgate = by_target["tollgate"]
    found: dict[str, dict[str, float | None]] = {metric: {} for metric in (*METRICS, "gateway_cpu_us_per_request")}
    for baseline in BASELINES:
        name = f"tollgate/{baseline}"
        base = by_target.get(baseline)
        for metric in METRICS:
            value = base["wrk"][metric] if base else 0
            found[metric][name] = round(tollgate["wrk"][metric] / value, 3) if value else None
        base_cpu = base["cpu_us_per_request"].get("gateway", 0) if base else 0
        found["gateway_cpu_us_per_request"][name] = (
            round(tollgate["cpu_us_per_request"]["gateway"] / base_cpu, 3) if base_cpu else None)
    return found


def censored(wrk: dict, connections: int) -> bool:
    """Fewer answers than twice the connections: many requests were still waiting when the run
    ended, and wrk's percentiles only hold the answered ones, so they understate the latency."""
    return wrk["requests"] < CENSORED_BELOW_ROUNDS * connections


def _censored_note(results: dict) -> str:
    if not any(CENSORED_MARK in cell for row in _measure_rows(results) for cell in row):
        return ""
    return (f"{CENSORED_MARK} fewer answers than {CENSORED_BELOW_ROUNDS}× the connections in the measured run:"
            " latency percentiles cover only the requests answered before it ended and understate the"
            " real latency; req/s and CPU/req still hold.")


def _times(value: float | None) -> str:
    return f"{value:.2f}×" if value is not None else NOT_AVAILABLE


def _measure_rows(results: dict) -> list[list[str]]:
    rows = []
    for scenario, by_target in results["scenarios"].items():
        for target in TARGETS:
            found = by_target.get(target)
            if found is None:
                rows.append([scenario, target, *[NOT_AVAILABLE] * (len(MEASURE_HEADERS) - 2)])
                continue
            wrk, cpu = found["wrk"], found["cpu_us_per_request"]
            mark = CENSORED_MARK if censored(wrk, results["run"]["connections"]) else ""
            rows.append([scenario, target, f"{wrk['requests_per_s']:,.0f}", f"{wrk['latency_p50_ms']:.2f}{mark}",
                         f"{wrk['latency_p99_ms']:.2f}{mark}", str(wrk["non_2xx_3xx"]), str(wrk["socket_errors"]),
                         *(f"{cpu[c]:.0f}" if c in cpu else "-" for c in CPU_COMPONENTS)])
    return rows


def _ratio_rows(results: dict) -> list[list[str]]:
    rows = []
    for scenario, found in results["ratios"].items():
        cells = [_times(found[metric][f"tollgate/{base}"]) for metric in METRICS for base in BASELINES]
        rows.append([scenario, *cells, _times(found["gateway_cpu_us_per_request"]["tollgate/litellm"])])
    return rows


def _metering_lines(results: dict) -> list[str]:
    lines = []
    for scenario, by_target in results["scenarios"].items():
        metering = by_target["tollgate"].get("metering")
        if metering:
            lines.append(f"{scenario}: {metering['usage_rows']:,} usage rows for {metering['requests']:,} answered"
                         f" requests, {metering['charged_rows']:,} charged, {metering['charged_micro']:,}"
                         f" micro-credits posted; holds placed {metering['holds']:,}, posted"
                         f" {metering['holds_posted']:,}, voided {metering['holds_voided']:,},"
                         f" still open {metering['holds_open']:,}; {metering['database_queries_per_call']}"
                         " PostgreSQL statements per call")
    return lines


def _peer_line(results: dict) -> str:
    peer = results["peer"]
    if peer.get("available"):
        return f"peer: LiteLLM proxy {peer['version']} ({peer['how']})"
    return f"peer: not available — {peer['reason']}"


def profile_text(results: dict) -> str:
    parts = []
    for scenario, by_target in results["scenarios"].items():
        found = by_target["tollgate"].get("profile")
        if not found or "error" in found:
            continue
        lines = lambda rows: "\n".join(f"  {pct:5.1f}%  {frame}" for frame, pct in rows[:TOP_FRAMES])  # noqa: E731
        parts.append(f"py-spy, tollgate on {scenario} ({found['samples']} samples)\n"
                     f"innermost tollgate function on the stack (its code + the library calls it makes):\n"
                     f"{lines(found['innermost_project_pct'])}\n"
                     f"tollgate functions, inclusive:\n{lines(found['project_inclusive_pct'])}\n"
                     f"own time (any code):\n{lines(found['self_pct'])}")
    return "\n\n".join(parts)


def text(results: dict) -> str:
    profiled = profile_text(results)
    note = _censored_note(results)
    return (_text_table(MEASURE_HEADERS, _measure_rows(results), 2) + (f"\n{note}" if note else "") + "\n\n"
            + "tollgate ÷ baseline (req/s: lower is worse; latency and CPU: higher is worse)\n"
            + _text_table(RATIO_HEADERS, _ratio_rows(results), 1) + "\n\n"
            + "\n".join(["metering (tollgate):", *("  " + line for line in _metering_lines(results)),
                         _peer_line(results)])
            + (f"\n\n{profiled}" if profiled else ""))


def markdown(results: dict) -> str:
    run = results["run"]
    facts = (f"{run['started_utc']} · commit `{run['git_commit'][:12]}`{' (dirty tree)' if run['git_dirty'] else ''}"
             f" · {run['cpus']} CPUs · wrk -t{run['threads']} -c{run['connections']}, {run['seconds']} s per"
             f" target after {run['warmup_seconds']} s warm-up · tollgate and LiteLLM with {run['workers']}"
             f" worker(s) · mock latency 0 ms, 0 ms between stream frames · max_tokens {run['max_tokens']}"
             f" · load average before/after {run['load_average_1m_before']}/{run['load_average_1m_after']}"
             + (" · **profiled with py-spy (tollgate slowed by the sampler)**" if run.get("profiled") else ""))
    metering = "\n".join(f"- {line}" for line in _metering_lines(results))
    profiled = profile_text(results)
    return (f"# Latest AI-route benchmark\n\n{facts}\n\n"
            "Produced by `python -m bench.ai`: `POST /openai/v1/chat/completions` (gpt-4o-mini, small prompt) on"
            " the mock OpenAI API direct, through tollgate (API key, ledger hold, forward, meter, post) and"
            " through the peer gateway. Compare ratios, not absolute numbers (wrk shares the 2 cores with the"
            " servers). CPU µs/req is the CPU time each process tree used during the measured run divided by"
            " the requests served; `gateway` is tollgate or LiteLLM.\n\n"
            f"{_peer_line(results)}\n\n"
            + _markdown_table(MEASURE_HEADERS, _measure_rows(results), 2) + "\n\n"
            + (f"{_censored_note(results)}\n\n" if _censored_note(results) else "")
            + "tollgate ÷ baseline (req/s: lower is worse; latency and CPU: higher is worse)\n\n"
            + _markdown_table(RATIO_HEADERS, _ratio_rows(results), 1) + "\n\n"
            + f"Metering, read from tollgate's PostgreSQL after each tollgate run:\n\n{metering}\n"
            + (f"\n```\n{profiled}\n```\n" if profiled else ""))


def write(results: dict, directory: Path) -> Path:
    """`ai-<UTC timestamp>.json` with everything, and `ai-latest.md` replaced by this run's summary."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"ai-{results['run']['started_utc_compact']}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    (directory / "ai-latest.md").write_text(markdown(results))
    return json_path
