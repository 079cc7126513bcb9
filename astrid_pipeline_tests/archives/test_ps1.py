"""PS1 cutouts: filename lookup + cutout from a loopback server with real FITS, asinh linearisation, cache."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.archives.errors import ArchiveConfigError, BadDownloadError, DownloadNotFITSError, NoDataError
from astrid_pipeline.archives.http import DownloadCache
from astrid_pipeline.archives.ps1 import PS1CutoutArchive, asinh_scale_ps1, linearize_ps1, parse_filename_table
from astrid_pipeline.regions import Region
from astrid_pipeline_tests.archives.conftest import Answer
from astrid_pipeline_tests.archives.services import install_ps1, ps1_body, ps1_table

REGION = Region("decam", 318.108, -66.016)


def test_linearisation_matches_the_ps1_formula_on_known_values():
    # flux = BOFFSET + BSOFTEN * (10**(0.4 x) - 10**(-0.4 x)), the same as 2*BSOFTEN*sinh(x ln10 / 2.5)
    boff, bsoft = 12.5, 3.0
    for x, expected in ((0.0, 12.5), (1.0, 12.5 + 3.0 * (10 ** 0.4 - 10 ** -0.4)), (-2.5, 12.5 + 3.0 * (0.1 - 10.0))):
        assert linearize_ps1(np.array([x]), boff, bsoft)[0] == pytest.approx(expected, rel=1e-12)
    assert linearize_ps1(np.array([1.0]), 12.5, 3.0)[0] == pytest.approx(18.8413, abs=1e-4)  # 12.5+3*(2.511886-0.398107)
    assert math.isnan(linearize_ps1(np.array([np.nan]), boff, bsoft)[0])
    flux = np.array([-50.0, 0.0, 3.0, 1e5])
    assert np.allclose(linearize_ps1(asinh_scale_ps1(flux, boff, bsoft), boff, bsoft), flux, rtol=1e-10)


def test_filename_table_parsing_and_errors():
    rows = parse_filename_table(ps1_table("gr").decode(), "u")
    assert [r["filter"] for r in rows] == ["g", "r"] and rows[1]["filename"].endswith(".stk.r.unconv.fits")
    with pytest.raises(BadDownloadError, match="did not return its table"):
        parse_filename_table("<html><body>Internal error</body></html>", "http://x/ps1filenames.py")


def _client(fast_http, tmp_path, url, **kw):
    return PS1CutoutArchive(fast_http(), DownloadCache(tmp_path / "cache"), base_url=url, **kw)


def test_cutout_is_fetched_linearised_stamped_and_cached(realdata, loopback, fast_http, tmp_path):
    src = realdata / "differencing" / "decam_reference_obs18a.fits"
    url = install_ps1(loopback, ps1_body(src, boffset=150.0, bsoften=40.0))
    ps1 = _client(fast_http, tmp_path, url, filter="i", size_pixels=256)
    im = ps1.fetch_epoch(REGION, "reference")
    original = fits.getdata(src).astype(np.float64)
    got = im.hdul[0].data.astype(np.float64)
    assert np.allclose(got, original, rtol=1e-5, atol=1e-3 * np.nanstd(original))  # linear again
    h = im.hdul[0].header
    assert "BOFFSET" not in h and "BSOFTEN" not in h and h["PS1BOFF"] == 150.0 and h["PS1LIN"]
    assert h["ARCHSRC"] == "ps1" and "RETRIEVD" in h and "fitscut.cgi" in h["ARCHURL"]
    assert h["DETECTOR"] == fits.getheader(src)["DETECTOR"]  # original header kept
    q = dict(loopback.requests)
    assert q["/cgi-bin/ps1filenames.py"]["filters"] == "i" and q["/cgi-bin/fitscut.cgi"]["format"] == "fits"
    cut = q["/cgi-bin/fitscut.cgi"]
    assert cut["red"].endswith(".stk.i.unconv.fits") and cut["size"] == "256"
    rec = im.record
    assert rec.status == "downloaded" and rec.filter == "i" and rec.shape == "256x256"
    assert rec.pixscale_arcsec == pytest.approx(0.263, abs=0.01) and rec.exptime_s > 0
    # second fetch: the cutout comes from the cache (the lookup is one small request)
    n_cut = loopback.count("/cgi-bin/fitscut.cgi")
    again = ps1.fetch_epoch(REGION, "reference")
    assert again.record.status == "cached" and loopback.count("/cgi-bin/fitscut.cgi") == n_cut
    assert np.array_equal(again.hdul[0].data, im.hdul[0].data)


def test_region_option_selects_the_filter(realdata, loopback, fast_http, tmp_path):
    url = install_ps1(loopback, ps1_body(realdata / "differencing" / "decam_reference_obs18a.fits", 0.0, 10.0))
    r = Region("decam", 318.108, -66.016, options={"ps1_filter": "z"})
    im = _client(fast_http, tmp_path, url).fetch_epoch(r, "reference")
    assert im.record.filter == "z" and ".stk.z." in dict(loopback.requests)["/cgi-bin/fitscut.cgi"]["red"]


def test_no_image_at_position_is_a_clear_permanent_error(loopback, fast_http, tmp_path):
    loopback.routes["/cgi-bin/ps1filenames.py"] = [Answer(200, ps1_table("")) ]
    with pytest.raises(NoDataError, match="no stack image in filter r at RA=318.10800"):
        _client(fast_http, tmp_path, loopback.url + "/cgi-bin").fetch_epoch(REGION, "science")
    assert loopback.count("/cgi-bin/ps1filenames.py") == 1


def test_html_error_page_instead_of_fits_leaves_no_cache_file(loopback, fast_http, tmp_path):
    install_ps1(loopback, b"")
    loopback.routes["/cgi-bin/fitscut.cgi"] = [Answer(200, b"<html><h1>fitscut: error reading file</h1></html>",
                                                      {"Content-Type": "text/html"})]
    with pytest.raises(DownloadNotFITSError, match="fitscut.cgi.*HTML page"):
        _client(fast_http, tmp_path, loopback.url + "/cgi-bin").fetch_epoch(REGION, "science")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_bad_configuration_is_rejected(fast_http, tmp_path):
    with pytest.raises(ArchiveConfigError, match="filter 'u'"):
        _client(fast_http, tmp_path, "http://127.0.0.1:9", filter="u")
    with pytest.raises(ArchiveConfigError, match="size"):
        _client(fast_http, tmp_path, "http://127.0.0.1:9", size_pixels=5)


@pytest.mark.live
def test_live_ps1_cutout(tmp_path):
    from astrid_pipeline.archives.http import HttpClient

    ps1 = PS1CutoutArchive(HttpClient(), DownloadCache(tmp_path))
    im = ps1.fetch_epoch(Region("M101", 210.774, 54.2737), "reference")
    assert im.record.shape == "240x240" and im.hdul[0].header["PS1LIN"]
