"""The HTTP layer every network archive uses: retries, shared rate limit, deadlines, bounded verified downloads.

* Transient failures (timeouts, connection errors, HTTP 5xx and 429) are
  retried with exponential backoff and full jitter (Brooker, "Exponential
  Backoff And Jitter", AWS Architecture Blog 2015); a 429 or 503 with a
  ``Retry-After`` header waits at least that long. Every retry is logged
  (logger ``astrid_pipeline.archives.http``, WARNING: URL, attempt, wait,
  reason). After ``max_retries`` retries a :class:`RetriesExhaustedError`
  names the URL, the attempts and the last failure.
* Permanent failures (4xx other than 408/425/429) fail at once with
  :class:`PermanentArchiveError` (404 -> :class:`NoDataError`).
* Every request has a per-read timeout (``timeout_s``) and an overall
  deadline (``deadline_s``) that covers every attempt, redirect, backoff and
  byte of the body: a watchdog shuts the socket down when it passes, so a
  body trickling one block per second ends in :class:`DeadlineExceededError`.
* The request rate per host is limited by a token bucket stored under the
  cache root (:mod:`astrid_pipeline.archives.ratelimit`), shared by every
  process of a multiprocess executor; every HTTP request counts, including
  the ones astroquery makes through our session.
* Downloads are bounded: a declared ``Content-Length`` above
  ``max_download_bytes`` is refused before the body is read, and a body
  without a length is cut at the limit (never more than the limit is
  written). Neither is retried. Redirect loops, redirects to ``file://`` (or
  any non-http(s) scheme) and a false ``Content-Encoding`` are named errors.
* Downloads stream to a hidden temporary name beside the target, are checked
  (length, FITS structure, declared data size against the file size, image
  data) and only then renamed into place; a cut-off or bad body leaves no file.
* URLs in errors, logs and records are stripped of credentials and tokens
  (:func:`astrid_pipeline.archives.redact.strip_secrets`), urllib3's own
  request log included (:class:`SecretFilter`); the ``Authorization``
  header is never logged.
* :class:`DownloadCache` keys files by URL and parameters, and keeps a small
  record of what each archive query resolved to, so a region whose products
  are cached is re-run with no request at all (even while the service is down).

Plain Python (requests + urllib3 + astropy); no Dagster here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import socket
import threading
import time
import warnings
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Callable, Iterator, Mapping
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from astrid_pipeline.archives.errors import (
    ArchiveConfigError,
    ArchiveError,
    BadContentEncodingError,
    BadDownloadError,
    DeadlineExceededError,
    DownloadNotFITSError,
    DownloadTooLargeError,
    DownloadTruncatedError,
    NoDataError,
    PermanentArchiveError,
    RedirectError,
    RedirectLoopError,
    RetriesExhaustedError,
    UnsafeRedirectError,
)
from astrid_pipeline.archives.ratelimit import RateLimiter
from astrid_pipeline.archives.redact import strip_secrets
from astrid_pipeline.errors import AstridError
from astrid_pipeline.io.atomic import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


class SecretFilter(logging.Filter):
    """Strips credentials and tokens from every record of a logger (urllib3 logs each request's URL at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business, not ours
            return True
        clean = strip_secrets(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


#: third-party loggers that write request URLs (filters apply to the exact logger a record is made on)
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager", "urllib3.response",
                "urllib3.util.retry", "requests")
for _name in _URL_LOGGERS:
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, SecretFilter) for f in _logger.filters):
        _logger.addFilter(SecretFilter())

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "astrid-pipeline (+https://github.com/astrid; archive client)"
FOLLOWED_SCHEMES = ("http", "https")
GIB = 1 << 30


