"""The rules hold on every preset: measured noise, GLS jumps vs stcal, RTN, snowballs; skipped methods; progress."""

from __future__ import annotations

import math

import numpy as np
import pytest

from astrid_pipeline.presets import load_preset
from astrid_pipeline.science.ramps import metrics
from astrid_pipeline.science.ramps.config import DetectionConfig
from astrid_pipeline.science.ramps.detect import detect_ramp
from astrid_pipeline.science.ramps.jumps import gls_max_z, gls_step_z
from astrid_pipeline.science.ramps.readers import ArrayRampSource
from astrid_pipeline.science.ramps.refpix import ReferenceCorrector, output_geometry, science_mask
from astrid_pipeline.science.ramps.simulate import simulate_exposure

SIZE = 384


def bench_like(preset: str, seed: int):
    """A preset's physics with the benchmark's event densities on a SIZE^2 frame (seeds not used in tuning)."""
    base = load_preset(preset)
    area = SIZE * SIZE
    det = base.detectors[0]
    return base.replace(image_shape=(SIZE, SIZE), seed=seed, num_exposure_events=1, num_baseline_exposures=0,
                        gain_library={det: base.gain_library[det]}, patch_size=(128, 128),
                        cosmic_ray_per_exp_range=(area // 300,) * 2, rtn_per_exp_range=(area // 500,) * 2,
                        snowballs_per_exp_range=(3, 3))


@pytest.fixture(scope="module", params=[("nircam", 4242), ("h2rg", 777)], ids=lambda p: f"{p[0]}-{p[1]}")
def detected(request):
    preset, seed = request.param
    cfg = bench_like(preset, seed)
    cube, plan = simulate_exposure(cfg, cfg.detectors[0], 0)
    src = ArrayRampSource(cube, gain=plan.gain, saturation=cfg.saturation_dn, refpix=(4,) * 4, num_outputs=4)
    res = detect_ramp(src, DetectionConfig())
    return cfg, cube, plan, src, res


def test_read_noise_is_measured_per_output(detected):
    cfg, cube, plan, src, res = detected
    measured = np.array(res.meta["read_noise_per_output"])
    assert len(measured) == 4
    # the white noise of each output, plus what 1/f noise the reference pixels leave
    assert np.all(measured >= 0.97 * plan.amp_noise_dn)
    assert np.all(measured <= 1.25 * np.sqrt(plan.amp_noise_dn**2 + cfg.one_over_f_dn**2 + cfg.one_over_f_amp_dn**2))
    if cfg.read_noise_amp_spread > 0:  # outputs that differ are told apart
        assert np.corrcoef(measured, plan.amp_noise_dn)[0, 1] > 0.9


def test_jumps_beat_stcal_in_every_snr_bin_at_a_lower_false_flag_rate(detected):
    pytest.importorskip("stcal")
    from astrid_pipeline.science.ramps.peer_stcal import stcal_detect_jumps

    cfg, cube, plan, src, res = detected
    sci = science_mask(cfg.image_shape, (4,) * 4)
    ours = metrics.score_detection(res, plan, sci)
    corr = src.read_rows(0, SIZE).copy()
    sat = corr >= cfg.saturation_dn - 0.5
    ReferenceCorrector(src).correct(corr, 0)
    col = output_geometry(SIZE, 4)[0]
    st = stcal_detect_jumps(corr, sat, math.sqrt(2) * np.array(res.meta["read_noise_per_output"])[col][None, :],
                            plan.gain)
    theirs = metrics.score_jumps_against_truth(st["y"], st["x"], st["group"], plan, sci, ours["exclude"])
    for k, v in theirs["recall_by_snr"].items():
        if v is not None:
            assert ours["recall_by_snr"][k] >= v, (k, ours["recall_by_snr"], theirs["recall_by_snr"])
    assert ours["recall_by_snr"]["5-10"] > 0.95
    assert ours["false_flag_rate"] <= theirs["false_flag_rate"]
    assert ours["false_flag_rate"] < 3e-4


def test_rtn_recall_and_false_rate_and_snowballs(detected):
    cfg, cube, plan, src, res = detected
    sc = metrics.score_detection(res, plan, science_mask(cfg.image_shape, (4,) * 4))
    assert sc["n_rtn_strong"] > 100
    assert sc["rtn_recall"] >= 0.9  # amplitude >= 5 sigma, >= 2 switches
    assert sc["rtn_false_per_pixel"] <= 1e-4
    assert sc["snowball_recall"] == 1.0 and sc["false_snowballs"] == 0
    # the RTN threshold follows the ramp length: short ramps need a stricter one
    assert res.meta["rtn_tstat_threshold"] >= DetectionConfig().rtn_min_tstat


@pytest.mark.parametrize("n", [5, 10, 40])
def test_gls_statistic_is_standard_normal_under_the_null_for_any_ramp_length(n):
    rng = np.random.default_rng(n)
    P, sigma = 40000, 3.0
    p = 2.0  # Poisson variance per group difference (DN^2)
    reads = rng.normal(0, sigma, (n, P)) + np.cumsum(rng.normal(0, np.sqrt(p), (n, P)), axis=0)
    D = np.diff(reads, axis=0).astype(np.float32)
    r = np.full(P, p / sigma**2, np.float32)
    z, _ = gls_step_z(D, r, np.full(P, sigma, np.float32))
    assert abs(z.std() - 1) < 0.02 and abs(z.mean()) < 0.02
    zmax, k = gls_max_z(D, r, np.full(P, sigma, np.float32), 4.0)
    assert np.allclose(zmax, z.max(axis=0), atol=0.05)
    if n < 10:
        return
    # a 3-sigma (of one difference) jump next to the start of a read-noise-limited ramp: the GLS test
    # sees it against all later reads, the two-point test against one difference
    reads = rng.normal(0, sigma, (n, P))
    reads[1:] += 3 * math.sqrt(2) * sigma
    D = np.diff(reads, axis=0).astype(np.float32)
    z, _ = gls_step_z(D, np.zeros(P, np.float32), np.full(P, sigma, np.float32))
    two_point = (D[0] - np.median(D, axis=0)) / (math.sqrt(2) * sigma)
    assert (z[0] > 4).mean() > (two_point > 4).mean() + 0.1


def test_methods_that_cannot_run_are_skipped_by_name_and_progress_is_reported(make_flat_cube, caplog):
    cube = make_flat_cube(n=6, ny=48, nx=48, read_noise=8.0, seed=9)
    cube[3:, 10, 10] += 200.0
    calls = []
    with caplog.at_level("WARNING"):
        res = detect_ramp(ArrayRampSource(cube, gain=1.0, saturation=65535.0),
                          DetectionConfig(block_rows=16, progress_every=1),
                          progress=lambda done, total: calls.append((done, total)))
    assert res.skipped == {"rtn": "TooFewGroupsError: ramp has 6 groups; rtn detection needs at least 8"}
    assert "rtn skipped" in caplog.text
    assert res.mask[10, 10] == 1  # jumps still ran
    assert calls == [(1, 3), (2, 3), (3, 3)]
