"""Named errors of the ramp branch (subclasses of the project's input errors)."""

from __future__ import annotations

from astrid_pipeline.errors import BadShapeError, EmptyDataError, InputFileError


class TooFewGroupsError(BadShapeError):
    """The ramp has fewer groups (reads) than a detection method needs."""


class NonFiniteRampError(InputFileError):
    """The ramp holds NaN or infinite values."""


class AllSaturatedError(EmptyDataError):
    """Every science pixel is saturated from the first read: nothing can be measured."""


class UnknownRampFormatError(InputFileError):
    """The file is neither a recognised FITS ramp layout nor an AstrID ramp HDF5 file."""
