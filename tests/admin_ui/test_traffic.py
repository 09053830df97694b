"""Traffic figures from the request metrics: the p95 from histogram deltas, rates over the last
minute, the admin UI's own requests left out."""

from __future__ import annotations

from admin_ui.traffic import TRAFFIC, Sample, percentile_s

BOUNDS = (0.01, 0.1, 1.0, float("inf"))


def sample(at_s: float, counts: tuple[int, ...], errors: float = 0) -> Sample:
    return Sample(at_s, counts[-1], errors, tuple(zip(BOUNDS, counts)))


def test_the_p95_lies_in_the_bucket_that_holds_the_95th_request_interpolated():
    old = sample(0, (0, 0, 0, 0))
    new = sample(60, (50, 90, 100, 100))  # 50 under 10 ms, 40 more under 100 ms, 10 under 1 s
    assert abs(percentile_s(old, new, 0.95) - (0.1 + 0.9 * 0.5)) < 1e-9
    assert abs(percentile_s(old, new, 0.5) - 0.01) < 1e-9


def test_only_the_requests_between_the_samples_count():
    old = sample(0, (1000, 1000, 1000, 1000))
    new = sample(60, (1000, 1010, 1010, 1010))
    assert 0.01 < percentile_s(old, new, 0.95) <= 0.1


def test_no_requests_no_percentile():
    assert percentile_s(sample(0, (5, 5, 5, 5)), sample(60, (5, 5, 5, 5)), 0.95) is None


async def test_requests_per_second_and_errors_come_from_the_gateways_own_counters(as_admin):
    traffic = as_admin.app[TRAFFIC]
    traffic.samples.clear()
    traffic.sample(0.0)
    for _ in range(10):
        await as_admin.get("/api/v1/bundles")
    await as_admin.get("/admin/users")  # not counted: the admin UI's own
    figures = traffic.figures(10.0)
    assert figures.requests_per_s == 1.0 and figures.error_rate == 0.0
    assert figures.p95_ms is not None and figures.p95_ms > 0
