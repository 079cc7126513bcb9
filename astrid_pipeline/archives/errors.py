"""Named errors of the network archives.

Every error names the URL (or file) and the reason. They derive from the
pipeline's own errors, so code that catches ``InputFileError`` (a bad input
for one partition) catches a bad download too.
"""

from __future__ import annotations

from astrid_pipeline.errors import ConfigError, InputFileError, NotFITSError, TruncatedFileError


class ArchiveError(InputFileError):
    """An archive request failed; ``path`` is the URL, ``reason`` says why.

    Both are stripped of credentials and tokens (:func:`~astrid_pipeline.archives.redact.strip_secrets`):
    the message of an archive error is logged, shown in the UI and stored in the inventory.
    """

    def __init__(self, url: str | None, reason: str, *, status: int | None = None, attempts: int = 1):
        from astrid_pipeline.archives.redact import strip_secrets

        self.status = status
        self.attempts = attempts
        super().__init__(None if url is None else strip_secrets(url), strip_secrets(reason))


class PermanentArchiveError(ArchiveError):
    """The service answered with an error that retrying will not fix (404, 400, bad coordinates)."""


class NoDataError(PermanentArchiveError):
    """The archive has no image (or no usable product) at this position with these settings."""


class RetriesExhaustedError(ArchiveError):
    """A transient failure (timeout, connection error, 5xx, 429) lasted through every retry."""


class DeadlineExceededError(ArchiveError):
    """A request (every attempt, redirect, backoff and byte of the body together) ran past ``deadline_s``.

    Not retried: the deadline is the budget of the whole request.
    """


class RedirectError(PermanentArchiveError):
    """The service redirected somewhere we do not follow."""


class RedirectLoopError(RedirectError):
    """More than ``max_redirects`` redirects (a loop, or a chain too long to be honest)."""


class UnsafeRedirectError(RedirectError):
    """A redirect to a scheme other than http(s) (``file://``, ``ftp://``, ``gopher://`` ...)."""


class BadDownloadError(ArchiveError):
    """A download arrived but is not what was asked for (not FITS, truncated, wrong size, no data)."""


class DownloadTooLargeError(BadDownloadError):
    """The body is (or announces itself as) larger than ``max_download_bytes``; refused, never retried."""


class BadContentEncodingError(BadDownloadError):
    """The ``Content-Encoding`` the server declared does not decode (e.g. claims gzip, is not gzip)."""


class DownloadNotFITSError(BadDownloadError, NotFITSError):
    """The body is not FITS (an HTML error page, a JPEG, JSON...)."""


class DownloadTruncatedError(BadDownloadError, TruncatedFileError):
    """The body ends before the data its FITS header announces, or before its Content-Length."""


class ArchiveConfigError(ConfigError):
    """An archive is configured wrongly (unknown kind, unknown survey, missing URL)."""
