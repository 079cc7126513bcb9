"""Detector presets: named, seeded, with the NIRCam-like physics they document."""

from __future__ import annotations

import numpy as np
import pytest

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.presets import load_preset, preset_names, simulation_config_path
from astrid_pipeline.science.ramps.config import load_simulation_config
from astrid_pipeline.science.ramps.readers import ArrayRampSource
from astrid_pipeline.science.ramps.refpix import ReferenceCorrector, output_geometry
from astrid_pipeline.science.ramps.simulate import simulate_exposure

OHANA_KEYS = {
    "image_shape", "num_frames", "patch_size", "overlap", "num_exposure_events", "num_baseline_exposures",
    "injection_type", "num_classes", "cosmic_ray_per_exp_range", "snowballs_per_exp_range", "rtn_per_exp_range",
    "gain_library", "exp_time", "saturation_dn", "dark_current_range", "read_noise_range", "gaussian_noise_range",
    "cosmic_ray_charge_range", "rtn_offset_range", "rtn_period_range", "rtn_duty_fraction_range",
    "snowball_radius_range", "snowball_halo_amplitude_ratio_range", "snowball_halo_decay_scale_range",
}


def quiet(preset: str, **kw):
    """A preset's physics on a small frame without events."""
    base = dict(image_shape=[256, 256], patch_size=[64, 64], num_exposure_events=0, num_baseline_exposures=1,
                injection_type="none")
    base.update(kw)
    return load_preset(preset, **base)


def test_presets_are_named_documented_and_keep_ohanas_keys():
    import yaml

    assert {"h2rg", "nircam", "roman"} <= set(preset_names())
    assert simulation_config_path("roman") == simulation_config_path("h2rg")
    for name in ("h2rg", "nircam"):
        text = simulation_config_path(name).read_text()
        assert OHANA_KEYS <= set(yaml.safe_load(text))
        assert "Figures" in text or "figures" in text  # the public figures it takes are written down
    nc = load_preset("nircam")
    assert nc.preset == "nircam" and nc.num_frames == 10 and nc.num_outputs == 4 and nc.refpix_border == 4
    assert nc.image_shape == (2048, 2048) and abs(nc.frame_time - 10.73677) < 1e-4  # JDox full-frame time
    assert nc.one_over_f_dn > 0 and nc.ipc_alpha_diagonal > 0 and nc.read_noise_amp_spread > 0
    assert 0.005 <= nc.ipc_alpha <= 0.01  # ~0.5-1 % to each side neighbour
    with pytest.raises(ConfigError, match="unknown detector preset 'wfc3'.*nircam"):
        simulation_config_path("wfc3")


def test_a_preset_file_loads_by_path_and_overrides_apply(tmp_path):
    import yaml

    raw = yaml.safe_load(simulation_config_path("nircam").read_text())
    raw.update({"num_frames": 6, "preset": "mine"})
    p = tmp_path / "mine.yaml"
    p.write_text(yaml.safe_dump(raw))
    cfg = load_preset(str(p), seed=7)
    assert cfg.preset == "mine" and cfg.num_frames == 6 and cfg.seed == 7
    assert load_simulation_config(p).seed == raw["seed"]


def test_nircam_outputs_have_their_own_noise_and_the_same_seed_gives_the_same_ramp():
    cfg = quiet("nircam", one_over_f_dn=0.0, one_over_f_amp_dn=0.0, read_noise_amp_spread=0.2, seed=5)
    a, plan = simulate_exposure(cfg, cfg.detectors[0], 0)
    b, _ = simulate_exposure(cfg, cfg.detectors[0], 0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, simulate_exposure(cfg.replace(seed=6), cfg.detectors[0], 0)[0])
    out, _, _ = output_geometry(256, 4)
    d = np.diff(a[:, 4:-4, 4:-4].astype(np.float64), axis=0)
    measured = [np.std(d[:, :, out[4:-4] == o]) / np.sqrt(2) for o in range(4)]
    # each output's white noise is recovered (rounding to DN adds 1/12 DN^2 per read)
    np.testing.assert_allclose(measured, np.sqrt(plan.amp_noise_dn**2 + 1 / 12), rtol=0.03)
    assert np.ptp(plan.amp_noise_dn) / plan.amp_noise_dn.mean() > 0.05  # they differ


def test_one_over_f_noise_is_correlated_along_rows_and_reference_pixels_remove_part_of_it():
    cfg = quiet("nircam", amp_offset_spread_dn=0.0, output_drift_dn=0.0, seed=3)
    cube, plan = simulate_exposure(cfg, cfg.detectors[0], 0)
    src = ArrayRampSource(cube, refpix=(4,) * 4, num_outputs=4)
    raw = src.read_rows(0, 256)
    fixed = ReferenceCorrector(src).correct(raw.copy(), 0)

    def row_banding(c):
        d = np.diff(c[:, 4:-4, 4:-4].astype(np.float64), axis=0)
        return d.mean(axis=2).std()  # scatter of the row means of each group difference

    white = np.sqrt(2) * plan.noise_dn / np.sqrt(248)  # what uncorrelated noise alone would give
    assert row_banding(raw) > 5 * white  # bands along rows
    assert row_banding(fixed) < 0.8 * row_banding(raw)  # the row-wise reference columns take part out


def test_ipc_spreads_cosmic_ray_charge_to_side_and_diagonal_neighbours():
    cfg = load_preset("nircam", image_shape=[128, 128], patch_size=[64, 64], num_exposure_events=1,
                      num_baseline_exposures=0, injection_type="cosmic_ray", cosmic_ray_per_exp_range=[1, 1],
                      cosmic_ray_track_fraction=0.0, seed=1)
    plan = simulate_exposure(cfg, cfg.detectors[0], 0)[1]
    q = plan.dep_charge
    y, x = plan.dep_y, plan.dep_x
    k = int(np.argmax(q))
    side = [q[(y == y[k] + dy) & (x == x[k] + dx)].sum() for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    diag = [q[(y == y[k] + dy) & (x == x[k] + dx)].sum() for dy, dx in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    assert min(side) > 0 and min(diag) > 0
    assert np.mean(side) > np.mean(diag)  # the diagonal coupling is the weaker
