"""Hostile servers and faults against the archive HTTP layer (issue #14 items 2 and 7, issue #11 item 5).

Every row is one case on a loopback server, asserting the exact outcome: the
error class (or acceptance), that the message names the URL (stripped of its
token), how many requests the server saw (a refused or bad body is not
retried), and that nothing is left in the cache or the destination.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.archives.errors import (
    BadContentEncodingError,
    BadDownloadError,
    DeadlineExceededError,
    DownloadNotFITSError,
    DownloadTooLargeError,
    DownloadTruncatedError,
    NoDataError,
    PermanentArchiveError,
    RedirectLoopError,
    RetriesExhaustedError,
    UnsafeRedirectError,
)
from astrid_pipeline.archives.http import DownloadCache
from astrid_pipeline.archives.redact import strip_secrets
from astrid_pipeline.regions import Region
from astrid_pipeline_tests.archives.loopback import Answer

SECRET = "SECRET-7f3a9c"


def _fits_bytes(shape=(32, 32)) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)).writeto(buf)
    return buf.getvalue()


def _claims_huge_image() -> bytes:
    """A 5760-byte FITS whose header declares a 100000 x 100000 float32 image (40 GB)."""
    body = bytearray(_fits_bytes((10, 10)))
    text = body.decode("ascii", "replace")
    for key in ("NAXIS1", "NAXIS2"):
        i = text.index(key)
        body[i:i + 80] = f"{key:<8}= {100000:>20}".ljust(80).encode()
    return bytes(body)


def _header_only() -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU().writeto(buf)
    return buf.getvalue()


def _endless(block: bytes = b"\0" * 65536):
    def gen():
        while True:
            yield block
    return gen


FITS = _fits_bytes()
MB = 1_000_000


@dataclass
class Case:
    id: str
    routes: dict            # path -> list of Answers; the first path is the one requested
    error: type | None      # exact class expected; None = accepted (the file is the served FITS)
    says: str = ""          # regex the message must also match
    requests: int = 1       # requests the server sees on the requested path
    policy: dict = field(default_factory=dict)
    text: bool = False      # get_text instead of download


def _redirect(to: str, **kw) -> Answer:
    return Answer(302, kw.pop("body", b""), {"Location": to, **kw.pop("headers", {})}, **kw)


DOWNLOAD_CASES = [
    # ---- sizes: refuse early on the declared length, stop streaming past the limit
    Case("length-claims-1e12", {"/f": [Answer(200, b"SIMPLE  =", length="1000000000000")]}, DownloadTooLargeError,
         r"announces 1000000000000 bytes.*refused before reading"),
    Case("honest-length-above-limit", {"/f": [Answer(200, _fits_bytes((300, 300)))]}, DownloadTooLargeError,
         r"announces 362880 bytes", policy={"max_download_bytes": 100_000}),
    Case("endless-body-no-length", {"/f": [Answer(200, stream=_endless())]}, DownloadTooLargeError,
         r"exceeds the 1000000-byte limit.*stopped after (\d{6}) bytes", policy={"max_download_bytes": MB}),
    Case("gzip-bomb", {"/f": [Answer(200, gzip.compress(b"\0" * (40 * MB)), {"Content-Encoding": "gzip"})]},
         DownloadTooLargeError, r"exceeds the 1000000-byte limit", policy={"max_download_bytes": MB}),
    Case("length-understated", {"/f": [Answer(200, FITS, length="2880")]}, DownloadTruncatedError, r"truncated"),
    Case("length-overstated-then-cut", {"/f": [Answer(200, FITS, cut_after=3000)]}, RetriesExhaustedError,
         r"cut off \(ChunkedEncodingError.*IncompleteRead\(3000 bytes read", requests=3),
    Case("500-then-cut-then-500", {"/f": [Answer(500, b"oops"), Answer(200, FITS, cut_after=100),
                                           Answer(500, b"oops")]},
         RetriesExhaustedError, r"gave up after 3 attempts.*HTTP 500", requests=3),  # retries do not nest
    Case("length-not-a-number", {"/f": [Answer(200, FITS, length="abc")]}, None),
    Case("length-negative", {"/f": [Answer(200, FITS, length="-5")]}, None),
    Case("length-conflicting", {"/f": [Answer(200, FITS, length=f"{len(FITS)}, {len(FITS) + 5}")]},
         PermanentArchiveError, r"InvalidHeader"),
    Case("error-page-claims-1e12", {"/f": [Answer(503, b"", length="1000000000000")]}, DownloadTooLargeError,
         r"announces 1000000000000 bytes"),
    # ---- encodings
    Case("false-gzip", {"/f": [Answer(200, FITS, {"Content-Encoding": "gzip"})]}, BadContentEncodingError,
         r"does not decode as the Content-Encoding"),
    Case("false-deflate", {"/f": [Answer(200, FITS, {"Content-Encoding": "deflate"})]}, BadContentEncodingError,
         r"does not decode"),
    Case("true-gzip", {"/f": [Answer(200, gzip.compress(FITS), {"Content-Encoding": "gzip"})]}, None),
    Case("true-deflate", {"/f": [Answer(200, zlib.compress(FITS), {"Content-Encoding": "deflate"})]}, None),
    # ---- redirects
    Case("redirect-to-file", {"/f": [_redirect("file:///etc/passwd")]}, UnsafeRedirectError,
         r"redirects to a file: URL \(file:///etc/passwd\); only http and https"),
    Case("redirect-to-ftp", {"/f": [_redirect("ftp://archive.example/x.fits")]}, UnsafeRedirectError, r"ftp: URL"),
    Case("redirect-to-javascript", {"/f": [_redirect("javascript:alert(1)")]}, UnsafeRedirectError,
         r"javascript: URL"),
    Case("redirect-to-data", {"/f": [_redirect("data:application/fits;base64,U0lNUExF")]}, UnsafeRedirectError,
         r"data: URL"),
    Case("redirect-hop-then-file", {"/f": [_redirect("/g")], "/g": [_redirect("file:///etc/shadow")]},
         UnsafeRedirectError, r"file: URL.*\(via http://127\.0\.0\.1:\d+/g\)"),
    Case("redirect-self-loop", {"/f": [_redirect("/f")]}, RedirectLoopError, r"more than 3 redirects",
         requests=4, policy={"max_redirects": 3}),
    Case("redirect-ping-pong", {"/f": [_redirect("/g")], "/g": [_redirect("/f")]}, RedirectLoopError,
         r"more than 4 redirects", requests=3, policy={"max_redirects": 4}),
    Case("redirect-chain-too-long", {"/f": [_redirect("/c1")], **{f"/c{i}": [_redirect(f"/c{i + 1}")]
                                                                 for i in range(1, 12)}},
         RedirectLoopError, r"more than 5 redirects", policy={"max_redirects": 5}),
    Case("redirect-with-endless-body", {"/f": [_redirect("/ok", stream=_endless())], "/ok": [Answer(200, FITS)]},
         None),
    # ---- time: every timeout honoured, and one deadline for the whole request
    Case("trickle-one-block-per-0.2s", {"/f": [Answer(200, FITS, block_bytes=64, block_delay_s=0.2)]},
         DeadlineExceededError, r"within the 1 s deadline", policy={"deadline_s": 1.0, "timeout_s": 5.0}),
    Case("trickle-endless-no-length", {"/f": [Answer(200, stream=_endless(b"\0" * 16), block_delay_s=0.1)]},
         DeadlineExceededError, r"deadline", policy={"deadline_s": 1.0, "timeout_s": 5.0}),
    Case("headers-trickled", {"/f": [Answer(200, FITS, {f"X-Pad-{i}": "x" for i in range(40)},
                                            header_delay_s=0.2)]},
         DeadlineExceededError, r"deadline", policy={"deadline_s": 1.0, "timeout_s": 5.0}),
    Case("silent-beyond-timeout", {"/f": [Answer(200, FITS, delay_s=30.0)]}, RetriesExhaustedError,
         r"ReadTimeout after 0\.3 s timeout", requests=2, policy={"timeout_s": 0.3, "max_retries": 1}),
    Case("silent-beyond-deadline", {"/f": [Answer(200, FITS, delay_s=30.0)]}, DeadlineExceededError,
         r"deadline", policy={"timeout_s": 5.0, "deadline_s": 0.8}),
    Case("retry-after-beyond-deadline", {"/f": [Answer(503, b"busy", {"Retry-After": "100"})]},
         DeadlineExceededError, r"next retry \(in 100\.0 s\) would pass the 5 s deadline",
         policy={"deadline_s": 5.0}),
    Case("retry-after-a-day", {"/f": [Answer(503, b"", {"Retry-After": "86400"})]}, RetriesExhaustedError,
         r"retry after 86400 s \(> 300 s allowed\)"),
    # ---- bodies that are not what was asked for
    Case("html-instead-of-fits", {"/f": [Answer(200, b"<!DOCTYPE html><html>Service Unavailable</html>")]},
         DownloadNotFITSError, r"HTML page, not FITS"),
    Case("jpeg-instead-of-fits", {"/f": [Answer(200, b"\xff\xd8\xff\xe0JFIF" + b"\0" * 100)]},
         DownloadNotFITSError, r"JPEG image"),
    Case("empty-body", {"/f": [Answer(200, b"")]}, DownloadNotFITSError, r"response is empty"),
    Case("header-claims-100000x100000", {"/f": [Answer(200, _claims_huge_image())]}, DownloadTruncatedError,
         r"truncated.*40000003200"),
    Case("header-only-fits", {"/f": [Answer(200, _header_only())]}, BadDownloadError, r"no image data"),
    # ---- statuses
    Case("404", {"/f": [Answer(404, b"no such product")]}, NoDataError, r"HTTP 404"),
    Case("403", {"/f": [Answer(403, b"forbidden")]}, PermanentArchiveError, r"HTTP 403 Forbidden: forbidden"),
    Case("persistent-500", {"/f": [Answer(500, b"oops")]}, RetriesExhaustedError, r"gave up after 3 attempts",
         requests=3),
    # ---- text answers (filename tables, result pages) are bounded too
    Case("text-above-limit", {"/f": [Answer(200, b"projcell " * 1000)]}, DownloadTooLargeError,
         r"announces 9000 bytes.*1000-byte limit", policy={"max_text_bytes": 1000}, text=True),
    Case("text-endless", {"/f": [Answer(200, stream=_endless(b"projcell subcell\n" * 100))]}, DownloadTooLargeError,
         r"exceeds the 100000-byte limit", policy={"max_text_bytes": 100_000}, text=True),
    Case("text-trickle", {"/f": [Answer(200, b"projcell subcell\n" * 50, block_bytes=20, block_delay_s=0.2)]},
         DeadlineExceededError, r"deadline", policy={"deadline_s": 1.0}, text=True),
]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.mark.parametrize("case", DOWNLOAD_CASES, ids=[c.id for c in DOWNLOAD_CASES])
def test_hostile_download(case, loopback, fast_http, tmp_path, caplog):
    for path, answers in case.routes.items():
        loopback.routes[path] = list(answers)
    first = next(iter(case.routes))
    url = f"{loopback.url}{first}?ra=210.774&token={SECRET}"
    shown = f"{loopback.url}{first}?ra=210.774&token=***"
    http = fast_http(**{"max_retries": 2, "backoff_base_s": 0.01, **case.policy})
    http.session.headers["Authorization"] = f"token {SECRET}-bearer"
    dest = tmp_path / "cache" / "ps1" / "img.fits"
    caplog.set_level(logging.DEBUG)
    if case.error is None:
        if case.text:
            http.get_text(url)
        else:
            http.download(url, dest)
            assert dest.read_bytes() == FITS
            assert _files(tmp_path / "cache") == ["ps1/img.fits"]
    else:
        with pytest.raises(case.error) as info:
            http.get_text(url) if case.text else http.download(url, dest)
        err = info.value
        assert type(err) is case.error
        message = str(err)
        assert message.startswith(shown + ": "), message  # names the URL, without its token
        assert case.says == "" or __import__("re").search(case.says, message), message
        if case.id == "endless-body-no-length":  # never more than the limit was written
            stopped = int(__import__("re").search(case.says, message).group(1))
            assert stopped <= case.policy["max_download_bytes"]
        assert _files(tmp_path / "cache") == []  # nothing in the cache, nothing at the destination
    assert loopback.count(first) == case.requests
    assert SECRET not in caplog.text  # neither the token nor the Authorization header reached a log


# ---------------------------------------------------------------------- retries are logged
def test_retries_are_logged_with_url_attempt_wait_and_reason(loopback, fast_http, caplog):
    loopback.routes["/busy"] = [Answer(503, b"busy"), Answer(429, b"slow", {"Retry-After": "2"}), Answer(200, b"ok")]
    http = fast_http(backoff_base_s=0.01, max_retries=3)
    with caplog.at_level(logging.WARNING, logger="astrid_pipeline.archives.http"):
        assert http.get_text(f"{loopback.url}/busy?api_key={SECRET}") == "ok"
    lines = [r.getMessage() for r in caplog.records if r.name == "astrid_pipeline.archives.http"]
    assert len(lines) == 2
    url = f"{loopback.url}/busy?api_key=***"
    assert lines[0].startswith(f"{url}: attempt 1 of 4 failed (HTTP 503 Service Unavailable); retrying in 0.")
    assert lines[1] == f"{url}: attempt 2 of 4 failed (HTTP 429 Too Many Requests); retrying in 2.00 s"
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "astrid_pipeline.archives.http")


def test_authorization_is_not_sent_across_hosts_on_redirect(loopback, fast_http, tmp_path):
    from astrid_pipeline_tests.archives.loopback import Loopback

    other = Loopback()
    try:
        other.routes["/x.fits"] = [Answer(200, FITS)]
        loopback.routes["/f"] = [_redirect(other.url + "/x.fits")]
        http = fast_http()
        http.session.headers["Authorization"] = f"token {SECRET}"
        http.download(loopback.url + "/f", tmp_path / "x.fits")
        assert loopback.headers[0]["authorization"] == f"token {SECRET}"  # the archive itself gets it
        assert "authorization" not in other.headers[0]  # a redirect target (a bucket) does not
    finally:
        other.close()


# ---------------------------------------------------------------------- secrets stay out
STRIP_CASES = [
    ("https://alice:pw@mast.stsci.edu/api?uri=mast:HST/x.fits", "https://mast.stsci.edu/api?uri=mast:HST/x.fits"),
    ("https://alice@host.example/x", "https://host.example/x"),
    ("https://h/x?token=abc&ra=1.5", "https://h/x?token=***&ra=1.5"),
    ("https://h/x?ra=1.5&access_token=abc.def", "https://h/x?ra=1.5&access_token=***"),
    ("https://h/x?api_key=k1&apikey=k2&key=k3", "https://h/x?api_key=***&apikey=***&key=***"),
    ("https://h/x?password=p&passwd=q&user=bob", "https://h/x?password=***&passwd=***&user=bob"),
    ("https://h/x?sig=s1&signature=s2&Signature=s3", "https://h/x?sig=***&signature=***&Signature=***"),
    ("https://bucket.s3.amazonaws.com/x.fits?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2024&"
     "X-Amz-Signature=9f8e&X-Amz-Security-Token=FQoG",
     "https://bucket.s3.amazonaws.com/x.fits?X-Amz-Algorithm=***&X-Amz-Credential=***&X-Amz-Signature=***&"
     "X-Amz-Security-Token=***"),
    ("https://storage.googleapis.com/b/x?X-Goog-Signature=ab&GoogleAccessId=svc",
     "https://storage.googleapis.com/b/x?X-Goog-Signature=***&GoogleAccessId=***"),
    ("https://h/x?auth=t&mast_token=u&myApiKey=v", "https://h/x?auth=***&mast_token=***&myApiKey=***"),
    ("https://h/cb#access_token=xyz&state=1", "https://h/cb#access_token=***&state=1"),
    ("https://h/x?ra=210.774&dec=54.27&filter=r&size=240", "https://h/x?ra=210.774&dec=54.27&filter=r&size=240"),
    ("HTTPConnectionPool(host='h', port=80): Max retries exceeded with url: /x?token=abc (Caused by X)",
     "HTTPConnectionPool(host='h', port=80): Max retries exceeded with url: /x?token=*** (Caused by X)"),
    ("fetched http://u:p@a.example/1?key=z and https://b.example/2?token=y",
     "fetched http://a.example/1?key=*** and https://b.example/2?token=***"),
    ("headers {'Authorization': 'token 0123456789abcdef0123'}", "headers {'Authorization': '***'}"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "Authorization: ***"),
    ("ps1 stack filter=r ra=210.774000 dec=+54.273700 size=240", "ps1 stack filter=r ra=210.774000 dec=+54.273700 "
                                                                  "size=240"),
]


@pytest.mark.parametrize("raw,clean", STRIP_CASES, ids=[f"strip-{i}" for i in range(len(STRIP_CASES))])
def test_strip_secrets(raw, clean):
    assert strip_secrets(raw) == clean
    assert strip_secrets(clean) == clean  # idempotent


def _cache_bytes(root) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_ps1_credentials_stay_out_of_headers_inventory_records_and_errors(realdata, loopback, fast_http, tmp_path,
                                                                         caplog):
    from astrid_pipeline.archives.ps1 import PS1CutoutArchive
    from astrid_pipeline_tests.archives.services import install_ps1, ps1_body

    install_ps1(loopback, ps1_body(realdata / "differencing" / "decam_reference_obs18a.fits", 100.0, 30.0))
    host = loopback.url.split("://", 1)[1]
    base = f"http://alice:{SECRET}@{host}/cgi-bin"
    caplog.set_level(logging.DEBUG)
    ps1 = PS1CutoutArchive(fast_http(), DownloadCache(tmp_path / "cache"), base_url=base, filter="i", size_pixels=256)
    im = ps1.fetch_epoch(Region("decam", 318.108, -66.016), "reference")
    h = im.hdul[0].header
    assert h["ARCHURL"].startswith(f"http://{host}/cgi-bin/fitscut.cgi")
    assert SECRET not in repr(h) and "alice" not in repr(h)
    assert SECRET not in im.source and SECRET not in str(im.record.to_row())
    assert loopback.headers[0]["authorization"].startswith("Basic ")  # the credentials were used, not stored
    assert SECRET.encode() not in _cache_bytes(tmp_path / "cache")  # files and resolution records
    loopback.routes["/cgi-bin/ps1filenames.py"] = [Answer(500, b"down")]
    with pytest.raises(RetriesExhaustedError) as info:
        PS1CutoutArchive(fast_http(max_retries=1), DownloadCache(tmp_path / "c2"), base_url=base).fetch_epoch(
            Region("decam", 318.108, -66.016), "science")
    assert f"http://{host}/cgi-bin/ps1filenames.py" in str(info.value) and SECRET not in str(info.value)
    assert SECRET not in caplog.text


def test_mast_token_in_the_download_url_stays_out_of_the_inventory(realdata, loopback, fast_http, tmp_path,
                                                                  monkeypatch):
    from astrid_pipeline.archives.mast import MastArchive
    from astrid_pipeline_tests.archives.services import patch_mast

    body = (realdata / "wcs" / "cadc_megacam.fits").read_bytes()
    patch_mast(monkeypatch, product_sizes={"u9o40504m_drz.fits": len(body)})
    loopback.routes["/api/v0.1/Download/file"] = [Answer(200, body)]
    mast = MastArchive(fast_http(), DownloadCache(tmp_path / "cache"),
                       download_url=f"{loopback.url}/api/v0.1/Download/file?mast_token={SECRET}")
    region = Region("M101", 210.774, 54.2737, options={"mast_collection": "GALEX"})
    im = mast.fetch_epoch(region, "science")
    assert loopback.requests[-1][1]["mast_token"] == SECRET  # sent to the service ...
    rows = [r.to_row() for r in (im.record, *im.extra_records)]
    assert im.record.url.endswith("mast_token=***&uri=mast%3AHST%2Fproduct%2Fu9o40504m_drz.fits")
    assert SECRET not in str(rows) and SECRET not in repr(im.hdul[0].header)  # ... and stored nowhere
    assert SECRET.encode() not in _cache_bytes(tmp_path / "cache")


# ---------------------------------------------------------------------- the cache before any query
def _down(loopback):
    """Every route of the loopback now answers 500 (the service is down)."""
    for path in list(loopback.routes):
        loopback.routes[path] = [Answer(500, b"Internal Server Error")]


def test_cached_ps1_region_reruns_with_the_service_down(realdata, loopback, fast_http, tmp_path):
    from astrid_pipeline.archives.ps1 import PS1CutoutArchive
    from astrid_pipeline_tests.archives.services import install_ps1, ps1_body

    url = install_ps1(loopback, ps1_body(realdata / "differencing" / "decam_reference_obs18a.fits", 100.0, 30.0))
    region = Region("decam", 318.108, -66.016, options={"ps1_filter": "i"})
    first = PS1CutoutArchive(fast_http(), DownloadCache(tmp_path / "cache"), base_url=url).fetch_epoch(
        region, "reference")
    assert first.record.status == "downloaded"
    _down(loopback)
    n = len(loopback.requests)
    # a new client (a new run, another process) on the same cache root: no request at all
    again = PS1CutoutArchive(fast_http(), DownloadCache(tmp_path / "cache"), base_url=url).fetch_epoch(
        region, "reference")
    assert len(loopback.requests) == n and again.record.status == "cached"
    assert np.array_equal(again.hdul[0].data, first.hdul[0].data)
    assert {**again.record.to_row(), "status": "", "cached": False, "downloaded": False} == \
        {**first.record.to_row(), "status": "", "cached": False, "downloaded": False}
    # asking again on purpose reaches the (dead) service
    with pytest.raises(RetriesExhaustedError, match="ps1filenames.py"):
        PS1CutoutArchive(fast_http(max_retries=1), DownloadCache(tmp_path / "cache"), base_url=url,
                         refresh=True).fetch_epoch(region, "reference")


def test_cached_skyview_region_reruns_with_the_service_down(realdata, loopback, fast_http, tmp_path):
    from astrid_pipeline.archives.skyview import SkyViewArchive
    from astrid_pipeline_tests.archives.services import install_skyview

    url = install_skyview(loopback, (realdata / "differencing" / "decam_science_obs04a.fits").read_bytes())
    region = Region("decam", 318.108, -66.016)
    first = SkyViewArchive(fast_http(), DownloadCache(tmp_path / "cache"), url=url).fetch_epoch(region, "science")
    _down(loopback)
    n = len(loopback.requests)
    again = SkyViewArchive(fast_http(), DownloadCache(tmp_path / "cache"), url=url).fetch_epoch(region, "science")
    assert len(loopback.requests) == n and again.record.status == "cached"
    assert again.source == first.source and again.source.endswith("skv6724208473423_1.fits")  # the full URL


def test_cached_mast_region_reruns_with_the_portal_down(realdata, loopback, fast_http, tmp_path):
    from astrid_pipeline.archives.mast import MastArchive
    from astrid_pipeline_tests.archives.services import MAST_DOWNLOAD, MAST_INVOKE, install_mast_portal

    body = (realdata / "wcs" / "cadc_megacam.fits").read_bytes()
    loopback.routes[MAST_DOWNLOAD] = [Answer(200, body)]
    region = Region("M101", 210.774, 54.2737, options={"mast_collection": "GALEX", "mast_filters": "NUV,FUV"})

    def client(**kw):
        http = fast_http(**kw)
        portal = install_mast_portal(loopback, http, product_sizes={"u9o40504m_drz.fits": len(body)})
        return MastArchive(http, DownloadCache(tmp_path / "cache"), observations=portal,
                           download_url=loopback.url + MAST_DOWNLOAD)

    first = {e: client().fetch_epoch(region, e) for e in ("science", "reference")}
    assert first["science"].record.status == "downloaded" and loopback.count(MAST_INVOKE) >= 2
    _down(loopback)
    n = len(loopback.requests)
    again = {e: client().fetch_epoch(region, e) for e in ("science", "reference")}
    assert len(loopback.requests) == n  # not one portal query, not one download
    for e in ("science", "reference"):
        assert again[e].record.status == "cached" and again[e].record.obs_id == first[e].record.obs_id
        assert [r.reason for r in again[e].extra_records] == [r.reason for r in first[e].extra_records]
    http = fast_http(max_retries=1)
    asking = MastArchive(http, DownloadCache(tmp_path / "cache"), refresh=True,
                         observations=install_mast_portal(loopback, http), download_url=loopback.url + MAST_DOWNLOAD)
    _down(loopback)
    with pytest.raises(RetriesExhaustedError, match="MAST query.*HTTP 500"):
        asking.fetch_epoch(region, "science")


def test_a_tampered_resolution_record_is_ignored(realdata, loopback, fast_http, tmp_path):
    import json

    from astrid_pipeline.archives.ps1 import PS1CutoutArchive
    from astrid_pipeline_tests.archives.services import install_ps1, ps1_body

    url = install_ps1(loopback, ps1_body(realdata / "differencing" / "decam_reference_obs18a.fits", 100.0, 30.0))
    region = Region("decam", 318.108, -66.016)
    cache = DownloadCache(tmp_path / "cache")
    ps1 = PS1CutoutArchive(fast_http(), cache, base_url=url)
    ps1.fetch_epoch(region, "reference")
    record = next((tmp_path / "cache" / "ps1" / "resolved").glob("*.json"))
    outside = tmp_path / "outside.fits"
    outside.write_bytes(FITS)
    doc = json.loads(record.read_text())
    doc["file"] = "../../outside.fits"
    record.write_text(json.dumps(doc))
    n = loopback.count("/cgi-bin/ps1filenames.py")
    im = PS1CutoutArchive(fast_http(), cache, base_url=url).fetch_epoch(region, "reference")
    assert loopback.count("/cgi-bin/ps1filenames.py") == n + 1  # asked the service instead
    assert im.record.file_path != str(outside) and im.record.status == "cached"  # the cutout itself was cached


# ---------------------------------------------------------------------- MAST timeouts reach astroquery
def test_mast_portal_that_never_answers_times_out_at_the_policy_timeout(loopback, fast_http, tmp_path):
    from astrid_pipeline.archives.mast import MastArchive
    from astrid_pipeline_tests.archives.services import MAST_COLUMNS, MAST_INVOKE, install_mast_portal

    http = fast_http(timeout_s=0.3, max_retries=1)
    obs = install_mast_portal(loopback, http)
    loopback.routes[MAST_COLUMNS] = [Answer(200, b"{}", delay_s=30.0)]
    loopback.routes[MAST_INVOKE] = [Answer(200, b"{}", delay_s=30.0)]
    region = Region("M101", 210.774, 54.2737)
    with pytest.raises(RetriesExhaustedError) as info:
        MastArchive(http, DownloadCache(tmp_path), observations=obs).fetch_epoch(region, "science")
    assert "MAST query" in str(info.value) and "ReadTimeout after 0.3 s timeout" in str(info.value)
    assert loopback.count(MAST_COLUMNS) + loopback.count(MAST_INVOKE) == 2  # one try, one retry


def test_mast_query_that_stays_executing_ends_at_the_deadline(loopback, fast_http, tmp_path):
    from astrid_pipeline.archives.mast import MastArchive, mast_observations
    from astrid_pipeline_tests.archives.services import MAST_INVOKE, install_mast_portal

    http = fast_http(deadline_s=1.0, min_interval_s=0.05, rate_burst=1)
    assert mast_observations(http)._portal_api_connection.TIMEOUT == 1.0  # astroquery's 600 s is gone
    obs = install_mast_portal(loopback, http, executing=True)
    with pytest.raises(DeadlineExceededError, match=r"MAST query .*1 s deadline"):
        MastArchive(http, DownloadCache(tmp_path), observations=obs).fetch_epoch(Region("M101", 210.774, 54.2737),
                                                                                "science")
    # astroquery polls with no pause; our rate limit spaced the polls (waits recorded, not slept)
    assert loopback.count(MAST_INVOKE) >= 2 and len(http.rate_limiter.waits) >= 1


# ---------------------------------------------------------------------- gzipped FITS products (GALEX serves .fits.gz)
def _gz_cases():
    from astrid_pipeline_tests.conftest import REALDATA

    real = REALDATA / "wcs" / "astrometry_net_sip_thumbnail.fits.gz"
    body = real.read_bytes() if real.exists() else gzip.compress(FITS)
    zeros = io.BytesIO()
    fits.PrimaryHDU(np.zeros((1200, 1200), np.float32)).writeto(zeros)
    big = gzip.compress(zeros.getvalue())  # 5.8 MB of FITS in a few kB of gzip
    return [
        Case("real-fits-gz", {"/f.fits.gz": [Answer(200, body)]}, None),
        Case("fits-gz-bomb", {"/f.fits.gz": [Answer(200, big)]}, DownloadTooLargeError,
             r"decompresses to more than the 1000000-byte limit", policy={"max_download_bytes": MB}),
        Case("fits-gz-truncated", {"/f.fits.gz": [Answer(200, body[: len(body) // 2])]}, DownloadTruncatedError,
             r"gzip stream ends early"),
        Case("gz-of-html", {"/f.fits.gz": [Answer(200, gzip.compress(b"<html>busy</html>"))]}, DownloadNotFITSError,
             r"HTML page"),
    ]


@pytest.mark.parametrize("case", _gz_cases(), ids=lambda c: c.id)
def test_gzipped_fits_downloads(case, loopback, fast_http, tmp_path):
    path = next(iter(case.routes))
    loopback.routes[path] = list(case.routes[path])
    dest = tmp_path / "cache" / "f.fits.gz"
    http = fast_http(**case.policy)
    if case.error is None:
        http.download(loopback.url + path, dest)
        assert dest.read_bytes() == case.routes[path][0].body
        with fits.open(dest) as h:
            assert h[0].data.ndim == 2
    else:
        with pytest.raises(case.error, match=case.says) as info:
            http.download(loopback.url + path, dest)
        assert type(info.value) is case.error and str(info.value).startswith(loopback.url + path + ": ")
        assert _files(tmp_path / "cache") == []
    assert loopback.count(path) == 1
