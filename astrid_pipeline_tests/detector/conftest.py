"""Fixtures of the detector-branch tests: small simulated ramps and synthetic cubes."""

from __future__ import annotations

import numpy as np
import pytest

from astrid_pipeline.science.ramps.config import SimulationConfig


def small_config(**kw) -> SimulationConfig:
    base = dict(
        image_shape=(128, 128), num_frames=20, exp_time=200.0, gain_library={"D1": 1.0, "D2": 2.0},
        num_exposure_events=1, num_baseline_exposures=1, patch_size=(64, 64), overlap=8,
        read_noise_range=(15.0, 15.0), gaussian_noise_range=(0.0, 0.0), seed=11,
    )
    base.update(kw)
    return SimulationConfig(**base)


@pytest.fixture
def make_config():
    return small_config


def flat_cube(n=20, ny=64, nx=64, *, read_noise=10.0, slope=5.0, bias=1000.0, seed=0) -> np.ndarray:
    """Clean ramps (DN, gain 1): bias + slope * t + white read noise; no reference pixels."""
    rng = np.random.default_rng(seed)
    cube = bias + rng.poisson(slope, size=(n, ny, nx)).cumsum(axis=0) + rng.normal(0.0, read_noise, size=(n, ny, nx))
    return cube.astype(np.float32)


@pytest.fixture
def make_flat_cube():
    return flat_cube


@pytest.fixture(scope="session")
def simulated_exposure():
    """A 384x384 exposure with many CRs, RTN pixels and snowballs (deterministic), and its detection."""
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.readers import ArrayRampSource
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    cfg = SimulationConfig(
        image_shape=(384, 384), num_frames=20, exp_time=200.0, gain_library={"D1": 1.0},
        num_exposure_events=1, num_baseline_exposures=0, patch_size=(128, 128), overlap=16,
        cosmic_ray_per_exp_range=(400, 400), rtn_per_exp_range=(400, 400), snowballs_per_exp_range=(3, 3),
        read_noise_range=(15.0, 15.0), gaussian_noise_range=(0.0, 0.0), cosmic_ray_charge_range=(30.0, 5000.0),
        rtn_offset_range=(45.0, 250.0), rtn_period_range=(3.0, 12.0), snowball_radius_range=(3.0, 7.0),
        snowball_halo_decay_scale_range=(2.0, 5.0), seed=5,
    )
    cube, plan = simulate_exposure(cfg, "D1", 0)
    src = ArrayRampSource(cube, gain=1.0, saturation=cfg.saturation_dn, refpix=(4, 4, 4, 4))
    result = detect_ramp(src, DetectionConfig(block_rows=64))
    return cfg, cube, plan, result
