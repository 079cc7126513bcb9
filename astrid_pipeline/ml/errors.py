"""Named errors of the ML layer (no torch import here)."""

from __future__ import annotations

from astrid_pipeline.errors import InputFileError


class CheckpointError(InputFileError):
    """A model checkpoint is missing, unreadable or does not fit the network it claims to be."""
