"""Resources shared by the branches: the data root, the sky archives and the region catalog.

``SkyArchiveResource`` is derived from :class:`astrid_pipeline.archives.select.ArchiveSettings` (its one
nested section, ``policy``, from :class:`~astrid_pipeline.archives.http.HttpPolicy`), so the launchpad shows the
archive clients' own settings and descriptions; ``to_settings()`` hands them to the plain-Python router.
"""

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from astrid_pipeline.archives.select import ArchiveSettings
from astrid_pipeline.defs._config import config_class


class StorageResource(dg.ConfigurableResource):
    """Where products are written. Empty ``root`` means ``$ASTRID_DATA_ROOT`` or ``data/``."""

    root: str = Field(default="", description="Data root directory; empty = $ASTRID_DATA_ROOT or the project's data/")

    @property
    def root_path(self) -> Path:
        from astrid_pipeline.layout import default_data_root

        return Path(self.root).expanduser().resolve() if self.root else default_data_root()

    @property
    def layout(self):
        from astrid_pipeline.layout import DataLayout

        return DataLayout(self.root_path)


class SkyArchiveResource(config_class(ArchiveSettings, base=dg.ConfigurableResource, name="SkyArchiveSettings")):
    """Where science and reference images come from (a region's catalog entry overrides ``kind`` per epoch)."""

    def router(self, cache_root: str | None = None):
        """The per-region/per-epoch dispatcher (plain Python); ``cache_root`` is used when none is configured."""
        from astrid_pipeline.archives.errors import ArchiveConfigError
        from astrid_pipeline.archives.select import ArchiveRouter
        from astrid_pipeline.errors import ConfigError
        from astrid_pipeline.layout import default_data_root

        s = self.to_settings()
        if not s.cache_root:
            s.cache_root = os.environ.get("ASTRID_ARCHIVE_CACHE") or cache_root or str(default_data_root() / "archive_cache")
        try:
            s.policy.validate()
            return ArchiveRouter(s)
        except ArchiveConfigError as exc:
            raise ConfigError(str(exc)) from exc

    def client(self, kind: str | None = None):
        """The archive client of ``kind`` (default: the global ``kind``), e.g. for a notebook."""
        from astrid_pipeline.errors import ConfigError

        kind = kind or self.kind
        if kind == "local" and not self.local_root:
            raise ConfigError("archive kind 'local' needs local_root")
        return self.router().client(kind)

    def fetch_pair(self, region, cache_root: str | None = None):
        return self.router(cache_root).fetch_pair(region)


class RegionCatalogResource(dg.ConfigurableResource):
    """The region catalog: empty ``path`` means $ASTRID_REGION_CATALOG, the data root's regions.yaml, or built-in."""

    path: str = Field(default="", description="YAML or CSV region catalog; empty = $ASTRID_REGION_CATALOG, "
                                              "<data root>/regions.yaml, or the built-in list")

    def catalog(self):
        from astrid_pipeline.regions import load_region_catalog

        return load_region_catalog(self.path or os.environ.get("ASTRID_REGION_CATALOG") or None)

    def region(self, key: str):
        from astrid_pipeline.regions import resolve_region

        return resolve_region(key, self.catalog())


@dg.definitions
def defs() -> dg.Definitions:
    # runs of every branch hold one or two steps over a batch of partitions: one process per run keeps the
    # overhead to a single start-up (the Dask and Celery jobs of defs/sky/distributed.py pick their own)
    return dg.Definitions(resources={"storage": StorageResource(), "archive": SkyArchiveResource(),
                                     "regions": RegionCatalogResource()},
                          executor=dg.in_process_executor)
