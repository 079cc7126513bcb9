"""Former name of :mod:`astrid_pipeline.definitions` (kept while the distributed tests move over)."""

from astrid_pipeline.definitions import defs  # noqa: F401
