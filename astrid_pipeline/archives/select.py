"""Per-region, per-epoch archive selection.

A region's catalog entry may name the archive of each epoch
(``science_archive``, ``reference_archive``) and per-archive settings
(``skyview_survey``, ``ps1_filter``, ``mast_collection``, ...); anything it
does not name falls back to the global settings. :class:`ArchiveRouter`
builds one client per kind (sharing one HTTP client, so the per-host rate
limit and the request log cover every request) and assembles the
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


@dataclass
class ArchiveSettings:
    """Everything the clients need; the Dagster resource is a thin layer over this."""

    kind: str = "simulated"
    cache_root: str = ""
    # simulated
    image_size: int = 1024
    seed: int = 0
    # local
    local_root: str = ""
    # http
    policy: HttpPolicy = field(default_factory=HttpPolicy)
    # skyview
    skyview_url: str = "https://skyview.gsfc.nasa.gov/current/cgi/basicform.pl"
    skyview_survey: str = "DSS2 Red"
    skyview_pixels: int = 240
    skyview_pixel_scale_arcsec: float = 1.0
    # ps1
    ps1_url: str = "https://ps1images.stsci.edu/cgi-bin"
    ps1_filter: str = "r"
    ps1_size_pixels: int = 240
    ps1_image_type: str = "stack"
    # mast
    mast_download_url: str = "https://mast.stsci.edu/api/v0.1/Download/file"
    mast_collection: str = "HST"
    mast_filters: str = ""
    mast_instrument: str = ""
    mast_radius_arcmin: float = 1.0


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
        if self._http is None:
            self._http = HttpClient(self.settings.policy)
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
                               pixel_scale_arcsec=s.skyview_pixel_scale_arcsec, url=s.skyview_url)
        elif kind == "ps1":
            from astrid_pipeline.archives.ps1 import PS1CutoutArchive

            c = PS1CutoutArchive(self.http, self.cache(), base_url=s.ps1_url, filter=s.ps1_filter,
                                 size_pixels=s.ps1_size_pixels, image_type=s.ps1_image_type)
        elif kind == "mast":
            from astrid_pipeline.archives.mast import MastArchive

            c = MastArchive(self.http, self.cache(), collection=s.mast_collection, filters=s.mast_filters,
                            instrument=s.mast_instrument, radius_arcmin=s.mast_radius_arcmin,
                            download_url=s.mast_download_url)
        else:
            raise ArchiveConfigError(f"unknown archive kind {kind!r}: use one of {', '.join(KINDS)}")
        self._clients[kind] = c
        return c

    # ------------------------------------------------------------------ fetching
    def fetch_epochs(self, region: Region) -> tuple[dict[str, EpochImage], ArchivePair | None]:
        kinds = epoch_kinds(region, self.settings.kind)
        if kinds["science"] == kinds["reference"] and kinds["science"] in ("simulated", "local"):
            pair = self.client(kinds["science"]).fetch_pair(region)
            return {}, pair
        out = {}
        for epoch in EPOCHS:
            kind = kinds[epoch]
            if kind == "simulated":
                out[epoch] = self._simulated_epoch(region, epoch)
            else:
                out[epoch] = self.client(kind).fetch_epoch(region, epoch)
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

    def fetch_pair(self, region: Region) -> ArchivePair:
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
            try:
                if kind == "simulated":
                    im = self._simulated_epoch(region, epoch)
                else:
                    im = self.client(kind).fetch_epoch(region, epoch)
            except AstridError as exc:
                rows.append(ObservationRecord(region=region.name, epoch=epoch, archive=kind, ra=region.ra,
                                              dec=region.dec, status=FAILED, reason=str(exc),
                                              url=str(getattr(exc, "path", "") or "")))
                continue
            if im.record.status == SIMULATED:
                im.record.shape = "x".join(str(n) for n in im.hdul[0].data.shape)
            rows.extend([im.record, *im.extra_records])
        return rows
