"""Pan-STARRS1 image cutouts (the PS1 image service at STScI), linearised.

Two requests per image, as the service documents
(https://outerspace.stsci.edu/display/PANSTARRS/PS1+Image+Cutout+Service):

1. ``ps1filenames.py?ra=..&dec=..&filters=..&type=stack`` returns a
   whitespace table (projcell subcell ra dec filter mjd type filename
   shortname badflag) naming the sky-cell image for each filter;
2. ``fitscut.cgi?ra=..&dec=..&size=<pixels>&format=fits&red=<filename>``
   returns the cutout (0.25"/pixel). FITS only: JPEG/PNG previews are never
   used as data (a non-FITS body is an error).

PS1 stacks store ``x = 2.5/ln(10) * asinh((flux - BOFFSET) / (2 * BSOFTEN))``
(asinh "luptitudes"), so the linear flux is
``flux = BOFFSET + 2 * BSOFTEN * sinh(x * ln(10) / 2.5)``. :func:`linearize_ps1`
applies that, keeps the original keywords as ``PS1BOFF``/``PS1BSOF`` and
removes ``BOFFSET``/``BSOFTEN`` so no reader applies it twice.

The download cache is looked up before the filename lookup: a region whose
cutout is cached re-runs with no request, also while the service is down.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from astrid_pipeline.archives.errors import ArchiveConfigError, BadDownloadError, NoDataError
from astrid_pipeline.archives.http import DownloadCache, HttpClient, full_url
from astrid_pipeline.archives.records import (
    CACHED, DOWNLOADED, EpochImage, ObservationRecord, cache_first, describe_image, load_fits, option,
    stamp_provenance,
)
from astrid_pipeline.regions import Region

PS1_URL = "https://ps1images.stsci.edu/cgi-bin"
PS1_FILTERS = "grizy"
PS1_PIXSCALE_ARCSEC = 0.25
_A = 2.5 / math.log(10.0)


def linearize_ps1(data: np.ndarray, boffset: float, bsoften: float) -> np.ndarray:
    """Undo PS1's asinh scaling: ``BOFFSET + 2*BSOFTEN*sinh(x / (2.5/ln 10))`` (NaN stays NaN)."""
    x = np.asarray(data, dtype=np.float64)
    return boffset + 2.0 * bsoften * np.sinh(x / _A)


def asinh_scale_ps1(flux: np.ndarray, boffset: float, bsoften: float) -> np.ndarray:
    """The forward PS1 scaling (what the service stores); the inverse of :func:`linearize_ps1`."""
    return _A * np.arcsinh((np.asarray(flux, dtype=np.float64) - boffset) / (2.0 * bsoften))


def linearize_file(path: Path, url: str) -> bool:
    """Linearise every image HDU of ``path`` that carries BOFFSET/BSOFTEN; True when one did."""
    done = False
    with fits.open(path, mode="update", memmap=False) as hdul:
        for hdu in hdul:
            h = hdu.header
            if not hdu.is_image or hdu.data is None or "BSOFTEN" not in h or "BOFFSET" not in h:
                continue
            try:
                boff, bsoft = float(h["BOFFSET"]), float(h["BSOFTEN"])
            except (TypeError, ValueError) as exc:
                raise BadDownloadError(
                    url, f"BOFFSET/BSOFTEN are not numbers ({h['BOFFSET']!r}, {h['BSOFTEN']!r})") from exc
            if not (np.isfinite(boff) and np.isfinite(bsoft) and bsoft > 0):
                raise BadDownloadError(url, f"BSOFTEN={bsoft} must be positive and BOFFSET={boff} finite")
            hdu.data = linearize_ps1(hdu.data, boff, bsoft).astype(np.float32)
            for k in ("BSCALE", "BZERO"):
                h.remove(k, ignore_missing=True)
            del h["BOFFSET"], h["BSOFTEN"]
            h["PS1BOFF"] = (boff, "PS1 BOFFSET of the asinh scaling (undone)")
            h["PS1BSOF"] = (bsoft, "PS1 BSOFTEN of the asinh scaling (undone)")
            h["PS1LIN"] = (True, "linear: BOFFSET+2*BSOFTEN*sinh(x*ln10/2.5)")
            h.add_history("astrid-pipeline: PS1 asinh scaling undone; pixels are linear flux")
            done = True
    return done


