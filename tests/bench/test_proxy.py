"""bench.proxy's run facts, as every bench that reports them builds them from its own arguments."""

from __future__ import annotations

import argparse

import pytest

from bench import ai, all as bench_all, proxy


@pytest.mark.parametrize("module", [proxy, bench_all, ai])
def test_every_bench_reports_its_run_facts_from_its_default_arguments(module):
    args = module.parse_args([])
    if module is ai:  # as bench.ai calls it
        args = argparse.Namespace(**vars(args), paths=[])
    facts = proxy.run_facts(args)
    assert facts["cpus"] and facts["git_commit"] and "limits" in facts and "pair_rounds" in facts
