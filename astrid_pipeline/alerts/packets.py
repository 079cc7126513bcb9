"""ZTF-schema (v4.02) Avro alert packets from a candidate catalog and its images.

:func:`write_alerts` writes one Avro container file per region and epoch,
one record per candidate, with fastavro; any Avro reader opens it (the full
schema is embedded in the file). :func:`read_alerts` reads it back.

What each ``candidate`` field holds (every schema field is present; those
AstrID cannot know are null, the schema's default):

- ``jd``: JD (UTC) at the exposure start (:mod:`.photometry`); ``fid``: band
  (1 g, 2 r, 3 i as ZTF; AstrID adds 4 z, 5 y, 6 u, 0 other);
- ``candid`` / ``pid`` / ``rfid`` / ``field`` / ``rcid`` / ``programid`` /
  ``nid`` / ``tblid``: AstrID's identifiers (:mod:`.ids`);
- ``isdiffpos``: ``t`` for a brightening, ``f`` for a fading;
- ``xpos``, ``ypos``: 1-based pixel position on the science grid (FITS /
  SExtractor convention, as ZTF); ``ra``, ``dec``: ICRS degrees;
- ``magpsf``, ``sigmapsf``: from the candidate's PSF flux of the change and
  its error with the science zero point; ``magzpsci`` null means the
  magnitudes are instrumental (no zero point in the header);
- ``diffmaglim``: 5-sigma limit from the difference's point-source flux error
  image when given; ``magap`` / ``magapbig``: 14 and 18 px diameter apertures
  on the difference in science counts;
- ``distnr``, ``magnr``, ``ranr``, ``decnr``: the nearest source (SEP,
  5 sigma) of the template within 30 arcsec; ``ranr``/``decnr`` are NaN (the
  schema makes them required) and the others null when there is none;
- ``fwhm``, ``aimage``, ``bimage``, ``elong`` and their ratios: the
  candidate's shape in the difference; ``nneg``, ``nbad``, ``sumrat`` on the
  5x5 pixels around it (sign-corrected difference; bad pixels from the mask);
- ``scorr``: the peak |S_corr|; ``rb`` and ``drb``: the AstrID real/bogus
  CNN's score (column ``rb`` of the catalog) with ``rbversion`` /
  ``drbversion`` naming the model; null when no score was given;
- ``ndethist`` = ``ncovhist`` = 1, ``jdstarthist`` = ``jdendhist`` = ``jd``:
  AstrID keeps no detection history yet (``prv_candidates`` and
  ``fp_hists`` are null); PS1, Gaia and solar-system matches are null
  (``nmtchps`` = ``nmatches`` = 0);
- ``jdstartref``, ``jdendref``, ``nframesref``: from the template header
  (``MJD-BEG``/``MJD-END`` or ``MJD-OBS``, ``NCOMBINE``).

The three cutouts are 63x63 gzipped FITS stamps with WCS (:mod:`.stamps`).
The difference stamp is in science counts: a ZOGY D (header ``F_D``) is
divided by its flux zero point ``F_D``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from astrid_pipeline.setting import setting

from . import ids
from .errors import AlertInputError
from .photometry import ZeroPoint, exposure_start_jd, jd_of_mjd, limiting_magnitude, psf_magnitudes, zero_point
from .schema import SCHEMA_VERSION, record_fields

log = logging.getLogger(__name__)

#: ZTF's filter ids (1 g, 2 r, 3 i) and AstrID's extension for other bands; 0 = unknown
FILTER_IDS = {"g": 1, "r": 2, "i": 3, "z": 4, "y": 5, "u": 6}
REQUIRED_COLUMNS = ("candidate_id", "x", "y", "ra", "dec", "flux", "flux_err", "snr", "sign")


@dataclass
class AlertSettings:
    """How alert packets are written (every field is a setting of the alert asset)."""

    stamp_size: int = setting(63, "side of the science / template / difference stamps (ZTF: 63 px)")
    publisher: str = setting("AstrID", "the packet's publisher field")
    programid: int = setting(0, "value of the ZTF programid slot (0: not a ZTF programme)")
    codec: str = setting("null", "Avro block codec: null (any reader) or deflate")
    reference_radius_arcsec: float = setting(30.0, "search radius for the nearest template source (distnr, magnr)")
    reference_nsigma: float = setting(5.0, "detection threshold of template sources, in background sigma")
    only_clean: bool = setting(False, "write packets only for candidates with flags == 0")


@dataclass
class AlertImages:
    """The images behind one region and epoch's candidates, all on the science pixel grid.

    ``science``: the science image (counts, background subtracted or not);
    ``reference``: the template resampled onto the science grid and in
    science counts (the flux-matched reference); ``difference``: the
    difference image (ZOGY D with ``F_D`` in its header, or a difference in
    science counts); ``wcs``: the celestial WCS of the science grid.
    """

    science: np.ndarray
    reference: np.ndarray
    difference: np.ndarray
    wcs: Any
    science_header: Any
    reference_header: Any = None
    difference_header: Any = None
    flux_err: np.ndarray | None = None  # 1-sigma PSF flux error image (science counts), for diffmaglim
    bad_mask: np.ndarray | None = None  # True = bad pixel (nbad)
    science_name: str = ""
    reference_name: str = ""
    difference_name: str = ""

    def check(self) -> None:
        shape = np.shape(self.science)
        if len(shape) != 2:
            raise AlertInputError(f"the science image must be 2-D, got shape {shape}")
        for name in ("reference", "difference", "flux_err", "bad_mask"):
            a = getattr(self, name)
            if a is not None and np.shape(a) != shape:
                raise AlertInputError(f"the {name} image has shape {np.shape(a)}, the science image {shape}: "
                                      "all alert images must be on the science pixel grid")
        if self.wcs is None or not getattr(self.wcs, "has_celestial", False):
            raise AlertInputError("the science grid has no celestial WCS: stamps would not be placed on the sky")


def alert_images_from_files(science: str | os.PathLike, reference: str | os.PathLike,
                            difference: str | os.PathLike, reference_raw: str | os.PathLike | None = None,
                            bad_mask: np.ndarray | None = None) -> AlertImages:
    """:class:`AlertImages` from the sky branch's FITS products (explicit paths, no data layout).

    ``science`` / ``reference``: the normalised (background-subtracted,
    flux-matched) images on the science grid; ``difference``: the ZOGY file
    (D, with ``F_D`` and a ``FLUXERR`` extension when present);
    ``reference_raw``: the template as fetched, for its epoch keywords
    (``MJD-OBS``, ``NCOMBINE``) when the resampled one lacks them.
    """
    from astropy.wcs import WCS

    from astrid_pipeline.io.fits_io import open_fits

    def primary(path, ext_names=()):
        h = open_fits(path)
        try:
            data = np.array(h[0].data, dtype=np.float64)
            hdr = h[0].header.copy()
            exts = {n: np.array(h[n].data, dtype=np.float64) for n in ext_names if n in h}
        finally:
            h.close()
        return data, hdr, exts

    sci, sh, _ = primary(science)
    ref, rh, _ = primary(reference)
    diff, dh, exts = primary(difference, ("FLUXERR",))
    if reference_raw is not None:
        h = open_fits(reference_raw)
        try:
            raw = h[0].header
            for key in ("MJD-OBS", "MJD-BEG", "MJD-END", "DATE-OBS", "NCOMBINE", "TIMESYS", "EXPTIME"):
                if key in raw and key not in rh:
                    rh[key] = raw[key]
        finally:
            h.close()
    import warnings

    from astropy.wcs import FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(sh).celestial
    return AlertImages(sci, ref, diff, wcs, sh, rh, dh, flux_err=exts.get("FLUXERR"), bad_mask=bad_mask,
                       science_name=Path(science).name, reference_name=Path(reference).name,
                       difference_name=Path(difference).name)


def filter_id(band: str | None) -> int:
    """ZTF ``fid`` of a band name (``r``, ``ZTF_r``, ``SDSS r'``, ``i DECam SDSS c0003 ...``); 0 if unknown."""
    if not band:
        return 0
    b = str(band).strip()
    low = b.lower()
    for prefix in ("ztf_", "ztf-", "sdss", "ps1", "decam", "hsc-", "lsst"):
        if low.startswith(prefix):
            low = low[len(prefix):].lstrip(" _-")
    head = low.split()[0].rstrip("'") if low.split() else ""
    return FILTER_IDS.get(head[:1], 0) if len(head) <= 2 else 0


def _header_value(header, key, default=None):
    if header is None:
        return default
    try:
        v = header.get(key, default)
    except AttributeError:
        return default
    return default if v is None else v


def _float_or_none(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _stamp5(img, x, y):
    h = 2
    ny, nx = img.shape
    cx, cy = int(round(x)), int(round(y))
    out = np.full((5, 5), np.nan)
    y0, y1, x0, x1 = max(0, cy - h), min(ny, cy + h + 1), max(0, cx - h), min(nx, cx + h + 1)
    if y0 < y1 and x0 < x1:
        out[y0 - (cy - h):y1 - (cy - h), x0 - (cx - h):x1 - (cx - h)] = img[y0:y1, x0:x1]
    return out


def _reference_sources(reference: np.ndarray, nsigma: float):
    """Sources of the template (x, y, flux) by SEP on the background-subtracted template."""
    from astrid_pipeline.science.background import estimate_background
    from astrid_pipeline.science.stars import detect_sources

    ref = np.asarray(reference, dtype=np.float64)
    bad = ~np.isfinite(ref)
    if bad.all():
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    bk = estimate_background(ref, bad)
    src = detect_sources(np.where(bad, 0.0, ref - bk.level), bk.rms, threshold=nsigma, mask=bad, minarea=5)
    if len(src) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    flux = np.asarray(src["flux"], float)
    err = np.sqrt(np.maximum(np.asarray(src["npix"], float), 1.0)) * float(bk.global_rms)
    return np.asarray(src["x"], float), np.asarray(src["y"], float), flux, err


def _aperture(diff_counts, x, y, radius, noise):
    import sep

    from astrid_pipeline.science.background import as_sep_array

    d = as_sep_array(np.nan_to_num(diff_counts, nan=0.0), np.float64)
    mask = as_sep_array(~np.isfinite(diff_counts), np.uint8)
    f, e, _ = sep.sum_circle(d, np.asarray(x, float), np.asarray(y, float), radius, err=float(noise), mask=mask,
                             subpix=5)
    return np.asarray(f, float), np.asarray(e, float)


def build_alerts(candidates: pd.DataFrame, images: AlertImages, *, region: str, band: str | None = None,
                 settings: AlertSettings | None = None, rb_version: str = "") -> tuple[list[dict], dict]:
    """Alert records (dicts in the ZTF v4.02 ``alert`` schema) and metadata for one region and epoch."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    from astrid_pipeline import __version__
    from astrid_pipeline.science.zogy import robust_std

    from .stamps import stamp_bytes

    settings = settings or AlertSettings()
    images.check()
    missing = [c for c in REQUIRED_COLUMNS if c not in candidates.columns]
    if missing:
        raise AlertInputError(f"the candidate table lacks columns {missing} (it needs {list(REQUIRED_COLUMNS)})")
    cands = candidates.reset_index(drop=True)
    if settings.only_clean and "flags" in cands:
        cands = cands[cands["flags"] == 0].reset_index(drop=True)
    sh = images.science_header
    rh = images.reference_header
    dh = images.difference_header
    band = band or _header_value(sh, "FILTER", "")
    fid = filter_id(band)
    if fid == 0:
        log.warning("band %r is not one of %s: fid = 0 in the alerts", band, sorted(FILTER_IDS))
    mjd = float(cands["mjd"].iloc[0]) if "mjd" in cands and len(cands) and np.isfinite(cands["mjd"].iloc[0]) else None
    from astrid_pipeline.io.fits_io import exptime_of

    exptime = exptime_of(sh) if sh is not None else None
    jd, time_source = exposure_start_jd(sh if sh is not None else {}, mjd, exptime)
    if mjd is None:
        mjd = jd - 2400000.5
    zp: ZeroPoint = zero_point(sh if sh is not None else {})
    pid = ids.processing_id(region, mjd)
    ref_scale = str(_header_value(rh, "TIMESYS", "UTC")).lower() if rh is not None else "utc"
    ref_mjd = _float_or_none(_header_value(rh, "MJD-OBS"))
    ref_beg = _float_or_none(_header_value(rh, "MJD-BEG")) or ref_mjd
    ref_end = _float_or_none(_header_value(rh, "MJD-END")) or ref_mjd
    rfid = ids.processing_id(region, ref_mjd) if ref_mjd is not None else 0
    nframes = int(_float_or_none(_header_value(rh, "NCOMBINE")) or 1)
    if ref_beg is None:
        log.warning("the template header has no MJD-OBS/MJD-BEG: jdstartref and jdendref are NaN")

    sci = np.asarray(images.science, np.float64)
    ny, nx = sci.shape
    diff = np.asarray(images.difference, np.float64)
    f_d = _float_or_none(_header_value(dh, "F_D"))
    if f_d and f_d > 0 and str(_header_value(dh, "DIFFMETH", "ZOGY")).upper().startswith("ZOGY"):
        diff_counts = diff / f_d
        diff_note = f"ZOGY D / F_D (F_D = {f_d:.6g}): science counts"
    else:
        diff_counts = diff
        diff_note = "as given (science counts)"
    diff_noise = robust_std(diff_counts) or 1.0
    bunit = str(_header_value(sh, "BUNIT", "") or "")
    scale_arcsec = float(np.mean(proj_plane_pixel_scales(images.wcs.celestial)) * 3600.0)
    sky = _float_or_none(_header_value(sh, "BKGSCI")) or _float_or_none(_header_value(sh, "SKYLEVEL"))
    diffmaglim = limiting_magnitude(images.flux_err, zp) if images.flux_err is not None else None

    x = cands["x"].to_numpy(float)
    y = cands["y"].to_numpy(float)
    sign = np.where(cands["sign"].to_numpy() < 0, -1, 1)
    mag, sig = psf_magnitudes(cands["flux"].to_numpy(float), cands["flux_err"].to_numpy(float), zp)
    if len(cands):
        ap14, ap14e = _aperture(diff_counts, x, y, 7.0, diff_noise)  # 14 px diameter, as ZTF's magap
        ap18, ap18e = _aperture(diff_counts, x, y, 9.0, diff_noise)  # 18 px diameter, as ZTF's magapbig
        ap14, ap18 = ap14 * sign, ap18 * sign  # a fading is measured on ref - sci, as ZTF's negative subtraction
    else:
        ap14 = ap14e = ap18 = ap18e = np.zeros(0)
    magap, sigmagap = psf_magnitudes(np.where(ap14 > 0, ap14, np.nan), ap14e, zp)
    magapbig, sigmagapbig = psf_magnitudes(np.where(ap18 > 0, ap18, np.nan), ap18e, zp)
    rx, ry, rflux, rerr = _reference_sources(images.reference, settings.reference_nsigma)
    from scipy.ndimage import median_filter

    numbers = cands["candidate_id"].to_numpy(np.int64)
    candids = ids.candidate_ids(region, mjd, numbers)
    ids.assert_unique(candids, f"candidate ids of region {region!r}")
    rb = cands["rb"].to_numpy(float) if "rb" in cands else np.full(len(cands), np.nan)
    rb_version = rb_version or (str(cands.attrs.get("rb_version", "")) if "rb" in cands else "")

    cand_fields = [f["name"] for f in record_fields("candidate")]
    alert_fields = [f["name"] for f in record_fields("alert")]
    records = []
    for k in range(len(cands)):
        row = cands.iloc[k]
        d = dict.fromkeys(cand_fields)
        s = int(sign[k])
        st5 = _stamp5(diff_counts * s, x[k], y[k])
        fin = np.isfinite(st5)
        med5 = median_filter(np.nan_to_num(st5), size=3, mode="nearest")
        sumabs = float(np.abs(med5[fin]).sum()) if fin.any() else 0.0
        nb = 0
        if images.bad_mask is not None:
            bm = _stamp5(np.asarray(images.bad_mask, float), x[k], y[k])
            nb = int(np.nansum(bm > 0))
        # nearest template source within the radius
        distnr = magnr = sigmagnr = None
        ranr = decnr = float("nan")
        if rx.size:
            dd = np.hypot(rx - x[k], ry - y[k])
            j = int(np.argmin(dd))
            if dd[j] * scale_arcsec <= settings.reference_radius_arcsec:
                distnr = float(dd[j])
                sky_nr = images.wcs.celestial.pixel_to_world(rx[j], ry[j])
                ranr, decnr = float(sky_nr.ra.deg), float(sky_nr.dec.deg)
                if rflux[j] > 0:
                    m_nr, s_nr = psf_magnitudes([rflux[j]], [rerr[j]], zp)
                    magnr, sigmagnr = float(m_nr[0]), float(s_nr[0])
        a = _float_or_none(row.get("a"))
        b = _float_or_none(row.get("b"))
        fw = _float_or_none(row.get("fwhm"))
        rbk = _float_or_none(rb[k])
        ma = _float_or_none(magap[k])
        d.update({
            "jd": jd, "fid": fid, "pid": int(pid), "diffmaglim": diffmaglim,
            "pdiffimfilename": images.difference_name or None, "programid": int(settings.programid),
            "candid": int(candids[k]), "isdiffpos": "t" if s > 0 else "f", "tblid": int(numbers[k]),
            "nid": ids.night_id(mjd), "rcid": 0, "field": ids.field_id(region),
            "xpos": float(x[k] + 1.0), "ypos": float(y[k] + 1.0), "ra": float(row["ra"]), "dec": float(row["dec"]),
            "magpsf": float(mag[k]), "sigmapsf": float(sig[k]),
            "magap": ma, "sigmagap": _float_or_none(sigmagap[k]),
            "distnr": distnr, "magnr": magnr, "sigmagnr": sigmagnr, "sky": sky,
            "magdiff": (ma - float(mag[k])) if ma is not None and np.isfinite(mag[k]) else None,
            "fwhm": fw, "mindtoedge": float(min(x[k], y[k], nx - 1 - x[k], ny - 1 - y[k])),
            "magfromlim": (diffmaglim - ma) if (diffmaglim is not None and ma is not None) else None,
            "aimage": a, "bimage": b,
            "aimagerat": (a / fw) if (a and fw) else None, "bimagerat": (b / fw) if (b and fw) else None,
            "elong": (a / b) if (a and b) else None,
            "nneg": int((st5[fin] < 0).sum()), "nbad": nb, "rb": rbk,
            "sumrat": (float(med5[fin].sum()) / sumabs) if sumabs > 0 else None,
            "magapbig": _float_or_none(magapbig[k]), "sigmagapbig": _float_or_none(sigmagapbig[k]),
            "ranr": ranr, "decnr": decnr,
            "ndethist": 1, "ncovhist": 1, "jdstarthist": jd, "jdendhist": jd,
            "scorr": float(abs(row["snr"])), "tooflag": 0, "nmtchps": 0, "rfid": int(rfid),
            "jdstartref": jd_of_mjd(ref_beg, ref_scale) if ref_beg is not None else float("nan"),
            "jdendref": jd_of_mjd(ref_end, ref_scale) if ref_end is not None else float("nan"),
            "nframesref": nframes, "rbversion": rb_version,
            "magzpsci": zp.value if zp.calibrated else None,
            "magzpsciunc": zp.uncertainty if zp.calibrated else None,
            "magzpscirms": zp.rms if zp.calibrated else None,
            "nmatches": 0, "exptime": exptime, "drb": rbk, "drbversion": rb_version,
        })
        cid = int(candids[k])
        stamps = {}
        for key, img, role, unit, name in (
                ("cutoutScience", sci, "science", bunit, images.science_name),
                ("cutoutTemplate", images.reference, "template", bunit, images.reference_name),
                ("cutoutDifference", diff_counts, "difference", bunit, images.difference_name)):
            extra = {"MAGZP": (zp.value, "science mag of 1 count (0: instrumental)")}
            stamps[key] = {"fileName": f"candid{cid}_{role}.fits.gz" if not name else f"{Path(name).name}:{cid}",
                           "stampData": stamp_bytes(img, images.wcs, x[k], y[k], settings.stamp_size, role=role,
                                                    bunit=unit, candid=cid, extra=extra)}
        alert = dict.fromkeys(alert_fields)
        alert.update({"schemavsn": SCHEMA_VERSION, "publisher": f"{settings.publisher} {__version__}",
                      "objectId": ids.object_id(row["ra"], row["dec"]), "candid": cid, "candidate": d,
                      "prv_candidates": None, "fp_hists": None, **stamps})
        records.append(alert)
    meta = {"n_alerts": len(records), "region": region, "jd": jd, "mjd": mjd, "time_source": time_source,
            "fid": fid, "band": band, "zero_point": zp.as_dict(), "photometry": "calibrated" if zp.calibrated else
            "instrumental", "difference_stamps": diff_note, "pid": int(pid), "rfid": int(rfid),
            "n_template_sources": int(rx.size), "rb_version": rb_version, "schema_version": SCHEMA_VERSION}
    return records, meta


def write_alerts(candidates: pd.DataFrame, images: AlertImages, out_path: str | os.PathLike, *, region: str,
                 band: str | None = None, settings: AlertSettings | None = None, rb_version: str = "") -> dict:
    """Write the alerts of one region and epoch to one Avro file (atomically); returns metadata."""
    from fastavro import writer
    from fastavro.validation import ValidationError, validate_many

    from astrid_pipeline.io.atomic import atomic_path

    from .schema import alert_schema

    settings = settings or AlertSettings()
    if settings.codec not in ("null", "deflate"):
        raise AlertInputError(f"codec {settings.codec!r}: null or deflate")
    records, meta = build_alerts(candidates, images, region=region, band=band, settings=settings,
                                 rb_version=rb_version)
    schema = alert_schema()
    try:
        validate_many(records, schema, raise_errors=True)
    except ValidationError as exc:
        raise AlertInputError(f"region {region!r}: an alert does not fit the ZTF v{SCHEMA_VERSION} schema: "
                              f"{str(exc)[:500]}") from None
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as fh:
            writer(fh, schema, records, codec=settings.codec,
                   metadata={"astrid.region": region, "astrid.photometry": meta["photometry"]})
    meta["path"] = str(Path(out_path))
    meta["bytes"] = Path(out_path).stat().st_size
    return meta


def read_alerts(path: str | os.PathLike) -> list[dict]:
    """Every alert record of an Avro file (any ZTF-schema file, ours or ZTF's)."""
    from fastavro import reader

    from astrid_pipeline.errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such alert file")
    try:
        with open(p, "rb") as fh:
            return list(reader(fh))
    except (ValueError, EOFError, OSError) as exc:
        raise InputFileError(p, f"is not a readable Avro file ({type(exc).__name__}: {exc})") from None
