"""wrk: run one fixed-duration load and parse its `--latency` report into numbers."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# wrk gives up on a request after this long and leaves it out of the latency figures; long enough
# that a slow proxy shows up as a high p99 rather than as silently dropped samples.
REQUEST_TIMEOUT_S = 5
# On top of the run itself: wrk's start-up and the last in-flight requests.
WALL_MARGIN_S = 30

TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
DURATION = r"([\d.]+)(us|ms|s|m|h)"
REQUESTS_PER_S = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+" + DURATION + r"\s*$", re.M)
TOTALS = re.compile(r"^\s+(\d+) requests in " + DURATION + r", ([\d.]+\w*B) read", re.M)
SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
NON_2XX_3XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
# wrk's --latency report stops at 50/75/90/99; the seed's target is stated in p95, so every run also
# prints it (and p99.9) from wrk's own histogram through a `done` hook.
PERCENTILES_HOOK = """
done = function(summary, latency, requests)
  io.write(string.format("TOLLGATE_PERCENTILES_US p95=%d p999=%d\\n", latency:percentile(95), latency:percentile(99.9)))
end
"""
EXTRA_PERCENTILES = re.compile(r"^TOLLGATE_PERCENTILES_US p95=(\d+) p999=(\d+)", re.M)


class WrkError(Exception):
    """wrk failed or printed something this parser does not understand."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    latency_p50_ms: float
    latency_p75_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    requests: int
    duration_s: float
    read: str  # wrk's own rendering, e.g. "20.47MB"
    non_2xx_3xx: int
    socket_errors: int  # connect + read + write + timeout
    latency_p95_ms: float = 0.0
    latency_p999_ms: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _to_ms(number: str, unit: str) -> float:
    return float(number) * TIME_UNITS_MS[unit]


def parse(text: str) -> WrkResult:
    """Numbers from wrk's `--latency` output; WrkError if a required line is missing."""
    rate = REQUESTS_PER_S.search(text)
    totals = TOTALS.search(text)
    percentiles = {int(m[1]): _to_ms(m[2], m[3]) for m in PERCENTILE.finditer(text)}
    if rate is None or totals is None or set(percentiles) != {50, 75, 90, 99}:
        raise WrkError(f"unexpected wrk output:\n{text}")
    errors = SOCKET_ERRORS.search(text)
    non_2xx = NON_2XX_3XX.search(text)
    extra = EXTRA_PERCENTILES.search(text)
    return WrkResult(
        requests_per_s=float(rate[1]),
        latency_p50_ms=percentiles[50],
        latency_p75_ms=percentiles[75],
        latency_p90_ms=percentiles[90],
        latency_p99_ms=percentiles[99],
        requests=int(totals[1]),
        duration_s=_to_ms(totals[2], totals[3]) / 1000,
        read=totals[4],
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        latency_p95_ms=int(extra[1]) / 1000 if extra else 0.0,
        latency_p999_ms=int(extra[2]) / 1000 if extra else 0.0,
    )


def command(url: str, *, seconds: int, threads: int, connections: int,
            headers: dict[str, str], script: Path | None = None,
            timeout_s: int = REQUEST_TIMEOUT_S) -> list[str]:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency",
            "--timeout", f"{timeout_s}s"]
    if script is not None:
        argv += ["-s", str(script)]  # e.g. a POST body (post_script)
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    return [*argv, url]


def post_script(body: bytes) -> str:
    """A wrk Lua script that sends every request as a POST of `body` (JSON)."""
    text = body.decode()
    level = 0
    while f"]{'=' * level}]" in text:  # a long-bracket string that the body cannot close
        level += 1
    equals = "=" * level
    return (f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [{equals}[{text}]{equals}]\n")


def run(url: str, *, seconds: int, threads: int, connections: int,
        headers: dict[str, str], script: Path | None = None, timeout_s: int = REQUEST_TIMEOUT_S) -> WrkResult:
    """One load run of `seconds`; wrk shares the cores with the servers it measures."""
    hooked = _with_percentiles(script)
    try:
        argv = command(url, seconds=seconds, threads=threads, connections=connections, headers=headers,
                       script=Path(hooked), timeout_s=timeout_s)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + WALL_MARGIN_S)
    finally:
        os.unlink(hooked)
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    return parse(done.stdout)


def _with_percentiles(script: Path | None) -> str:
    """A temporary copy of `script` (or an empty one) with the p95/p99.9 hook appended: its path."""
    text = script.read_text() if script is not None else ""
    handle, path = tempfile.mkstemp(prefix="tollgate-wrk-", suffix=".lua")
    with os.fdopen(handle, "w") as out:
        out.write(text + PERCENTILES_HOOK)
    return path
