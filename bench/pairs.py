"""Two variants of one server measured in alternating slices (A B B A A B …), so a change in the
machine's other load falls on both alike. Comparing the desktop path with the headers and with a
browser session's cookie needs it: on a shared 2-core machine one run after the other drifts by
±15%, more than the difference being measured."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench import wrk
from bench.processes import cpu_seconds

PERCENTILES = ("latency_p50_ms", "latency_p75_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
               "latency_p999_ms")


def measure(variants: dict[str, tuple[str, dict[str, str]]], *, rounds: int, seconds: int, warmup_seconds: int,
            threads: int, connections: int, roots: dict[str, int], script: Path | None = None,
            timeout_s: int = wrk.REQUEST_TIMEOUT_S, slice_min_s: int = 1) -> dict[str, dict]:
    """Each variant (name -> url, headers) for about `seconds`, in `rounds` slices taken in turn,
    with the CPU time of each process tree during its own slices (`script`: wrk's, e.g. a POST body)."""
    load = dict(threads=threads, connections=connections, script=script, timeout_s=timeout_s)
    # A slow variant (LiteLLM streaming at c64) may answer nothing within a short slice.
    slice_s = max(slice_min_s, round(seconds / rounds))
    if warmup_seconds:
        for url, headers in variants.values():
            wrk.run(url, seconds=warmup_seconds, headers=headers, **load)
    slices: dict[str, list[wrk.WrkResult]] = {name: [] for name in variants}
    cpu = {name: dict.fromkeys(roots, 0.0) for name in variants}
    names = list(variants)
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            url, headers = variants[name]
            before = cpu_seconds(roots)
            slices[name].append(wrk.run(url, seconds=slice_s, headers=headers, **load))
            after = cpu_seconds(roots)
            for process in roots:
                cpu[name][process] += after[process] - before[process]
    return {name: combined(variants[name][0], slices[name], cpu[name]) for name in variants}


def combined(url: str, results: list[wrk.WrkResult], cpu_s: dict[str, float]) -> dict:
    """The slices of one variant as one result: totals summed, the rate from the totals, and each
    latency percentile the median of the slices' (percentiles do not add up; a median resists one
    noisy slice)."""
    requests = sum(result.requests for result in results)
    duration_s = sum(result.duration_s for result in results)
    merged = {
        "requests_per_s": round(requests / duration_s, 2) if duration_s else 0.0,
        **{name: statistics.median(getattr(result, name) for result in results) for name in PERCENTILES},
        "requests": requests, "duration_s": round(duration_s, 3), "read": f"{len(results)} slices",
        "non_2xx_3xx": sum(result.non_2xx_3xx for result in results),
        "socket_errors": sum(result.socket_errors for result in results),
    }
    per_request = {name: round(s * 1e6 / requests, 1) if requests else 0.0 for name, s in cpu_s.items()}
    return {"url": url, "wrk": merged, "cpu_s": {name: round(s, 3) for name, s in cpu_s.items()},
            "cpu_us_per_request": per_request, "slices": len(results)}
