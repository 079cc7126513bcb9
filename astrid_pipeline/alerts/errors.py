"""Named errors of the alert writer."""

from __future__ import annotations

from astrid_pipeline.errors import AstridError, InputFileError


class AlertInputError(AstridError, ValueError):
    """The candidates or images given to the alert writer cannot make valid packets (the message says why)."""


class AlertSchemaError(InputFileError):
    """A bundled schema file is missing or was modified (its checksum differs from the upstream copy)."""
