"""What an archive client hands back for one epoch, and the inventory row that describes it.

URLs and queries in records, FITS provenance keywords and image sources are
stripped of credentials and tokens (:func:`astrid_pipeline.archives.redact.strip_secrets`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datetime as dt
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from astrid_pipeline.archives.redact import strip_secrets

if TYPE_CHECKING:  # for annotations only
    from astropy.io import fits

#: inventory status values
DOWNLOADED, CACHED, SKIPPED, FAILED = "downloaded", "cached", "skipped", "failed"
SIMULATED, LOCAL = "simulated", "local"


@dataclass
class ObservationRecord:
    """One row of the observation inventory (see :mod:`astrid_pipeline.assets.inventory` for units)."""

    region: str
    epoch: str  # science | reference | candidate (listed, not chosen)
    archive: str
    obs_id: str = ""
    ra: float = math.nan
    dec: float = math.nan
    obs_mjd: float = math.nan
    survey: str = ""
    instrument: str = ""
    filter: str = ""
    exptime_s: float = math.nan
    url: str = ""
    file_path: str = ""
    shape: str = ""
    pixscale_arcsec: float = math.nan
    status: str = ""
    reason: str = ""
    query: str = ""
    product: str = ""

    def __post_init__(self):
        self.url, self.query, self.reason = strip_secrets(self.url), strip_secrets(self.query), \
            strip_secrets(self.reason)

    @property
    def downloaded(self) -> bool:
        return self.status == DOWNLOADED

    def to_row(self) -> dict:
        d = asdict(self)
        for key in ("url", "query", "reason"):  # fields may have been set after construction
            d[key] = strip_secrets(d[key])
        d["downloaded"] = self.status == DOWNLOADED
        d["cached"] = self.status == CACHED
        d["skipped"] = self.status == SKIPPED
        d["failed"] = self.status == FAILED
        return d


@dataclass
class EpochImage:
    """One fetched image: the FITS in memory, where it came from, and its inventory row(s)."""

    hdul: fits.HDUList
    source: str
    record: ObservationRecord
    extra_records: list[ObservationRecord] = field(default_factory=list)

    def __post_init__(self):
        self.source = strip_secrets(self.source)


def option(region, key: str, default=None):
    """A region-catalog option, treating a missing key, None and a blank CSV cell alike (-> ``default``)."""
    value = region.options.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return value.strip() if isinstance(value, str) else value


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def stamp_provenance(path: Path, *, archive: str, url: str, query: str) -> None:
    """Add provenance keywords to a downloaded FITS in place (the original header is kept).

    ``url`` and ``query`` are stored without credentials or tokens.
    """
    from astropy.io import fits

    url, query = strip_secrets(url), strip_secrets(query)
    with fits.open(path, mode="update", memmap=False) as hdul:
        h = hdul[0].header
        h["ARCHSRC"] = (archive, "archive this file was retrieved from")
        h["RETRIEVD"] = (utc_now(), "UTC time of retrieval")
        h["ARCHURL"] = url[:68]  # the full URL and query are in HISTORY
        h["ARCHQURY"] = query[:68]
        for i in range(0, len(url), 70):
            h.add_history(f"url: {url[i:i + 70]}")
        for i in range(0, len(query), 70):
            h.add_history(f"query: {query[i:i + 70]}")


def describe_image(path: Path, record: ObservationRecord) -> ObservationRecord:
    """Fill shape, pixel scale, RA/Dec, exposure, filter and time from the file's own header."""
    from astropy.io import fits

    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    with fits.open(path, memmap=False) as hdul:
        hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim >= 2), hdul[0])
        header = hdu.header.copy()
        if hdu is not hdul[0]:
            for k, v in hdul[0].header.items():
                if k not in header and k not in ("", "COMMENT", "HISTORY"):
                    header[k] = v
        shape = hdu.data.shape if hdu.data is not None else ()
    record.shape = "x".join(str(n) for n in shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            w = WCS(header).celestial
            if w.has_celestial:
                record.pixscale_arcsec = float(np.mean(proj_plane_pixel_scales(w)) * 3600)
                if len(shape) >= 2:
                    c = w.pixel_to_world((shape[-1] - 1) / 2, (shape[-2] - 1) / 2)
                    c = c.icrs
                    record.ra, record.dec = float(c.ra.deg), float(c.dec.deg)
        except Exception:  # a header without a WCS keeps NaN here; the sky branch reports it by name
            pass
    for key in ("EXPTIME", "EXPOSURE", "TEXPTIME"):
        if key in header and math.isnan(record.exptime_s):
            try:
                record.exptime_s = float(header[key])
            except (TypeError, ValueError):
                pass
    if math.isnan(record.obs_mjd):
        for key in ("MJD-OBS", "MJD_OBS", "MJD"):
            if key in header:
                try:
                    record.obs_mjd = float(header[key])
                    break
                except (TypeError, ValueError):
                    pass
    if not record.filter:
        record.filter = str(header.get("FILTER", header.get("HIERARCH FPA.FILTER", "")) or "")
    return record


def load_fits(path: Path) -> fits.HDUList:
    from astrid_pipeline.io.fits_io import open_fits

    return open_fits(path)


def recall_epoch(cache, archive: str, key: dict, url: str) -> EpochImage | None:
    """The epoch a previous run resolved the query ``key`` to, from the download cache (no request), or None.

    ``cache`` is a :class:`astrid_pipeline.archives.http.DownloadCache`; the
    record keeps the inventory row and the skipped products, so a cached
    region's inventory reads as it did when it was downloaded (status ``cached``).
    """
    hit = cache.recall(archive, key, url)
    if hit is None:
        return None
    path, doc = hit
    try:
        rec = ObservationRecord(**doc["record"])
        extra = [ObservationRecord(**r) for r in doc.get("skipped", [])]
    except (KeyError, TypeError):  # a record written by another version: ask the service again
        return None
    rec.status, rec.file_path = CACHED, str(path)
    return EpochImage(load_fits(path), rec.url or str(path), rec, extra_records=extra)


def cache_first(cache, archive: str, key: dict, url: str, fetch, *, refresh: bool = False) -> EpochImage:
    """The cached epoch of the query ``key`` (no request), else ``fetch()`` and remember what it resolved to.

    Every network client goes through here, so a region whose products are
    cached re-runs while the service is down; ``refresh=True`` asks the
    service anyway (new observations can change the chosen epochs).
    """
    if not refresh:
        cached = recall_epoch(cache, archive, key, url)
        if cached is not None:
            return cached
    image = fetch()
    remember_epoch(cache, archive, key, image)
    return image


def remember_epoch(cache, archive: str, key: dict, image: EpochImage) -> None:
    """Record what the query ``key`` resolved to, for :func:`recall_epoch`."""
    rec = asdict(image.record)
    cache.remember(archive, key, image.record.file_path,
                   {"record": rec, "skipped": [asdict(r) for r in image.extra_records]})
