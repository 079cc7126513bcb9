"""Archive clients (plain Python): where science and reference images come from."""

from astrid_pipeline.archives.base import ArchivePair

__all__ = ["ArchivePair"]