def _d(text: str) -> dict:
    return {"description": text}


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to try, how fast to ask, how much to accept. Every archive request follows it."""

    timeout_s: float = field(default=60.0, metadata=_d(
        "seconds to wait for the connection and for each read of the answer (a socket timeout)"))
    deadline_s: float = field(default=1800.0, metadata=_d(
        "seconds one request may take in all: every attempt, redirect, backoff and byte of the body (30 min "
        "admits a 6 GiB mosaic at 4 MB/s); also MAST's portal time limit"))
    max_retries: int = field(default=4, metadata=_d(
        "retries after timeouts, connection errors, HTTP 5xx and 429 (not after 4xx, bad bodies or size refusals)"))
    backoff_base_s: float = field(default=1.0, metadata=_d(
        "first backoff in seconds; doubles per retry, full jitter"))
    backoff_max_s: float = field(default=60.0, metadata=_d("longest backoff in seconds"))
    retry_after_max_s: float = field(default=300.0, metadata=_d(
        "honour a service's Retry-After up to this many seconds; a longer request to wait is a failure"))
    min_interval_s: float = field(default=0.5, metadata=_d(
        "seconds between requests to one host, shared by every process using the same cache root "
        "(token bucket refill interval; 0 = no limit)"))
    rate_burst: int = field(default=1, metadata=_d(
        "requests to one host that may start back to back before min_interval_s spacing applies"))
    max_download_bytes: int = field(default=6 * GIB, metadata=_d(
        "largest file accepted (bytes): a declared Content-Length above it is refused before reading, a body "
        "without one is cut at it; 6 GiB admits a 20k x 20k float32 mosaic with ERR and WHT extensions (4.8 GB)"))
    max_text_bytes: int = field(default=32 << 20, metadata=_d(
        "largest text answer (bytes) read into memory: filename tables, result pages"))
    max_redirects: int = field(default=10, metadata=_d("redirects followed before a request fails as a loop"))
    chunk_bytes: int = field(default=1 << 16, metadata=_d("bytes read from the network at a time"))

    def validate(self) -> "HttpPolicy":
        bad = []
        if not self.timeout_s > 0:
            bad.append(f"timeout_s={self.timeout_s} must be > 0")
        if not self.deadline_s > 0:
            bad.append(f"deadline_s={self.deadline_s} must be > 0")
        if self.max_retries < 0 or self.max_retries > 100:
            bad.append(f"max_retries={self.max_retries} must be 0..100")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.retry_after_max_s < 0:
            bad.append("backoff_base_s, backoff_max_s and retry_after_max_s must be >= 0")
        if self.min_interval_s < 0:
            bad.append(f"min_interval_s={self.min_interval_s} must be >= 0")
        if self.rate_burst < 1:
            bad.append(f"rate_burst={self.rate_burst} must be >= 1")
        if self.max_download_bytes < 1 or self.max_text_bytes < 1:
            bad.append("max_download_bytes and max_text_bytes must be >= 1")
        if self.max_redirects < 0:
            bad.append(f"max_redirects={self.max_redirects} must be >= 0")
        if self.chunk_bytes < 512:
            bad.append(f"chunk_bytes={self.chunk_bytes} must be >= 512")
        if bad:
            raise ArchiveConfigError(f"invalid HTTP policy: {'; '.join(bad)}")
        return self


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
        seconds = float(value)
        return max(0.0, seconds) if seconds == seconds else None
    except ValueError:
        pass
    try:
        import datetime as dt

        when = parsedate_to_datetime(value)
        return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _short(text: str, n: int = 200) -> str:
    text = " ".join(strip_secrets(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def full_url(url: str, params: Mapping | None) -> str:
    return url if not params else f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def content_length(response: requests.Response) -> int | None:
    """The declared body length, or None when absent or not a plain non-negative integer."""
    value = response.headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() else None


def _identity(response: requests.Response) -> bool:
    return response.headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")


# ---------------------------------------------------------------------- deadline watchdog
class _Watch:
    """The deadline of one request: at expiry the socket in use is shut down, which ends any blocking read."""

    def __init__(self, deadline_s: float):
        self.deadline_s = deadline_s
        self.started = time.monotonic()
        self._expires = self.started + deadline_s
        self._fired = False
        self._done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(deadline_s, self._fire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        return self._fired or time.monotonic() >= self._expires

    def remaining(self) -> float:
        return self._expires - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def attach(self, sock) -> None:
        with self._lock:
            self._sock = sock
            late = self._fired
        if late:
            _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self._fired = True
            sock = self._sock
        if sock is not None:
            _shutdown(sock)

    def start(self) -> None:
        self._timer.start()

    def stop(self) -> None:
        with self._lock:
            self._done = True
            self._sock = None
        self._timer.cancel()


def _shutdown(sock) -> None:
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)


_active = threading.local()


def _current_watch() -> _Watch | None:
    return getattr(_active, "watch", None)


@contextlib.contextmanager
def _watching(deadline_s: float) -> Iterator[_Watch]:
    """A deadline for the block, in this thread; a nested block shares the outer (earlier) deadline."""
    outer = _current_watch()
    if outer is not None:
        yield outer
        return
    watch = _Watch(deadline_s)
    _active.watch = watch
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()
        _active.watch = None


class _WatchedConnection:
    """Hands the socket to the thread's deadline watch before the answer is read (headers and body)."""

    def getresponse(self, *args, **kwargs):
        watch = _current_watch()
        if watch is not None and getattr(self, "sock", None) is not None:
            watch.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


