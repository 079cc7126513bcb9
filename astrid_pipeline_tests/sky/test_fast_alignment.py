"""The fast paths of alignment give the exact answers: the coarse-grid pixel mapping against the exact WCS
transform (real TAN-SIP, galactic CAR/SIN headers), the sparse mask resampling against the full one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrid_pipeline.science import alignment as A

REAL = Path("/work/shared/realdata/wcs")


def _wcs(name: str) -> WCS:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real WCS file {path} is absent")
    return WCS(fits.getheader(path)).celestial


def _scaled(w: WCS, factor: float) -> WCS:
    """The same sky projection on a finer pixel grid (so a 512² target spans the image)."""
    w = w.deepcopy()
    w.wcs.crpix = (np.asarray(w.wcs.crpix) - 0.5) * factor + 0.5
    if w.wcs.has_cd():
        w.wcs.cd = w.wcs.cd / factor
    else:
        w.wcs.cdelt = np.asarray(w.wcs.cdelt) / factor
    return w


@pytest.mark.parametrize("target, source", [
    ("galactic_center_2mass_k_tan.fits", "galactic_center_msx_e_car_galactic.fits"),  # equatorial TAN -> galactic CAR
    ("galactic_center_msx_e_car_galactic.fits", "galactic_center_2mass_k_tan.fits"),
])
def test_coarse_mapping_matches_exact_across_frames(target, source):
    wt, ws = _wcs(target), _wcs(source)
    shape = (720, 721) if "2mass" in target else (149 * 4, 149 * 4)
    if "msx" in target:
        wt = _scaled(wt, 4)
    m, info = A.pixel_mapping_info(wt, shape, ws, offset=(0.37, -0.21), step=16)
    exact = A._exact_mapping(wt, shape, ws, offset=(0.37, -0.21))
    assert info["method"] == "coarse"
    ok = np.isfinite(exact)
    assert (np.isfinite(m) == ok).all()
    err = np.abs(m - exact)[ok].max()
    assert err <= A.MAPPING_MAX_ERROR
    assert info["max_error_px"] <= A.MAPPING_MAX_ERROR


def test_coarse_mapping_with_sip_distortion():
    w = _wcs("apogee_tan_sip.fits")
    assert w.sip is not None
    shape = (512, 1024)
    wt = w.deepcopy()
    wt.wcs.crpix = np.asarray(wt.wcs.crpix) + (3.3, -2.7)  # a shifted, undistorted target grid
    wt.sip = None
    m, info = A.pixel_mapping_info(wt, shape, w, step=32)
    exact = A._exact_mapping(wt, shape, w)
    ok = np.isfinite(exact)
    if info["method"] == "coarse":
        assert np.abs(m - exact)[ok].max() <= A.MAPPING_MAX_ERROR
    else:  # the spline could not meet the bound: then the mapping is the exact one
        np.testing.assert_array_equal(m, exact)


def test_mapping_falls_back_to_exact_beyond_a_limb():
    """A target grid that runs off the source projection's sky: the coarse grid has no-data points -> exact."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    w.wcs.crval = [10.0, 0.0]
    w.wcs.crpix = [64.5, 64.5]
    w.wcs.cdelt = [-1.0, 1.0]  # 128 degrees across: beyond the SIN limb
    t = WCS(naxis=2)
    t.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    t.wcs.crval = [100.0, 0.0]
    t.wcs.crpix = [64.5, 64.5]
    t.wcs.cdelt = [-1.0, 1.0]
    m, info = A.pixel_mapping_info(t, (128, 128), w, step=16)
    assert info["method"] == "exact"
    exact = A._exact_mapping(t, (128, 128), w)
    np.testing.assert_array_equal(np.isnan(m), np.isnan(exact))
    assert np.isnan(m).any() and np.isfinite(m).any()


def test_sparse_mask_resampling_equals_full():
    rng = np.random.default_rng(3)
    shape = (300, 260)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    a = np.deg2rad(0.4)
    mapping = np.array([np.cos(a) * yy + np.sin(a) * xx - 2.3, -np.sin(a) * yy + np.cos(a) * xx + 1.7])
    mapping[:, :5, :5] = np.nan
    bad = rng.random(shape) < 0.003
    bad[:, 100] = True
    bad[-1] = True
    full = (A._sample(bad.astype(np.float32), mapping, 1) > 0.01) & A._inside(mapping, shape)
    np.testing.assert_array_equal(A.resample_mask(bad, mapping), full)
    assert full.sum() > bad.sum()
