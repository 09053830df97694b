"""wrk's report read by the bench, with the p95/p99.9 line its `done` hook prints."""

from __future__ import annotations

from pathlib import Path

from bench import wrk

REPORT = """Running 1s test @ http://127.0.0.1:1/health
  2 threads and 64 connections
  Latency Distribution
     50%    1.27ms
     75%    7.54ms
     90%   33.29ms
     99%   88.54ms
  2210 requests in 1.02s, 332.36KB read
  Non-2xx or 3xx responses: 3
Requests/sec:   2174.57
TOLLGATE_PERCENTILES_US p95=53769 p999=103258
"""


def test_the_report_and_the_hooked_percentiles_are_read():
    found = wrk.parse(REPORT)
    assert (found.requests, found.non_2xx_3xx, found.latency_p50_ms) == (2210, 3, 1.27)
    assert (found.latency_p95_ms, found.latency_p999_ms) == (53.769, 103.258)


def test_the_hook_goes_after_the_scripts_own_lines(tmp_path):
    script = tmp_path / "post.lua"
    script.write_text(wrk.post_script(b'{"a": 1}'))
    hooked = Path(wrk._with_percentiles(script))
    try:
        text = hooked.read_text()
        assert text.startswith('wrk.method = "POST"') and "latency:percentile(95)" in text
    finally:
        hooked.unlink()
