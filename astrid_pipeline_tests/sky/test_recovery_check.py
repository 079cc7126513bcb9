"""The recovery check holds the pipeline to what the noise allows, not to a fixed share."""

from astrid_pipeline.sky.products import StepResult
from astrid_pipeline.sky.settings import SkySettings
from astrid_pipeline.sky.table import STEP_BY_NAME

CHECK = STEP_BY_NAME["candidates"].checks[0]


def _result(completeness, expected, n, false_per_mpix=0.0):
    return StepResult({}, {"recovery": {}, "completeness_snr_ge_6": completeness, "false_per_mpix": false_per_mpix,
                           "expected_completeness_snr_ge_6": expected, "n_snr_ge_6": n})


def test_one_miss_among_twelve_faint_transients_is_chance():
    # 12 transients at S/N 6-8 above a 5 sigma threshold: about 0.93 expected; 11 of 12 found
    assert CHECK.evaluate(_result(11 / 12, 0.93, 12), SkySettings()).passed


def test_losing_bright_transients_fails():
    # bright transients (expected completeness 1.0): every miss is a fault
    assert not CHECK.evaluate(_result(11 / 12, 1.0, 12), SkySettings()).passed
    assert not CHECK.evaluate(_result(0.5, 0.93, 12), SkySettings()).passed


def test_false_candidates_still_fail_it():
    assert not CHECK.evaluate(_result(1.0, 1.0, 12, false_per_mpix=5.0), SkySettings()).passed


def test_real_data_skip_it():
    assert CHECK.evaluate(StepResult({}, {"n_candidates": 3}), SkySettings()) is None
