"""bench.all's verdicts: every target read off the measured numbers, met or not, never guessed."""

from __future__ import annotations

from bench import all_report


def _wrk(rate: float, p50: float, p95: float = 10.0, errors: int = 0) -> dict:
    return {"requests_per_s": rate, "latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p95 * 2,
            "requests": int(rate * 10), "non_2xx_3xx": errors, "socket_errors": 0}


def _found(rate: float, p50: float, **cpu: float) -> dict:
    return {"wrk": _wrk(rate, p50), "cpu_us_per_request": cpu}


def _results() -> dict:
    metering = {"usage_rows": 100, "ai_calls": 100, "holds": 100, "holds_open": 0, "answered": 98,
                "reconcile_ok": True, "database_queries_per_call": 4.0}
    desktop = {"load": {"direct": _found(9000, 5), "bare": _found(2000, 20, bare=150),
                        "tollgate": _found(1500, 30, tollgate=250, redis=20)},
               "serial": {"direct": _found(5000, 0.07), "bare": _found(3000, 0.21), "tollgate": _found(2000, 0.40)}}
    ai = {"chat": {"load": {"direct": _found(8000, 8, mock=100),
                            "tollgate": _found(1100, 50, tollgate=400, redis=30, postgres=240),
                            "litellm": _found(100, 500), "portkey": _found(1000, 60)},
                   "metering": metering},
          "chat-stream": {"load": {"tollgate": _found(850, 60), "litellm": _found(40, 900)}, "metering": metering}}
    return {"workers": {"1": {"desktop": desktop, "ai": ai}},
            "ledger": {"available": True, "results": {"paths": {"batched": {"settlements_per_s": 6000.5}}}}}


def test_each_target_is_judged_on_its_numbers():
    rows = {row["target"]: row for row in all_report.summarise(_results())}
    assert rows["desktop c64 req/s ÷ bare proxy (1w)"]["measured"] == "0.75×"
    assert rows["desktop c64 req/s ÷ bare proxy (1w)"]["met"] is False
    assert rows["desktop serial p50 added over direct (1w)"]["measured"] == "+0.330 ms"
    assert rows["AI whole ÷ LiteLLM (1w)"]["met"] is False  # 11×
    assert rows["AI streamed ÷ LiteLLM (1w)"]["met"] is True  # 21.25×
    assert rows["AI whole ÷ Portkey (1w; Portkey 1 process)"]["met"] is True
    assert rows["AI whole metering exact (1w)"]["met"] is True
    assert rows["seed target, desktop (1w)"]["met"] is True
    assert rows["ledger settlements/s"]["measured"] == "6,000" and rows["ledger settlements/s"]["met"] is True


def test_metering_that_lost_a_call_is_not_exact():
    results = _results()
    results["workers"]["1"]["ai"]["chat"]["metering"]["usage_rows"] = 99
    rows = {row["target"]: row for row in all_report.summarise(results)}
    assert rows["AI whole metering exact (1w)"]["met"] is False


def test_postgres_per_call_is_judged_in_microseconds_with_the_mock_scaled_estimate_beside_it():
    """The issue's 150 µs as written; its table read it beside a mock of 61 µs, so the same scaling
    of this run's figure is given in the note as an estimate, never as the verdict."""
    rows = {row["target"]: row for row in all_report.summarise(_results())}
    row = rows["AI whole PostgreSQL CPU per call (1w)"]
    assert (row["measured"], row["goal"], row["met"]) == ("240 µs", "≤ 150 µs", False)
    assert row["note"] == ("gateway 400 µs, Redis 30 µs per call; the mock here 100 µs per call (the issue's 61): "
                           "scaled by it, ~146 µs there (an estimate)")
    results = _results()
    results["workers"]["1"]["ai"]["chat"]["load"]["tollgate"]["cpu_us_per_request"]["postgres"] = 150
    target = "AI whole PostgreSQL CPU per call (1w)"
    assert {r["target"]: r for r in all_report.summarise(results)}[target]["met"] is True
    del results["workers"]["1"]["ai"]["chat"]["load"]["direct"]
    unmeasured_mock = {r["target"]: r for r in all_report.summarise(results)}[target]
    assert (unmeasured_mock["measured"], unmeasured_mock["met"]) == ("150 µs", True)
    assert "estimate" not in unmeasured_mock["note"]
    del results["workers"]["1"]["ai"]["chat"]["load"]["tollgate"]["cpu_us_per_request"]["postgres"]
    unmeasured = {r["target"]: r for r in all_report.summarise(results)}[target]
    assert (unmeasured["measured"], unmeasured["met"]) == ("n/a", None)
