"""Named errors of the network archives.

Every error names the URL (or file) and the reason. They derive from the
pipeline's own errors, so code that catches ``InputFileError`` (a bad input
for one partition) catches a bad download too.
"""

from __future__ import annotations

from astrid_pipeline.errors import ConfigError, InputFileError, NotFITSError, TruncatedFileError


class ArchiveError(InputFileError):
    """An archive request failed; ``path`` is the URL, ``reason`` says why."""

    def __init__(self, url: str | None, reason: str, *, status: int | None = None, attempts: int = 1):
        self.status = status
        self.attempts = attempts
        super().__init__(url, reason)


class PermanentArchiveError(ArchiveError):
    """The service answered with an error that retrying will not fix (404, 400, bad coordinates)."""


class NoDataError(PermanentArchiveError):
    """The archive has no image (or no usable product) at this position with these settings."""


class RetriesExhaustedError(ArchiveError):
    """A transient failure (timeout, connection error, 5xx, 429) lasted through every retry."""


class BadDownloadError(ArchiveError):
    """A download arrived but is not what was asked for (not FITS, truncated, wrong size, no data)."""


class DownloadNotFITSError(BadDownloadError, NotFITSError):
    """The body is not FITS (an HTML error page, a JPEG, JSON...)."""


class DownloadTruncatedError(BadDownloadError, TruncatedFileError):
    """The body ends before the data its FITS header announces, or before its Content-Length."""


class ArchiveConfigError(ConfigError):
    """An archive is configured wrongly (unknown kind, unknown survey, missing URL)."""
