"""Named errors for bad input.

Every error that comes from a file names the file and the reason, so a
failing partition in the Dagster UI (or a traceback in a notebook) says at
once what to fix.
"""

from __future__ import annotations

import os


class AstridError(Exception):
    """Base class of every error raised on purpose by the pipeline."""


class ConfigError(AstridError, ValueError):
    """A configuration value is missing, out of range or inconsistent."""


class InputFileError(AstridError, ValueError):
    """A file cannot be used; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        where = self.path if self.path is not None else "<in-memory data>"
        super().__init__(f"{where}: {reason}")


class NotFITSError(InputFileError):
    """The file is not FITS at all (no SIMPLE card, an HTML page, ...)."""


class TruncatedFileError(InputFileError):
    """The file ends before the data its header announces."""


class NoCelestialWCSError(InputFileError):
    """The header has no usable celestial WCS."""


class BadShapeError(InputFileError):
    """The data have the wrong number of dimensions or the wrong shape."""


class EmptyDataError(InputFileError):
    """The data are all NaN/Inf, or have no valid pixel at all."""


class BadHeaderError(InputFileError):
    """A header keyword the pipeline needs is missing or invalid (e.g. EXPTIME <= 0)."""


class NoOverlapError(InputFileError):
    """Two images do not share any sky area."""


class PSFEstimationError(InputFileError):
    """Too few usable stars to measure a PSF."""


class NotASkyImageError(BadShapeError):
    """The file holds something other than a sky image: a time series of pixels (a TESS/Kepler
    target-pixel file or an astrocut cube), a spectrum, a table."""


class AmbiguousImageError(BadShapeError):
    """The file holds several candidate images (bands of a multi-band cutout) and no option says which
    one to use; the message lists them."""


class ImageTooLargeError(InputFileError):
    """The header declares more pixels than the configured limit (a header cannot force a huge allocation);
    the message gives the declared shape, the limit and how to raise it."""


class SingularWCSError(NoCelestialWCSError):
    """The celestial WCS maps pixels onto no sky area: its CD (or PC x CDELT) matrix is singular or not finite."""


class UnsafeKeyError(ConfigError):
    """A name cannot be a partition key: it could escape the data root, or is too long for a file name."""


class OutputError(AstridError, OSError):
    """A product cannot be written (disk full, read-only folder, a file where a folder must be, ...).

    It is an :class:`OSError` too (``errno``, ``strerror``, ``filename`` = the product's path, not the
    temporary name the writer used), so existing ``except OSError`` handlers keep working.
    """

    def __init__(self, path: str | os.PathLike, reason: str, errno: int | None = None):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(errno if errno is not None else 0, reason, self.path)

    def __str__(self) -> str:
        return f"{self.path}: cannot write: {self.reason}"


class BadDataTypeError(BadShapeError):
    """The data are of a type the step cannot use (complex, boolean, text, compound records)."""
