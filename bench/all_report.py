"""`python -m bench.all`'s results: every issue-13 target with its measured value, the tables behind
them, JSON and all-latest.md."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import _markdown_table

NA = "n/a"
# The issue's PostgreSQL target, in µs, judged as written. Its table read it beside a mock that cost
# 61 µs per call; the same scaling of this run's figure (µs × 61 ÷ the mock's µs here) is shown as an
# estimate only: the mock's own figure swings with the machine more than PostgreSQL's does (0032).
POSTGRES_US_MAX = 150
ISSUE_MOCK_US = 61
SEED_REQUESTS_PER_S = 1000
SEED_P95_MS = 200.0
SEED_ERROR_SHARE = 0.001


def _errors(wrk: dict) -> int:
    return wrk["non_2xx_3xx"] + wrk["socket_errors"]


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def _row(target: str, measured: str, goal: str, met: bool | None, note: str = "") -> dict:
    return {"target": target, "measured": measured, "goal": goal, "met": met, "note": note}


def _desktop_rows(workers: str, desktop: dict) -> list[dict]:
    load, serial = desktop["load"], desktop["serial"]
    ratio = _ratio(load["tollgate"]["wrk"]["requests_per_s"], load["bare"]["wrk"]["requests_per_s"])
    direct_p50 = serial["direct"]["wrk"]["latency_p50_ms"]
    added = round(serial["tollgate"]["wrk"]["latency_p50_ms"] - direct_p50, 3)
    bare_added = round(serial["bare"]["wrk"]["latency_p50_ms"] - direct_p50, 3)
    cpu = load["tollgate"]["cpu_us_per_request"]
    note = (f"CPU µs/req tollgate {cpu.get('tollgate', 0):.0f} + Redis {cpu.get('redis', 0):.0f}, "
            f"bare {load['bare']['cpu_us_per_request'].get('bare', 0):.0f}")
    return [_row(f"desktop c64 req/s ÷ bare proxy ({workers}w)", f"{ratio:.2f}×" if ratio else NA, "≥ 0.80×",
                 ratio is not None and ratio >= 0.80, note),
            _row(f"desktop serial p50 added over direct ({workers}w)", f"+{added:.3f} ms", "≤ +0.25 ms",
                 added <= 0.25, f"bare proxy adds +{bare_added:.3f} ms")]


def _ai_rows(workers: str, ai: dict) -> list[dict]:
    rows = []
    for scenario, label in (("chat", "whole"), ("chat-stream", "streamed")):
        load = ai[scenario]["load"]
        tollgate = load["tollgate"]["wrk"]["requests_per_s"]
        peer = load.get("litellm")
        ratio = _ratio(tollgate, peer["wrk"]["requests_per_s"]) if peer else None
        rows.append(_row(f"AI {label} ÷ LiteLLM ({workers}w)", f"{ratio:.1f}×" if ratio else NA, "≥ 20×",
                         None if ratio is None else ratio >= 20))
        if scenario == "chat":
            rows.append(_postgres_row(workers, load))
            portkey = load.get("portkey")
            ratio = _ratio(tollgate, portkey["wrk"]["requests_per_s"]) if portkey else None
            rows.append(_row(f"AI whole ÷ Portkey ({workers}w; Portkey 1 process)", f"{ratio:.2f}×" if ratio else NA,
                             "≥ 1.0×", None if ratio is None else ratio >= 1.0))
        else:
            rows.append(_row(f"AI streamed ÷ Portkey ({workers}w)", NA, "—", None,
                             "Portkey 1.15.2 fails every streamed call on Node 20 (TypeError: immutable)"))
        counted = ai[scenario]["metering"]
        exact = (counted["usage_rows"] == counted["ai_calls"] == counted["holds"] and counted["holds_open"] == 0
                 and counted["usage_rows"] >= counted["answered"] and counted["reconcile_ok"])
        rows.append(_row(f"AI {label} metering exact ({workers}w)",
                         f"{counted['usage_rows']} usage rows / {counted['ai_calls']} calls / {counted['holds']} holds,"
                         f" {counted['holds_open']} open, reconcile {'ok' if counted['reconcile_ok'] else 'FAILED'}",
                         "rows = calls = holds, 0 open, reconcile ok", exact,
                         f"{counted['database_queries_per_call']} PostgreSQL statements per call"))
    return rows


def _postgres_row(workers: str, load: dict) -> dict:
    """PostgreSQL's CPU per whole AI call, as the issue states the target; the mock-scaled estimate
    beside it in the note."""
    cpu = load["tollgate"].get("cpu_us_per_request", {})
    postgres = cpu.get("postgres")
    mock = load.get("direct", {}).get("cpu_us_per_request", {}).get("mock")
    note = f"gateway {cpu.get('tollgate', 0):.0f} µs, Redis {cpu.get('redis', 0):.0f} µs per call"
    if postgres is not None and mock:
        note += (f"; the mock here {mock:.0f} µs per call (the issue's 61): scaled by it, "
                 f"~{postgres * ISSUE_MOCK_US / mock:.0f} µs there (an estimate)")
    return _row(f"AI whole PostgreSQL CPU per call ({workers}w)", f"{postgres:.0f} µs" if postgres is not None else NA,
                f"≤ {POSTGRES_US_MAX} µs", None if postgres is None else postgres <= POSTGRES_US_MAX, note)


def _seed_rows(workers: str, section: dict) -> list[dict]:
    rows = []
    paths = {"desktop": section["desktop"]["load"]["tollgate"]["wrk"],
             "AI whole": section["ai"]["chat"]["load"]["tollgate"]["wrk"],
             "AI streamed": section["ai"]["chat-stream"]["load"]["tollgate"]["wrk"]}
    for name, wrk in paths.items():
        share = _errors(wrk) / wrk["requests"] if wrk["requests"] else 1.0
        met = (wrk["requests_per_s"] >= SEED_REQUESTS_PER_S and wrk["latency_p95_ms"] < SEED_P95_MS
               and share < SEED_ERROR_SHARE)
        rows.append(_row(f"seed target, {name} ({workers}w)",
                         f"{wrk['requests_per_s']:,.0f} req/s, p95 {wrk['latency_p95_ms']:.1f} ms, "
                         f"{100 * share:.3f}% errors", "≥ 1,000 req/s, p95 < 200 ms, < 0.1% errors", met))
    return rows


def _soak_rows(found: dict) -> list[dict]:
    steady, held = found["steady"], found["slow_clients"]
    served = held["served_while_held"]
    return [_row(f"RSS growth over a {steady['minutes']}-minute soak",
                 f"{steady['rss_growth_pct']:+.2f}% ({steady['rss_start_mib']} → {steady['rss_end_mib']} MiB)", "< 2%",
                 steady["rss_growth_pct"] < 2,
                 f"open sockets {steady['open_sockets_start']} → {steady['open_sockets_end']}; "
                 f"{steady['requests']:,} requests, {steady['errors']} errors"),
            _row(f"RSS with {held['held']:,} slow clients held", f"{held['rss_peak_mib']} MiB peak",
                 "≤ 250 MiB, others still served", held["rss_peak_mib"] <= 250 and _errors(served) == 0
                 and held["held"] >= held["slow_clients"],
                 f"served meanwhile {served['requests_per_s']:,.0f} req/s, {_errors(served)} errors; "
                 f"{held['failed_to_open']} failed to open")]


def _settlements_per_s(found: object) -> float | None:
    """The highest settlements-per-second figure anywhere in bench.ledger's results."""
    best: float | None = None
    if isinstance(found, dict):
        for key, value in found.items():
            if "settlements_per_s" in key and isinstance(value, (int, float)):
                best = max(best or 0.0, float(value))
            else:
                inner = _settlements_per_s(value)
                if inner is not None:
                    best = max(best or 0.0, inner)
    elif isinstance(found, list):
        for value in found:
            inner = _settlements_per_s(value)
            if inner is not None:
                best = max(best or 0.0, inner)
    return best


