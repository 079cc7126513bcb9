"""MAST through astroquery.mast's real query/product code, fed astroquery's recorded portal answers."""

from __future__ import annotations

import pytest

from astrid_pipeline.archives.errors import BadDownloadError, NoDataError
from astrid_pipeline.archives.http import DownloadCache
from astrid_pipeline.archives.mast import MastArchive, classify_product
from astrid_pipeline.regions import Region
from astrid_pipeline_tests.archives.conftest import Answer
from astrid_pipeline_tests.archives.services import patch_mast

M101 = Region("M101", 210.774, 54.2737, options={"mast_collection": "GALEX", "mast_filters": "NUV,FUV"})
DRZ = "u9o40504m_drz.fits"
TESS_FFI = {"obs_collection": "TESS", "productSubGroupDescription": "FFIC", "productType": "SCIENCE",
            "productFilename": "tess2019-s0014-1-1-0150-s_ffic.fits",
            "dataURI": "mast:TESS/product/tess2019-s0014-1-1-0150-s_ffic.fits"}
JPEG = {"productSubGroupDescription": "PREVIEW", "productType": "PREVIEW", "productFilename": "u9o40504m_drz.jpg",
        "dataURI": "mast:HST/product/u9o40504m_drz.jpg"}


def _serve(loopback, body):
    loopback.routes["/api/v0.1/Download/file"] = lambda q: (
        Answer(200, body) if q.get("uri") == f"mast:HST/product/{DRZ}" else Answer(404, b"no such product"))
    return loopback.url + "/api/v0.1/Download/file"


def test_mast_query_products_skip_reasons_download_and_cache(realdata, loopback, fast_http, tmp_path, monkeypatch):
    body = (realdata / "wcs" / "cadc_megacam.fits").read_bytes()
    calls = []
    patch_mast(monkeypatch, extra_products=[TESS_FFI, JPEG], product_sizes={DRZ: len(body)}, calls=calls)
    mast = MastArchive(fast_http(), DownloadCache(tmp_path / "cache"), download_url=_serve(loopback, body))
    im = mast.fetch_epoch(M101, "science")
    services = [c[0] for c in calls]
    assert services.count("Mast.Caom.Filtered.Position") == 1 and "Mast.Caom.Products" in services
    query = next(p for s, p in calls if s == "Mast.Caom.Filtered.Position")
    assert '"obs_collection"' in query and '"GALEX"' in query and '"NUV"' in query and '"image"' in query
    rec = im.record
    # newest of the recorded observations is the science epoch
    assert rec.obs_id == "3212159586576367616" and rec.survey == "GALEX" and rec.filter in ("NUV", "FUV")
    assert rec.obs_mjd == pytest.approx(54953.87746527778) and rec.exptime_s > 0
    assert rec.status == "downloaded" and rec.product == DRZ and im.hdul[0].header["ARCHSRC"] == "mast"
    reasons = {r.product: r.reason for r in im.extra_records}
    assert "TESS full-frame image" in reasons[TESS_FFI["productFilename"]]
    assert "preview image (JPEG/PNG)" in reasons[JPEG["productFilename"]]
    assert reasons["u9o40504j_jit.fits"] == "auxiliary product, not science"
    assert "preferred (u9o40504m_drz.fits)" in reasons["u9o40504m_c0m.fits"]
    assert all(r.status == "skipped" for r in im.extra_records) and len(im.extra_records) == 23
    # the reference epoch is the oldest, a different observation; the same product is then in the cache
    ref = mast.fetch_epoch(M101, "reference")
    assert ref.record.obs_id == "2492216964693360640" and ref.record.status == "cached"
    assert ref.record.obs_mjd == pytest.approx(52809.608599537045)
    assert loopback.count("/api/v0.1/Download/file") == 1


def test_size_mismatch_with_mast_listing_is_an_error_and_leaves_nothing(realdata, loopback, fast_http, tmp_path,
                                                                       monkeypatch):
    body = (realdata / "wcs" / "cadc_megacam.fits").read_bytes()
    patch_mast(monkeypatch)  # recorded size 27227520 bytes, the served file is smaller
    mast = MastArchive(fast_http(), DownloadCache(tmp_path / "cache"), download_url=_serve(loopback, body))
    with pytest.raises(BadDownloadError, match=f"MAST lists the product at 27227520 bytes"):
        mast.fetch_epoch(M101, "science")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_pinned_observation_must_exist(fast_http, tmp_path, monkeypatch):
    patch_mast(monkeypatch)
    r = Region("M101", 210.774, 54.2737, options={"mast_science_obs_id": "nope"})
    with pytest.raises(NoDataError, match="'nope' pinned for the science epoch"):
        MastArchive(fast_http(), DownloadCache(tmp_path)).fetch_epoch(r, "science")


