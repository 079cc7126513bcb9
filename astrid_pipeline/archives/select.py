"""Per-region, per-epoch archive selection.

A region's catalog entry may name the archive of each epoch
(``science_archive``, ``reference_archive``) and per-archive settings
(``skyview_survey``, ``ps1_filter``, ``mast_collection``, ...); anything it
does not name falls back to the global settings. :class:`ArchiveRouter`
builds one client per kind (sharing one HTTP client, so the request log
covers every request; the per-host rate limit is shared further, by every
process using the same cache root) and assembles the
:class:`ArchivePair` the sky branch acquires, plus the inventory rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from astrid_pipeline.archives.base import ArchivePair
from astrid_pipeline.archives.errors import ArchiveConfigError
from astrid_pipeline.archives.http import DownloadCache, HttpClient, HttpPolicy
from astrid_pipeline.archives.records import SIMULATED, EpochImage, ObservationRecord, option
from astrid_pipeline.regions import Region

KINDS = ("simulated", "local", "skyview", "ps1", "mast")
EPOCHS = ("science", "reference")


def _d(text: str) -> dict:
    return {"description": text}


@dataclass
class ArchiveSettings:
    """Everything the clients need; the Dagster resource is a thin layer over this.

    ``policy`` is the one nested field: an :class:`~astrid_pipeline.archives.http.HttpPolicy`,
    whose own fields (simple types, with descriptions) are the HTTP settings.
    """

    kind: str = field(default="simulated", metadata=_d(
        "default archive: simulated | local | skyview | ps1 | mast (a region's science_archive / "
        "reference_archive override it)"))
    cache_root: str = field(default="", metadata=_d(
        "download cache folder; also holds the request-rate buckets shared by all processes (.ratelimit/)"))
    refresh_queries: bool = field(default=False, metadata=_d(
        "ask the services again even when a region's products are cached (new observations can change the "
        "chosen epochs); by default a cached region makes no request"))
    # simulated
    image_size: int = field(default=1024, metadata=_d("simulated survey: image side in pixels"))
    seed: int = field(default=0, metadata=_d("simulated survey: base seed (each region derives its own)"))
    # local
    local_root: str = field(default="", metadata=_d(
        "local archive: folder with <region>/science.fits and reference.fits, or a manifest.yaml"))
    # http
    policy: HttpPolicy = field(default_factory=HttpPolicy, metadata=_d(
        "HTTP behaviour of the network archives (timeouts, deadline, retries, rate limit, size limits)"))
    # skyview
    skyview_url: str = field(default="https://skyview.gsfc.nasa.gov/current/cgi/basicform.pl",
                             metadata=_d("SkyView query form URL"))
    skyview_survey: str = field(default="DSS2 Red", metadata=_d("SkyView survey (DSS2 Red, SDSSr, 2MASS-K, ...)"))
    skyview_pixels: int = field(default=240, metadata=_d("SkyView image side (pixels)"))
    skyview_pixel_scale_arcsec: float = field(default=1.0, metadata=_d("SkyView pixel scale (arcsec/pixel)"))
    # ps1
    ps1_url: str = field(default="https://ps1images.stsci.edu/cgi-bin", metadata=_d("PS1 image service base URL"))
    ps1_filter: str = field(default="r", metadata=_d("PS1 filter: g r i z y"))
    ps1_size_pixels: int = field(default=240, metadata=_d("PS1 cutout side (0.25 arcsec pixels)"))
    ps1_image_type: str = field(default="stack", metadata=_d("PS1 image type: stack or warp"))
    # mast
    mast_download_url: str = field(default="https://mast.stsci.edu/api/v0.1/Download/file",
                                   metadata=_d("MAST file download endpoint"))
    mast_collection: str = field(default="HST", metadata=_d(
        "MAST obs_collection (HST, JWST, PS1, TESS, GALEX...)"))
    mast_filters: str = field(default="", metadata=_d("MAST filters, comma-separated (empty = any)"))
    mast_instrument: str = field(default="", metadata=_d("MAST instrument_name (empty = any)"))
    mast_radius_arcmin: float = field(default=1.0, metadata=_d("MAST search radius (arcmin)"))


def epoch_kinds(region: Region, default: str) -> dict[str, str]:
    out = {}
    for epoch in EPOCHS:
        kind = str(option(region, f"{epoch}_archive", default)).strip().lower()
        if kind not in KINDS:
            raise ArchiveConfigError(f"region {region.name!r}: {epoch}_archive={kind!r} is not one of "
                                     f"{', '.join(KINDS)}")
        out[epoch] = kind
    return out


class ArchiveRouter:
    def __init__(self, settings: ArchiveSettings, *, http: HttpClient | None = None):
        if settings.kind not in KINDS:
            raise ArchiveConfigError(f"unknown archive kind {settings.kind!r}: use one of {', '.join(KINDS)}")
        self.settings = settings
        self._http = http
        self._clients: dict[str, object] = {}
        self._simulated: dict[str, ArchivePair] = {}

    @property
    def http(self) -> HttpClient:
        """One client for every archive of this router; its rate-limit buckets live in ``<cache_root>/.ratelimit``."""
        if self._http is None:
            from astrid_pipeline.archives.ratelimit import RateLimiter

            root = Path(self.settings.cache_root) / ".ratelimit" if self.settings.cache_root else None
            self._http = HttpClient(self.settings.policy, rate_limiter=RateLimiter(root))
        return self._http

    def cache(self) -> DownloadCache:
        if not self.settings.cache_root:
            raise ArchiveConfigError("network archives need a cache folder (cache_root); the resource sets it "
                                     "to <data root>/archive_cache by default")
        return DownloadCache(Path(self.settings.cache_root))

    def client(self, kind: str):
        if kind in self._clients:
            return self._clients[kind]
        s = self.settings
        if kind == "simulated":
            from astrid_pipeline.archives.simulated import SimulatedSurvey
            from astrid_pipeline.science.skysim import SurveyConfig

            c = SimulatedSurvey(SurveyConfig(shape=(s.image_size, s.image_size), seed=s.seed))
        elif kind == "local":
            from astrid_pipeline.archives.local import LocalFolderArchive

            if not s.local_root:
                raise ArchiveConfigError("archive kind 'local' needs local_root")
            c = LocalFolderArchive(s.local_root)
        elif kind == "skyview":
            from astrid_pipeline.archives.skyview import SkyViewArchive

            c = SkyViewArchive(self.http, self.cache(), survey=s.skyview_survey, pixels=s.skyview_pixels,
                               pixel_scale_arcsec=s.skyview_pixel_scale_arcsec, url=s.skyview_url,
                               refresh=s.refresh_queries)
        elif kind == "ps1":
            from astrid_pipeline.archives.ps1 import PS1CutoutArchive

            c = PS1CutoutArchive(self.http, self.cache(), base_url=s.ps1_url, filter=s.ps1_filter,
                                 size_pixels=s.ps1_size_pixels, image_type=s.ps1_image_type,
                                 refresh=s.refresh_queries)
        elif kind == "mast":
            from astrid_pipeline.archives.mast import MastArchive

            c = MastArchive(self.http, self.cache(), collection=s.mast_collection, filters=s.mast_filters,
                            instrument=s.mast_instrument, radius_arcmin=s.mast_radius_arcmin,
                            download_url=s.mast_download_url, refresh=s.refresh_queries)
        else:
            raise ArchiveConfigError(f"unknown archive kind {kind!r}: use one of {', '.join(KINDS)}")
        self._clients[kind] = c
        return c

    # ------------------------------------------------------------------ fetching
    def fetch_epochs(self, region: Region) -> tuple[dict[str, EpochImage], ArchivePair | None]:
        kinds = epoch_kinds(region, self.settings.kind)
        if kinds["science"] == kinds["reference"] and kinds["science"] in ("simulated", "local"):
            pair = self._client_for(region, kinds["science"]).fetch_pair(region)
            return {}, pair
        out = {}
        for epoch in EPOCHS:
            kind = kinds[epoch]
            if kind == "simulated":
                out[epoch] = self._simulated_epoch(region, epoch)
            else:
                out[epoch] = self._client_for(region, kind).fetch_epoch(region, epoch)
        return out, None

    def _simulated_epoch(self, region: Region, epoch: str) -> EpochImage:
        if region.name not in self._simulated:
            self._simulated = {region.name: self.client("simulated").fetch_pair(region)}
        pair = self._simulated[region.name]
        hdul = pair.science if epoch == "science" else pair.reference
        src = pair.science_source if epoch == "science" else pair.reference_source
        rec = ObservationRecord(region=region.name, epoch=epoch, archive="simulated", obs_id=src, ra=region.ra,
                                dec=region.dec, status=SIMULATED, url=src, survey="simulated survey")
        return EpochImage(hdul, src, rec)

    def _client_for(self, region: Region, kind: str):
        """The client of ``kind`` for this region: a region's own ``local_root`` gets its own local archive."""
        root = option(region, "local_root") if kind == "local" else None
        if not root or str(root) == self.settings.local_root:
            return self.client(kind)
        key = f"local:{root}"
        if key not in self._clients:
            from astrid_pipeline.archives.local import LocalFolderArchive

            if not Path(root).is_dir():
                raise ArchiveConfigError(f"region {region.name!r}: local_root {str(root)!r} is not a folder")
            self._clients[key] = LocalFolderArchive(root)
        return self._clients[key]

    def image_options(self, region: Region, kinds: dict[str, str]) -> dict[str, dict]:
        """Per-epoch image options: a local manifest's, overridden by the region's ``<epoch>_<option>`` keys.

        Simulated epochs have none (a catalog option on one is logged and ignored).
        """
        import logging

        from astrid_pipeline.archives.base import merge_image_options, region_image_options

        out = {}
        for epoch in EPOCHS:
            given = region_image_options(region.options, epoch, where=f"region {region.name!r}")
            if kinds[epoch] == "simulated":
                if given:
                    logging.getLogger(__name__).warning(
                        "region %r: %s options %s ignored: the simulated survey writes its own headers",
                        region.name, epoch, sorted(given))
                continue
            manifest = {}
            if kinds[epoch] == "local":
                manifest = self._client_for(region, "local").image_options(region.name, epoch)
            out = merge_image_options(out, {epoch: manifest}, {epoch: given})
        return out

    def fetch_pair(self, region: Region) -> ArchivePair:
        pair = self._fetch_pair(region)
        pair.image_options = self.image_options(region, epoch_kinds(region, self.settings.kind))
        return pair

    def _fetch_pair(self, region: Region) -> ArchivePair:
        epochs, pair = self.fetch_epochs(region)
        if pair is not None:
            return pair
        sci, ref = epochs["science"], epochs["reference"]
        kinds = f"{sci.record.archive}+{ref.record.archive}" if sci.record.archive != ref.record.archive \
            else sci.record.archive
        records = [sci.record, ref.record, *sci.extra_records, *ref.extra_records]
        return ArchivePair(science=sci.hdul, reference=ref.hdul, science_source=sci.source,
                           reference_source=ref.source,
                           provenance={"archive": kinds, "science_archive": sci.record.archive,
                                       "reference_archive": ref.record.archive,
                                       "inventory": [r.to_row() for r in records]})

    def inventory(self, region: Region) -> list[ObservationRecord]:
        """Fetch (or reuse from the cache) both epochs and return every inventory row; failures become rows."""
        from astrid_pipeline.archives.records import FAILED
        from astrid_pipeline.errors import AstridError

        kinds = epoch_kinds(region, self.settings.kind)
        rows: list[ObservationRecord] = []
        for epoch in EPOCHS:
            kind = kinds[epoch]
            if kind == "simulated":  # nothing to fetch: the sky branch simulates the pair when it acquires it
                size = self.settings.image_size
                src = f"simulated-survey:{region.name}:seed={self.settings.seed}:{epoch}"
                rows.append(ObservationRecord(region=region.name, epoch=epoch, archive="simulated", obs_id=src,
                                              ra=region.ra, dec=region.dec, status=SIMULATED, url=src,
                                              survey="simulated survey", shape=f"{size}x{size}"))
                continue
            try:
                im = self._client_for(region, kind).fetch_epoch(region, epoch)
            except AstridError as exc:
                rows.append(ObservationRecord(region=region.name, epoch=epoch, archive=kind, ra=region.ra,
                                              dec=region.dec, status=FAILED, reason=str(exc),
                                              url=str(getattr(exc, "path", "") or "")))
                continue
            rows.extend([im.record, *im.extra_records])
        return rows
