"""The chaos run, short form (decision 0026): `tollgate serve --workers 2` on its own PostgreSQL and
Redis, under steady mixed load, while a worker is killed, Redis restarts empty, PostgreSQL stops and
starts, and the upstream turns slow, resets and answers 5xx — each fault held a few seconds. After
every fault and at the end nothing the clients were told is missing or doubled in the ledger, no
hold outlives its expiry, `tollgate reconcile` passes, no revoked or unknown credential got
through, and the gateway served again by itself. The long form is `python -m bench.chaos`."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from bench.chaos.report import markdown
from bench.chaos.run import Plan, run

SHORT = Plan(fault_s=2.5, calm_s=1.5, recovery_bound_s=20.0, drain_s=15.0)


@pytest.mark.chaos
@pytest.mark.timeout(240)
async def test_faults_under_load_lose_nothing_let_nothing_through_and_heal_themselves():
    directory = Path(tempfile.mkdtemp(prefix="tollgate-chaos-", dir="/tmp"))
    directory.chmod(0o755)  # the postgres system user must traverse it
    try:
        report = await run(SHORT, directory, progress=lambda _line: None)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    assert report["ok"], markdown(report)
