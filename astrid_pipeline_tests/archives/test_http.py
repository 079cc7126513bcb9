"""The HTTP layer on a loopback server: retries, Retry-After, timeouts, rate limit, atomic verified downloads, cache."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.archives.errors import (
    BadDownloadError,
    DownloadNotFITSError,
    DownloadTruncatedError,
    NoDataError,
    PermanentArchiveError,
    RetriesExhaustedError,
)
from astrid_pipeline.archives.http import DownloadCache, verify_fits
from astrid_pipeline.archives.ratelimit import RateLimiter
from astrid_pipeline.errors import InputFileError, NotFITSError, TruncatedFileError
from astrid_pipeline_tests.archives.conftest import Answer


def _fits_bytes(shape=(32, 32)) -> bytes:
    import io

    buf = io.BytesIO()
    fits.PrimaryHDU(np.arange(np.prod(shape), dtype=np.float32).reshape(shape)).writeto(buf)
    return buf.getvalue()


def _left_over(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_500s_are_retried_with_growing_jittered_backoff_then_succeed(loopback, fast_http):
    loopback.routes["/x"] = [Answer(500, b"oops"), Answer(502, b"bad gateway"), Answer(200, b"fine")]
    http = fast_http(backoff_base_s=0.5, max_retries=3)
    assert http.get_text(loopback.url + "/x") == "fine"
    assert loopback.count("/x") == 3
    assert http.log.n_retries == 2
    # full jitter: retry k waits in [0, base * 2**k]
    assert 0 <= http.slept[0] <= 0.5 and 0 <= http.slept[1] <= 1.0
    assert [s for _, s in http.log.attempts] == ["500", "502", "200"]


def test_429_honours_retry_after(loopback, fast_http):
    loopback.routes["/x"] = [Answer(429, b"slow down", {"Retry-After": "7"}), Answer(200, b"ok")]
    http = fast_http(backoff_base_s=0.001)
    assert http.get_text(loopback.url + "/x") == "ok"
    assert loopback.count("/x") == 2
    assert http.log.n_retries == 1 and http.slept == [7.0]  # waited what the service asked, not the tiny backoff


def test_retry_after_beyond_the_allowed_wait_fails_clearly(loopback, fast_http):
    loopback.routes["/x"] = [Answer(503, b"", {"Retry-After": "86400"})]
    http = fast_http(retry_after_max_s=60)
    with pytest.raises(RetriesExhaustedError, match="retry after 86400 s"):
        http.get_text(loopback.url + "/x")
    assert loopback.count("/x") == 1


def test_persistent_500_gives_up_after_max_retries_naming_url(loopback, fast_http):
    loopback.routes["/down"] = [Answer(503, b"maintenance")]
    http = fast_http(max_retries=2)
    with pytest.raises(RetriesExhaustedError) as info:
        http.get_text(loopback.url + "/down", {"a": "1"})
    assert loopback.count("/down") == 3 and info.value.attempts == 3
    assert "/down?a=1" in str(info.value) and "HTTP 503" in str(info.value)
    assert isinstance(info.value, InputFileError)


def test_timeout_fails_after_n_tries(loopback, fast_http):
    loopback.routes["/slow"] = [Answer(200, b"late", delay_s=5.0)]
    http = fast_http(timeout_s=0.2, max_retries=2)
    with pytest.raises(RetriesExhaustedError) as info:
        http.get_text(loopback.url + "/slow")
    assert info.value.attempts == 3 and http.log.n_requests == 3
    assert "timeout" in str(info.value).lower() and "/slow" in str(info.value)


def test_404_and_400_fail_at_once(loopback, fast_http):
    http = fast_http()
    with pytest.raises(NoDataError, match="HTTP 404"):
        http.get_text(loopback.url + "/missing")
    loopback.routes["/bad"] = [Answer(400, b"Invalid coordinates: dec=123")]
    with pytest.raises(PermanentArchiveError, match="Invalid coordinates"):
        http.get_text(loopback.url + "/bad")
    assert http.log.n_retries == 0 and loopback.count("/missing") == 1 and loopback.count("/bad") == 1


def test_rate_limiter_spaces_requests_per_host(tmp_path):
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    lim = RateLimiter(tmp_path, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        lim.acquire("a.example", 2.0)
    lim.acquire("b.example", 2.0)  # another host is not slowed by the first
    assert slept == [2.0, 2.0]
    now[0] += 10
    assert lim.acquire("a.example", 2.0) == 0.0


def test_rate_limit_applies_to_real_requests(loopback, fast_http):
    loopback.routes["/x"] = [Answer(200, b"ok")]
    http = fast_http(min_interval_s=30.0)
    for _ in range(3):
        http.get_text(loopback.url + "/x")
    waits = [w for _, w in http.rate_limiter.waits]
    assert len(waits) == 2 and all(w > 29 for w in waits)  # recorded, not slept: the test stays fast


def test_download_is_verified_and_atomic(loopback, fast_http, tmp_path):
    body = _fits_bytes()
    loopback.routes["/ok.fits"] = [Answer(200, body)]
    dest = tmp_path / "cache" / "ok.fits"
    fast_http().download(loopback.url + "/ok.fits", dest)
    assert dest.read_bytes() == body
    assert _left_over(tmp_path / "cache") == ["ok.fits"]


@pytest.mark.parametrize("answer,error,named", [
    (Answer(200, b"<!DOCTYPE html><html><body>Service Temporarily Unavailable</body></html>",
            {"Content-Type": "text/html"}), DownloadNotFITSError, NotFITSError),
    (Answer(200, _fits_bytes((64, 64))[:2880 + 5000]), DownloadTruncatedError, TruncatedFileError),
    (Answer(200, b"\xff\xd8\xff\xe0JFIF" + b"\0" * 100), DownloadNotFITSError, NotFITSError),
])
def test_bad_bodies_raise_named_errors_and_leave_no_file(loopback, fast_http, tmp_path, answer, error, named):
    loopback.routes["/img.fits"] = [answer]
    dest = tmp_path / "cache" / "img.fits"
    http = fast_http()
    with pytest.raises(error) as info:
        http.download(loopback.url + "/img.fits", dest)
    assert isinstance(info.value, named)
    assert "/img.fits" in str(info.value)
    assert loopback.count("/img.fits") == 1  # a bad body is not retried: the service would send it again
    assert _left_over(tmp_path / "cache") == []


def test_cut_off_download_is_retried_and_leaves_nothing(loopback, fast_http, tmp_path):
    body = _fits_bytes()
    loopback.routes["/img.fits"] = [Answer(200, body, cut_after=3000)]
    dest = tmp_path / "cache" / "img.fits"
    http = fast_http(max_retries=2)
    with pytest.raises(RetriesExhaustedError, match="cut off"):
        http.download(loopback.url + "/img.fits", dest)
    assert loopback.count("/img.fits") == 3
    assert _left_over(tmp_path / "cache") == []
    # the connection recovers: the next attempt completes
    loopback.routes["/img.fits"] = [Answer(200, body, cut_after=3000), Answer(200, body)]
    http.download(loopback.url + "/img.fits", dest)
    assert dest.read_bytes() == body


def test_header_only_fits_is_rejected(tmp_path):
    p = tmp_path / "h.fits"
    fits.PrimaryHDU().writeto(p)
    with pytest.raises(BadDownloadError, match="no image data"):
        verify_fits(p, "http://x/h.fits")


def test_cache_removes_a_corrupt_entry(tmp_path):
    cache = DownloadCache(tmp_path)
    p = cache.path_for("ps1", "http://x/a", {"b": 1}, "a.fits")
    assert p != cache.path_for("ps1", "http://x/a", {"b": 2}, "a.fits")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    assert cache.lookup(p, "http://x/a") is False and not p.exists()


def test_settings_dataclasses_describe_every_field_with_simple_types():
    """The Dagster config is derived from these dataclasses: every field needs a description and a simple type."""
    import dataclasses
    import typing

    from astrid_pipeline.archives.http import HttpPolicy
    from astrid_pipeline.archives.select import ArchiveSettings

    simple = {int, float, str, bool}
    for cls in (HttpPolicy, ArchiveSettings):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.metadata.get("description"), f"{cls.__name__}.{f.name} has no description"
            if f.name != "policy":  # the one nested dataclass
                assert hints[f.name] in simple, f"{cls.__name__}.{f.name}: {hints[f.name]}"
    assert typing.get_type_hints(ArchiveSettings)["policy"] is HttpPolicy


@pytest.mark.parametrize("bad,named", [
    ({"timeout_s": 0}, "timeout_s=0"), ({"deadline_s": -1}, "deadline_s=-1"), ({"rate_burst": 0}, "rate_burst=0"),
    ({"max_download_bytes": 0}, "max_download_bytes"), ({"max_redirects": -1}, "max_redirects=-1"),
    ({"max_retries": 1000}, "max_retries=1000"), ({"min_interval_s": -0.5}, "min_interval_s=-0.5"),
])
def test_invalid_http_policy_is_a_named_config_error(bad, named):
    from astrid_pipeline.archives.errors import ArchiveConfigError
    from astrid_pipeline.archives.http import HttpClient, HttpPolicy

    with pytest.raises(ArchiveConfigError, match=f"invalid HTTP policy: .*{named}"):
        HttpClient(HttpPolicy(**bad))
