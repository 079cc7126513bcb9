"""Magnitudes and times for alert packets: zero points from the header, JD (UTC) at exposure start.

**Zero point.** The first of these found in the science header is the
magnitude of one data unit of the image (``m = ZP - 2.5 log10(counts)``):

1. ``MAGZP`` (ZTF, our simulated survey), with ``MAGZPUNC`` / ``MAGZPRMS``;
2. ``MAGZERO``, ``MAGZPT``, ``PHOTZP``, ``ZEROPT``, ``ZPMAG``, ``ZP``
   (NOIRLab community pipeline, SDSS-like and other surveys), with
   ``MAGZERR`` / ``ZPERR`` as the uncertainty when present;
3. ``PHOTFLAM`` with ``PHOTPLAM`` (HST/JWST-style, image in count rate):
   the AB zero point ``-2.5 log10(PHOTFLAM) - 5 log10(PHOTPLAM) - 2.408``
   (Sirianni et al. 2005, eq. 9; erg s^-1 cm^-2 A^-1 and A).

Without any of them the magnitudes are **instrumental**
(``-2.5 log10(counts)``, zero point 0): :attr:`ZeroPoint.calibrated` is
False, the packets carry ``magzpsci = null``, and a warning is logged.

**PSF magnitude** of a difference flux ``f`` (science counts) with error
``s``: ``magpsf = ZP - 2.5 log10 |f|`` and ``sigmapsf = 2.5 / ln 10 * s / |f|``
(the zero-point uncertainty is reported separately, as ZTF does).

**Time.** ``jd`` is the Julian date in UTC at the start of the exposure, as
ZTF's: from ``MJD-BEG``, ``MJD-OBS``, ``DATE-BEG`` or ``DATE-OBS`` (in that
order), or ``MJD-AVG`` / ``DATE-AVG`` minus half of ``EXPTIME``; in the time
scale of ``TIMESYS`` (the FITS default is UTC), converted to UTC.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import AlertInputError

log = logging.getLogger(__name__)

MJD_TO_JD = 2400000.5
_ZP_KEYS = ("MAGZP", "MAGZERO", "MAGZPT", "PHOTZP", "ZEROPT", "ZPMAG", "ZP")
_ZP_ERR_KEYS = ("MAGZPUNC", "MAGZERR", "MAGZPERR", "ZPERR", "PHOTZPER")


@dataclass(frozen=True)
class ZeroPoint:
    """Magnitude of one data unit of the science image."""

    value: float
    uncertainty: float | None
    rms: float | None
    source: str  # the keyword(s) it came from, or "none"
    calibrated: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _num(header, key):
    try:
        v = float(header[key])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def zero_point(header) -> ZeroPoint:
    """The science image's zero point from its header (see the module docstring); instrumental if none."""
    for key in _ZP_KEYS:
        v = _num(header, key)
        if v is not None:
            unc = next((u for u in (_num(header, k) for k in _ZP_ERR_KEYS) if u is not None), None)
            return ZeroPoint(v, unc, _num(header, "MAGZPRMS"), key, True)
    flam, plam = _num(header, "PHOTFLAM"), _num(header, "PHOTPLAM")
    if flam and plam and flam > 0 and plam > 0:
        return ZeroPoint(-2.5 * math.log10(flam) - 5.0 * math.log10(plam) - 2.408, None, None,
                         "PHOTFLAM+PHOTPLAM (AB)", True)
    log.warning("no photometric zero point (MAGZP, MAGZERO, PHOTZP, PHOTFLAM, ...) in the science header: "
                "alert magnitudes are instrumental (-2.5 log10 counts) and magzpsci is null")
    return ZeroPoint(0.0, None, None, "none", False)


def psf_magnitudes(flux, flux_err, zp: ZeroPoint) -> tuple[np.ndarray, np.ndarray]:
    """(magpsf, sigmapsf) of difference fluxes in science counts; NaN where the flux is zero or not finite."""
    f = np.abs(np.asarray(flux, dtype=np.float64))
    e = np.asarray(flux_err, dtype=np.float64)
    ok = np.isfinite(f) & (f > 0)
    mag = np.full(f.shape, np.nan)
    sig = np.full(f.shape, np.nan)
    mag[ok] = zp.value - 2.5 * np.log10(f[ok])
    sig[ok] = 2.5 / np.log(10.0) * e[ok] / f[ok]
    return mag, sig


def limiting_magnitude(flux_err, zp: ZeroPoint, nsigma: float = 5.0) -> float | None:
    """``nsigma`` limit from a 1-sigma point-source flux error (a value, or the median of an error image)."""
    e = np.asarray(flux_err, dtype=np.float64)
    e = e[np.isfinite(e) & (e > 0)]
    if e.size == 0:
        return None
    return float(zp.value - 2.5 * np.log10(nsigma * float(np.median(e))))


def _time(value, fmt, scale):
    from astropy.time import Time

    return Time(value, format=fmt, scale=scale)


def exposure_start_jd(header, mjd: float | None = None, exptime: float | None = None) -> tuple[float, str]:
    """(JD in UTC at the start of the exposure, what it came from); ``mjd`` overrides the header's MJD-OBS.

    Raises :class:`AlertInputError` when no time keyword is usable.
    """
    scale = str(header.get("TIMESYS", "UTC")).strip().lower() or "utc"
    if scale == "gmt":
        scale = "utc"
    if scale not in ("utc", "tt", "tai", "tdb", "tcg", "tcb", "ut1"):
        raise AlertInputError(f"TIMESYS={header.get('TIMESYS')!r} is not a time scale astropy knows")
    try:
        if mjd is not None and np.isfinite(mjd):
            t, src = _time(float(mjd), "mjd", scale), "MJD (candidates)"
        else:
            t = src = None
            for key in ("MJD-BEG", "MJD-OBS"):
                v = _num(header, key)
                if v is not None:
                    t, src = _time(v, "mjd", scale), key
                    break
            if t is None:
                for key in ("DATE-BEG", "DATE-OBS"):
                    v = header.get(key)
                    if isinstance(v, str) and len(v) >= 10:
                        if "T" not in v and header.get("TIME-OBS"):
                            v = f"{v[:10]}T{header['TIME-OBS']}"
                        t, src = _time(v, "isot" if "T" in v else "iso", scale), key
                        break
            if t is None:
                half = 0.5 * float(exptime or _num(header, "EXPTIME") or 0.0) / 86400.0
                v = _num(header, "MJD-AVG")
                if v is not None:
                    t, src = _time(v - half, "mjd", scale), "MJD-AVG - EXPTIME/2"
                elif isinstance(header.get("DATE-AVG"), str):
                    t = _time(header["DATE-AVG"], "isot", scale)
                    t, src = _time(t.mjd - half, "mjd", scale), "DATE-AVG - EXPTIME/2"
    except ValueError as exc:
        raise AlertInputError(f"the exposure time keywords cannot be parsed: {exc}") from None
    if t is None:
        raise AlertInputError("no exposure time in the science header (MJD-OBS, DATE-OBS, MJD-BEG, DATE-BEG, MJD-AVG)")
    return float(t.utc.jd1 + t.utc.jd2), f"{src} ({scale.upper()}), converted to UTC"


def jd_of_mjd(mjd: float, scale: str = "utc") -> float:
    """JD (UTC) of an MJD in ``scale``."""
    t = _time(float(mjd), "mjd", scale.lower()).utc
    return float(t.jd1 + t.jd2)