def test_classification_of_products():
    base = {"productFilename": "x_cal.fits", "productSubGroupDescription": "CAL", "obs_collection": "JWST",
            "productType": "SCIENCE", "dataproduct_type": "image"}
    assert classify_product(base) == ""
    assert "TESS full-frame" in classify_product({**base, "obs_collection": "TESS",
                                                  "productFilename": "tess-s0001-1-1_ffir.fits",
                                                  "productSubGroupDescription": "FFIR"})
    assert "preview" in classify_product({**base, "productFilename": "x.jpeg"})
    assert "not a FITS file (.asdf)" in classify_product({**base, "productFilename": "x.asdf"})
    assert "'spectrum'" in classify_product({**base, "dataproduct_type": "spectrum"})


def test_portal_connection_errors_are_retried_and_service_refusals_are_not(fast_http, tmp_path, monkeypatch):
    import requests
    from astroquery import mast as aq_mast
    from astroquery.exceptions import RemoteServiceError

    from astrid_pipeline.archives.errors import PermanentArchiveError

    patch_mast(monkeypatch)
    recorded = aq_mast.discovery_portal.PortalAPI._request
    failures = [requests.ConnectionError("connection reset by peer"), requests.ConnectionError("reset again")]

    def flaky(self, *args, **kwargs):
        if failures and "columnsconfig" not in (kwargs.get("url") or args[1]):
            raise failures.pop(0)
        return recorded(self, *args, **kwargs)

    monkeypatch.setattr(aq_mast.discovery_portal.PortalAPI, "_request", flaky)
    http = fast_http(max_retries=3)
    obs, _ = MastArchive(http, DownloadCache(tmp_path)).query(M101)
    assert len(obs) == 12 and http.log.n_retries == 2 and not failures

    def refuse(self, *args, **kwargs):
        raise RemoteServiceError("Error converting data type varchar to real (bad coordinates)")

    monkeypatch.setattr(aq_mast.discovery_portal.PortalAPI, "_request", refuse)
    http = fast_http(max_retries=3)
    with pytest.raises(PermanentArchiveError, match="RemoteServiceError: Error converting"):
        MastArchive(http, DownloadCache(tmp_path)).query(M101)
    assert http.log.n_retries == 0


def test_inventory_lists_skipped_products_with_reasons(realdata, loopback, tmp_path, monkeypatch):
    from astrid_pipeline.archives.inventory import inventory_frame
    from astrid_pipeline.defs.resources import SkyArchiveResource

    body = (realdata / "wcs" / "cadc_megacam.fits").read_bytes()
    patch_mast(monkeypatch, extra_products=[TESS_FFI, JPEG], product_sizes={DRZ: len(body)})
    res = SkyArchiveResource(kind="mast", mast_download_url=_serve(loopback, body), cache_root=str(tmp_path),
                             policy={"backoff_base_s": 0.001, "min_interval_s": 0.0})
    df = inventory_frame(res.router().inventory(M101))
    used = df[~df["skipped"]]
    assert sorted(used["status"]) == ["cached", "downloaded"] and set(used["product"]) == {DRZ}
    tess = df[df["product"] == TESS_FFI["productFilename"]]
    assert len(tess) == 2 and tess["skipped"].all() and tess["reason"].str.contains("TESS full-frame").all()
    assert df[df["product"] == JPEG["productFilename"]]["reason"].str.contains("never used as data").all()


@pytest.mark.live
def test_live_mast_hst_m101(tmp_path):
    from astrid_pipeline.archives.http import HttpClient

    r = Region("M101", 210.774, 54.2737, options={"mast_collection": "HST", "mast_instrument": "ACS/WFC"})
    im = MastArchive(HttpClient(), DownloadCache(tmp_path)).fetch_epoch(r, "reference")
    assert im.record.status == "downloaded" and im.record.product.endswith(".fits")
