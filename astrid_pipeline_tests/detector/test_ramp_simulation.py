"""Simulation of H2RG ramps: config validation, statistics, determinism, storage."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.presets import DEFAULT_SIMULATION_CONFIG as DEFAULT_CONFIG_PATH
from astrid_pipeline.science.ramps.config import load_simulation_config
from astrid_pipeline.science.ramps.readers import open_ramp
from astrid_pipeline.science.ramps.refpix import ReferenceCorrector
from astrid_pipeline.science.ramps.simulate import simulate_exposure


def test_default_yaml_has_ohana_keys_and_loads():
    import yaml

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    ohana_keys = {
        "image_shape", "num_frames", "patch_size", "overlap", "num_exposure_events", "num_baseline_exposures",
        "injection_type", "num_classes", "cosmic_ray_per_exp_range", "snowballs_per_exp_range",
        "rtn_per_exp_range", "gain_library", "exp_time", "saturation_dn", "dark_current_range",
        "read_noise_range", "gaussian_noise_range", "cosmic_ray_charge_range", "rtn_offset_range",
        "rtn_period_range", "rtn_duty_fraction_range", "snowball_radius_range",
        "snowball_halo_amplitude_ratio_range", "snowball_halo_decay_scale_range",
    }
    assert ohana_keys <= set(raw)
    cfg = load_simulation_config(DEFAULT_CONFIG_PATH)
    assert len(cfg.detectors) >= 2 and cfg.num_exposures >= 2
    assert cfg.exposure_keys[0] == "000"


@pytest.mark.parametrize(
    "change, words",
    [
        ({"cosmic_ray_charge_range": [6000, 200]}, "cosmic_ray_charge_range: min 6000 is greater than max 200"),
        ({"injection_type": "muons"}, "injection_type 'muons' is unknown"),
        ({"num_classes": 3}, "num_classes must be 4"),
        ({"rtn_duty_fraction_range": [0.0, 1.0]}, "rtn_duty_fraction_range"),
        ({"gain_library": {"18220_SCA": -1}}, "gain_library['18220_SCA']"),
        ({"image_shape": [2048]}, "image_shape"),
        ({"dark_current_range": [0.01]}, "dark_current_range must be a [min, max] pair"),
        ({"warp_drive": 1}, "unknown simulation config keys: warp_drive"),
    ],
)
def test_bad_config_values_raise_named_errors(tmp_path, change, words):
    import yaml

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    raw.update(change)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_simulation_config(p)
    assert words in str(err.value)
    assert str(p) in str(err.value)


def test_same_seed_same_ramp_and_other_seed_differs(make_config):
    cfg = make_config()
    a, pa = simulate_exposure(cfg, "D1", 0)
    b, pb = simulate_exposure(cfg, "D1", 0)
    c, _ = simulate_exposure(cfg.replace(seed=12), "D1", 0)
    assert np.array_equal(a, b)
    assert np.array_equal(pa.dep_charge, pb.dep_charge)
    assert not np.array_equal(a, c)


def test_injected_counts_match_config(make_config):
    cfg = make_config(cosmic_ray_per_exp_range=(7, 12), snowballs_per_exp_range=(1, 2), rtn_per_exp_range=(5, 9),
                      num_exposure_events=3, num_baseline_exposures=1)
    for exp in range(3):
        _, plan = simulate_exposure(cfg, "D1", exp)
        t = plan.events["type"]
        assert 7 <= (t == "cosmic_ray").sum() <= 12
        assert 1 <= (t == "snowball").sum() <= 2
        assert 5 <= (t == "telegraph_noise").sum() <= 9
        # every RTN pixel and snowball core is in the truth mask with its class
        rtn = t == "telegraph_noise"
        assert (plan.class_mask[plan.events["y"][rtn].astype(int), plan.events["x"][rtn].astype(int)] > 0).all()
        assert (plan.class_mask == 3).sum() >= (plan.events["n_pixels"][t == "snowball"]).min()
    _, base = simulate_exposure(cfg, "D1", 3)  # the baseline exposure has no anomalies
    assert len(base.events["type"]) == 0 and base.class_mask.max() == 0
    _, only_cr = simulate_exposure(cfg.replace(injection_type="cosmic_ray"), "D1", 0)
    assert set(only_cr.events["type"]) == {"cosmic_ray"}


def test_dark_current_slope_and_read_noise_are_recovered(tmp_path, make_config):
    cfg = make_config(dark_current_range=(0.5, 1.5), read_noise_range=(12.0, 12.0), gaussian_noise_range=(5.0, 5.0),
                      injection_type="none", output_drift_dn=0.0, row_drift_dn=0.0, image_shape=(160, 160))
    path = tmp_path / "dark.h5"
    plan = simulate_exposure(cfg, "D2", 0, path)  # gain 2 e-/DN
    g, dt, b = plan.gain, cfg.frame_time, cfg.refpix_border
    with h5py.File(path, "r") as f:
        cube = f["ramp"][()]
        dark_true = f["truth/dark_current"][b:-b, b:-b]
    d = np.diff(cube[:, b:-b, b:-b].astype(np.float64), axis=0) * g  # electrons
    # dark current: mean difference per frame time, per pixel, against the truth map
    dark_est = d.mean(axis=0) / dt
    assert abs(dark_est.mean() / dark_true.mean() - 1) < 0.02
    assert np.corrcoef(dark_est.ravel(), dark_true.ravel())[0, 1] > 0.8
    # white noise per read: var(d) = 2 sigma^2 + Poisson (dark electrons per frame); rounding adds g^2/12 per read
    var_d = d.var(axis=0, ddof=1).mean()
    sigma2 = (var_d - dark_true.mean() * dt) / 2 - g * g / 12
    assert abs(math.sqrt(sigma2) / math.hypot(12.0, 5.0) - 1) < 0.03
    # ohana's bug: nothing clipped to zero, the bias pedestal is kept
    assert cube.min() > cfg.bias_dn - 6 * cfg.bias_spread_dn
    # reference pixels collect no dark current
    assert abs(np.diff(cube[:, :b, :].astype(np.float64), axis=0).mean()) < 0.5


def test_reference_pixels_carry_drifts_that_the_correction_removes(make_config):
    from astrid_pipeline.science.ramps.readers import ArrayRampSource

    cfg = make_config(injection_type="none", output_drift_dn=40.0, row_drift_dn=30.0, dark_current_range=(0.0, 0.0))
    cube, plan = simulate_exposure(cfg, "D1", 0)
    b = cfg.refpix_border
    src = ArrayRampSource(cube, refpix=(b,) * 4, num_outputs=cfg.num_outputs)
    raw = src.read_rows(0, 128)
    fixed = ReferenceCorrector(src).correct(raw.copy(), 0)
    # frame-to-frame common offsets of the science area, per output
    def drift(c):
        sci = c[:, b:-b, b:-b].astype(np.float64)
        return np.diff(sci.mean(axis=(1, 2))).std()

    assert drift(raw) > 10 * drift(fixed)
    assert drift(fixed) < 0.5 * plan.noise_dn


def test_hdf5_storage_is_chunked_by_row_blocks_and_matches_memory(tmp_path, make_config):
    cfg = make_config(row_block=16)
    path = tmp_path / "r.h5"
    simulate_exposure(cfg, "D1", 0, path)
    cube, plan = simulate_exposure(cfg, "D1", 0)
    with h5py.File(path, "r") as f:
        ds = f["ramp"]
        assert ds.shape == (20, 128, 128) and ds.dtype == np.uint16
        assert ds.chunks == (20, 16, 128)  # all frames of a strip of rows
        assert ds.attrs["unit"] == "DN"
        assert np.array_equal(f["truth/class_mask"][()], plan.class_mask)
        assert f["truth/events/type"].shape[0] == len(plan.events["type"])
    with open_ramp(path) as src:
        assert src.shape == (1, 20, 128, 128)
        assert np.array_equal(src.read_rows(30, 50), cube[:, 30:50].astype(np.float32))
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_physics_saturation_rtn_switching_and_cosmic_ray_spread(make_config):
    cfg = make_config(cosmic_ray_per_exp_range=(40, 40), snowballs_per_exp_range=(2, 2), rtn_per_exp_range=(60, 60),
                      snowball_core_fill_range=(1.1, 1.3), rtn_period_range=(4.0, 8.0))
    cube, plan = simulate_exposure(cfg, "D1", 0)
    # snowball cores saturate at their frame and stay saturated
    sb = plan.events["type"] == "snowball"
    for x, y, f in zip(plan.events["x"][sb], plan.events["y"][sb], plan.events["first_frame"][sb]):
        ramp = cube[:, int(round(y)), int(round(x))]
        assert (ramp[f:] == cfg.saturation_dn).all() and ramp[f - 1] < cfg.saturation_dn
    # RTN: two-state with random dwell times, not a fixed square wave
    runs = []
    for seq in plan.rtn_states:
        edges = np.flatnonzero(np.diff(seq)) + 1
        runs.extend(np.diff(np.r_[0, edges, len(seq)])[1:-1])
    assert len(set(runs)) >= 4
    # cosmic rays spread charge to neighbours (IPC at least) and keep the total
    for eid in np.flatnonzero(plan.events["type"] == "cosmic_ray")[:10]:
        sel = plan.dep_event == eid
        assert sel.sum() >= 5
        inside = plan.dep_charge[sel].sum() / plan.events["amplitude"][eid]
        assert 0.5 < inside <= 1.0 + 1e-9
