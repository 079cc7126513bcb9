"""The HTTP layer every network archive uses: retries, rate limit, verified atomic downloads, cache.

* Transient failures (timeouts, connection errors, HTTP 5xx and 429) are
  retried with exponential backoff and full jitter; a 429 or 503 with a
  ``Retry-After`` header waits at least that long. After ``max_retries``
  retries a :class:`RetriesExhaustedError` names the URL, the attempts and
  the last failure.
* Permanent failures (4xx other than 408/429) fail at once with
  :class:`PermanentArchiveError` (404 -> :class:`NoDataError`).
* A per-host rate limit (minimum interval between requests to one host,
  shared by every client in the process) keeps a backfill over hundreds of
  regions from hammering a service.
* Downloads stream to a hidden temporary name beside the target, are checked
  (Content-Length when the server gives one, opens as FITS, has image data)
  and only then renamed into place; a cut-off or bad body leaves no file.
* :class:`DownloadCache` keys files by URL and parameters, so a second
  fetch of the same product makes no request at all.

Plain Python (requests + astropy); no Dagster here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time
import warnings
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlencode, urlsplit

import requests

from astrid_pipeline.archives.errors import (
    ArchiveError,
    BadDownloadError,
    DownloadNotFITSError,
    DownloadTruncatedError,
    NoDataError,
    PermanentArchiveError,
    RetriesExhaustedError,
)
from astrid_pipeline.errors import AstridError
from astrid_pipeline.io.atomic import atomic_path

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "astrid-pipeline (+https://github.com/astrid; archive client)"


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to try. ``backoff_base_s`` is small in tests and ~1 s in production."""

    timeout_s: float = 60.0
    max_retries: int = 4
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    #: honour Retry-After up to this many seconds (a service asking for an hour is treated as a failure)
    retry_after_max_s: float = 300.0
    #: minimum seconds between two requests to one host (0 = no limit)
    min_interval_s: float = 0.2
    chunk_bytes: int = 1 << 16

    def validate(self) -> "HttpPolicy":
        from astrid_pipeline.archives.errors import ArchiveConfigError

        if self.timeout_s <= 0 or self.max_retries < 0 or self.backoff_base_s < 0 or self.min_interval_s < 0:
            raise ArchiveConfigError(f"invalid HTTP policy {self}: timeout must be > 0, retries/backoff/interval >= 0")
        return self


