"""Training-data simulation: hit kinds and amplitudes, saturation, splits, determinism."""

import h5py
import numpy as np
import pytest

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.ml.inference import robust_normalize
from astrid_pipeline.science.cosmic_rays.simulate import (CRSimConfig, add_cosmic_rays, hits_from_dark,
                                                          median_weight_map, simulate_field)


def test_hits_have_every_kind_and_faint_amplitudes():
    rng = np.random.default_rng(0)
    sig, mask, hits = add_cosmic_rays(rng, (256, 256), 10.0, n_hits=300, faint_fraction=0.5)
    kinds = {h["kind"] for h in hits}
    assert kinds == {"spot", "track", "worm"}
    faint = [h for h in hits if h["faint"]]
    assert 100 < len(faint) < 200
    assert all(3.0 <= h["peak_nsigma"] <= 8.0 for h in faint)
    # the peak pixel of an isolated faint hit is at its drawn amplitude (in noise units)
    assert sig.max() > 8 * 10.0
    # the truth is the CR signal above 1 sigma
    assert mask.sum() == (sig > 10.0).sum() or mask.sum() >= (sig > 10.0).sum() * 0.95
    # tracks and worms spread over many pixels, spots over few
    npix = {k: np.median([h["npix"] for h in hits if h["kind"] == k and not h["faint"]]) for k in kinds}
    assert npix["track"] > npix["spot"] and npix["worm"] > npix["spot"]


def test_field_has_saturated_star_not_labelled_as_cr():
    cfg = CRSimConfig(image_size=128)
    f = simulate_field(np.random.default_rng(4), cfg)
    assert f.saturated.any()
    assert f.image.max() == pytest.approx(f.saturation, rel=1e-5)
    clean_sat = f.clean >= f.saturation * 0.99999
    assert not (f.cr_mask & clean_sat).any()
    assert 0.002 < f.cr_mask.mean() < 0.1
    # the CR image minus the clean one is only non-zero near CR pixels
    diff = (f.image - f.clean) > 0
    assert (diff & ~f.cr_mask).sum() < diff.sum()


def test_same_seed_same_field_different_seed_different():
    cfg = CRSimConfig(image_size=64)
    a = simulate_field(np.random.default_rng(7), cfg)
    b = simulate_field(np.random.default_rng(7), cfg)
    c = simulate_field(np.random.default_rng(8), cfg)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.cr_mask, b.cr_mask)
    assert not np.array_equal(a.image, c.image)


def test_training_set_file_splits(tiny_set):
    path, summary = tiny_set
    with h5py.File(path, "r") as f:
        assert set(f) == {"train", "val", "test"}
        assert f["train/x"].shape == (16, 64, 64) and f["train/y"].dtype == np.uint8
        assert f["val/x"].shape == (4, 64, 64)
        assert f["test/image"].shape == (1, 128, 128)
        assert f["test"].attrs["seed"] != f["train"].attrs["seed"]
        assert f["train/w"][...].min() >= 0.1 - 1e-6
    assert summary["train"]["hits"] > 0 and summary["train"]["faint_hits"] > 0


def test_config_rejects_test_seed_equal_to_seed():
    with pytest.raises(ConfigError):
        CRSimConfig(seed=5, test_seed=5).validate()
    with pytest.raises(ConfigError):
        CRSimConfig(kind_fractions=(0.5, 0.5, 0.5)).validate()


def test_dark_frame_hits_and_weights_and_normalization():
    rng = np.random.default_rng(1)
    dark = rng.normal(100, 3, (64, 64))
    dark[10, 10:20] += 200
    sig, m = hits_from_dark(dark, image_sigma=6.0)
    assert m[9:12, 9:21].all() and m.sum() < 150  # the 3x3-dilated track, and a few dilated 3-sigma noise pixels
    assert sig[10, 15] == pytest.approx((dark[10, 15] - np.median(dark)) * 6.0 / 3.0, rel=0.1)
    model = np.full((32, 32), 100.0)
    model[16, 16] = 5000
    w = median_weight_map(model, 100.0, 10.0)
    assert w[16, 16] == pytest.approx(1.0) and w[0, 0] == pytest.approx(0.1)
    img = rng.normal(10, 2, (32, 32))
    img[0:4, 0:4] = np.nan
    x = robust_normalize(img)
    assert np.isfinite(x).all() and (x[0:4, 0:4] == 0).all() and abs(np.median(x)) < 0.2
