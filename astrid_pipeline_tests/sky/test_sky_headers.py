"""Sky-branch product headers: each product keeps its own epoch's MJD-OBS/DATE-OBS, and every image product
(every image HDU) carries BUNIT; S_corr and S say they are dimensionless; flux columns carry the science BUNIT."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.sky import products, runner
from astrid_pipeline.sky import steps as sky


def _decam_pair(realdata, mjysr=False):
    """The DECam pair with the reference's own epoch: its header carries the science epoch's DATE-OBS (the
    stamps were cut from a common-grid product); its exposure name c4d_160818_043331 dates it 2016-08-18
    04:33:31 UTC, which we write back as its DATE-OBS/MJD-OBS."""
    d = realdata / "differencing"
    sci = fits.HDUList([fits.PrimaryHDU(fits.getdata(d / "decam_science_obs04a.fits"),
                                        fits.getheader(d / "decam_science_obs04a.fits"))])
    ref = fits.HDUList([fits.PrimaryHDU(fits.getdata(d / "decam_reference_obs18a.fits"),
                                        fits.getheader(d / "decam_reference_obs18a.fits"))])
    assert ref[0].header["EXP_BN"].startswith("c4d_160818_043331")
    t = Time("2016-08-18T04:33:31", scale="utc")
    ref[0].header["DATE-OBS"] = t.isot
    ref[0].header["MJD-OBS"] = t.mjd
    if mjysr:
        from astrid_pipeline.science.injection import to_surface_brightness

        sci, ref = to_surface_brightness(sci, 0.2), to_surface_brightness(ref, 0.2)
    return sci, ref, float(sci[0].header["MJD-OBS"]), t.mjd, str(sci[0].header["DATE-OBS"]), t.isot


@pytest.fixture(scope="module")
def decam_run(realdata, tmp_path_factory):
    sci, ref, mjd_s, mjd_r, date_s, date_r = _decam_pair(realdata)
    layout = DataLayout(tmp_path_factory.mktemp("hdr"))
    runner.run_pair(layout, "decam", ArchivePair(sci, ref, "science.fits", "reference.fits",
                                                provenance={"archive": "local"}))
    return layout, mjd_s, mjd_r, date_s, date_r


def test_each_product_keeps_its_own_epoch(decam_run):
    layout, mjd_s, mjd_r, date_s, date_r = decam_run
    r = "decam"
    assert abs(mjd_s - mjd_r) > 700  # the two epochs are two years apart
    reference_products = [layout.raw_image(r, "reference"), layout.aligned_reference(r),
                          layout.normalized_image(r, "reference")]
    science_products = [layout.raw_image(r, "science"), layout.normalized_image(r, "science"),
                        layout.difference(r, "zogy"), layout.difference(r, "classic")]
    for p in reference_products:
        h = fits.getheader(p)
        assert h["MJD-OBS"] == pytest.approx(mjd_r, abs=1e-6), p
        assert str(h["DATE-OBS"]).startswith(date_r[:19]), p
    for p in science_products:
        h = fits.getheader(p)
        assert h["MJD-OBS"] == pytest.approx(mjd_s, abs=1e-6), p
        assert str(h["DATE-OBS"]).startswith(date_s[:19]), p
    assert fits.getheader(layout.difference(r, "zogy"))["REFMJD"] == pytest.approx(mjd_r, abs=1e-6)
    # the extensions of the aligned reference carry its WCS but not the science epoch's time either
    with fits.open(layout.aligned_reference(r)) as h:
        for hdu in h[1:]:
            assert hdu.header.get("MJD-OBS", mjd_r) == pytest.approx(mjd_r), hdu.name


def test_every_image_product_has_bunit(decam_run):
    layout, *_ = decam_run
    r = "decam"
    products = [layout.raw_image(r, "science"), layout.raw_image(r, "reference"), layout.aligned_reference(r),
                layout.normalized_image(r, "science"), layout.normalized_image(r, "reference"),
                layout.difference(r, "zogy"), layout.difference(r, "classic")]
    assert "BUNIT" in fits.getheader(layout.cosmic_ray_mask(r))  # the mask itself (cosmic-ray step)
    for p in products:
        with fits.open(p) as h:
            for hdu in h:
                if hdu.is_image and hdu.data is not None:
                    assert "BUNIT" in hdu.header, f"{p.name}[{hdu.name}] has no BUNIT"
    with fits.open(layout.difference(r, "zogy")) as h:
        for name in ("SCORR", "S"):
            assert h[name].header["BUNIT"] == "" and "dimensionless" in h[name].header.comments["BUNIT"]
        assert "dimensionless" in h[0].header.comments["BUNIT"]
        assert h["FLUX"].header["BUNIT"] == h["FLUXERR"].header["BUNIT"] == "adu"  # DECam: counts (GAIN given)
    with fits.open(layout.aligned_reference(r)) as h:
        for name in ("OUTSIDE", "BADPIX", "SATMASK"):
            assert h[name].header["BUNIT"] == "" and "mask" in h[name].header.comments["BUNIT"]
    assert fits.getheader(layout.raw_image(r, "science"))["BUNIT"] == "adu"  # assumed, and said so:
    assert "counts assumed" in " ".join(str(x) for x in fits.getheader(layout.raw_image(r, "science"))["HISTORY"]) \
        or fits.getheader(layout.raw_image(r, "science"))["GAINSRC"].startswith("header GAIN")


def test_surface_brightness_units_reach_the_catalog_and_triplets(realdata, tmp_path):
    import h5py
    import pyarrow.parquet as pq

    sci, ref, *_ = _decam_pair(realdata, mjysr=True)
    layout = DataLayout(tmp_path)
    out = runner.run_pair(layout, "sb", ArchivePair(sci, ref, "sci_i2d.fits", "ref_i2d.fits",
                                                   provenance={"archive": "local"}))
    with fits.open(layout.difference("sb", "zogy")) as h:
        assert h["FLUX"].header["BUNIT"] == "MJy/sr"
        assert h[0].header["GAINSCI"] == pytest.approx(330.0 / 0.2)  # EXPTIME / PHOTMJSR (1 e-/DN assumed)
    schema = pq.read_schema(layout.catalog("candidates", {"region": "sb"}))
    for col in ("flux", "flux_err", "reference_flux"):
        assert schema.field(col).metadata[b"unit"] == b"MJy/sr"
    assert out["candidates"].metadata["flux_unit"] == "MJy/sr"
    with h5py.File(layout.triplets("sb")) as f:
        assert "MJy/sr" in str(f["triplets"].attrs["unit"])
    c = __import__("pandas").read_parquet(layout.catalog("candidates", {"region": "sb"}))
    near = c[np.hypot(c["x"] - 129, c["y"] - 128) < 3]
    assert len(near) == 1 and near["clean"].iloc[0]  # the real brightening, found in MJy/sr without a GAIN
