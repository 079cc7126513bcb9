"""Cosmic-ray jumps, RTN and snowballs against known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrid_pipeline.science.ramps import metrics
from astrid_pipeline.science.ramps.config import DetectionConfig
from astrid_pipeline.science.ramps.detect import detect_ramp
from astrid_pipeline.science.ramps.readers import ArrayRampSource
from astrid_pipeline.science.ramps.refpix import science_mask


def _src(cube, **kw):
    kw.setdefault("gain", 1.0)
    kw.setdefault("saturation", 65535.0)
    return ArrayRampSource(cube, **kw)


def _flags(res):
    return set(zip(res.jumps["y"].tolist(), res.jumps["x"].tolist(), res.jumps["frame"].tolist()))


def test_cosmic_ray_found_at_its_pixel_and_frame(make_flat_cube):
    cube = make_flat_cube(read_noise=10.0, seed=1)
    cube[7:, 20, 30] += 200.0  # 200 DN step between groups 6 and 7: S/N ~ 14 per difference
    cube[12:, 41, 9] += 100.0  # S/N ~ 7 with sigma_d = sqrt(2 * 100 + 5)
    res = detect_ramp(_src(cube), DetectionConfig(read_noise_dn=10.0))
    flags = _flags(res)
    assert (20, 30, 7) in flags and (41, 9, 12) in flags
    assert res.features["first_jump_frame"][20, 30] == 7
    assert abs(res.features["jump_amplitude"][20, 30] - 200) < 40
    assert res.features["persistence"][20, 30] == 20 - 7  # the charge stays
    assert res.mask[20, 30] == 1
    ev = pd.DataFrame(res.events)
    hit = ev[(ev.centroid_y.round() == 20) & (ev.centroid_x.round() == 30)]
    assert len(hit) == 1 and hit.type.iloc[0] == "cosmic_ray" and hit.first_frame.iloc[0] == 7
    # white noise alone: about 3e-5 false flags per pixel-group at a one-sided 4 sigma
    n_pg = 64 * 64 * 19
    assert len(flags - {(20, 30, 7), (41, 9, 12)}) <= max(3, 5e-4 * n_pg)


def test_several_jumps_in_one_pixel_are_all_found(make_flat_cube):
    cube = make_flat_cube(read_noise=8.0, seed=2)
    for f, a in ((3, 150.0), (9, 90.0), (15, 400.0)):
        cube[f:, 10, 10] += a
    res = detect_ramp(_src(cube), DetectionConfig(read_noise_dn=8.0, methods=("jumps",)))
    assert {(10, 10, 3), (10, 10, 9), (10, 10, 15)} <= _flags(res)
    assert res.features["n_jumps"][10, 10] == 3
    assert res.features["first_jump_frame"][10, 10] == 3


def test_rtn_pixel_found_with_its_levels_and_a_cosmic_ray_is_not_rtn(make_flat_cube):
    cube = make_flat_cube(read_noise=10.0, seed=3)
    states = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1], dtype=np.float32)
    cube[:, 33, 44] += 70.0 * states  # 7 sigma of a read, 5 transitions
    cube[8:, 50, 50] += 150.0  # one lasting step: a cosmic ray
    res = detect_ramp(_src(cube), DetectionConfig(read_noise_dn=10.0))
    assert res.mask[33, 44] == 2
    assert res.mask[50, 50] == 1
    ev = pd.DataFrame(res.events)
    rtn = ev[ev.type == "telegraph_noise"]
    row = rtn[(rtn.centroid_y == 33) & (rtn.centroid_x == 44)].iloc[0]
    assert row.n_transitions == 5
    assert abs(row.rtn_amplitude - 70) < 15
    assert row.fit_quality > 0.8
    assert row.first_frame == 3
    assert len(rtn) == 1  # no white-noise pixel called RTN
    # the RTN pixel's upward switches are not cosmic rays: flagged steps of an RTN pixel (event -2),
    # in no event; its up and down switches are listed
    at = (res.jumps["y"] == 33) & (res.jumps["x"] == 44)
    assert (res.jumps["event"][at] == -2).all()
    sw = res.rtn_switches
    mine = (sw["y"] == 33) & (sw["x"] == 44)
    assert sorted(zip(sw["frame"][mine].tolist(), sw["direction"][mine].tolist())) == [
        (3, 1), (7, -1), (12, 1), (14, -1), (17, 1)]


def test_simulated_exposure_meets_detection_targets(simulated_exposure):
    cfg, cube, plan, res = simulated_exposure
    sci = science_mask(cfg.image_shape, (4, 4, 4, 4))
    assert np.allclose(res.meta["read_noise_per_output"], plan.amp_noise_dn, rtol=0.05)  # measured from the data
    # RTN pixels and snowball areas are scored separately, as in benchmarks/ramps.py
    sc = metrics.score_detection(res, plan, sci)
    assert sc["recall_by_snr"]["3-5"] > 0.8  # the GLS test uses every read, not one difference
    assert sc["recall_by_snr"]["5-10"] > 0.98
    assert sc["recall_by_snr"]["10-20"] > 0.99 and sc["recall_by_snr"][">=50"] > 0.99
    # one-sided 4 sigma: 3e-5 per pixel-group for Gaussian noise, plus IPC neighbours without charge
    assert sc["false_flag_rate"] < 1.2e-4
    assert sc["n_rtn_strong"] > 50
    assert sc["rtn_recall"] >= 0.9  # amplitude >= 5 sigma of the read noise, >= 2 switches
    assert sc["rtn_false_per_pixel"] <= 1e-4
    assert sc["snowball_recall"] == 1.0 and sc["false_snowballs"] == 0


def test_snowball_found_across_row_blocks_and_edge_cosmic_ray_is_not_a_snowball(make_config):
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    cfg = make_config(image_shape=(96, 96), injection_type="snowball", snowballs_per_exp_range=(1, 1),
                      snowball_radius_range=(5.0, 5.0), snowball_core_fill_range=(1.1, 1.2), seed=3)
    cube, plan = simulate_exposure(cfg, "D1", 0)
    cube = cube.astype(np.float32)
    # an ordinary but very bright cosmic-ray track along the left science edge: it saturates
    # 2 x 30 pixels, more than the core area of a radius-3 snowball, but it is not round
    cube[10:, 30:60, 4:6] = 65535.0
    cube[10:, 30:60, 6] += 3000.0
    res = detect_ramp(_src(cube, refpix=(4, 4, 4, 4)), DetectionConfig(block_rows=8))  # the snowball spans blocks
    ev = pd.DataFrame(res.events)
    sbs = ev[ev.type == "snowball"]
    assert len(sbs) == 1
    t = pd.DataFrame(plan.events).iloc[0]
    assert np.hypot(sbs.centroid_x.iloc[0] - t.x, sbs.centroid_y.iloc[0] - t.y) < 1.5
    assert sbs.first_frame.iloc[0] == t.first_frame
    assert abs(sbs.core_radius.iloc[0] - 5.0) < 1.0
    assert sbs.n_saturated.iloc[0] >= 60
    track = ev[(ev.centroid_x < 8) & (ev.centroid_y > 28) & (ev.centroid_y < 62)]
    assert len(track) >= 1 and set(track.type) == {"cosmic_ray"}
    assert (res.mask[30:60, 4:6] == 1).all()
    core = np.hypot(*np.mgrid[0:96, 0:96][::-1] - np.array([t.x, t.y])[:, None, None]) < 4
    assert (res.mask[core] == 3).all()


def test_blocks_do_not_change_the_jumps(make_flat_cube):
    cube = make_flat_cube(ny=80, nx=40, read_noise=10.0, seed=4)
    rng = np.random.default_rng(0)
    ys, xs, fs = rng.integers(0, 80, 30), rng.integers(0, 40, 30), rng.integers(1, 20, 30)
    for y, x, f in zip(ys, xs, fs):
        cube[f:, y, x] += 300.0
    a = detect_ramp(_src(cube), DetectionConfig(read_noise_dn=10.0, block_rows=7, methods=("jumps",)))
    b = detect_ramp(_src(cube), DetectionConfig(read_noise_dn=10.0, block_rows=0, workers=2, methods=("jumps",)))
    assert _flags(a) == _flags(b)
    assert set(zip(ys.tolist(), xs.tolist(), fs.tolist())) <= _flags(a)
