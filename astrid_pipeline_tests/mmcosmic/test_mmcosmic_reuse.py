"""Combined images that can feed the sky branch, and ``astrid-crmasks --crmasks FILE`` (saved masks reused)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrid_pipeline.cli_crmasks import main
from astrid_pipeline.science.mmcosmic import simulate_stack
from astrid_pipeline_tests.mmcosmic.test_mmcosmic_cli import COMBINED, listing, params_file

SHAPE = (64, 64)


def _exposure_header(realdata, i: int) -> fits.Header:
    """The real DECam science header (TPV WCS, EXPTIME, GAIN, epoch), shifted in time per exposure."""
    h = fits.getheader(realdata / "differencing" / "decam_science_obs04a.fits")
    h["MJD-OBS"] = h["MJD-OBS"] + i * 0.004
    h["CRVAL1"] = h["CRVAL1"] + i * 1e-5  # a small pointing change: the combined image keeps the first's
    return h


@pytest.fixture()
def stack_files(tmp_path, realdata, monkeypatch):
    sim = simulate_stack(SHAPE, 3, seed=21, n_coincident=6, gain=2.0, rnoise=3.0, sky=300.0)
    names = [f"exp_{i + 1}.fits" for i in range(3)]
    for i, (img, name) in enumerate(zip(sim.images, names)):
        fits.PrimaryHDU(img, _exposure_header(realdata, i)).writeto(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    p = params_file(tmp_path, names, dilation=1)
    data = p.read_text().replace("gain: 1.0", "gain: 2.0").replace("rnoise: 3.4", "rnoise: 3.0")
    p.write_text(data)
    return sim, names, p


def test_combined_images_carry_wcs_exptime_ncombine_and_their_own_variance(stack_files, realdata, tmp_path):
    from astrid_pipeline.io.fits_io import read_sky_image
    from astrid_pipeline.science.cosmic_rays.applicability import cr_masking_applies

    sim, names, p = stack_files
    assert main([str(p), "--output_dir", "out", "--no-plots"]) == 0
    first = fits.getheader(tmp_path / names[0])
    for c in COMBINED:
        with fits.open(tmp_path / "out" / f"combined_{c}.fits") as h:
            hdr = h[0].header
            assert [x.name for x in h] == ["PRIMARY", "VARIANCE", "MAP", "SCATTER"]
            assert hdr["NCOMBINE"] == 3 and hdr["EXPTIME"] == first["EXPTIME"]
            assert hdr["MJD-OBS"] == first["MJD-OBS"] and hdr["VAREXT"] == "VARIANCE"
            # the single-exposure gain would be wrong for a mean of 3: renamed, not GAIN
            assert "GAIN" not in hdr and hdr["EXPGAIN"] == 2.0
            w, w0 = WCS(hdr), WCS(first)
            np.testing.assert_allclose(w.all_pix2world([[10, 20]], 0), w0.all_pix2world([[10, 20]], 0), atol=1e-9)
    # the sky branch can read it, and its CR step knows it is a co-add
    img = read_sky_image(tmp_path / "out" / "combined_meancr2.fits", require_exptime=True)
    assert img.wcs.has_celestial
    ok, why = cr_masking_applies(fits.getheader(tmp_path / "out" / "combined_meancr2.fits"), "combined_meancr2.fits")
    assert not ok and "NCOMBINE=3" in why
    # VARIANCE is the variance of the combined pixel: it matches the scatter of (mean - truth) on the sky
    mean = fits.getdata(tmp_path / "out" / "combined_mean.fits")
    var = fits.getdata(tmp_path / "out" / "combined_mean.fits", "VARIANCE")
    scatter = fits.getdata(tmp_path / "out" / "combined_mean.fits", "SCATTER")
    resid = mean - sim.model
    sky = (sim.model < 310) & (sim.hit_count() == 0)
    assert sky.sum() > 1000
    ratio = np.var(resid[sky]) / np.median(var[sky])
    assert 0.9 < ratio < 1.1, ratio
    assert np.mean(scatter[sky]) / np.mean(var[sky]) == pytest.approx(3.0, rel=0.1)  # numina's: one exposure's


def test_saved_masks_are_reused_without_recomputation(stack_files, tmp_path, monkeypatch):
    from astrid_pipeline.science.mmcosmic import pipeline

    sim, names, p = stack_files
    assert main([str(p), "--output_dir", "first", "--no-plots"]) == 0
    masks = tmp_path / "first" / "crmasks.fits"

    def no_recompute(*a, **k):
        raise AssertionError("masks recomputed")

    monkeypatch.setattr(pipeline, "compute_crmasks", no_recompute)
    assert main([str(p), "--output_dir", "again", "--crmasks", str(masks)]) == 0
    assert listing(tmp_path / "again") == sorted(f"combined_{c}.fits" for c in COMBINED)  # as numina: images only
    uid = fits.getheader(masks)["UUID"]
    for c in COMBINED:
        a = fits.getdata(tmp_path / "first" / f"combined_{c}.fits")
        b = fits.getdata(tmp_path / "again" / f"combined_{c}.fits")
        np.testing.assert_array_equal(a, b)
        assert any(uid in str(v) for v in fits.getheader(tmp_path / "again" / f"combined_{c}.fits")["HISTORY"])
    # the masks really come from the file: an emptied MEDIANCR gives the plain median
    edited = tmp_path / "edited.fits"
    with fits.open(masks) as h:
        assert h["MEDIANCR"].data.any()
        h["MEDIANCR"].data[:] = 0
        h.writeto(edited)
    assert main([str(p), "--output_dir", "edited_out", "--crmasks", str(edited)]) == 0
    np.testing.assert_array_equal(fits.getdata(tmp_path / "edited_out" / "combined_mediancr.fits"),
                                  fits.getdata(tmp_path / "first" / "combined_median.fits"))


def test_psf_matched_masks_reused_give_the_same_combinations(tmp_path, monkeypatch):
    sim = simulate_stack((96, 96), 3, seed=5, fwhm=(3.0, 3.6, 4.2), cr_fraction=0.003, n_coincident=4)
    names = [f"s{i}.fits" for i in range(3)]
    for img, n in zip(sim.images, names):
        fits.PrimaryHDU(img).writeto(tmp_path / n)
    monkeypatch.chdir(tmp_path)
    p = params_file(tmp_path, names, crmethod="mm_lacosmic", psf_match=True)
    assert main([str(p), "--output_dir", "a", "--no-plots"]) == 0
    assert fits.getheader(tmp_path / "a" / "crmasks.fits")["PSFMATCH"] is True
    assert (tmp_path / "a" / "diagnostic_seeing.csv").exists()
    assert main([str(p), "--output_dir", "b", "--crmasks", "a/crmasks.fits"]) == 0
    for c in ("mean", "mediancr", "meancr2"):
        np.testing.assert_array_equal(fits.getdata(tmp_path / "a" / f"combined_{c}.fits"),
                                      fits.getdata(tmp_path / "b" / f"combined_{c}.fits"))


@pytest.mark.parametrize("case, words", [("missing", "not found"), ("fewer", "3"), ("not_masks", "not a crmasks")])
def test_bad_saved_masks_give_a_named_error_and_no_output(stack_files, tmp_path, capsys, case, words):
    sim, names, p = stack_files
    bad = tmp_path / "bad.fits"
    if case == "fewer":
        assert main([str(p), "--output_dir", "first", "--no-plots"]) == 0
        with fits.open(tmp_path / "first" / "crmasks.fits") as h:
            del h["CRMASK3"]
            h.writeto(bad)
    elif case == "not_masks":
        fits.PrimaryHDU(np.zeros(SHAPE, np.float32)).writeto(bad)
    rc = main([str(p), "--output_dir", "out", "--crmasks", str(bad)])
    err = capsys.readouterr().err
    assert rc in (1, 2) and "error" in err and words in err and "bad.fits" in err, err
    assert listing(tmp_path / "out") == []
    assert os.path.exists(p)
