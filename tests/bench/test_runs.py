"""A bench run's frame: what it started is stopped in reverse, its directory removed, and a run
that fails or is interrupted ends with its exit code."""

from __future__ import annotations

import pytest

from bench import runs
from bench.processes import BenchError


@pytest.mark.parametrize("raised, code", [(BenchError("the mock did not start"), 1), (KeyboardInterrupt(), 130)])
def test_a_run_that_does_not_finish_stops_everything_in_reverse_and_exits(raised, code):
    stopped, seen = [], {}

    def measure(directory, stopping):
        seen["directory"] = directory
        stopping.extend([lambda: stopped.append("database"), lambda: stopped.append("gateway")])
        raise raised

    assert runs.run("tollgate-bench-test-", False, measure) == code
    assert stopped == ["gateway", "database"] and not seen["directory"].exists()


def test_a_finished_run_answers_its_results_and_may_keep_its_directory(tmp_path):
    kept = {}

    def measure(directory, stopping):
        kept["directory"] = directory
        return {"ok": True}

    assert runs.run("tollgate-bench-test-", True, measure) == {"ok": True}
    assert kept["directory"].is_dir()
    kept["directory"].rmdir()
