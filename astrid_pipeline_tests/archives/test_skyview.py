"""SkyView through astroquery's real form/result code, served from loopback with astroquery's recorded pages."""

from __future__ import annotations

import pytest
from astropy.io import fits

from astrid_pipeline.archives.errors import ArchiveConfigError, DownloadTruncatedError, RetriesExhaustedError
from astrid_pipeline.archives.http import DownloadCache
from astrid_pipeline.archives.skyview import SkyViewArchive
from astrid_pipeline.regions import Region
from astrid_pipeline_tests.archives.conftest import Answer
from astrid_pipeline_tests.archives.services import SKYVIEW_FITS, install_skyview

REGION = Region("decam", 318.108, -66.016)


def _client(fast_http, tmp_path, url, **kw):
    return SkyViewArchive(fast_http(), DownloadCache(tmp_path / "cache"), url=url, **kw)


def test_skyview_query_download_and_cache(realdata, loopback, fast_http, tmp_path):
    src = realdata / "differencing" / "decam_science_obs04a.fits"
    url = install_skyview(loopback, src.read_bytes())
    sv = _client(fast_http, tmp_path, url, survey="SDSSr", pixels=300, pixel_scale_arcsec=0.5)
    im = sv.fetch_epoch(REGION, "science")
    # astroquery filled the recorded form and followed the recorded result page's FITS link
    runs = [q for p, q in loopback.requests if p == "/current/cgi/runquery.pl"]
    assert len(runs) == 1
    q = runs[0]
    assert q["survey"] == "SDSSr" and q["pixels"] == "300" and q["projection"] == "Tan"
    assert q["scaling"] == "Linear" and float(q["imscale"].split(",")[0]) == pytest.approx(300 * 0.5 / 3600)
    assert q["Position"].startswith("318.108")
    assert loopback.count(SKYVIEW_FITS) == 1
    assert im.hdul[0].data.shape == (256, 256) and im.record.status == "downloaded"
    assert im.record.survey == "SDSSr" and im.source.endswith(SKYVIEW_FITS)
    h = im.hdul[0].header
    assert h["ARCHSRC"] == "skyview" and h["EXPTIME"] == fits.getheader(src)["EXPTIME"]
    # second fetch: zero requests
    before = len(loopback.requests)
    again = sv.fetch_epoch(REGION, "science")
    assert len(loopback.requests) == before and again.record.status == "cached"
    assert again.source.endswith(SKYVIEW_FITS)


def test_survey_from_region_options_and_unknown_survey(realdata, loopback, fast_http, tmp_path):
    url = install_skyview(loopback, (realdata / "differencing" / "decam_science_obs04a.fits").read_bytes())
    sv = _client(fast_http, tmp_path, url)
    r = Region("decam", 318.108, -66.016, options={"skyview_survey": "2MASS-K"})
    assert sv.fetch_epoch(r, "science").record.survey == "2MASS-K"
    bad = Region("decam", 318.108, -66.016, options={"skyview_survey": "No Such Survey"})
    with pytest.raises(ArchiveConfigError, match="does not list survey 'No Such Survey'"):
        sv.fetch_epoch(bad, "science")


def test_form_page_500s_are_retried_then_reported(loopback, fast_http, tmp_path):
    url = install_skyview(loopback, b"")
    loopback.routes["/current/cgi/basicform.pl"] = [Answer(503, b"busy")]
    sv = SkyViewArchive(fast_http(max_retries=2), DownloadCache(tmp_path / "cache"), url=url)
    with pytest.raises(RetriesExhaustedError, match="basicform.pl.*HTTP 503"):
        sv.fetch_epoch(REGION, "science")
    assert loopback.count("/current/cgi/basicform.pl") == 3


def test_truncated_skyview_fits_leaves_nothing(realdata, loopback, fast_http, tmp_path):
    body = (realdata / "differencing" / "decam_science_obs04a.fits").read_bytes()
    url = install_skyview(loopback, body[: len(body) // 2])
    with pytest.raises(DownloadTruncatedError, match="skv6724208473423_1.fits"):
        _client(fast_http, tmp_path, url).fetch_epoch(REGION, "science")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


@pytest.mark.live
def test_live_skyview(tmp_path):
    from astrid_pipeline.archives.http import HttpClient

    im = SkyViewArchive(HttpClient(), DownloadCache(tmp_path)).fetch_epoch(Region("M101", 210.774, 54.2737), "science")
    assert im.record.shape == "240x240"


def test_a_hanging_form_page_times_out_after_n_tries(loopback, fast_http, tmp_path):
    url = install_skyview(loopback, b"")
    loopback.routes["/current/cgi/basicform.pl"] = [Answer(200, b"<html></html>", delay_s=5.0)]
    sv = SkyViewArchive(fast_http(timeout_s=0.2, max_retries=1), DownloadCache(tmp_path / "cache"), url=url)
    with pytest.raises(RetriesExhaustedError, match="basicform.pl.*Timeout"):
        sv.fetch_epoch(REGION, "science")
    assert loopback.count("/current/cgi/basicform.pl") == 2
