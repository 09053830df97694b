"""bench.ledger_pairs: the baseline taken from a migration, its settings, and a short real run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ledger_pairs

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
FOREIGN_KEY = ("ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_user_id_fkey; ALTER TABLE transfers ADD "
               "CONSTRAINT transfers_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID")


def test_the_baseline_is_the_files_last_definition_renamed():
    text = (MIGRATIONS / "0016_ledger_batch_in_sets.sql").read_text()
    assert text.count("CREATE OR REPLACE FUNCTION ledger_batch(p_items jsonb)") == 1
    twice = text + "\n" + (MIGRATIONS / "0022_ledger_batch_writes_less.sql").read_text()
    baseline = ledger_pairs.baseline_definition(twice)
    assert baseline.startswith("CREATE OR REPLACE FUNCTION ledger_batch_baseline(p_items jsonb)")
    assert "written_keys IS DISTINCT FROM t_keys" in baseline and baseline.endswith("END $$;")
    assert "FUNCTION ledger_batch(" not in baseline


def test_a_file_without_the_function_is_refused():
    with pytest.raises(ValueError, match="no CREATE OR REPLACE FUNCTION ledger_batch"):
        ledger_pairs.baseline_definition((MIGRATIONS / "0021_money_plans_probe_indexes.sql").read_text())


@pytest.mark.parametrize(("proconfig", "clauses"), [
    ([], []),
    (["enable_seqscan=off"], ["ALTER FUNCTION ledger_batch_baseline(jsonb) SET enable_seqscan = off"]),
    (["enable_seqscan=off", "work_mem=8MB"], ["ALTER FUNCTION ledger_batch_baseline(jsonb) SET enable_seqscan = off",
                                              "ALTER FUNCTION ledger_batch_baseline(jsonb) SET work_mem = 8MB"]),
])
def test_the_baseline_gets_the_current_functions_settings(proconfig, clauses):
    assert ledger_pairs.setting_clauses(proconfig) == clauses


@pytest.mark.parametrize("item", ["enable_seqscan=off; DROP TABLE users", "search_path=a b", "x y=1"])
def test_a_setting_that_is_not_a_plain_name_and_value_is_refused(item):
    with pytest.raises(ValueError, match="unexpected function setting"):
        ledger_pairs.setting_clauses([item])


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--seconds", "0"], ["--connections", "1"],
                                  ["--baseline-function", "/nonexistent.sql"]])
def test_arguments_out_of_bounds_are_refused(argv):
    with pytest.raises(SystemExit):
        ledger_pairs.parse_args(argv)


def test_a_short_run_measures_both_and_balances(capsys):
    """0019's function with the transfers' key to users (before migration 0022) against this one."""
    result = ledger_pairs.main([
        "--baseline-function", str(MIGRATIONS / "0019_ledger_batch_leaner.sql"), "--baseline-sql", FOREIGN_KEY,
        "--sql", "ALTER TABLE transfers DROP CONSTRAINT IF EXISTS transfers_user_id_fkey",
        "--rounds", "2", "--seconds", "0.5", "--warmup-seconds", "0.2", "--users", "8", "--concurrency", "16"])
    totals = result["totals"]
    assert set(totals) == {"baseline", "variant"}
    assert all(total["settlements"] > 0 and total["batches"] > 0 and total["cpu_s"] > 0 for total in totals.values())
    assert result["reconcile"].endswith("balanced")
    printed = capsys.readouterr().out
    assert "slice 2 baseline" in printed and "slice 2 variant" in printed and "reconcile:" in printed
