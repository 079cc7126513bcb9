"""A local folder of FITS files as an archive.

Layout: ``<root>/<region>/science.fits`` and ``<root>/<region>/reference.fits``
(``.fits.gz``, ``.fit`` and ``.fts`` also accepted).
"""

from __future__ import annotations

from pathlib import Path

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.errors import InputFileError
from astrid_pipeline.io.fits_io import open_fits
from astrid_pipeline.layout import safe_key
from astrid_pipeline.regions import Region

SUFFIXES = (".fits", ".fits.gz", ".fit", ".fts")


class LocalFolderArchive:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path_for(self, region: str, epoch: str) -> Path:
        folder = self.root / safe_key(region)
        for suffix in SUFFIXES:
            p = folder / f"{epoch}{suffix}"
            if p.exists():
                return p
        raise InputFileError(folder / f"{epoch}.fits", f"no {epoch} image for region {region!r} in the local archive")

    def fetch_pair(self, region: Region) -> ArchivePair:
        ps = self.path_for(region.name, "science")
        pr = self.path_for(region.name, "reference")
        return ArchivePair(science=open_fits(ps), reference=open_fits(pr), science_source=str(ps),
                           reference_source=str(pr), provenance={"archive": "local", "root": str(self.root)})
