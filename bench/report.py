"""Results: the table and ratios, printed and written as JSON plus a small Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = ("direct", "nginx", "tollgate", "tollgate-cookie")
BASELINES = ("direct", "nginx")
CPU_COMPONENTS = ("proxy", "mock", "redis")
MEASURE_HEADERS = ["path", "target", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket err",
                   "CPU µs/req: proxy", "mock", "redis"]
RATIO_HEADERS = ["path", "req/s t/direct", "req/s t/nginx", "p50 t/direct", "p50 t/nginx",
                 "p99 t/direct", "p99 t/nginx", "req/s cookie/headers", "p50 cookie/headers"]


def ratios(by_target: dict[str, dict]) -> dict[str, dict[str, float]]:
    """tollgate divided by each baseline, and its cookie variant by its headers: below 1 is slower for
    req/s, above 1 is slower for latency."""
    tollgate = by_target["tollgate"]["wrk"]
    found: dict[str, dict[str, float]] = {"requests_per_s": {}, "latency_p50_ms": {}, "latency_p99_ms": {}}
    pairs = [(f"tollgate/{baseline}", tollgate, by_target[baseline]["wrk"]) for baseline in BASELINES]
    if "tollgate-cookie" in by_target:
        pairs.append(("cookie/headers", by_target["tollgate-cookie"]["wrk"], tollgate))
    for name, measured, base in pairs:
        for metric, values in found.items():
            values[name] = round(measured[metric] / base[metric], 3) if base[metric] else 0.0
    return found


def _measure_rows(results: dict) -> list[list[str]]:
    rows = []
    for path, by_target in results["paths"].items():
        for target in filter(by_target.__contains__, TARGETS):
            wrk, cpu = by_target[target]["wrk"], by_target[target]["cpu_us_per_request"]
            rows.append([path, target, f"{wrk['requests_per_s']:,.0f}", f"{wrk['latency_p50_ms']:.2f}",
                         f"{wrk['latency_p99_ms']:.2f}", str(wrk["non_2xx_3xx"]), str(wrk["socket_errors"]),
                         *(f"{cpu[c]:.0f}" if c in cpu else "-" for c in CPU_COMPONENTS)])
    return rows


def _ratio_rows(results: dict) -> list[list[str]]:
    rows = []
    for path, found in results["ratios"].items():
        cells = [f"{found[metric][f'tollgate/{base}']:.2f}×"
                 for metric in ("requests_per_s", "latency_p50_ms", "latency_p99_ms") for base in BASELINES]
        cells += [f"{found[metric]['cookie/headers']:.2f}×" if "cookie/headers" in found[metric] else "-"
                  for metric in ("requests_per_s", "latency_p50_ms")]
        rows.append([path, *cells])
    return rows


def _text_table(headers: list[str], rows: list[list[str]], text_columns: int) -> str:
    """Plain columns: the first `text_columns` left-aligned, the numbers after them right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "  ".join(c.ljust(w) if i < text_columns else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def _markdown_table(headers: list[str], rows: list[list[str]], text_columns: int) -> str:
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    align = ["---" if i < text_columns else "---:" for i in range(len(headers))]
    return "\n".join([line(headers), line(align), *map(line, rows)])


def profile_text(results: dict) -> str:
    """tollgate's own functions by share of py-spy samples, per path (empty without --profile)."""
    parts = []
    for path, by_target in results["paths"].items():
        for target in ("tollgate", "tollgate-cookie"):
            found = by_target.get(target, {}).get("profile")
            if not found or "error" in found:
                continue
            lines = [f"  {pct:5.1f}%  {frame}" for frame, pct in found["gateway_inclusive_pct"]]
            parts.append(f"py-spy, {target} on {path} ({found['samples']} samples), inclusive:\n" + "\n".join(lines))
    return "\n\n".join(parts)


def text(results: dict) -> str:
    profiled = profile_text(results)
    return (_text_table(MEASURE_HEADERS, _measure_rows(results), 2) + "\n\n"
            + "tollgate ÷ baseline (req/s: lower is worse; latency: higher is worse)\n"
            + _text_table(RATIO_HEADERS, _ratio_rows(results), 1)
            + (f"\n\n{profiled}" if profiled else ""))


def markdown(results: dict) -> str:
    run = results["run"]
    facts = (f"{run['started_utc']} · commit `{run['git_commit'][:12]}`{' (dirty tree)' if run['git_dirty'] else ''}"
             f" · {run['cpus']} CPUs · wrk -t{run['threads']} -c{run['connections']}, {run['seconds']} s per"
             f" target after {run['warmup_seconds']} s warm-up · tollgate and nginx with {run['workers']} worker(s)"
            f" · load average before/after {run['load_average_1m_before']}/{run['load_average_1m_after']}"
            + (f" · tollgate with headers and with the cookie in {run['pair_rounds']} alternating slices"
               if run.get("pair_rounds") and not run.get("profiled") else "")
            + (" · **profiled with py-spy (tollgate slowed by the sampler)**" if run.get("profiled") else ""))
    return (f"# Latest proxy benchmark\n\n{facts}\n\n"
            "Produced by `python -m bench.proxy`; compare ratios, not absolute numbers (wrk shares the cores"
            " with the servers, run-to-run noise is about ±15%). CPU µs/req is the CPU time each process"
            " tree used during the measured run divided by the requests served.\n\n"
            + _markdown_table(MEASURE_HEADERS, _measure_rows(results), 2) + "\n\n"
            + "tollgate ÷ baseline (req/s: lower is worse; latency: higher is worse)\n\n"
            + _markdown_table(RATIO_HEADERS, _ratio_rows(results), 1) + "\n")


def write(results: dict, directory: Path) -> Path:
    """`<UTC timestamp>.json` with everything, and `latest.md` replaced by this run's summary."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{results['run']['started_utc_compact']}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    (directory / "latest.md").write_text(markdown(results))
    return json_path