def summarise(results: dict) -> list[dict]:
    rows: list[dict] = []
    for workers, section in results["workers"].items():
        rows += _desktop_rows(workers, section["desktop"]) + _ai_rows(workers, section["ai"])
        rows += _seed_rows(workers, section)
        if "soak" in section:
            rows += _soak_rows(section["soak"])
    ledger = results.get("ledger", {})
    rate = _settlements_per_s(ledger.get("results")) if ledger.get("available") else None
    rows.append(_row("ledger settlements/s", f"{rate:,.0f}" if rate else NA, "≥ 5,000",
                     None if rate is None else rate >= 5000, ledger.get("reason", ledger.get("file", ""))))
    return rows


def _cpu(value: float) -> str:
    # A process tree whose workers exit and respawn during a slice (LiteLLM's) can lose CPU ticks.
    return f"{value:.0f}" if value >= 0 else NA


def _detail_rows(measured: dict, own: dict[str, str]) -> list[list[str]]:
    rows = []
    for target, found in measured.items():
        wrk, cpu = found["wrk"], found["cpu_us_per_request"]
        rows.append([target, f"{wrk['requests_per_s']:,.0f}", f"{wrk['latency_p50_ms']:.2f}",
                     f"{wrk['latency_p95_ms']:.2f}", f"{wrk['latency_p99_ms']:.2f}", str(_errors(wrk)),
                     _cpu(cpu.get(own.get(target, target), 0)), _cpu(cpu.get("redis", 0)),
                     _cpu(cpu.get("postgres", 0))])
    return rows


DETAIL_HEADERS = ["target", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors", "CPU µs/req own", "redis", "postgres"]


def markdown(results: dict) -> str:
    run = results["run"]
    out = [f"# Latest full benchmark (`python -m bench.all{' --quick' if run.get('quick') else ''}`)\n",
           f"{run['started_utc']} · commit `{run['git_commit'][:12]}`{' (dirty tree)' if run['git_dirty'] else ''} · "
           f"{run['cpus']} CPUs · wrk -c{run['connections']} (serial: -c1 -t1), targets in alternating slices "
           f"({run['pair_rounds']} each) · load average before/after {run['load_average_1m_before']}/"
           f"{run.get('load_average_1m_after', '?')}\n", "## Targets\n"]
    verdicts = {True: "yes", False: "**no**", None: NA}
    out.append(_markdown_table(["target", "measured", "goal", "met", "note"],
                               [[r["target"], r["measured"], r["goal"], verdicts[r["met"]], r["note"]]
                                for r in results["targets"]], 1))
    for workers, section in results["workers"].items():
        for kind in ("load", "serial"):
            out.append(f"\n## Desktop path, {workers} worker(s), {'c64' if kind == 'load' else 'serial (c1)'}: "
                       f"`{run['paths'][0]}`\n")
            out.append(_markdown_table(DETAIL_HEADERS, _detail_rows(section["desktop"][kind], {"direct": "mock"}), 1))
        for scenario, found in section["ai"].items():
            for kind in ("load", "serial"):
                out.append(f"\n## AI `{scenario}`, {workers} worker(s), {'c64' if kind == 'load' else 'serial (c1)'}\n")
                out.append(_markdown_table(DETAIL_HEADERS, _detail_rows(found[kind], {"direct": "mock"}), 1))
    return "\n".join(out) + "\n"


def write(results: dict, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"all-{results['run']['started_utc_compact']}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    (directory / "all-latest.md").write_text(markdown(results))
    return path
