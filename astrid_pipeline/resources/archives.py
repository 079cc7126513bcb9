"""Archive and region-catalog resources.

``SkyArchiveResource`` is configuration plus dispatch: it builds the plain
Python archive clients (:mod:`astrid_pipeline.archives`). ``kind`` is the
global default (``simulated``, so everything runs offline); a region's
catalog entry overrides it per epoch with ``science_archive`` /
``reference_archive`` and per-archive keys such as ``skyview_survey``,
``ps1_filter`` or ``mast_collection``. Downloads are cached under
``cache_root`` (default ``<data root>/archive_cache``).
"""

from __future__ import annotations

import os

from dagster import ConfigurableResource
from pydantic import Field

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.errors import ConfigError
from astrid_pipeline.regions import Region, load_region_catalog, resolve_region

ARCHIVE_KINDS = ("simulated", "local", "skyview", "ps1", "mast")


class SkyArchiveResource(ConfigurableResource):
    """Where science and reference images come from."""

    kind: str = Field(default="simulated", description="default archive: simulated | local | skyview | ps1 | mast "
                                                        "(a region's science_archive/reference_archive override it)")
    image_size: int = Field(default=1024, description="simulated survey: image side in pixels")
    seed: int = Field(default=0, description="simulated survey: base seed (each region derives its own)")
    local_root: str = Field(default="", description="local archive: folder with <region>/science.fits and "
                                                    "reference.fits, or a manifest.yaml")
    cache_root: str = Field(default="", description="download cache; empty = $ASTRID_ARCHIVE_CACHE or "
                                                    "<data root>/archive_cache")
    # HTTP behaviour
    timeout_s: float = Field(default=60.0, description="per-request timeout (s)")
    max_retries: int = Field(default=4, description="retries on timeouts, connection errors, 5xx and 429")
    backoff_base_s: float = Field(default=1.0, description="first backoff (s); doubles per retry, full jitter")
    backoff_max_s: float = Field(default=60.0, description="longest backoff (s)")
    min_request_interval_s: float = Field(default=0.5, description="per-host rate limit: seconds between requests")
    # SkyView
    skyview_url: str = Field(default="https://skyview.gsfc.nasa.gov/current/cgi/basicform.pl",
                             description="SkyView query form URL")
    skyview_survey: str = Field(default="DSS2 Red", description="SkyView survey (DSS2 Red, SDSSr, 2MASS-K, ...)")
    skyview_pixels: int = Field(default=240, description="SkyView image side (pixels)")
    skyview_pixel_scale_arcsec: float = Field(default=1.0, description="SkyView pixel scale (arcsec/pixel)")
    # Pan-STARRS1
    ps1_url: str = Field(default="https://ps1images.stsci.edu/cgi-bin", description="PS1 image service base URL")
    ps1_filter: str = Field(default="r", description="PS1 filter: g r i z y")
    ps1_size_pixels: int = Field(default=240, description="PS1 cutout side (0.25 arcsec pixels)")
    ps1_image_type: str = Field(default="stack", description="PS1 image type: stack or warp")
    # MAST
    mast_download_url: str = Field(default="https://mast.stsci.edu/api/v0.1/Download/file",
                                   description="MAST file download endpoint")
    mast_collection: str = Field(default="HST", description="MAST obs_collection (HST, JWST, PS1, TESS, GALEX...)")
    mast_filters: str = Field(default="", description="MAST filters, comma-separated (empty = any)")
    mast_instrument: str = Field(default="", description="MAST instrument_name (empty = any)")
    mast_radius_arcmin: float = Field(default=1.0, description="MAST search radius (arcmin)")

    def settings(self):
        from astrid_pipeline.archives.http import HttpPolicy
        from astrid_pipeline.archives.select import ArchiveSettings
        from astrid_pipeline.layout import default_data_root

        if self.kind not in ARCHIVE_KINDS:
            raise ConfigError(f"unknown archive kind {self.kind!r}: use one of {', '.join(ARCHIVE_KINDS)}")
        cache = self.cache_root or os.environ.get("ASTRID_ARCHIVE_CACHE") or str(default_data_root() / "archive_cache")
        return ArchiveSettings(
            kind=self.kind, cache_root=cache, image_size=self.image_size, seed=self.seed, local_root=self.local_root,
            policy=HttpPolicy(timeout_s=self.timeout_s, max_retries=self.max_retries,
                              backoff_base_s=self.backoff_base_s, backoff_max_s=self.backoff_max_s,
                              min_interval_s=self.min_request_interval_s),
            skyview_url=self.skyview_url, skyview_survey=self.skyview_survey, skyview_pixels=self.skyview_pixels,
            skyview_pixel_scale_arcsec=self.skyview_pixel_scale_arcsec, ps1_url=self.ps1_url,
            ps1_filter=self.ps1_filter, ps1_size_pixels=self.ps1_size_pixels, ps1_image_type=self.ps1_image_type,
            mast_download_url=self.mast_download_url, mast_collection=self.mast_collection,
            mast_filters=self.mast_filters, mast_instrument=self.mast_instrument,
            mast_radius_arcmin=self.mast_radius_arcmin)

    def router(self, cache_root: str | None = None):
        """The per-region/per-epoch dispatcher (plain Python).

        ``cache_root`` (the caller's data root + ``archive_cache``) is used when neither ``cache_root``
        is configured nor ``$ASTRID_ARCHIVE_CACHE`` is set.
        """
        from astrid_pipeline.archives.errors import ArchiveConfigError
        from astrid_pipeline.archives.select import ArchiveRouter

        s = self.settings()
        if cache_root and not self.cache_root and not os.environ.get("ASTRID_ARCHIVE_CACHE"):
            s.cache_root = cache_root
        try:
            return ArchiveRouter(s)
        except ArchiveConfigError as exc:
            raise ConfigError(str(exc)) from exc

    def client(self):
        """The client of the global ``kind`` (kept for callers that want one archive, e.g. notebooks)."""
        if self.kind == "local" and not self.local_root:
            raise ConfigError("archive kind 'local' needs local_root")
        return self.router().client(self.kind)

    def fetch_pair(self, region: Region, cache_root: str | None = None) -> ArchivePair:
        return self.router(cache_root).fetch_pair(region)


class RegionCatalogResource(ConfigurableResource):
    """The region catalog: empty ``path`` means $ASTRID_REGION_CATALOG or the built-in list."""

    path: str = Field(default="", description="YAML region catalog; empty = $ASTRID_REGION_CATALOG or built-in")

    def catalog(self) -> dict[str, Region]:
        return load_region_catalog(self.path or os.environ.get("ASTRID_REGION_CATALOG") or None)

    def region(self, key: str) -> Region:
        return resolve_region(key, self.catalog())
