"""Input recognition at acquisition: target-pixel files are not sky images, multi-band cut-outs need a band,
extra non-image HDUs are ignored and not carried into products, per-epoch options pick HDUs, error maps and
user PSFs."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.errors import AmbiguousImageError, BadShapeError, InputFileError, NotASkyImageError
from astrid_pipeline.io.fits_io import read_sky_image
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.sky import products, runner
from astrid_pipeline.sky import steps as sky


@pytest.fixture(scope="module")
def decam(realdata):
    d = realdata / "differencing"
    return (fits.getdata(d / "decam_science_obs04a.fits"), fits.getheader(d / "decam_science_obs04a.fits"),
            fits.getdata(d / "decam_reference_obs18a.fits"), fits.getheader(d / "decam_reference_obs18a.fits"))


def _pair(sci_hdul, ref_hdul, options=None, sci_name="science.fits"):
    return ArchivePair(sci_hdul, ref_hdul, sci_name, "reference.fits", provenance={"archive": "local"},
                       image_options=options or {})


def _tess_tpf(path, decam):
    """A TESS/astrocut-style target-pixel file: a PIXELS table of 5x5 cadences and a 5x5 APERTURE image with a
    WCS (the image that used to be read as a 5x5 'sky image'). Pixel values are cut from the real DECam frame."""
    data, hdr = decam[0], decam[1]
    n = 12
    stamps = np.stack([data[100:105, 100:105] + k for k in range(n)]).astype(np.float32)
    cols = [fits.Column(name="TIME", format="D", unit="BJD - 2457000, days", array=1400 + 0.02 * np.arange(n)),
            fits.Column(name="CADENCENO", format="J", array=np.arange(n)),
            fits.Column(name="RAW_CNTS", format="25J", dim="(5,5)", array=stamps.astype(np.int32)),
            fits.Column(name="FLUX", format="25E", dim="(5,5)", unit="e-/s", array=stamps),
            fits.Column(name="FLUX_ERR", format="25E", dim="(5,5)", unit="e-/s", array=np.sqrt(np.abs(stamps))),
            fits.Column(name="QUALITY", format="J", array=np.zeros(n, np.int32))]
    prim = fits.PrimaryHDU()
    prim.header["TELESCOP"] = "TESS"
    prim.header["CREATOR"] = "astrocut"
    w = WCS(hdr).celestial[100:105, 100:105]
    ap = fits.ImageHDU(np.ones((5, 5), np.int32), w.to_header(), name="APERTURE")
    fits.HDUList([prim, fits.BinTableHDU.from_columns(cols, name="PIXELS"), ap]).writeto(path)
    return path


def test_tess_target_pixel_file_is_not_a_sky_image(tmp_path, decam):
    p = _tess_tpf(tmp_path / "tess-s0001-cutout.fits", decam)
    with pytest.raises(NotASkyImageError, match=r"tess-s0001-cutout.fits.*target-pixel file \(TESS\).*12 cadences"):
        read_sky_image(p)
    assert issubclass(NotASkyImageError, InputFileError)
    # through acquisition the error names the archive's file, and nothing is written
    layout = DataLayout(tmp_path / "data")
    ref = fits.HDUList([fits.PrimaryHDU(decam[2], decam[3])])
    with pytest.raises(NotASkyImageError, match="tess-s0001-cutout.fits"):
        sky.acquire(layout, "tpf", _pair(fits.open(p), ref, sci_name=str(p)))
    assert not layout.raw_image("tpf", "science").exists()


def test_a_time_axis_cube_is_not_a_sky_image(tmp_path, decam):
    h = WCS(decam[1]).celestial.to_header()
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = "TIME", 0.0, 60.0, 1.0
    p = tmp_path / "movie.fits"
    fits.PrimaryHDU(np.stack([decam[0][:64, :64]] * 4).astype(np.float32), h).writeto(p)
    with pytest.raises(NotASkyImageError, match="movie.fits.*time axis"):
        read_sky_image(p)


def _three_band_cutout(path, decam):
    """An astrocut-style multi-band cut-out: empty primary, one CUTOUT extension per band (g, r, i), each
    the real DECam pixels scaled differently, with the WCS."""
    data, hdr = decam[0], decam[1]
    w = WCS(hdr).celestial.to_header(relax=True)
    hdus = [fits.PrimaryHDU()]
    for k, band in enumerate("gri"):
        h = w.copy()
        h["FILTER"] = band
        h["EXPTIME"] = 330.0
        hdus.append(fits.ImageHDU((data * (1 + k)).astype(np.float32), h, name="CUTOUT"))
    fits.HDUList(hdus).writeto(path)
    return path


def test_multiband_cutout_needs_a_band_and_lists_them(tmp_path, decam):
    p = _three_band_cutout(tmp_path / "astrocut_3band.fits", decam)
    with pytest.raises(AmbiguousImageError, match=r"astrocut_3band.fits: has 3 image extensions.*FILTER=g.*FILTER=r.*"
                                                  r"FILTER=i.*band"):
        read_sky_image(p)
    img = read_sky_image(p, band=2)
    assert np.allclose(img.data, decam[0] * 2, rtol=1e-6) and img.header["FILTER"] == "r"
    with pytest.raises(AmbiguousImageError, match="band=4 is out of range"):
        read_sky_image(p, band=4)
    # the band option travels with the pair to acquisition: the raw product holds that band only
    layout = DataLayout(tmp_path / "data")
    ref = fits.HDUList([fits.PrimaryHDU(decam[2], decam[3])])
    sky.acquire(layout, "cut", _pair(fits.open(p), ref, {"science": {"band": 3}}))
    with fits.open(layout.raw_image("cut", "science")) as h:
        assert np.allclose(h[0].data, decam[0] * 3, rtol=1e-6)
        assert h[0].header["FILTER"] == "i" and "CUTOUT" in h[0].header["ASTRHDU"]
        assert [x.name for x in h[1:]] in ([], ["MASK"])  # the other two bands are not carried along


def test_band_picks_a_plane_of_a_cube(tmp_path, decam):
    h = WCS(decam[1]).celestial.to_header()  # the third (band) axis has no WCS, as in stacked-band cubes
    p = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.stack([decam[0] * (k + 1) for k in range(3)]).astype(np.float32), h).writeto(p)
    with pytest.raises(BadShapeError, match="cube.fits.*band"):
        read_sky_image(p)
    assert np.allclose(read_sky_image(p, band=2).data, decam[0] * 2, rtol=1e-6)


def test_ascii_table_after_the_image_is_ignored_and_not_rewritten(tmp_path, decam):
    """A classic FITS layout (e.g. HST FOC/WFPC2 c0f files): the image, then an ASCII table of group
    parameters. Here the table also holds a Fortran overflow field ('********') that astropy cannot convert."""
    tab = fits.TableHDU.from_columns([fits.Column(name="CRVAL1", format="F8.3", array=np.array([182.1, 3.5])),
                                      fits.Column(name="NAME", format="A8", array=np.array(["chip1", "chip2"]))])
    p = tmp_path / "with_table.fits"
    fits.HDUList([fits.PrimaryHDU(decam[0], decam[1]), tab]).writeto(p)
    raw = bytearray(p.read_bytes())
    i = raw.find(b" 182.100")
    raw[i:i + 8] = b"********"
    p.write_bytes(bytes(raw))
    with fits.open(p) as h, pytest.raises(ValueError):
        _ = h[1].data["CRVAL1"]  # the table really is unreadable
    img = read_sky_image(p)
    assert img.shape == (256, 256)
    layout = DataLayout(tmp_path / "data")
    ref = fits.HDUList([fits.PrimaryHDU(decam[2], decam[3])])
    from astrid_pipeline.io.fits_io import open_fits

    res = sky.acquire(layout, "tab", _pair(open_fits(p), ref))
    with fits.open(res.paths["science"]) as h:
        assert [x.name for x in h if not x.is_image] == []
        assert np.allclose(h[0].data, decam[0], rtol=1e-6)


def test_hdu_option_and_error_map_reach_the_raw_product(tmp_path, realdata, decam):
    """WFC3/IR IMA: 20 extensions; the option hdu picks SCI (the final read) and its ERR is kept as the error map."""
    from astrid_pipeline.io.fits_io import open_fits

    ima = realdata / "ramps" / "hst_wfc3ir_ima.fits"
    layout = DataLayout(tmp_path / "data")
    ref = open_fits(ima)
    res = sky.acquire(layout, "ima", _pair(open_fits(ima), ref, {"science": {"hdu": 1, "error_ext": "ERR"}}))
    with fits.open(res.paths["science"]) as h:
        assert h[0].is_image and h[0].data.shape == (266, 266) and "ERR" in h
        hd = h[0].header
        assert hd["BUNIT"] == "ELECTRONS/S" and hd["NOISESRC"] == "error-map" and hd["ERRSRC"] == "ERR"
        assert hd["GAINUSED"] == pytest.approx(hd["EXPTIME"]) and "electron rate" in hd["GAINSRC"]
        assert len(h) <= 3  # image, MASK, ERR: not the 16 other extensions of the IMA
    with pytest.raises(InputFileError, match="has no HDU 'NOPE'"):
        sky.acquire(layout, "ima2", _pair(open_fits(ima), open_fits(ima), {"science": {"hdu": "NOPE"}}))


def test_user_psf_is_copied_unchanged_beside_the_raw_image(tmp_path, decam):
    from astrid_pipeline.science.psf import moffat_stamp

    psf = tmp_path / "webbpsf_like.fits"
    h = fits.Header()
    h["OVERSAMP"] = 4
    h["PIXELSCL"] = 0.0155
    fits.HDUList([fits.PrimaryHDU(moffat_stamp(9.0, 101, 3.0).astype(np.float32), h)]).writeto(psf)
    layout = DataLayout(tmp_path / "data")
    sci = fits.HDUList([fits.PrimaryHDU(decam[0], decam[1])])
    ref = fits.HDUList([fits.PrimaryHDU(decam[2], decam[3])])
    res = sky.acquire(layout, "upsf", _pair(sci, ref, {"science": {"psf": str(psf)}}))
    dst = layout.raw_image("upsf", "science").with_name("science_psf.fits")
    assert res.paths["science_psf"] == dst and dst.read_bytes() == psf.read_bytes()
    bad = tmp_path / "not_a_psf.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("A", "E", array=[1.0])])]).writeto(bad)
    with pytest.raises(BadShapeError, match="not_a_psf.fits.*no 2-D image"):
        sky.acquire(layout, "upsf2", _pair(fits.HDUList([fits.PrimaryHDU(decam[0], decam[1])]),
                                           fits.HDUList([fits.PrimaryHDU(decam[2], decam[3])]),
                                           {"science": {"psf": str(bad)}}))