def parse_filename_table(text: str, url: str) -> list[dict]:
    """Rows of the ps1filenames.py answer; an HTML page or a missing header is an error naming the URL."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].split()[:2] != ["projcell", "subcell"]:
        start = " ".join(text.split())[:80]
        raise BadDownloadError(url, f"filename lookup did not return its table (starts with {start!r})")
    cols = lines[0].split()
    rows = []
    for ln in lines[1:]:
        parts = ln.split()
        if len(parts) != len(cols):
            raise BadDownloadError(url, f"filename table row has {len(parts)} fields, header has {len(cols)}: {ln!r}")
        rows.append(dict(zip(cols, parts)))
    return rows


class PS1CutoutArchive:
    """Science or reference images from PS1 stack (or warp) cutouts around a region."""

    name = "ps1"

    def __init__(self, http: HttpClient, cache: DownloadCache, *, base_url: str = PS1_URL, filter: str = "r",
                 size_pixels: int = 240, image_type: str = "stack", refresh: bool = False):
        if filter not in PS1_FILTERS or len(filter) != 1:
            raise ArchiveConfigError(f"PS1 filter {filter!r} is not one of {', '.join(PS1_FILTERS)}")
        if not (16 <= size_pixels <= 6000):
            raise ArchiveConfigError(f"PS1 cutout size {size_pixels} px is outside 16..6000")
        if image_type not in ("stack", "warp"):
            raise ArchiveConfigError(f"PS1 image type {image_type!r}: use 'stack' or 'warp'")
        self.http, self.cache = http, cache
        self.base_url = base_url.rstrip("/")
        self.filter, self.size, self.image_type = filter, int(size_pixels), image_type
        self.refresh = bool(refresh)  # True: ask the service even when the region's cutout is cached

    def lookup(self, ra: float, dec: float) -> list[dict]:
        url = f"{self.base_url}/ps1filenames.py"
        params = {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "filters": self.filter, "type": self.image_type}
        shown = full_url(url, params)
        rows = parse_filename_table(self.http.get_text(url, params), shown)
        rows = [r for r in rows if r.get("filter") == self.filter]
        if not rows:
            raise NoDataError(shown, f"PS1 has no {self.image_type} image in filter {self.filter} at "
                                     f"RA={ra:.5f} Dec={dec:+.5f} (PS1 covers Dec > -30 deg)")
        return rows

    def fetch_epoch(self, region: Region, epoch: str) -> EpochImage:
        filt = str(option(region, "ps1_filter", self.filter))
        client = self if filt == self.filter else PS1CutoutArchive(
            self.http, self.cache, base_url=self.base_url, filter=filt, size_pixels=self.size,
            image_type=self.image_type, refresh=self.refresh)
        return cache_first(client.cache, client.name, client.query_key(region, epoch), f"{client.base_url}/fitscut.cgi",
                           lambda: client._fetch(region, epoch), refresh=client.refresh)

    def query_key(self, region: Region, epoch: str) -> dict:
        """What identifies this epoch's cutout (the download-cache key of its resolution)."""
        return {"region": region.name, "epoch": epoch, "base_url": self.base_url, "ra": f"{region.ra:.6f}",
                "dec": f"{region.dec:.6f}", "filter": self.filter, "type": self.image_type, "size": self.size}

    def _fetch(self, region: Region, epoch: str) -> EpochImage:
        rows = self.lookup(region.ra, region.dec)
        row = rows[0]
        url = f"{self.base_url}/fitscut.cgi"
        params = {"ra": f"{region.ra:.6f}", "dec": f"{region.dec:.6f}", "size": str(self.size),
                  "format": "fits", "red": row["filename"]}
        shown = full_url(url, params)
        query = f"ps1 {self.image_type} filter={self.filter} ra={region.ra:.6f} dec={region.dec:+.6f} size={self.size}"
        dest = self.cache.path_for(self.name, url, params, f"{Path(row['filename']).stem}.cutout.fits")
        status = CACHED
        if not self.cache.lookup(dest, shown):
            def transform(tmp: Path, u: str) -> None:
                linearize_file(tmp, u)
                stamp_provenance(tmp, archive=self.name, url=u, query=query)

            self.http.download(url, dest, params, transform=transform)
            status = DOWNLOADED
        mjd = float(row.get("mjd", "nan")) if row.get("mjd") not in (None, "0") else math.nan
        rec = ObservationRecord(region=region.name, epoch=epoch, archive=self.name,
                                obs_id=row.get("shortname", Path(row["filename"]).name), obs_mjd=mjd,
                                survey=f"PS1 3pi {self.image_type}", instrument="GPC1", filter=self.filter,
                                url=shown, file_path=str(dest), status=status, query=query,
                                product=row["filename"])
        describe_image(dest, rec)
        return EpochImage(load_fits(dest), shown, rec)
