"""MAST (HST, JWST, PS1, TESS, GALEX, ...) through astroquery.mast Observations.

astroquery does the MAST portal protocol: ``Observations.query_criteria``
(observations around a position, filtered by collection, instrument, filter,
time range and product type) and ``Observations.get_product_list``. We
classify every product (science FITS image, or skipped with a reason: JPEG
previews, TESS full-frame images, auxiliary/calibration files, non-images),
pick one science image per epoch, and download it with our HTTP layer
(retries, rate limit, size check against the size MAST reports, verified
atomic write, cache).

Epochs: the science epoch is the newest matching observation, the reference
the oldest (a different observation), unless the region pins
``mast_science_obs_id`` / ``mast_reference_obs_id``.

astroquery runs on our HTTP session (:func:`mast_observations`): every portal
request gets the policy's timeout, the shared rate limit and the deadline,
and astroquery's own 600 s portal limit becomes the policy's ``deadline_s``.
The download cache is looked up before any query: a region whose products
are cached re-runs with no request, also while MAST is down.
"""

from __future__ import annotations

import math
from pathlib import Path

from astrid_pipeline.archives.errors import ArchiveConfigError, BadDownloadError, NoDataError
from astrid_pipeline.archives.http import DownloadCache, HttpClient, full_url, verify_fits
from astrid_pipeline.archives.records import (
    CACHED, DOWNLOADED, SKIPPED, EpochImage, ObservationRecord, cache_first, describe_image, load_fits, option,
    stamp_provenance,
)
from astrid_pipeline.regions import Region

MAST_DOWNLOAD_URL = "https://mast.stsci.edu/api/v0.1/Download/file"
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fts")
PREVIEW_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif")
TESS_FFI_GROUPS = {"FFIC", "FFIR", "FFI"}
#: preferred science products, best first: drizzled/resampled mosaics, then calibrated single exposures
PREFERRED_SUBGROUPS = ("DRZ", "DRC", "I2D", "SKYCELL", "STACK", "INT", "CAL", "FLC", "FLT", "C0F", "C0M",
                       "D0F", "D0M", "C1F", "C1M")


def _s(value) -> str:
    if value is None:
        return ""
    try:
        if hasattr(value, "mask") and bool(value.mask):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value).strip()


