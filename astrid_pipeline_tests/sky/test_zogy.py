"""ZOGY on images with known noise and known sources."""

import numpy as np
import pytest

from astrid_pipeline.science.psf import moffat_stamp
from astrid_pipeline.science.zogy import embed_psf, point_source_snr, zogy_difference


def _noise_pair(n=256, sn=10.0, sr=4.0, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, sn, (n, n)), rng.normal(0, sr, (n, n)), sn, sr


def test_pure_noise_gives_unit_variance_D_and_Scorr():
    N, R, sn, sr = _noise_pair()
    z = zogy_difference(N, R, moffat_stamp(3.2, 31), moffat_stamp(2.1, 31), sn, sr)
    assert abs(z.noise_D - 1) < 0.05
    assert abs(z.noise_S_corr - 1) < 0.05
    assert abs(z.psf_D.sum() - 1) < 1e-5


def test_point_source_found_with_expected_significance_and_flux():
    N, R, sn, sr = _noise_pair(seed=1)
    pn, pr = moffat_stamp(3.2, 31), moffat_stamp(2.1, 31)
    flux, x, y = 1500.0, 140.3, 97.6
    N[82:113, 125:156] += moffat_stamp(3.2, 31, 3.0, x - 140, y - 97) * flux
    z = zogy_difference(N, R, pn, pr, sn, sr)
    yp, xp = np.unravel_index(np.nanargmax(z.S_corr), z.S_corr.shape)
    assert abs(xp - x) <= 1 and abs(yp - y) <= 1
    expected = point_source_snr(moffat_stamp(3.2, 31, 3.0, 0.3, 0.6) * flux, pn, pr, sn**2, sr**2)
    assert z.S_corr[yp, xp] == pytest.approx(expected, rel=0.15)
    assert z.flux[yp, xp] == pytest.approx(flux, rel=0.15)
    assert abs(z.flux[yp, xp] - flux) < 3 * z.flux_err[yp, xp]


def test_source_noise_lowers_significance_of_a_bright_static_star():
    N, R, sn, sr = _noise_pair(seed=2)
    stamp = moffat_stamp(3.0, 31)
    star = 2e5
    N[100:131, 100:131] += stamp * star * 1.01  # a 1% flux mismatch on a bright star
    R[100:131, 100:131] += stamp * star
    var_n = np.clip(N, 0, None) / 2.0 + sn**2
    var_r = np.clip(R, 0, None) / 2.0 + sr**2
    plain = zogy_difference(N, R, stamp, stamp, sn, sr)
    corr = zogy_difference(N, R, stamp, stamp, sn, sr, var_n=var_n, var_r=var_r)
    assert np.nanmax(plain.S_corr) > 5  # without source noise the residual looks significant
    assert np.nanmax(corr.S_corr) < np.nanmax(plain.S_corr) / 2


def test_masked_pixels_are_nan_and_shapes_checked():
    N, R, sn, sr = _noise_pair(n=128)
    mask = np.zeros(N.shape, bool)
    mask[:, 40] = True
    z = zogy_difference(N, R, moffat_stamp(3, 21), moffat_stamp(2, 21), sn, sr, mask=mask)
    assert np.isnan(z.S_corr[:, 40]).all() and np.isfinite(z.S_corr[:, 41]).all()
    with pytest.raises(ValueError, match="one shape"):
        zogy_difference(N, R[:100], moffat_stamp(3, 21), moffat_stamp(2, 21), sn, sr)
    with pytest.raises(ValueError, match="odd sides"):
        embed_psf(np.ones((4, 4)), (64, 64))


def test_scorr_normalisation_follows_noise_that_varies_across_the_field(realdata):
    """Real DECam noise, with extra noise growing from the left edge to the right of the science image (a mosaic
    whose depth changes across the field): the tile map of the S_corr normalisation follows it, and S_corr is
    closer to unit variance on held-out blank pixels on both sides than with one global factor (which is off by
    ~20 % on each side)."""
    from astropy.io import fits

    from astrid_pipeline.science.noise import blank_sky
    from astrid_pipeline.science.stats import robust_std
    from astrid_pipeline.science.zogy import ScorrNormSettings, holdout_blocks, normalize_scorr

    d = realdata / "differencing"
    N = fits.getdata(d / "decam_science_obs04a.fits").astype(float)
    R = fits.getdata(d / "decam_reference_obs18a.fits").astype(float)
    rng = np.random.default_rng(7)
    N += rng.normal(0, 1.0, N.shape) * (3.0 * 32.6 * np.arange(256) / 255)[None, :]
    bad = np.zeros(N.shape, bool)
    bn, Nr, _, _ = blank_sky(N, bad, grow=5)
    br, Rr, _, _ = blank_sky(R, bad, grow=5)
    pn, pr = moffat_stamp(4.8, 31, 3.6), moffat_stamp(3.5, 31, 3.3)
    z = zogy_difference(np.nan_to_num(Nr), np.nan_to_num(Rr), pn, pr, 32.6 * 1.4, 52.0)
    usable = bn & br
    usable[:20] = usable[-20:] = False
    usable[:, :20] = usable[:, -20:] = False
    norm = normalize_scorr(z.S_corr, usable, z.psf_D, ScorrNormSettings(tile=64, min_samples=8))
    flat = normalize_scorr(z.S_corr, usable, z.psf_D, ScorrNormSettings(tile=-1))
    assert norm.n_tiles == 16 and flat.n_tiles == 1
    assert norm.factor[:, 200:].mean() > 1.25 * norm.factor[:, :60].mean()
    held = usable & holdout_blocks(z.S_corr.shape, norm.block)
    for side in (slice(20, 80), slice(176, 236)):
        m = np.zeros(z.S_corr.shape, bool)
        m[:, side] = True
        tiled = robust_std((z.S_corr / norm.factor)[held & m])
        one = robust_std((z.S_corr / flat.factor)[held & m])
        assert abs(tiled - 1.0) < 0.12 and abs(one - 1.0) > abs(tiled - 1.0) + 0.05, (tiled, one)
    assert norm.noise_holdout == pytest.approx(1.0, abs=0.1)


def test_clipped_std_is_unbiased_for_gaussian_noise_and_ignores_outliers():
    from astrid_pipeline.science.stats import clipped_std

    v = np.random.default_rng(3).normal(0, 2.0, 200_000)
    assert clipped_std(v) == pytest.approx(2.0, rel=0.01)
    v[:2000] = 1e4
    assert clipped_std(v) == pytest.approx(2.0, rel=0.02)