# ---------------------------------------------------------------------- session
class ArchiveAdapter(HTTPAdapter):
    """requests transport that applies the policy to every request sent through it (ours and astroquery's).

    Default timeouts (astroquery sends none), the shared per-host rate limit,
    the deadline watch on the socket, and the refusal of a declared body
    larger than ``max_download_bytes`` before any of it is read.
    """

    def __init__(self, policy: HttpPolicy, rate_limiter: RateLimiter):
        self.policy, self.rate_limiter = policy, rate_limiter
        super().__init__(pool_connections=4, pool_maxsize=8)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        p = self.policy
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        connect = p.timeout_s if connect is None else connect
        read = p.timeout_s if read is None else read
        watch = _current_watch()
        if watch is not None:
            if watch.expired:
                raise DeadlineExceededError(request.url, f"the {watch.deadline_s:g} s deadline passed before this "
                                                         "request could be sent")
            left = max(0.05, watch.remaining())
            connect, read = min(connect, left), min(read, left)
        self.rate_limiter.acquire(urlsplit(request.url).netloc, p.min_interval_s, p.rate_burst)
        if watch is not None and watch.expired:  # the rate limit made us wait past the deadline
            raise DeadlineExceededError(request.url, f"the {watch.deadline_s:g} s deadline passed while waiting "
                                                     "for the rate limit")
        log.debug("%s %s", request.method, strip_secrets(request.url))
        response = super().send(request, stream=stream, timeout=(connect, read), verify=verify, cert=cert,
                                proxies=proxies)
        declared = content_length(response)
        if declared is not None and declared > p.max_download_bytes:
            response.close()
            raise DownloadTooLargeError(request.url, f"the server announces {declared} bytes (Content-Length), more "
                                                     f"than max_download_bytes={p.max_download_bytes}; refused "
                                                     "before reading the body")
        return response


class ArchiveSession(requests.Session):
    """A requests session that follows only http(s) redirects, at most ``max_redirects``, never reading their bodies."""

    def __init__(self, policy: HttpPolicy):
        super().__init__()
        self.max_redirects = policy.max_redirects
        self.headers["User-Agent"] = USER_AGENT

    def get_redirect_target(self, resp):
        target = super().get_redirect_target(resp)
        if not target:
            return target
        absolute = urljoin(resp.url, target) if not target.startswith("//") else \
            f"{urlsplit(resp.url).scheme}:{target}"
        scheme = urlsplit(absolute).scheme.lower()
        if scheme not in FOLLOWED_SCHEMES:
            resp.close()
            raise UnsafeRedirectError(resp.url, f"redirects to a {scheme or 'scheme-less'}: URL "
                                                f"({_short(absolute, 120)}); only http and https are followed")
        if not getattr(resp, "_astrid_body_dropped", False):
            # requests reads a redirect's body before following it; a hostile one can be endless
            resp._astrid_body_dropped = True
            with contextlib.suppress(Exception):
                resp.raw.close()
        return target


