"""Archive and region-catalog resources.

``SkyArchiveResource`` is configuration plus dispatch: it builds the plain
Python archive client (:mod:`astrid_pipeline.archives`) named by ``kind``.
The default is the built-in simulated survey, so everything runs offline.
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.errors import ConfigError
from astrid_pipeline.regions import Region, load_region_catalog, resolve_region


class SkyArchiveResource(ConfigurableResource):
    """Where science and reference images come from."""

    kind: str = Field(default="simulated", description="simulated | local")
    image_size: int = Field(default=1024, description="simulated survey: image side in pixels")
    seed: int = Field(default=0, description="simulated survey: base seed (each region derives its own)")
    local_root: str = Field(default="", description="local archive: folder with <region>/science.fits and reference.fits")

    def client(self):
        if self.kind == "simulated":
            from astrid_pipeline.archives.simulated import SimulatedSurvey
            from astrid_pipeline.science.skysim import SurveyConfig

            return SimulatedSurvey(SurveyConfig(shape=(self.image_size, self.image_size), seed=self.seed))
        if self.kind == "local":
            from astrid_pipeline.archives.local import LocalFolderArchive

            if not self.local_root:
                raise ConfigError("archive kind 'local' needs local_root")
            return LocalFolderArchive(self.local_root)
        raise ConfigError(f"unknown archive kind {self.kind!r}: use 'simulated' or 'local'")

    def fetch_pair(self, region: Region) -> ArchivePair:
        return self.client().fetch_pair(region)


class RegionCatalogResource(ConfigurableResource):
    """The region catalog: empty ``path`` means $ASTRID_REGION_CATALOG or the built-in list."""

    path: str = Field(default="", description="YAML region catalog; empty = $ASTRID_REGION_CATALOG or built-in")

    def catalog(self) -> dict[str, Region]:
        return load_region_catalog(self.path or os.environ.get("ASTRID_REGION_CATALOG") or None)

    def region(self, key: str) -> Region:
        return resolve_region(key, self.catalog())
