"""The noise model read from the data (science/noise.py), on real single images and resampled or
unit-converted versions of them: estimated vs measured noise, units, gain, error maps, no silent gain."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.io.fits_io import open_fits, sky_image_from_hdul
from astrid_pipeline.science import injection as inj
from astrid_pipeline.science.noise import (
    error_map_gain,
    estimate_noise,
    find_error_map,
    gaussian_psf,
    header_gain,
    parse_bunit,
)


def _copy(path):
    h = open_fits(path)
    return fits.HDUList([x.copy() for x in h])


def _wfc3_final_read(realdata):
    """The WFC3/IR IMA's final read (SCI,1 with its ERR) as an image; the 5-pixel reference-pixel border is
    not sky and is set to NaN."""
    h = _copy(realdata / "ramps" / "hst_wfc3ir_ima.fits")
    img = sky_image_from_hdul(h, "wfc3", 1)
    data = img.data.astype(np.float32)
    data[:5] = data[-5:] = np.nan
    data[:, :5] = data[:, -5:] = np.nan
    return fits.HDUList([fits.PrimaryHDU(data, img.header), fits.ImageHDU(h["ERR", 1].data, h["ERR", 1].header, name="ERR")])


IMAGES = {  # name -> (loader, FWHM in pixels of the filter used for the matched-filter numbers)
    "megacam": (lambda r: _copy(r / "wcs" / "cadc_megacam.fits"), 4.0),
    "2mass": (lambda r: _copy(r / "wcs" / "galactic_center_2mass_k_tan.fits"), 2.5),
    "wfc3ir": (_wfc3_final_read, 1.6),
}


def _variant(hdul, kind):
    if kind == "as-is":
        return hdul, 1.0
    if kind == "drizzle-like":
        return inj.drizzle_like(hdul, scale=0.8, rotation_deg=20.0), 0.8
    return inj.to_surface_brightness(hdul, photmjsr=0.2), 1.0


@pytest.mark.parametrize("name,kind", [("megacam", "as-is"), ("megacam", "drizzle-like"), ("megacam", "MJy/sr"),
                                       ("wfc3ir", "as-is"), ("wfc3ir", "drizzle-like"), ("wfc3ir", "MJy/sr"),
                                       ("2mass", "as-is"), ("2mass", "drizzle-like")])
def test_estimated_flux_noise_matches_empty_aperture_measurement(realdata, name, kind):
    """Estimated (the model's matched-filter flux noise) vs measured (PSF photometry at random blank positions,
    ``injection.flux_noise``) within 10 %; on the resampled versions the white-noise prediction is far off
    (correlated noise) while the model is not."""
    load, fwhm = IMAGES[name]
    hdul, scale = _variant(load(realdata), kind)
    img = sky_image_from_hdul(hdul, f"{name} {kind}")
    psf = gaussian_psf(fwhm / scale)
    model = estimate_noise(img.data, img.header, img.mask, error_map=find_error_map(hdul, img.shape), psf=psf)
    avoid = inj.source_mask(img.data, img.mask, nsigma=5.0 if model.crowded else 2.0, grow=3)
    measured = inj.flux_noise(img.data, psf, avoid)
    white = model.sigma_pixel / np.sqrt((psf ** 2).sum())
    if name == "2mass":
        # the Galactic centre is confusion-limited: the model says so, and "noise" then depends on which faint
        # sources one counts as noise (the mask); the two estimates agree to 20 %
        assert model.crowded and any("crowded" in w for w in model.warnings)
        assert model.sigma_flux == pytest.approx(measured, rel=0.2)
    else:
        assert not model.crowded
        assert model.sigma_flux == pytest.approx(measured, rel=0.1), (model.sigma_flux, measured)
    if kind == "drizzle-like":
        assert model.autocorr_lag1 > 0.3 and model.correlation_factor > 2.0
        assert white < 0.8 * measured  # the white-noise prediction misses the correlation
    assert model.source_noise_available == (model.gain is not None or model.error_source != "none")


def test_units_are_classified_from_bunit():
    assert parse_bunit("ELECTRONS/S").kind == parse_bunit("electrons/s").kind == "electrons"
    assert (parse_bunit("ELECTRONS/S").kind, parse_bunit("ELECTRONS/S").rate) == ("electrons", True)
    assert parse_bunit("MJy/sr").kind == "surface_brightness"
    assert parse_bunit("nJy").kind == "flux_density"
    assert parse_bunit("erg/s/cm2/A").kind == "flam"
    assert (parse_bunit("DN/s").kind, parse_bunit("DN/s").rate) == ("counts", True)
    assert parse_bunit("ADU").kind == "counts" and not parse_bunit("ADU").rate
    assert parse_bunit("").kind == "unknown"


def test_gain_comes_from_the_header_in_the_right_units(realdata):
    wfc3 = sky_image_from_hdul(_copy(realdata / "ramps" / "hst_wfc3ir_ima.fits"), "wfc3", 1)
    g = header_gain(wfc3.header, parse_bunit(wfc3.header["BUNIT"]))
    # e-/s: electrons per data unit is the exposure time (CCDGAIN=2.5 must NOT be used: the data are electrons)
    assert g.value == pytest.approx(float(wfc3.header["EXPTIME"])) and "EXPTIME" in g.source
    decam = fits.getheader(realdata / "differencing" / "decam_science_obs04a.fits")
    g = header_gain(decam, parse_bunit(decam.get("BUNIT")))
    assert g.value == pytest.approx(decam["GAIN"]) and g.warnings  # counts assumed: said so
    sb = inj.to_surface_brightness(_copy(realdata / "differencing" / "decam_science_obs04a.fits"), photmjsr=0.2)
    g = header_gain(sb[0].header, parse_bunit("MJy/sr"))
    assert g.value == pytest.approx(330.0 / 0.2) and "PHOTMJSR" in g.source and g.warnings


def test_no_gain_is_reported_never_a_silent_one(realdata, caplog):
    img = sky_image_from_hdul(_copy(realdata / "wcs" / "galactic_center_2mass_k_tan.fits"), "2mass.fits")
    with caplog.at_level(logging.WARNING, logger="astrid_pipeline.science.noise"):
        m = estimate_noise(img.data, img.header, img.mask, fwhm=2.5, path="2mass.fits")
    assert m.gain is None and m.method == "empirical"
    assert any("no gain known" in r.getMessage() and "2mass.fits" in r.getMessage() for r in caplog.records)
    cards = m.header_cards()
    assert cards["GAINUSED"][0] == -1.0 and cards["NOISESRC"][0] == "empirical"


def test_error_map_of_a_real_ir_read_predicts_its_noise(realdata):
    hdul = _wfc3_final_read(realdata)
    img = sky_image_from_hdul(hdul, "wfc3")
    emap = find_error_map(hdul, img.shape)
    assert emap is not None and emap.source == "ERR" and emap.absolute
    m = estimate_noise(img.data, img.header, img.mask, error_map=emap, fwhm=1.6)
    assert m.method == "error-map"
    # the ERR extension's 1-sigma on blank sky equals the measured pixel noise
    assert m.sigma_pixel_model == pytest.approx(m.sigma_pixel, rel=0.1)


def test_variance_and_inverse_variance_maps_are_read_as_sigma(realdata):
    hdul = _wfc3_final_read(realdata)
    err = np.asarray(hdul["ERR"].data, dtype=np.float64)
    shape = err.shape
    jwst = fits.HDUList([hdul[0], fits.ImageHDU(err ** 2 * 0.7, name="VAR_POISSON"),
                         fits.ImageHDU(err ** 2 * 0.3, name="VAR_RNOISE")])
    e = find_error_map(jwst, shape)
    assert e.source == "VAR_POISSON+VAR_RNOISE"
    ok = err > 0
    assert np.allclose(e.sigma[ok], err[ok], rtol=1e-5)
    ivar = fits.HDUList([hdul[0], fits.ImageHDU(np.where(ok, 1 / np.where(ok, err, 1) ** 2, 0), name="IVAR")])
    assert np.allclose(find_error_map(ivar, shape).sigma[ok], err[ok], rtol=1e-5)
    wht = fits.HDUList([hdul[0], fits.ImageHDU(np.where(ok, 1 / np.where(ok, err, 1) ** 2, 0) * 123.0, name="WHT")])
    w = find_error_map(wht, shape)
    assert not w.absolute and "relative" in w.source  # a drizzle weight: only its shape is trusted
    from astrid_pipeline.errors import BadHeaderError

    with pytest.raises(BadHeaderError, match="ERRX"):
        find_error_map(hdul, shape, error_ext="ERRX", path="wfc3.fits")


def test_effective_gain_from_a_variance_that_grows_with_the_signal(realdata):
    """A JWST-style error map built from the real DECam frame's signal at its header gain is inverted back:
    the variance grows with the signal by 1/gain."""
    img = sky_image_from_hdul(_copy(realdata / "differencing" / "decam_science_obs04a.fits"), "decam")
    gain = float(img.header["GAIN"])  # electrons per count
    signal = np.nan_to_num(img.data)
    background = 32.6  # counts: the frame's measured sky noise
    sigma = np.sqrt(background ** 2 + np.clip(signal, 0, None) / gain)
    valid = np.isfinite(img.data)
    g, read_var = error_map_gain(signal, sigma, valid)
    assert g == pytest.approx(gain, rel=0.1)
    assert read_var == pytest.approx(background ** 2, rel=0.1)
    flat = np.full(signal.shape, background)
    assert error_map_gain(signal, flat, valid)[0] is None  # a map without a Poisson term gives no gain


def test_calibrated_images_need_no_exposure_time_scaling(realdata):
    """Flux matching's header fallback: two MJy/sr products are on one scale whatever their EXPTIME; counts
    scale with EXPTIME."""
    from astrid_pipeline.science.normalization import header_flux_ratio

    d = realdata / "differencing"
    sci = inj.to_surface_brightness(_copy(d / "decam_science_obs04a.fits"), 0.2)[0].header
    ref = inj.to_surface_brightness(_copy(d / "decam_reference_obs18a.fits"), 0.2)[0].header
    ref["EXPTIME"] = 990.0  # a deeper reference
    assert header_flux_ratio(sci, ref) == (1.0, "calibrated-units")
    raw_s, raw_r = fits.getheader(d / "decam_science_obs04a.fits"), fits.getheader(d / "decam_reference_obs18a.fits")
    raw_r["EXPTIME"] = 990.0
    assert header_flux_ratio(raw_s, raw_r) == (pytest.approx(330.0 / 990.0), "exptime")