class HostRateLimiter:
    """At most one request per ``min_interval_s`` to each host (thread-safe, process-wide by default)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self.clock, self.sleep = clock, sleep
        self.waits: list[tuple[str, float]] = []

    def acquire(self, host: str, min_interval_s: float) -> float:
        if min_interval_s <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            slot = max(now, self._next.get(host, now))
            self._next[host] = slot + min_interval_s
        wait = slot - now
        if wait > 0:
            self.waits.append((host, wait))
            self.sleep(wait)
        return wait


#: shared by every client in the process unless a test passes its own
GLOBAL_RATE_LIMITER = HostRateLimiter()


@dataclass
class RequestLog:
    """What the client did: one entry per attempt (url, status or exception name), and the sleeps."""

    attempts: list[tuple[str, str]] = field(default_factory=list)
    backoffs: list[float] = field(default_factory=list)

    @property
    def n_requests(self) -> int:
        return len(self.attempts)

    @property
    def n_retries(self) -> int:
        return len(self.backoffs)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import datetime as dt

        when = parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
    except (TypeError, ValueError, IndexError):
        return None


def _short(text: str, n: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def full_url(url: str, params: Mapping | None) -> str:
    return url if not params else f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


class HttpClient:
    """GET with retries/backoff/jitter/Retry-After, per-host rate limit, and verified atomic downloads."""

    def __init__(self, policy: HttpPolicy | None = None, *, session: requests.Session | None = None,
                 rate_limiter: HostRateLimiter | None = None, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None):
        self.policy = (policy or HttpPolicy()).validate()
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.rate_limiter = rate_limiter or GLOBAL_RATE_LIMITER
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.log = RequestLog()

    # ------------------------------------------------------------------ backoff
    def backoff_s(self, retry: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)], and never less than Retry-After."""
        p = self.policy
        cap = min(p.backoff_max_s, p.backoff_base_s * (2 ** retry))
        delay = self.rng.uniform(0.0, cap) if cap > 0 else 0.0
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def call_with_retries(self, fn: Callable[[], object], what: str, host: str | None = None):
        """Run ``fn`` (which may raise requests exceptions) under the same retry rules as :meth:`get_text`.

        Used to wrap third-party request code (astroquery) so its transient
        failures are retried and its permanent ones reported with the URL.
        ``host`` (default: the host of ``what`` when it is a URL) is rate limited
        once per call.
        """
        p = self.policy
        host = host if host is not None else urlsplit(what).netloc
        last = ""
        for attempt in range(p.max_retries + 1):
            retry_after = None
            if host:
                self.rate_limiter.acquire(host, p.min_interval_s)
            try:
                out = fn()
                self.log.attempts.append((what, "ok"))
                return out
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else None
                self.log.attempts.append((what, str(status)))
                if status not in RETRY_STATUS:
                    cls = NoDataError if status == 404 else PermanentArchiveError
                    raise cls(what, f"HTTP {status}: {exc}", status=status, attempts=attempt + 1) from exc
                last = f"HTTP {status}"
                if exc.response is not None:
                    retry_after = _retry_after_seconds(exc.response.headers.get("Retry-After"))
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.log.attempts.append((what, type(exc).__name__))
                last = f"{type(exc).__name__}: {_short(str(exc))}"
            except AstridError:
                raise
            except ValueError as exc:
                # the service's own refusal (astroquery: InvalidQueryError, RemoteServiceError, bad coordinates)
                self.log.attempts.append((what, type(exc).__name__))
                raise PermanentArchiveError(what, f"{type(exc).__name__}: {_short(str(exc), 400)}",
                                            attempts=attempt + 1) from exc
            except Exception as exc:
                if type(exc).__module__.startswith("astroquery") and type(exc).__name__ == "TimeoutError":
                    self.log.attempts.append((what, "astroquery TimeoutError"))
                    last = f"service timed out: {_short(str(exc))}"
                elif type(exc).__module__.startswith("astroquery"):
                    self.log.attempts.append((what, type(exc).__name__))
                    raise PermanentArchiveError(what, f"{type(exc).__name__}: {_short(str(exc), 400)}",
                                                attempts=attempt + 1) from exc
                raise
            if attempt == p.max_retries:
                break
            self._wait(attempt, retry_after, what, last)
        raise RetriesExhaustedError(what, f"gave up after {p.max_retries + 1} attempts ({p.max_retries} retries); "
                                          f"last failure: {last}", attempts=p.max_retries + 1)

    def _wait(self, attempt: int, retry_after: float | None, url: str, last: str) -> None:
        if retry_after is not None and retry_after > self.policy.retry_after_max_s:
            raise RetriesExhaustedError(url, f"service asks to retry after {retry_after:.0f} s "
                                             f"(> {self.policy.retry_after_max_s:.0f} s allowed); last failure: {last}",
                                        attempts=attempt + 1)
        delay = self.backoff_s(attempt, retry_after)
        self.log.backoffs.append(delay)
        if delay > 0:
            self.sleep(delay)

    # ------------------------------------------------------------------ requests
    def _open(self, url: str, params: Mapping | None, stream: bool):
        """One request with retries; returns an open response with a 2xx status."""
        p = self.policy
        shown = full_url(url, params)
        host = urlsplit(url).netloc
        last = ""
        for attempt in range(p.max_retries + 1):
            retry_after = None
            self.rate_limiter.acquire(host, p.min_interval_s)
            try:
                r = self.session.get(url, params=params, timeout=p.timeout_s, stream=stream)
            except (requests.Timeout, requests.ConnectionError) as exc:
                self.log.attempts.append((shown, type(exc).__name__))
                last = f"{type(exc).__name__} after {p.timeout_s:g} s timeout" if isinstance(exc, requests.Timeout) \
                    else f"{type(exc).__name__}: {_short(str(exc))}"
            else:
                self.log.attempts.append((shown, str(r.status_code)))
                if r.status_code < 400:
                    return r
                body = _short(r.text if not stream else r.raw.read(2000).decode("utf-8", "replace"))
                r.close()
                if r.status_code not in RETRY_STATUS:
                    cls = NoDataError if r.status_code == 404 else PermanentArchiveError
                    raise cls(shown, f"HTTP {r.status_code} {r.reason}: {body}", status=r.status_code,
                              attempts=attempt + 1)
                last = f"HTTP {r.status_code} {r.reason}"
                retry_after = _retry_after_seconds(r.headers.get("Retry-After"))
            if attempt == p.max_retries:
                break
            self._wait(attempt, retry_after, shown, last)
        raise RetriesExhaustedError(shown, f"gave up after {p.max_retries + 1} attempts ({p.max_retries} retries); "
                                           f"last failure: {last}", attempts=p.max_retries + 1)

    def get_text(self, url: str, params: Mapping | None = None) -> str:
        r = self._open(url, params, stream=False)
        try:
            return r.text
        finally:
            r.close()

    def download(self, url: str, dest: str | Path, params: Mapping | None = None, *,
                 verify: Callable[[Path, str], None] | None = None,
                 transform: Callable[[Path, str], None] | None = None) -> Path:
        """Stream ``url`` to ``dest`` atomically; verify (and optionally rewrite) before the rename.

        A connection cut before Content-Length bytes arrived is retried like
        any transient failure; a body that fails ``verify`` raises at once
        (the service will send the same body again) and leaves no file.
        """
        p = self.policy
        shown = full_url(url, params)
        verify = verify or verify_fits
        last = ""
        for attempt in range(p.max_retries + 1):
            r = self._open(url, params, stream=True)
            expected = r.headers.get("Content-Length")
            try:
                with atomic_path(dest) as tmp:
                    n = 0
                    with open(tmp, "wb") as fh:
                        for chunk in r.iter_content(p.chunk_bytes):
                            fh.write(chunk)
                            n += len(chunk)
                    if expected is not None and r.headers.get("Content-Encoding") in (None, "identity") \
                            and int(expected) != n:
                        raise _ShortBody(f"received {n} of the {expected} bytes the server announced")
                    verify(tmp, shown)
                    if transform is not None:
                        transform(tmp, shown)
                return Path(dest)
            except (_ShortBody, requests.exceptions.ChunkedEncodingError, requests.ConnectionError,
                    requests.Timeout) as exc:
                self.log.attempts.append((shown, f"cut:{type(exc).__name__}"))
                last = f"download cut off ({_short(str(exc))})"
            finally:
                r.close()
            if attempt == p.max_retries:
                break
            self._wait(attempt, None, shown, last)
        raise RetriesExhaustedError(shown, f"gave up after {p.max_retries + 1} attempts; last failure: {last}",
                                    attempts=p.max_retries + 1)


