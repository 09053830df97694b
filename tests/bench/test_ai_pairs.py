"""bench.ai_pairs: its bounded arguments, CPU per call, and the metering check it ends each scenario with."""

from __future__ import annotations

import pytest

from bench import ai_pairs

READING = {"usage_rows": 100, "charged_rows": 90, "charged_micro": 5000, "holds": 100, "holds_posted": 90,
           "holds_voided": 10}


def test_the_defaults_measure_whole_and_streamed_in_a_short_run():
    args = ai_pairs.parse_args([])
    assert args.scenarios == ["whole", "streamed"] and args.seconds + args.warmup_seconds <= 10


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--seconds", "61"], ["--rounds", "11"],
                                  ["--scenarios", "embeddings"], ["--baseline", "/nonexistent"],
                                  ["--baseline-env", "TOLLGATE_LEDGER_BATCH_LANES"],
                                  ["--baseline-env", "PATH=/tmp"], ["--baseline-env", "TOLLGATE_=1"],
                                  ["--baseline-env", "TOLLGATE_A;B=1"]])
def test_arguments_out_of_bounds_are_refused(argv):
    with pytest.raises(SystemExit):
        ai_pairs.parse_args(argv)


def test_baseline_settings_are_tollgate_names_with_a_value_each():
    args = ai_pairs.parse_args(["--baseline-env", "TOLLGATE_LEDGER_BATCH_LANES=1",
                                "--baseline-env", "TOLLGATE_LEDGER_BATCH_WINDOW_S=0.001"])
    assert [ai_pairs.setting_pair(text) for text in args.baseline_env] == [
        ("TOLLGATE_LEDGER_BATCH_LANES", "1"), ("TOLLGATE_LEDGER_BATCH_WINDOW_S", "0.001")]
    assert ai_pairs.setting_pair("TOLLGATE_MAIL_SENDER=") == ("TOLLGATE_MAIL_SENDER", "")
    assert ai_pairs.parse_args([]).baseline_env == []


def test_cpu_per_call_is_the_cpu_time_over_the_calls_in_microseconds():
    assert ai_pairs.cpu_us_per_call(1.5, 3000) == 500.0 and ai_pairs.cpu_us_per_call(1.0, 0) == 0.0


def test_the_metering_is_exact_when_every_row_has_its_resolved_hold_and_covers_every_call():
    after = {**READING, "usage_rows": 150, "holds": 150, "holds_posted": 140}
    found = ai_pairs.metering_check(READING, after, calls_counted=48)
    assert found["exact"] and found["holds_open"] == 0 and found["usage_rows"] == 50


@pytest.mark.parametrize("change, calls", [({"holds": 151, "holds_posted": 141}, 48),  # a hold without a row
                                           ({"holds_posted": 139}, 48),  # a hold left open
                                           ({}, 51)])  # fewer rows than calls answered
def test_the_metering_is_not_exact_when_a_row_a_hold_or_a_call_is_missing(change, calls):
    after = {**READING, "usage_rows": 150, "holds": 150, "holds_posted": 140, **change}
    assert not ai_pairs.metering_check(READING, after, calls_counted=calls)["exact"]
