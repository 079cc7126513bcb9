"""Named errors of the M.M.Cosmic step (subclasses of the project's errors)."""

from __future__ import annotations

from astrid_pipeline.errors import BadShapeError, ConfigError, EmptyDataError, InputFileError


class ParameterError(ConfigError):
    """A numina-crmasks parameter is missing, unknown, of the wrong type or out of range."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"parameter {key!r}: {reason}")


class UnsupportedMethodError(ParameterError):
    """A ``crmethod`` that numina-crmasks knows but this implementation does not provide."""


class StackError(InputFileError):
    """A stack of exposures cannot be combined (too few, shapes differ, NaNs, missing extension)."""


class TooFewExposuresError(StackError):
    """Fewer exposures than the method needs (at least 3, and more than mm_cr_coincidences)."""


class ShapeMismatchError(StackError, BadShapeError):
    """The exposures of a stack do not all have the same 2-D shape."""


class MissingExtensionError(StackError):
    """The FITS extension named by ``extnum`` is not in the file."""


class NonFiniteDataError(StackError, EmptyDataError):
    """An exposure holds NaN or infinite pixels (M.M.Cosmic needs every pixel of every exposure)."""


__all__ = [
    "ParameterError",
    "UnsupportedMethodError",
    "StackError",
    "TooFewExposuresError",
    "ShapeMismatchError",
    "MissingExtensionError",
    "NonFiniteDataError",
]
