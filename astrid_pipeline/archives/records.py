"""What an archive client hands back for one epoch, and the inventory row that describes it."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
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

    @property
    def downloaded(self) -> bool:
        return self.status == DOWNLOADED

    def to_row(self) -> dict:
        d = asdict(self)
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


def option(region, key: str, default=None):
    """A region-catalog option, treating a missing key, None and a blank CSV cell alike (-> ``default``)."""
    value = region.options.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    return value.strip() if isinstance(value, str) else value


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def stamp_provenance(path: Path, *, archive: str, url: str, query: str) -> None:
    """Add provenance keywords to a downloaded FITS in place (the original header is kept)."""
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