def _f(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def classify_product(row) -> str:
    """Empty string when the product is a usable science FITS image, else the reason it is skipped."""
    name = _s(row["productFilename"]).lower()
    group = _s(row["productSubGroupDescription"]).upper()
    coll = _s(row["obs_collection"]).upper()
    if name.endswith(PREVIEW_SUFFIXES):
        return "preview image (JPEG/PNG): never used as data"
    if coll == "TESS" and (group in TESS_FFI_GROUPS or "-ffic" in name or "-ffir" in name or "ffi" in group.lower()):
        return "TESS full-frame image (whole 24x24 deg camera frame): use a TESScut cutout, not the FFI"
    if not name.endswith(FITS_SUFFIXES):
        return f"not a FITS file ({Path(name).suffix or 'no extension'})"
    ptype = _s(row["productType"]).upper()
    if ptype != "SCIENCE":
        return f"{ptype.lower() or 'unlabelled'} product, not science"
    dptype = _s(row["dataproduct_type"]).lower()
    if dptype and dptype != "image":
        return f"data product type {dptype!r}, not an image"
    return ""


def mast_observations(http: HttpClient):
    """An astroquery ``ObservationsClass`` of our own that sends every request through ``http``'s session.

    Not astroquery's module-level singleton (whose settings other code
    shares): this one's portal and service connections use our session, so
    each request has ``timeout_s``, the shared rate limit, the deadline watch
    and the size check; its portal time limit (astroquery's ``TIMEOUT``,
    600 s by default) is ``deadline_s``. astroquery's response hook, which
    formats every request's headers (``Authorization`` included) for its
    debug log, is not on our session.
    """
    from astroquery.mast import ObservationsClass

    obs = ObservationsClass()
    session = http.session
    for holder in (obs, getattr(obs, "_portal_api_connection", None), getattr(obs, "_service_api_connection", None)):
        if holder is not None:
            holder._session = session
    auth = getattr(obs, "_auth_obj", None)
    if auth is not None and hasattr(auth, "session"):
        auth.session = session
    for conn in (obs._portal_api_connection, getattr(obs, "_service_api_connection", None)):
        if conn is not None and hasattr(conn, "TIMEOUT"):
            conn.TIMEOUT = http.policy.deadline_s
    return obs


def _rank(row) -> int:
    group = _s(row["productSubGroupDescription"]).upper()
    return PREFERRED_SUBGROUPS.index(group) if group in PREFERRED_SUBGROUPS else len(PREFERRED_SUBGROUPS)


class MastArchive:
    name = "mast"

    def __init__(self, http: HttpClient, cache: DownloadCache, *, collection: str = "HST", filters: str = "",
                 instrument: str = "", radius_arcmin: float = 1.0, t_min_mjd: float | None = None,
                 t_max_mjd: float | None = None, download_url: str = MAST_DOWNLOAD_URL, observations=None,
                 refresh: bool = False):
        if radius_arcmin <= 0:
            raise ArchiveConfigError(f"MAST search radius {radius_arcmin} arcmin must be positive")
        self.http, self.cache = http, cache
        self.collection, self.filters, self.instrument = collection, filters, instrument
        self.radius_arcmin, self.t_min, self.t_max = float(radius_arcmin), t_min_mjd, t_max_mjd
        self.download_url = download_url
        self.refresh = bool(refresh)  # True: ask MAST even when the region's products are cached
        self._observations = observations  # an astroquery ObservationsClass; default: one on our session

    @property
    def observations(self):
        if self._observations is None:
            self._observations = mast_observations(self.http)
        return self._observations

    # ------------------------------------------------------------------ query
    def criteria(self, region: Region) -> dict:
        crit: dict = {"obs_collection": str(option(region, "mast_collection", self.collection)),
                      "dataproduct_type": "image"}
        filters = str(option(region, "mast_filters", self.filters) or "")
        if filters:
            crit["filters"] = [f.strip() for f in filters.split(",") if f.strip()]
        instrument = str(option(region, "mast_instrument", self.instrument) or "")
        if instrument:
            crit["instrument_name"] = instrument
        t_min, t_max = option(region, "mast_t_min", self.t_min), option(region, "mast_t_max", self.t_max)
        if t_min is not None or t_max is not None:
            try:
                crit["t_min"] = [float(t_min) if t_min is not None else 0.0,
                                 float(t_max) if t_max is not None else 1e6]
            except (TypeError, ValueError) as exc:
                raise ArchiveConfigError(f"region {region.name!r}: mast_t_min/mast_t_max must be MJDs, "
                                         f"got {t_min!r}/{t_max!r}") from exc
        return crit

    def query(self, region: Region):
        """Matching observations, oldest first (astropy Table)."""
        import astropy.units as u
        from astropy.coordinates import SkyCoord

        crit = self.criteria(region)
        pos = SkyCoord(region.ra * u.deg, region.dec * u.deg, frame="icrs")
        radius = float(option(region, "mast_radius_arcmin", self.radius_arcmin))
        what = f"MAST query {crit} within {radius}' of RA={region.ra:.5f} Dec={region.dec:+.5f}"
        obs = self.http.call_with_retries(
            lambda: self.observations.query_criteria(coordinates=pos, radius=f"{radius / 60.0} deg", **crit), what)
        if obs is None or len(obs) == 0:
            raise NoDataError(what, "no observation matches")
        obs = obs[[i for i in range(len(obs)) if _s(obs["obs_id"][i]) != ""]]
        order = sorted(range(len(obs)), key=lambda i: (_f(obs["t_min"][i]), _s(obs["obs_id"][i])))
        return obs[order], what

    def products(self, obs_row):
        what = f"MAST products of observation {_s(obs_row['obs_id'])} (obsid {_s(obs_row['obsid'])})"
        return self.http.call_with_retries(lambda: self.observations.get_product_list(obs_row), what)

    def choose_observation(self, obs, region: Region, epoch: str):
        pinned = option(region, f"mast_{epoch}_obs_id")
        ids = [_s(x) for x in obs["obs_id"]]
        if pinned:
            if str(pinned) not in ids:
                raise NoDataError(None, f"MAST observation {pinned!r} pinned for the {epoch} epoch of region "
                                        f"{region.name} is not among the {len(ids)} matches")
            return obs[ids.index(str(pinned))]
        unique = list(dict.fromkeys(ids))
        if len(unique) < 2:
            raise NoDataError(None, f"MAST has only {len(unique)} distinct observation(s) for region {region.name}: "
                                    "need two epochs (or pin mast_science_obs_id / mast_reference_obs_id)")
        wanted = unique[-1] if epoch == "science" else unique[0]
        return obs[ids.index(wanted)]

    # ------------------------------------------------------------------ fetch
    def query_key(self, region: Region, epoch: str) -> dict:
        """What identifies this epoch's query (the download-cache key of its resolution)."""
        return {"region": region.name, "epoch": epoch, "ra": f"{region.ra:.6f}", "dec": f"{region.dec:.6f}",
                "criteria": self.criteria(region),
                "radius_arcmin": float(option(region, "mast_radius_arcmin", self.radius_arcmin)),
                "pinned": str(option(region, f"mast_{epoch}_obs_id", "") or ""), "download_url": self.download_url}

    def fetch_epoch(self, region: Region, epoch: str) -> EpochImage:
        return cache_first(self.cache, self.name, self.query_key(region, epoch), self.download_url,
                           lambda: self._fetch(region, epoch), refresh=self.refresh)

    def _fetch(self, region: Region, epoch: str) -> EpochImage:
        obs, what = self.query(region)
        row = self.choose_observation(obs, region, epoch)
        products = self.products(row)
        base = dict(region=region.name, epoch=epoch, archive=self.name, obs_id=_s(row["obs_id"]),
                    ra=_f(row["s_ra"]), dec=_f(row["s_dec"]), obs_mjd=_f(row["t_min"]),
                    survey=_s(row["obs_collection"]), instrument=_s(row["instrument_name"]),
                    filter=_s(row["filters"]), exptime_s=_f(row["t_exptime"]), query=what)
        skipped, usable = [], []
        for p in products:
            reason = classify_product(p)
            if reason:
                skipped.append(ObservationRecord(**base, status=SKIPPED, reason=reason,
                                                 product=_s(p["productFilename"]), url=_s(p["dataURI"])))
            else:
                usable.append(p)
        if not usable:
            raise NoDataError(what, f"observation {base['obs_id']} has no science FITS image among {len(products)} "
                                    f"products ({'; '.join(sorted({r.reason for r in skipped}))})")
        usable.sort(key=_rank)
        chosen = usable[0]
        for p in usable[1:]:
            skipped.append(ObservationRecord(**base, status=SKIPPED, product=_s(p["productFilename"]),
                                             url=_s(p["dataURI"]),
                                             reason=f"another science product of this observation preferred "
                                                    f"({_s(chosen['productFilename'])})"))
        uri = _s(chosen["dataURI"])
        params = {"uri": uri}
        shown = full_url(self.download_url, params)
        expected = int(_f(chosen["size"])) if math.isfinite(_f(chosen["size"])) and _f(chosen["size"]) > 0 else None
        dest = self.cache.path_for(self.name, self.download_url, params, Path(uri).name)
        status = CACHED
        if not self.cache.lookup(dest, shown):
            def verify(tmp: Path, u: str) -> None:
                size = tmp.stat().st_size
                if expected is not None and size != expected:
                    raise BadDownloadError(u, f"received {size} bytes but MAST lists the product at {expected} bytes")
                verify_fits(tmp, u)

            def transform(tmp: Path, u: str) -> None:
                stamp_provenance(tmp, archive=self.name, url=u, query=what)

            self.http.download(self.download_url, dest, params, verify=verify, transform=transform)
            status = DOWNLOADED
        rec = ObservationRecord(**base, url=shown, file_path=str(dest), status=status, product=Path(uri).name)
        describe_image(dest, rec)
        return EpochImage(load_fits(dest), shown, rec, extra_records=skipped)
