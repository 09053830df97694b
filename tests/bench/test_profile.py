"""bench/profile.py: py-spy's raw stacks summarised, the project's own frames named from their package."""

from __future__ import annotations

from bench import profile

STACKS = "\n".join([
    "process 1:tollgate;run (/work/main/gateway/cli.py:10);proxy (/work/main/gateway/proxy/handler.py:30);"
    "relay (/work/main/gateway/proxy/forwarding.py:150);_request (/v/lib/site-packages/aiohttp/client.py:500) 6",
    "process 1:tollgate;run (/work/main/gateway/cli.py:10);observe (/work/main/gateway/core/middleware.py:90) 3",
    "process 1:tollgate;run (/work/main/gateway/cli.py:10);move (ledger/batches.py:81) 1",  # relative
])


def test_the_projects_frames_in_subpackages_count_as_its_own():
    summary = profile.summarise(STACKS)
    assert summary["samples"] == 10
    assert dict(summary["gateway_inclusive_pct"]) == {
        "proxy (gateway/proxy/handler.py)": 60.0, "relay (gateway/proxy/forwarding.py)": 60.0,
        "observe (gateway/core/middleware.py)": 30.0}
    assert summary["self_pct"][0] == ["_request (aiohttp/client.py)", 60.0]
    assert ["move (ledger/batches.py)", 10.0] in summary["self_pct"]