class _Transient(Exception):
    """A failure worth retrying: ``reason`` for the log, ``code`` for the request log, the service's Retry-After."""

    def __init__(self, reason: str, code: str, retry_after: float | None = None, *, logged: bool = False):
        super().__init__(reason)
        self.reason, self.code, self.retry_after, self.logged = reason, code, retry_after, logged


class HttpClient:
    """GET with retries/backoff/jitter/Retry-After, shared rate limit, deadline, and bounded atomic downloads."""

    def __init__(self, policy: HttpPolicy | None = None, *, rate_limiter: RateLimiter | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None,
                 session: ArchiveSession | None = None):
        self.policy = (policy or HttpPolicy()).validate()
        self.rate_limiter = rate_limiter or RateLimiter()
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.log = RequestLog()
        self.session = session or ArchiveSession(self.policy)
        adapter = ArchiveAdapter(self.policy, self.rate_limiter)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    # ------------------------------------------------------------------ retry engine
    def backoff_s(self, retry: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)], and never less than Retry-After."""
        p = self.policy
        cap = min(p.backoff_max_s, p.backoff_base_s * (2 ** retry))
        delay = self.rng.uniform(0.0, cap) if cap > 0 else 0.0
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _retrying(self, shown: str, attempt: Callable[[int, _Watch], object]):
        """Run ``attempt(n, watch)`` until it returns, raises a named error, or retries/deadline run out."""
        p = self.policy
        total = p.max_retries + 1
        last = ""
        with _watching(p.deadline_s) as watch:
            for n in range(total):
                try:
                    return attempt(n, watch)
                except _Transient as t:
                    if not t.logged:
                        self.log.attempts.append((shown, t.code))
                    last, retry_after = t.reason, t.retry_after
                if watch.expired:
                    raise DeadlineExceededError(shown, f"no complete answer within the {p.deadline_s:g} s deadline "
                                                       f"({n + 1} attempts); last failure: {last}", attempts=n + 1)
                if n == p.max_retries:
                    break
                self._wait(n, total, retry_after, shown, last, watch)
        raise RetriesExhaustedError(shown, f"gave up after {total} attempts ({p.max_retries} retries); "
                                           f"last failure: {last}", attempts=total)

    def _wait(self, n: int, total: int, retry_after: float | None, url: str, last: str, watch: _Watch) -> None:
        p = self.policy
        if retry_after is not None and retry_after > p.retry_after_max_s:
            raise RetriesExhaustedError(url, f"service asks to retry after {retry_after:.0f} s "
                                             f"(> {p.retry_after_max_s:.0f} s allowed); last failure: {last}",
                                        attempts=n + 1)
        delay = self.backoff_s(n, retry_after)
        if delay >= watch.remaining():
            raise DeadlineExceededError(url, f"the next retry (in {delay:.1f} s) would pass the {p.deadline_s:g} s "
                                             f"deadline; last failure: {last}", attempts=n + 1)
        log.warning("%s: attempt %d of %d failed (%s); retrying in %.2f s", url, n + 1, total, last, delay)
        self.log.backoffs.append(delay)
        if delay > 0:
            self.sleep(delay)

    def _classify(self, exc: BaseException, shown: str, watch: _Watch, n: int) -> _Transient:
        """A requests/urllib3 failure as a retryable :class:`_Transient`, or raise the named error it is."""
        p = self.policy
        if isinstance(exc, (UnsafeRedirectError, DownloadTooLargeError, DeadlineExceededError)) and exc.path != shown:
            # raised by the transport for one hop or one portal call: name the request the caller made
            where = "via" if isinstance(exc, UnsafeRedirectError) else "at"
            raise type(exc)(shown, f"{exc.reason} ({where} {exc.path})", attempts=n + 1) from exc
        if isinstance(exc, AstridError):
            raise exc
        if watch.expired:
            raise DeadlineExceededError(shown, f"no complete answer within the {p.deadline_s:g} s deadline "
                                               f"({watch.elapsed():.1f} s, attempt {n + 1}: {type(exc).__name__})",
                                        attempts=n + 1) from exc
        if isinstance(exc, requests.TooManyRedirects):
            last = getattr(exc.response, "url", None) or shown
            raise RedirectLoopError(shown, f"more than {p.max_redirects} redirects (a redirect loop); last hop "
                                           f"{_short(last, 120)}", attempts=n + 1) from exc
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            raise BadContentEncodingError(shown, f"the body does not decode as the Content-Encoding the server "
                                                 f"declared ({_short(str(exc), 160)})", attempts=n + 1) from exc
        if isinstance(exc, (requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL,
                            requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader)):
            raise PermanentArchiveError(shown, f"{type(exc).__name__}: {_short(str(exc))}", attempts=n + 1) from exc
        if isinstance(exc, requests.exceptions.SSLError):
            raise PermanentArchiveError(shown, f"TLS failure (not retried): {_short(str(exc))}",
                                        attempts=n + 1) from exc
        if isinstance(exc, requests.Timeout):
            return _Transient(f"{type(exc).__name__} after {p.timeout_s:g} s timeout", type(exc).__name__)
        if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return _Transient(f"{type(exc).__name__}: {_short(str(exc))}", type(exc).__name__)
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else None
            if status in RETRY_STATUS:
                ra = _retry_after_seconds(exc.response.headers.get("Retry-After")) if exc.response is not None else None
                return _Transient(f"HTTP {status}", str(status), ra)
            cls = NoDataError if status == 404 else PermanentArchiveError
            raise cls(shown, f"HTTP {status}: {_short(str(exc))}", status=status, attempts=n + 1) from exc
        raise exc

    # ------------------------------------------------------------------ third-party request code
    def call_with_retries(self, fn: Callable[[], object], what: str):
        """Run ``fn`` (third-party request code, e.g. astroquery) under the retry rules and the deadline.

        Its HTTP requests go through :attr:`session` when the caller gave it
        our session (see :func:`astrid_pipeline.archives.mast.mast_observations`),
        so they are rate limited, time out and are size-checked like ours.
        Transient failures are retried; the service's own refusals
        (astroquery's InvalidQueryError, RemoteServiceError, bad coordinates)
        are reported with ``what``.
        """
        shown = strip_secrets(what)

        def attempt(n: int, watch: _Watch):
            try:
                out = fn()
            except _Transient:
                raise
            except AstridError as exc:
                self.log.attempts.append((shown, type(exc).__name__))
                self._classify(exc, shown, watch, n)
            except Exception as exc:  # mapped below; anything unknown is re-raised unchanged
                self.log.attempts.append((shown, type(exc).__name__))
                if isinstance(exc, requests.HTTPError) and exc.response is not None:
                    self.log.attempts[-1] = (shown, str(exc.response.status_code))
                module = type(exc).__module__
                if isinstance(exc, requests.RequestException):
                    t = self._classify(exc, shown, watch, n)
                    t.logged = True
                    raise t from exc
                if module.startswith("astroquery") and type(exc).__name__ == "TimeoutError":
                    raise DeadlineExceededError(shown, f"the service did not finish within the "
                                                       f"{self.policy.deadline_s:g} s deadline ({_short(str(exc))})",
                                                attempts=n + 1) from exc
                if watch.expired:
                    raise DeadlineExceededError(shown, f"no complete answer within the {self.policy.deadline_s:g} s "
                                                       f"deadline ({type(exc).__name__})", attempts=n + 1) from exc
                if isinstance(exc, ValueError) or module.startswith("astroquery"):
                    raise PermanentArchiveError(shown, f"{type(exc).__name__}: {_short(str(exc), 400)}",
                                                attempts=n + 1) from exc
                raise
            self.log.attempts.append((shown, "ok"))
            return out

        return self._retrying(shown, attempt)

    # ------------------------------------------------------------------ requests
    def _request(self, url: str, params: Mapping | None, shown: str, n: int, watch: _Watch) -> requests.Response:
        """One GET; returns an open (streaming) response with a status below 400."""
        try:
            r = self.session.get(url, params=params, stream=True)
        except Exception as exc:
            raise self._classify(exc, shown, watch, n) from exc
        self.log.attempts.append((shown, str(r.status_code)))
        if r.status_code < 400:
            return r
        try:
            head = next(r.raw.stream(2000, decode_content=False), b"") if r.raw is not None else b""
        except Exception:  # the error page itself is only decoration for the message
            head = b""
        finally:
            r.close()
        body = _short(head.decode("utf-8", "replace"))
        if r.status_code in RETRY_STATUS:
            raise _Transient(f"HTTP {r.status_code} {r.reason}", str(r.status_code),
                             _retry_after_seconds(r.headers.get("Retry-After")), logged=True)
        cls = NoDataError if r.status_code == 404 else PermanentArchiveError
        raise cls(shown, f"HTTP {r.status_code} {r.reason}: {body}", status=r.status_code, attempts=n + 1)

    def _stream(self, r: requests.Response, shown: str, limit: int, write: Callable[[bytes], object], n: int,
                watch: _Watch) -> int:
        """Copy the body to ``write`` (at most ``limit`` bytes, decoded); returns the byte count."""
        p = self.policy
        declared = content_length(r)
        if declared is not None and declared > limit:
            raise DownloadTooLargeError(shown, f"the server announces {declared} bytes (Content-Length), more than "
                                               f"the {limit}-byte limit; refused before reading the body",
                                        attempts=n + 1)
        got = 0
        try:
            for chunk in r.iter_content(p.chunk_bytes):
                if got + len(chunk) > limit:
                    raise DownloadTooLargeError(shown, f"the body exceeds the {limit}-byte limit (no or false "
                                                       f"Content-Length); stopped after {got} bytes",
                                                attempts=n + 1)
                write(chunk)
                got += len(chunk)
        except (requests.RequestException, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, requests.RequestException) and not watch.expired:
                raise
            t = self._classify(exc, shown, watch, n)
            t.reason = f"download cut off ({t.reason}; {got} bytes kept)"
            raise t from exc
        if watch.expired:
            raise DeadlineExceededError(shown, f"the body did not arrive within the {p.deadline_s:g} s deadline "
                                               f"({got} bytes in {watch.elapsed():.1f} s)", attempts=n + 1)
        if declared is not None and _identity(r) and declared != got:
            raise _Transient(f"download cut off: received {got} of the {declared} bytes the server announced",
                             "cut")
        return got

    def get_text(self, url: str, params: Mapping | None = None) -> str:
        """The body of ``url`` as text (at most ``max_text_bytes``)."""
        shown = strip_secrets(full_url(url, params))

        def attempt(n: int, watch: _Watch) -> str:
            r = self._request(url, params, shown, n, watch)
            try:
                parts: list[bytes] = []
                self._stream(r, shown, self.policy.max_text_bytes, parts.append, n, watch)
                encoding = r.encoding or "utf-8"
                try:
                    return b"".join(parts).decode(encoding, "replace")
                except LookupError:
                    return b"".join(parts).decode("utf-8", "replace")
            finally:
                r.close()

        return self._retrying(shown, attempt)

    def download(self, url: str, dest: str | Path, params: Mapping | None = None, *,
                 verify: Callable[[Path, str], None] | None = None,
                 transform: Callable[[Path, str], None] | None = None) -> Path:
        """Stream ``url`` to ``dest`` atomically; verify (and optionally rewrite) before the rename.

        A connection cut before Content-Length bytes arrived is retried like
        any transient failure; a body that fails ``verify`` or is too large
        raises at once (the service will send the same body again) and leaves
        no file.
        """
        shown = strip_secrets(full_url(url, params))
        verify = verify or (lambda p, u: verify_fits(p, u, max_bytes=self.policy.max_download_bytes))

        def attempt(n: int, watch: _Watch) -> Path:
            r = self._request(url, params, shown, n, watch)
            try:
                with atomic_path(dest) as tmp:
                    with open(tmp, "wb") as fh:
                        try:
                            self._stream(r, shown, self.policy.max_download_bytes, fh.write, n, watch)
                        except OSError as exc:
                            if isinstance(exc, requests.RequestException):
                                raise
                            raise OSError(exc.errno, f"cannot write the download of {shown} "
                                                     f"({exc.strerror or exc})", str(dest)) from exc
                    verify(tmp, shown)
                    if transform is not None:
                        transform(tmp, shown)
                return Path(dest)
            finally:
                r.close()

        return self._retrying(shown, attempt)


# ---------------------------------------------------------------------- verification
GZIP_MAGIC = b"\x1f\x8b"


def _gunzipped_size(path: Path, url: str, max_bytes: int) -> tuple[int, bytes]:
    """Decompress ``path`` in blocks (bounded memory): its size and first 80 bytes; stops past ``max_bytes``."""
    import zlib

    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    size, head, pending = 0, b"", b""
    with open(path, "rb") as fh:
        while True:
            if not pending:
                pending = fh.read(1 << 16)
                if not pending:
                    break
            out = d.decompress(pending, 1 << 20)
            pending = d.unconsumed_tail
            size += len(out)
            if len(head) < 80:
                head += out[:80 - len(head)]
            if size > max_bytes:
                raise DownloadTooLargeError(url, f"gzipped FITS decompresses to more than the {max_bytes}-byte "
                                                 "limit (a decompression bomb?)")
            if d.eof:
                rest = d.unused_data + pending
                if not rest.startswith(GZIP_MAGIC):  # the end (trailing padding is left to astropy)
                    return size, head
                d, pending = zlib.decompressobj(16 + zlib.MAX_WBITS), rest  # concatenated members
    if not d.eof:
        raise DownloadTruncatedError(url, f"gzip stream ends early (after {size} decompressed bytes)")
    return size, head


def verify_fits(path: Path, url: str, *, require_image: bool = True, max_bytes: int | None = None) -> None:
    """Raise a named error (naming ``url``) unless ``path`` is complete FITS with image data.

    Only headers are read: the data size every header declares is compared
    with the file size, so a small file claiming a 100000 x 100000 image is
    refused as truncated without allocating anything. A gzipped FITS
    (GALEX and other archives serve ``.fits.gz``) is first decompressed in
    blocks to count its size, refused past ``max_bytes`` (default: the
    policy's ``max_download_bytes`` default), then checked the same way.
    """
    from astropy.io import fits

    with open(path, "rb") as fh:
        head = fh.read(80)
    if head.startswith(GZIP_MAGIC):
        import zlib

        try:
            _, head = _gunzipped_size(Path(path), url, max_bytes or HttpPolicy().max_download_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise DownloadTruncatedError(url, f"gzip stream is corrupt ({_short(str(exc))})") from exc
    if not head.startswith(b"SIMPLE  ="):
        kind = "an HTML page" if b"<" in head[:20].lower() or b"html" in head.lower() else \
            ("a JPEG image" if head.startswith(b"\xff\xd8") else ("empty" if not head else "not FITS"))
        snippet = _short(head.decode("ascii", "replace"), 60)
        raise DownloadNotFITSError(url, f"response is {kind}, not FITS (starts with {snippet!r})")
    has_image = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=True, lazy_load_hdus=False) as hdul:
                for hdu in hdul:
                    h = hdu.header
                    naxis = int(h.get("ZNAXIS", h.get("NAXIS", 0)) or 0)
                    dims = [int(h.get(f"ZNAXIS{i}", h.get(f"NAXIS{i}", 0)) or 0) for i in range(1, naxis + 1)]
                    if hdu.is_image and naxis >= 2 and all(d > 0 for d in dims):
                        has_image = True
        for w in caught:
            if "truncated" in str(w.message).lower():
                raise DownloadTruncatedError(url, f"FITS body is truncated ({w.message})")
    except BadDownloadError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DownloadTruncatedError(url, f"FITS body is truncated or corrupt ({_short(str(exc))})") from exc
    if require_image and not has_image:
        raise BadDownloadError(url, "FITS file holds no image data (header only)")


# ---------------------------------------------------------------------- cache
#: a resolution record larger than this is not ours
_MAX_RECORD_BYTES = 1 << 20


def _canonical(key: Mapping) -> str:
    """A digest of the query key: records name their query without storing it (it may hold a token)."""
    text = json.dumps(key, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class DownloadCache:
    """Files under ``root/<archive>/<hash of URL+params>/<name>``; reused when present and valid FITS.

    Beside the files, ``root/<archive>/resolved/<hash of the query>.json``
    records what an archive query resolved to (the file, its inventory row,
    the products it skipped), so the clients look in the cache *before*
    asking the service: a cached region re-runs with no request.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, archive: str, url: str, params: Mapping | None, name: str) -> Path:
        key = json.dumps([url, sorted((str(k), str(v)) for k, v in (params or {}).items())])
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        safe = "".join(c if c.isalnum() or c in "._+-" else "_" for c in name)[:120] or "download.fits"
        return self.root / archive / digest / safe

    def lookup(self, path: Path, url: str) -> bool:
        """True when ``path`` holds a valid cached file; a corrupt one is removed (and re-downloaded)."""
        if not path.is_file():
            return False
        try:
            verify_fits(path, url)
        except ArchiveError:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return False
        return True

    def record_path(self, archive: str, key: Mapping) -> Path:
        return self.root / archive / "resolved" / f"{_canonical(key)[:24]}.json"

    def remember(self, archive: str, key: Mapping, file: str | Path, entry: Mapping) -> Path:
        """Record that the query ``key`` resolved to ``file`` (inside the cache) with ``entry`` (JSON-able)."""
        rel = Path(file).resolve().relative_to(self.root.resolve())
        doc = {"key": _canonical(key), "file": rel.as_posix(), **entry}
        return atomic_write_text(self.record_path(archive, key), json.dumps(doc, default=str))

    def recall(self, archive: str, key: Mapping, url: str) -> tuple[Path, dict] | None:
        """``(file, entry)`` when the query ``key`` was resolved before and its file is still valid, else None.

        A record that is unreadable, not ours, points outside the cache or at
        a missing/corrupt file is removed (the next run asks the service again).
        """
        rp = self.record_path(archive, key)
        if not rp.is_file():
            return None
        try:
            if rp.stat().st_size > _MAX_RECORD_BYTES:
                raise ValueError("record too large")
            doc = json.loads(rp.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("key") != _canonical(key):
                raise ValueError("record of another query")
            root = self.root.resolve()
            file = (root / str(doc["file"])).resolve()
            if not file.is_relative_to(root):
                raise ValueError("record points outside the cache")
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            with contextlib.suppress(OSError):
                rp.unlink()
            return None
        if not self.lookup(file, url):
            with contextlib.suppress(OSError):
                rp.unlink()
            return None
        return file, doc