class _ShortBody(Exception):
    pass


# ---------------------------------------------------------------------- verification
def verify_fits(path: Path, url: str, *, require_image: bool = True) -> None:
    """Raise a named error (naming ``url``) unless ``path`` is complete FITS with image data."""
    from astropy.io import fits

    head = path.read_bytes()[:80] if path.stat().st_size else b""
    if not head.startswith(b"SIMPLE  ="):
        kind = "an HTML page" if b"<" in head[:20].lower() or b"html" in head.lower() else \
            ("a JPEG image" if head.startswith(b"\xff\xd8") else ("empty" if not head else "not FITS"))
        snippet = _short(head.decode("ascii", "replace"), 60)
        raise DownloadNotFITSError(url, f"response is {kind}, not FITS (starts with {snippet!r})")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                has_image = False
                for hdu in hdul:
                    data = hdu.data
                    if hdu.is_image and data is not None and getattr(data, "ndim", 0) >= 2:
                        has_image = True
        for w in caught:
            if "truncated" in str(w.message).lower():
                raise DownloadTruncatedError(url, f"FITS body is truncated ({w.message})")
    except BadDownloadError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise DownloadTruncatedError(url, f"FITS body is truncated or corrupt ({_short(str(exc))})") from exc
    if require_image and not has_image:
        raise BadDownloadError(url, "FITS file holds no image data (header only)")


# ---------------------------------------------------------------------- cache
class DownloadCache:
    """Files under ``root/<archive>/<hash of URL+params>/<name>``; reused when present and valid FITS."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, archive: str, url: str, params: Mapping | None, name: str) -> Path:
        key = json.dumps([url, sorted((str(k), str(v)) for k, v in (params or {}).items())])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        safe = "".join(c if c.isalnum() or c in "._+-" else "_" for c in name)[:120] or "download.fits"
        return self.root / archive / digest / safe

    def lookup(self, path: Path, url: str) -> bool:
        """True when ``path`` holds a valid cached file; a corrupt one is removed (and re-downloaded)."""
        if not path.exists():
            return False
        try:
            verify_fits(path, url)
        except ArchiveError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return False
        return True
