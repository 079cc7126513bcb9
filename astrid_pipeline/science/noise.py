"""The noise model of an image, read from the data.

What a differencing pipeline needs to know about an image's noise, and where
each piece comes from (first usable source wins, and every estimate says
which source it used):

- **units** from ``BUNIT`` (ADU/DN/counts, electrons, their rates per
  second, surface brightness such as MJy/sr, flux densities such as nJy per
  pixel, f_lambda), or an override;
- **per-pixel uncertainty** from an error map the file carries: a 1-sigma
  map (``ERR``), a variance (``VAR``/``VARIANCE``), the JWST split variance
  (``VAR_POISSON`` + ``VAR_RNOISE`` [+ ``VAR_FLAT``]), or an inverse variance
  (``IVAR``; ``WHT`` is treated as a *relative* weight and scaled to the
  measured noise, since drizzle weights are often exposure-time maps);
- **gain** in electrons per image unit (what the Poisson noise of sources
  needs): an override; the header's ``GAIN``/``CCDGAIN``/... for counts
  (times ``EXPTIME`` for rates); ``EXPTIME`` for electron rates; a
  photometric conversion (``PHOTMJSR`` for MJy/sr, ``PHOTFNU``/``PHOTFLAM``
  for HST fluxes) with ``EXPTIME``; the error map (effective gain from the
  slope of variance against signal); the sky level over its variance where
  the sky has not been subtracted. Otherwise no gain is used at all: the
  source-noise term is left out and a warning says so. A gain of 1 is never
  assumed silently;
- **background noise** measured on source-free pixels (robust standard
  deviation, and a map from SEP's mesh), and how resampling correlates it:
  the pixel autocorrelation and the noise of the PSF-matched-filtered image,
  which is what a detector sees. For white noise the matched-filter noise of
  a unit-sum PSF P is ``sigma * sqrt(sum P^2)``; the *correlation factor*
  ``k = sigma_mf^2 / (sigma^2 sum P^2)`` is 1 then, and about 2-8 for
  drizzled or co-added mosaics.

Methods: matched-filter (optimal PSF photometry) noise as in Zackay, Ofek &
Gal-Yam (2016, ApJ 830, 27, section 3); correlated-noise accounting for
resampled images as in Casertano et al. (2000, AJ 120, 2747, "the
drizzle correlation correction") and Fruchter & Hook (2002, PASP 114, 144);
effective gain from the variance-signal relation (the photon transfer curve,
Janesick 2007, "Photon Transfer").
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from astrid_pipeline.science.stats import psf_sigma, robust_std  # noqa: F401 (psf_sigma re-exported)
from astrid_pipeline.setting import setting

log = logging.getLogger(__name__)

#: extension names tried, in order, for each kind of error map
ERROR_EXTENSIONS = ("ERR", "ERROR", "SIGMA", "UNCERT", "RMS", "NOISE")
VARIANCE_EXTENSIONS = ("VAR", "VARIANCE")
INVERSE_VARIANCE_EXTENSIONS = ("IVAR", "INVVAR", "IVM")
WEIGHT_EXTENSIONS = ("WHT", "WEIGHT", "WGT")
JWST_VARIANCES = ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")
#: header keywords holding a CCD gain in electrons per count, in order tried
GAIN_KEYWORDS = ("GAIN", "CCDGAIN", "ATODGAIN", "EGAIN", "GAINEFF", "EPERADU")
EXPTIME_KEYWORDS = ("EXPTIME", "TEXPTIME", "XPOSURE", "EFFEXPTM", "EXPOSURE")

# unit kinds
COUNTS, ELECTRONS, SURFACE_BRIGHTNESS, FLUX_DENSITY, FLAM, UNKNOWN = (
    "counts", "electrons", "surface_brightness", "flux_density", "flam", "unknown")


@dataclass
class NoiseSettings:
    """How the noise model is read (per-epoch image options override the extension names, bunit and gain)."""

    error_ext: str = setting("", "extension with the 1-sigma uncertainty; empty = try ERR, ERROR, SIGMA, ...")
    variance_ext: str = setting("", "extension with the variance; empty = try VAR, VARIANCE, VAR_POISSON+VAR_RNOISE")
    weight_ext: str = setting("", "extension with an inverse-variance weight; empty = try IVAR, then WHT (relative)")
    bunit: str = setting("", "pixel units when the header lacks or misstates BUNIT; empty = the header's")
    gain: float = setting(0.0, "electrons per data unit; 0 = read it from the header, the error map or the data")
    blank_nsigma: float = setting(2.0, "pixels of sources above this many sigma (after smoothing) are not blank sky")
    max_pixels: int = setting(2_000_000, "noise statistics use at most this many pixels (a central cut-out)")


# --------------------------------------------------------------------------- units
@dataclass(frozen=True)
class UnitInfo:
    """What BUNIT says: the kind of quantity and whether it is a rate (per second)."""

    bunit: str
    kind: str
    rate: bool

    @property
    def calibrated(self) -> bool:
        """Physical units (bias and sky handling done by a calibration pipeline)."""
        return self.kind in (SURFACE_BRIGHTNESS, FLUX_DENSITY, FLAM) or self.rate


def parse_bunit(bunit: str | None) -> UnitInfo:
    """Classify a BUNIT string (case and spacing insensitive).

    >>> parse_bunit("MJy/sr").kind, parse_bunit("ELECTRONS/S").rate
    ('surface_brightness', True)
    """
    text = "" if bunit is None else str(bunit).strip()
    t = re.sub(r"\s+", "", text.lower()).replace("**", "").replace("^", "")
    rate = bool(re.search(r"(/s(ec)?$|/s/|s-1|/second|persec|cps$|/sec)", t)) or t in ("cps", "countrate")
    if not t:
        return UnitInfo(text, UNKNOWN, False)
    if re.search(r"(jy|jansky).*(/sr|sr-1|/arcsec|arcsec-2|/deg2|/beam|beam-1|/pix)", t) or "mjysr" in t:
        kind = SURFACE_BRIGHTNESS if "/pix" not in t else FLUX_DENSITY
        return UnitInfo(text, kind, False)
    if re.search(r"(^|[^a-z])(n|u|µ|m)?jy$", t) or t in ("jy", "mjy", "ujy", "njy", "10njy", "jansky"):
        return UnitInfo(text, FLUX_DENSITY, False)
    if "erg" in t or "flam" in t or "w/m2" in t:
        return UnitInfo(text, FLAM, False)
    if re.match(r"^(e|e-|electron|electrons|elec|photoelectron)s?($|/)", t):
        return UnitInfo(text, ELECTRONS, rate)
    if re.match(r"^(adu|dn|count|counts|cts|ct|datanumber|data\s*number|cps|countrate)", t):
        return UnitInfo(text, COUNTS, rate)
    return UnitInfo(text, UNKNOWN, rate)


def _float(header, key):
    try:
        v = float(header[key])
    except (KeyError, TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def exposure_time(header) -> tuple[float | None, str]:
    for k in EXPTIME_KEYWORDS:
        v = _float(header, k)
        if v is not None:
            return v, k
    return None, ""


# --------------------------------------------------------------------------- error maps
@dataclass
class ErrorMap:
    """Per-pixel 1-sigma uncertainty in image units (NaN where unknown or zero weight)."""

    sigma: np.ndarray
    source: str  # e.g. "ERR", "VAR", "VAR_POISSON+VAR_RNOISE", "IVAR", "WHT (relative weight)"
    absolute: bool  # False: only the shape is trusted (a relative weight), the scale comes from the data


def _ext_data(hdul, name, shape):
    try:
        h = hdul[name]
    except (KeyError, IndexError):
        return None
    if not getattr(h, "is_image", False) or h.data is None:
        return None
    a = np.asarray(h.data, dtype=np.float64)
    if a.ndim > 2 and all(n == 1 for n in a.shape[:-2]):
        a = a.reshape(a.shape[-2:])
    if a.shape != tuple(shape):
        return None
    return a


def find_error_map(hdul, shape, *, error_ext: str | int = "", variance_ext: str | int = "",
                   weight_ext: str | int = "", path=None) -> ErrorMap | None:
    """The file's per-pixel uncertainty as a 1-sigma map, or None when it carries none.

    Explicitly named extensions are used as named (a missing or mis-shaped
    one is a :class:`~astrid_pipeline.errors.BadHeaderError` naming the
    file); otherwise the usual names are tried: ERR-like 1-sigma maps,
    variances, the JWST variance split, inverse variances, drizzle weights.
    """
    from astrid_pipeline.errors import BadHeaderError

    def named(name, what):
        a = _ext_data(hdul, name, shape)
        if a is None:
            names = [h.name for h in hdul]
            raise BadHeaderError(path, f"the {what} extension {name!r} is missing or not a {shape[0]}x{shape[1]} "
                                       f"image (extensions: {names})")
        return a

    def sigma_from(kind, a):
        a = np.where(np.isfinite(a), a, np.nan)
        if kind == "err":
            return np.where(a > 0, a, np.nan)
        if kind == "var":
            return np.where(a > 0, np.sqrt(np.abs(a)), np.nan)
        return np.where(a > 0, 1.0 / np.sqrt(np.where(a > 0, a, 1.0)), np.nan)  # inverse variance

    if error_ext not in ("", None):
        return ErrorMap(sigma_from("err", named(error_ext, "error")), str(error_ext), True)
    if variance_ext not in ("", None):
        return ErrorMap(sigma_from("var", named(variance_ext, "variance")), str(variance_ext), True)
    if weight_ext not in ("", None):
        a = named(weight_ext, "weight")
        relative = str(weight_ext).upper() in WEIGHT_EXTENSIONS
        return ErrorMap(sigma_from("ivar", a), f"{weight_ext}" + (" (relative weight)" if relative else ""),
                        not relative)
    def first(names, kind, label="", absolute=True):
        for name in names:
            a = _ext_data(hdul, name, shape)
            if a is not None:
                return ErrorMap(sigma_from(kind, a), name + label, absolute)
        return None

    found = first(ERROR_EXTENSIONS, "err") or first(VARIANCE_EXTENSIONS, "var")
    if found is not None:
        return found
    parts = [(n, _ext_data(hdul, n, shape)) for n in JWST_VARIANCES]
    parts = [(n, a) for n, a in parts if a is not None]
    if parts and {"VAR_POISSON", "VAR_RNOISE"} <= {n for n, _ in parts}:
        total = sum(np.nan_to_num(a, nan=0.0) for _, a in parts)
        return ErrorMap(sigma_from("var", total), "+".join(n for n, _ in parts), True)
    return first(INVERSE_VARIANCE_EXTENSIONS, "ivar") or \
        first(WEIGHT_EXTENSIONS, "ivar", " (relative weight)", absolute=False)


# --------------------------------------------------------------------------- blank sky and its statistics
def _central(shape, max_pixels):
    """Slices of a central cut-out holding at most ``max_pixels`` pixels (the whole image when small)."""
    ny, nx = shape
    if ny * nx <= max_pixels:
        return slice(None), slice(None)
    f = np.sqrt(max_pixels / (ny * nx))
    hy, hx = max(16, int(ny * f) // 2), max(16, int(nx * f) // 2)
    return slice(ny // 2 - hy, ny // 2 + hy), slice(nx // 2 - hx, nx // 2 + hx)


def blank_sky(image: np.ndarray, mask: np.ndarray | None = None, *, nsigma: float = 2.0, grow: int = 3,
              background_box: int = 64, passes: int = 2):
    """Source-free pixels of an image: (blank, residual, background rms map, global rms).

    The background (SEP mesh) is subtracted; sources are segmented at
    ``nsigma`` times the background noise on the image smoothed with SEP's
    default 3x3 kernel, and the segments grown by ``grow`` pixels; masked and
    non-finite pixels are never blank. ``residual`` is the
    background-subtracted image (NaN where masked). ``passes=2`` measures
    the background again with the first pass's sources masked (for images
    whose sky is still in them); one pass suffices for a background-subtracted
    image.
    """
    import sep
    from scipy import ndimage

    from astrid_pipeline.science.background import as_sep_array, estimate_background

    img = np.asarray(image, dtype=np.float64)
    bad = ~np.isfinite(img)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    if bad.all():
        raise ValueError("every pixel is masked: no blank sky to measure the noise on")
    old = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(old, img.size))
    sep.set_sub_object_limit(4096)

    def segment(resid, rms):
        try:
            _, seg = sep.extract(as_sep_array(resid), nsigma, err=as_sep_array(rms), mask=as_sep_array(bad, np.uint8),
                                 minarea=3, segmentation_map=True, deblend_cont=1.0)
        except Exception:  # SEP's pixel-stack or object limits on pathological data: fall back to a clip
            seg = (resid > nsigma * rms).astype(np.int32)
        src = seg > 0
        if grow > 0 and src.any():
            src = ndimage.binary_dilation(src, iterations=int(grow))
        return src

    # two passes: the second background is measured with the first pass's sources masked, so extended
    # sources do not leak into the mesh background (and from there into the "noise")
    bkg = estimate_background(img, bad, box=background_box)
    src = segment(np.where(bad, 0.0, img - bkg.level), bkg.rms)
    if passes > 1 and src.any() and (~(src | bad)).sum() > 0.1 * img.size:
        bkg = estimate_background(img, bad | src, box=background_box)
        resid = np.where(bad, 0.0, img - bkg.level)
        src = segment(resid, bkg.rms)
    resid = np.where(bad, 0.0, img - bkg.level)
    blank = ~src & ~bad
    return blank, np.where(bad, np.nan, resid), bkg.rms, float(bkg.global_rms)


#: below this fraction of blank pixels a field is confusion-limited: "blank" would mean the darkest holes
CROWDED_BLANK_FRACTION = 0.25
#: in a crowded field only sources above this significance are masked; fainter ones are part of the noise
CROWDED_NSIGMA = 5.0


def noise_pixels(image: np.ndarray, mask: np.ndarray | None, *, fwhm: float, nsigma: float = 2.0, passes: int = 2):
    """Blank sky for noise statistics, aware of crowded fields: (blank, residual, rms map, crowded).

    In a field where fewer than 30 % of the valid pixels are blank at
    ``nsigma`` (the Galactic centre, a rich cluster), the faint sources are
    the background: only sources above 5 sigma are masked, so the noise
    includes the confusion by fainter ones (what an empty-aperture
    measurement there sees too); ``crowded`` is then True.
    """
    grow = max(2, int(round(fwhm)))
    blank, resid, rms_map, _ = blank_sky(image, mask, nsigma=nsigma, grow=grow, passes=passes)
    valid = np.isfinite(resid)
    crowded = bool(blank.sum() < CROWDED_BLANK_FRACTION * max(valid.sum(), 1))
    if crowded:
        blank, resid, rms_map, _ = blank_sky(image, mask, nsigma=CROWDED_NSIGMA, grow=grow, background_box=32,
                                             passes=passes)
    if blank.sum() < 100:
        blank = valid
    return blank, resid, rms_map, crowded


def robust_sigma(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (:func:`astrid_pipeline.science.stats.robust_std`)."""
    return robust_std(values)


def autocorrelation(resid: np.ndarray, blank: np.ndarray, max_lag: int = 3) -> np.ndarray:
    """Normalised pixel autocorrelation rho[dy + L, dx + L] on blank pixel pairs, lags up to ``max_lag``.

    Each lag uses every pair of pixels that are both blank (robust to holes);
    rho at zero lag is 1.
    """
    L = int(max_lag)
    v = np.where(blank, resid, np.nan)
    v = v - np.nanmedian(v)
    ny, nx = v.shape
    out = np.zeros((2 * L + 1, 2 * L + 1))
    var0 = np.nanmean(v * v)
    for dy in range(0, L + 1):
        for dx in range(-L, L + 1):
            if dy == 0 and dx < 0:
                continue
            a = v[0:ny - dy, max(0, -dx):nx - max(0, dx)]
            b = v[dy:ny, max(0, dx):nx - max(0, -dx) if dx < 0 else nx]
            if dx < 0:
                b = v[dy:ny, 0:nx + dx]
            prod = a * b
            ok = np.isfinite(prod)
            r = float(np.mean(prod[ok]) / var0) if ok.sum() > 50 and var0 > 0 else 0.0
            out[L + dy, L + dx] = r
            out[L - dy, L - dx] = r
    out[L, L] = 1.0
    return out


def psf_noise_factor(psf: np.ndarray, rho: np.ndarray) -> float:
    """k = Var(sum P n) / (sigma^2 sum P^2) for noise with autocorrelation ``rho`` (1 for white noise).

    ``sum_ij P_i P_j rho(i - j)`` is computed as sum_lag rho(lag) * A(lag)
    with A the PSF's own autocorrelation at that lag.
    """
    from scipy.signal import fftconvolve

    p = np.asarray(psf, dtype=np.float64)
    p = p / p.sum()
    A = fftconvolve(p, p[::-1, ::-1], mode="full")  # A[c + lag]
    c = np.array(A.shape) // 2
    L = rho.shape[0] // 2
    a = A[c[0] - L:c[0] + L + 1, c[1] - L:c[1] + L + 1]
    return float((rho * a).sum() / (p * p).sum())


def matched_filter_noise(resid: np.ndarray, blank: np.ndarray, psf: np.ndarray, min_positions: int = 200):
    """Robust std of the PSF-matched-filtered image at positions whose whole PSF footprint is blank.

    Returns (sigma_mf, n_positions, sigma_pixel_there); sigma_mf is NaN when
    fewer than ``min_positions`` positions qualify (crowded fields: use the
    autocorrelation prediction instead). The filter is the unit-sum PSF P,
    so for white noise sigma_mf = sigma * sqrt(sum P^2), with sigma the
    pixel noise of the pixels the filter saw (the third number).
    """
    import scipy.fft as sfft
    from scipy import ndimage

    p = np.asarray(psf, dtype=np.float64)
    p = p / p.sum()
    core = p > 1e-3 * p.max()
    shape = resid.shape
    fshape = [sfft.next_fast_len(shape[0] + p.shape[0], real=True),
              sfft.next_fast_len(shape[1] + p.shape[1], real=True)]
    v = np.where(blank, np.nan_to_num(resid), 0.0).astype(np.float32)
    mf = sfft.irfft2(sfft.rfft2(v, fshape) * sfft.rfft2(p[::-1, ::-1].astype(np.float32), fshape), fshape)[
        p.shape[0] // 2:p.shape[0] // 2 + shape[0], p.shape[1] // 2:p.shape[1] // 2 + shape[1]]
    # a position qualifies when no non-blank pixel lies within the PSF's extent (a square of its core's size:
    # a separable box filter, O(pixels))
    ys, xs = np.nonzero(core)
    r = int(max(np.abs(ys - p.shape[0] // 2).max(), np.abs(xs - p.shape[1] // 2).max()))
    hole = ndimage.uniform_filter((~blank).astype(np.float32), size=2 * r + 1, mode="constant", cval=1.0) * 1e6
    h = p.shape[0] // 2
    ok = hole < 0.5
    ok[:h] = ok[-h:] = False
    ok[:, :h] = ok[:, -h:] = False
    n = int(ok.sum())
    # positions one PSF apart are nearly independent; count those for the minimum
    n_indep = n / max(1.0, 1.0 / (p * p).sum())
    if n_indep < min_positions / 10 or n < min_positions:
        return float("nan"), n, float("nan")
    # the pixel noise of exactly the pixels those positions' filters see (noise that varies across the field
    # must not pass for correlation)
    seen = (ndimage.uniform_filter(ok.astype(np.float32), size=2 * r + 1) > 0) & blank
    return robust_sigma(mf[ok]), n, robust_sigma(np.asarray(resid)[seen])


@dataclass
class CorrelationFactor:
    """How much a PSF-matched filter's noise exceeds the white-noise prediction, and how it was found."""

    k: float  # sigma_mf^2 / (sigma^2 sum P^2): measured when possible, else from the autocorrelation
    k_autocorr: float  # the prediction from the pixel autocorrelation (lags <= 3)
    sigma_mf: float  # measured matched-filter noise (NaN when too crowded)
    autocorr_lag1: float
    rho: np.ndarray
    how: str  # "matched-filter" or "autocorrelation"


def psf_core(psf: np.ndarray, radius_fwhm: float = 2.0) -> np.ndarray:
    """The PSF within ``radius_fwhm`` x its FWHM (from the area above half maximum) of the centre, unit sum.

    Noise correlated by resampling is correlated over a pixel or two, so its
    matched-filter excess is the same for the core as for the whole PSF; the
    far wings of a large stamp would add the sky's large-scale residuals,
    which a difference image's kernels hardly weigh.
    """
    p = np.clip(np.asarray(psf, dtype=np.float64), 0, None)
    p = p / p.sum()
    fwhm = 2.0 * np.sqrt((p >= 0.5 * p.max()).sum() / np.pi)
    h0, h1 = p.shape[0] // 2, p.shape[1] // 2
    r = max(2.0, radius_fwhm * fwhm)
    yy, xx = np.mgrid[-h0:p.shape[0] - h0, -h1:p.shape[1] - h1]
    inside = (xx**2 + yy**2) <= r * r
    n = int(np.ceil(r))
    core = np.where(inside, p, 0.0)[max(0, h0 - n):h0 + n + 1, max(0, h1 - n):h1 + n + 1]
    return core / core.sum()


def correlation_factor(resid: np.ndarray, blank: np.ndarray, psf: np.ndarray, sigma_pixel: float,
                       max_pixels: int = 1_000_000) -> CorrelationFactor:
    """The correlation factor k of an image's noise for a PSF (1 for white noise), measured with the PSF's
    core (:func:`psf_core`).

    The autocorrelation uses a central cut-out of at most ``max_pixels``, the matched filter one of
    four times that.
    """
    psf = psf_core(psf)
    ys, xs = _central(np.shape(resid), max_pixels)
    rho = autocorrelation(resid[ys, xs], blank[ys, xs], max_lag=3)
    ac1 = float(0.5 * (rho[3, 4] + rho[4, 3]))
    k_pred = psf_noise_factor(psf, rho)
    ys, xs = _central(np.shape(resid), 4 * max_pixels)
    sig_mf, _, sig_there = matched_filter_noise(resid[ys, xs], blank[ys, xs], psf)
    sum_p2 = float(((np.asarray(psf) / np.sum(psf)) ** 2).sum())
    # k is physically >= ~0.5 (resampling cannot hide more than half the variance from a PSF-sized filter)
    # and rarely above ~20; the bounds keep a pathological measurement from breaking ZOGY's weights
    if np.isfinite(sig_mf) and np.isfinite(sig_there) and sig_there > 0:
        k = float(np.clip(sig_mf ** 2 / (sig_there ** 2 * sum_p2), 0.25, 50.0))
        return CorrelationFactor(k, k_pred, sig_mf, ac1, rho, "matched-filter")
    return CorrelationFactor(float(np.clip(k_pred, 0.25, 50.0)), k_pred, sig_mf, ac1, rho, "autocorrelation")


@dataclass
class ImageNoise:
    """The noise of a background-subtracted image for one PSF: what ZOGY's noise terms need."""

    blank: np.ndarray  # source-free, unmasked pixels
    rms_map: np.ndarray  # per-pixel background noise (SEP mesh, or the error map rescaled to the data)
    sigma_pixel: float  # robust std on blank sky
    correlation: CorrelationFactor
    error_sigma: np.ndarray | None  # the error map rescaled to the measured noise (None without one)
    error_scale: float  # measured / error-map noise (NaN without one)
    crowded: bool = False  # confusion-limited field (see noise_pixels)

    @property
    def k(self) -> float:
        return self.correlation.k

    @property
    def sigma_eff(self) -> float:
        """White-noise-equivalent sigma for the PSF: sigma_mf / sqrt(sum P^2)."""
        return float(self.sigma_pixel * np.sqrt(self.k))


def image_noise(image: np.ndarray, bad: np.ndarray, psf: np.ndarray, error_sigma: np.ndarray | None = None,
                nsigma: float = 2.0, fwhm: float | None = None) -> ImageNoise:
    """Measure an image's noise on its own blank sky for the matched filter ``psf``.

    ``error_sigma`` (the file's error map, image units) keeps its shape but
    is rescaled so that its median on blank sky equals the measured noise
    (drizzled error maps describe the input noise, not the resampled pixels').
    """
    fwhm = fwhm or 2.3548200450309493 * psf_sigma(psf)  # the moments' FWHM is wider than the core's (wings)
    blank, resid, rms_map, crowded = noise_pixels(image, bad, fwhm=fwhm, nsigma=nsigma, passes=1)
    sigma = robust_sigma(resid[blank])
    cf = correlation_factor(resid, blank, psf, sigma)
    err, scale = None, float("nan")
    if error_sigma is not None:
        e = np.asarray(error_sigma, dtype=np.float64)
        med = float(np.nanmedian(e[blank & np.isfinite(e)])) if (blank & np.isfinite(e)).any() else float("nan")
        if np.isfinite(med) and med > 0:
            scale = sigma / med
            err = np.where(np.isfinite(e), e * scale, sigma)
            rms_map = np.where(np.isfinite(e), e * scale, rms_map)
    return ImageNoise(blank, np.asarray(rms_map, dtype=np.float32), float(sigma), cf, err, scale, crowded)


def variance_map(image: np.ndarray, psf: np.ndarray, noise: ImageNoise, gain: float | None, scale: float = 1.0,
                 source_noise: bool = True) -> np.ndarray:
    """Per-pixel variance for ZOGY's S_corr, in white-noise-equivalent units (times the correlation factor k).

    Error map (already rescaled to the data): its square, which holds the
    sources' Poisson noise. Else background map squared plus the PSF-smoothed
    image over the gain (``zogy.source_variance``); without a gain, or with
    ``source_noise`` off, the background alone.
    """
    from astrid_pipeline.science.zogy import source_variance

    if noise.error_sigma is not None and source_noise:
        v = noise.error_sigma.astype(np.float32) ** 2
    else:
        v = source_variance(image, psf, gain if source_noise else None, noise.rms_map, scale)
    return (noise.k * v).astype(np.float32)


def gaussian_psf(fwhm: float, size: int | None = None) -> np.ndarray:
    """A unit-sum circular Gaussian stamp (for noise statistics before a PSF is measured)."""
    s = fwhm / 2.3548200450309493
    size = size or int(2 * np.ceil(3 * s) + 1)
    y, x = np.mgrid[-(size // 2):size // 2 + 1, -(size // 2):size // 2 + 1]
    g = np.exp(-(x * x + y * y) / (2 * s * s))
    return g / g.sum()


# --------------------------------------------------------------------------- gain
@dataclass
class GainEstimate:
    value: float | None  # electrons per image unit; None = unknown (no source-noise term)
    source: str
    warnings: list[str] = field(default_factory=list)


def header_gain(header, unit: UnitInfo) -> GainEstimate:
    """Electrons per image unit from the header alone (None when it cannot say)."""
    texp, tkey = exposure_time(header)
    g, gkey = None, ""
    for k in GAIN_KEYWORDS:
        g = _float(header, k)
        if g is not None:
            gkey = k
            break
    if unit.kind == ELECTRONS:
        if unit.rate:
            if texp:
                return GainEstimate(texp, f"BUNIT {unit.bunit!r} is an electron rate: {tkey}={texp:g} s")
            return GainEstimate(None, "", [f"BUNIT {unit.bunit!r} is an electron rate but there is no exposure time"])
        return GainEstimate(1.0, f"BUNIT {unit.bunit!r}: pixels are electrons")
    if unit.kind in (COUNTS, UNKNOWN) and g is not None:
        how = f"header {gkey}={g:g} e-/count"
        w = [] if unit.kind == COUNTS else [f"no BUNIT: counts assumed because the header gives {gkey}"]
        if unit.rate:
            if texp:
                return GainEstimate(g * texp, f"{how} x {tkey}={texp:g} s (count rate)", w)
            return GainEstimate(None, "", w + [f"BUNIT {unit.bunit!r} is a count rate but there is no exposure time"])
        return GainEstimate(g, how, w)
    if unit.kind == SURFACE_BRIGHTNESS:
        conv = _float(header, "PHOTMJSR")
        if conv is not None and texp and "mjy" in unit.bunit.lower().replace(" ", ""):
            # value [MJy/sr] = rate [DN/s] * PHOTMJSR  ->  counts per unit = EXPTIME / PHOTMJSR
            per_unit = texp / conv
            if g is not None:
                return GainEstimate(per_unit * g, f"{tkey}={texp:g} s / PHOTMJSR={conv:g} MJy/sr per DN/s x {gkey}={g:g}")
            return GainEstimate(per_unit, f"{tkey}={texp:g} s / PHOTMJSR={conv:g} MJy/sr per DN/s, 1 e-/DN assumed",
                                ["no GAIN keyword: 1 electron per DN assumed for the photometric conversion "
                                 "(overestimates the Poisson noise of sources by the detector's e-/DN)"])
    if unit.kind in (FLUX_DENSITY, FLAM):
        key = "PHOTFNU" if unit.kind == FLUX_DENSITY else "PHOTFLAM"
        conv = _float(header, key)
        if conv is not None and texp:
            scale = {"njy": 1e-9, "ujy": 1e-6, "µjy": 1e-6, "mjy": 1e-3, "jy": 1.0}
            t = unit.bunit.lower().replace(" ", "")
            factor = 1.0
            if unit.kind == FLUX_DENSITY:
                for k, f in scale.items():
                    if t.endswith(k) or t.startswith(k):
                        factor = f
                        break
            # value * factor [Jy] = rate [e-/s] * PHOTFNU  ->  electrons per unit = EXPTIME * factor / PHOTFNU
            return GainEstimate(texp * factor / conv, f"{tkey}={texp:g} s x {factor:g} / {key}={conv:g} (HST, e-/s)")
    return GainEstimate(None, "")


def error_map_gain(signal: np.ndarray, sigma: np.ndarray, valid: np.ndarray, min_pixels: int = 500):
    """Effective gain (electrons per unit) from variance = a + signal / g on a file's error map.

    Fits the median variance in linear signal bins (from the 5th to the
    99.99th percentile, bins with at least 10 pixels; robust against
    outliers); returns (gain, read_variance), or (None, a) when the variance
    does not grow significantly with the signal (a map without a Poisson
    term, or too few bright pixels).
    """
    s = np.asarray(signal)[valid]
    v = np.asarray(sigma)[valid] ** 2
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    if s.size < min_pixels:
        return None, float("nan")
    lo, hi = np.percentile(s, [5, 99.99])
    if not hi > lo:
        return None, float("nan")
    edges = np.linspace(lo, hi, 31)
    idx = np.digitize(s, edges) - 1
    xs, ys, ws = [], [], []
    for b in range(edges.size - 1):
        m = idx == b
        n = int(m.sum())
        if n >= 10:
            xs.append(np.median(s[m]))
            ys.append(np.median(v[m]))
            ws.append(np.sqrt(n))
    if len(xs) < 5:
        return None, float("nan")
    xs, ys, ws = map(np.asarray, (xs, ys, ws))
    (slope, icpt), cov = np.polyfit(xs, ys, 1, w=ws, cov="unscaled")
    resid = ys - (slope * xs + icpt)
    scatter = np.sqrt(np.sum(ws**2 * resid**2) / max(len(xs) - 2, 1))
    err = np.sqrt(max(cov[0, 0], 0)) * scatter
    if not (slope > 0 and slope > 5 * err):
        return None, float(icpt)
    return float(1.0 / slope), float(icpt)


# --------------------------------------------------------------------------- the model
@dataclass
class NoiseModel:
    """The noise of one image, with where each number came from (see the module docstring)."""

    bunit: str  # as used (header or override); "" if unknown
    unit_kind: str
    unit_rate: bool
    gain: float | None  # electrons per image unit; None = unknown (no source-noise term)
    gain_source: str
    error_source: str  # extension(s) read as the error map, or "none"
    method: str  # "error-map", "gain" or "empirical": what the per-pixel variance model rests on
    sigma_pixel: float  # measured robust background noise per pixel (image units)
    sigma_pixel_model: float  # predicted by the error map or gain/read noise; NaN if no prediction
    error_scale: float  # measured / error-map noise on blank sky (1 for a well-calibrated map)
    autocorr_lag1: float  # mean of the x and y lag-1 pixel autocorrelation on blank sky
    correlation_factor: float  # sigma_mf^2 / (sigma^2 sum P^2) for the PSF used (1 = white noise)
    sigma_mf: float  # measured matched-filter noise for that PSF (NaN when too crowded to measure)
    sigma_flux: float  # predicted 1-sigma PSF-photometry flux error on blank sky (image units x pixels)
    psf_fwhm: float  # FWHM (pix) of the PSF the matched-filter numbers refer to
    n_blank: int
    background_level: float  # the background level removed, median over blank sky (image units)
    crowded: bool = False  # confusion-limited: the noise includes sources below 5 sigma
    warnings: list[str] = field(default_factory=list)

    @property
    def source_noise_available(self) -> bool:
        return self.gain is not None or self.error_source != "none"

    def as_metadata(self) -> dict:
        d = asdict(self)
        d["gain"] = float(self.gain) if self.gain is not None else None
        return d

    def header_cards(self) -> dict:
        """FITS keywords later steps read (GAINUSED = -1 when no gain is known)."""

        def num(v, nd=6):
            return float(round(v, nd)) if v is not None and np.isfinite(v) else -1.0

        return {
            "BUNIT": (self.bunit, f"pixel units ({self.unit_kind})"),
            "NOISESRC": (self.method, "noise model: error-map, gain or empirical"),
            "ERRSRC": (self.error_source[:60], "extension(s) read as the error map"),
            "GAINUSED": (float(f"{self.gain:.8g}") if self.gain is not None else -1.0,
                         "[e-/data unit] gain for source noise; -1 = unknown"),
            "GAINSRC": ((self.gain_source or "none: no source-noise term")[:68], "where GAINUSED came from"),
            "NOISEPIX": (float(f"{self.sigma_pixel:.6g}"), "[data unit] measured background noise"),
            "NOISEMOD": (num(self.sigma_pixel_model), "[data unit] noise predicted by the model"),
            "ERRSCALE": (num(self.error_scale, 4), "measured / error-map noise on blank sky"),
            "NOISEAC1": (num(self.autocorr_lag1, 4), "lag-1 pixel autocorrelation of the noise"),
            "NOISECF": (num(self.correlation_factor, 4), "matched-filter noise correlation factor"),
            "NOISEFWH": (num(self.psf_fwhm, 3), "[pix] PSF FWHM of NOISECF"),
            "NOISECRW": (bool(self.crowded), "crowded: noise includes confusion"),
        }


def _read_noise(header):
    for k in ("RDNOISE", "READNOIS", "RON", "READNSEA", "RDNOISEA"):
        v = _float(header, k)
        if v is not None:
            return v, k
    return None, ""


def estimate_noise(
    data: np.ndarray,
    header,
    mask: np.ndarray | None = None,
    *,
    error_map: ErrorMap | None = None,
    psf: np.ndarray | None = None,
    fwhm: float | None = None,
    bunit: str = "",
    gain: float | None = None,
    settings: NoiseSettings | None = None,
    path=None,
) -> NoiseModel:
    """Build the :class:`NoiseModel` of an image (see the module docstring for the order of sources).

    ``psf`` (a unit-sum stamp) or ``fwhm`` (pixels; a Gaussian) is the
    filter of the matched-filter numbers; without either a 3-pixel Gaussian
    is used. ``bunit`` and ``gain`` override the header. Every assumption is
    logged as a warning naming ``path`` and listed in ``warnings``.
    """
    cfg = settings or NoiseSettings()
    where = path or "<in-memory image>"
    warn: list[str] = []
    hdr_bunit = str(header.get("BUNIT", "") or "").strip() if header is not None else ""
    unit = parse_bunit(bunit or cfg.bunit or hdr_bunit)
    ys, xs = _central(np.shape(data), cfg.max_pixels)
    img = np.asarray(data, dtype=np.float64)[ys, xs]
    m = None if mask is None else np.asarray(mask, bool)[ys, xs]
    emap = None
    if error_map is not None:
        emap = ErrorMap(np.asarray(error_map.sigma)[ys, xs], error_map.source, error_map.absolute)
        bad_err = ~np.isfinite(emap.sigma)
        m = bad_err if m is None else (m | bad_err)

    if psf is None:
        psf = gaussian_psf(fwhm or 3.0)
        fwhm_used = float(fwhm or 3.0)
        if fwhm is None:
            warn.append("no PSF given: matched-filter noise quoted for a 3-pixel Gaussian")
    else:
        fwhm_used = float(fwhm) if fwhm else 2.3548200450309493 * psf_sigma(psf)
    blank, resid, rms_map, crowded = noise_pixels(img, m, fwhm=fwhm_used, nsigma=cfg.blank_nsigma)
    n_blank = int(blank.sum())
    if n_blank < 100:
        warn.append(f"only {n_blank} blank-sky pixels: noise estimates are uncertain")
    if crowded:
        warn.append(f"crowded field (fewer than {CROWDED_BLANK_FRACTION:.0%} of the pixels are blank at "
                    f"{cfg.blank_nsigma:g} sigma): sources below {CROWDED_NSIGMA:g} sigma are counted as noise "
                    "(confusion)")
    sigma_pix = robust_sigma(resid[blank])
    level = float(np.median(img[blank] - np.nan_to_num(resid[blank])))  # the background level that was removed
    cf = correlation_factor(resid, blank, psf, sigma_pix)
    ac1, k_pred, sig_mf, k = cf.autocorr_lag1, cf.k_autocorr, cf.sigma_mf, cf.k
    sum_p2 = float(((np.asarray(psf) / np.sum(psf)) ** 2).sum())
    if np.isfinite(sig_mf) and not (0.5 < k / max(k_pred, 1e-6) < 2.0):
        warn.append(f"matched-filter noise (k={k:.2f}) disagrees with the autocorrelation prediction "
                    f"(k={k_pred:.2f}): non-Gaussian or structured background")

    # the per-pixel model: error map, else gain and read noise
    sigma_model = float("nan")
    err_scale = float("nan")
    method = "empirical"
    if emap is not None:
        med = float(np.nanmedian(emap.sigma[blank])) if n_blank else float(np.nanmedian(emap.sigma))
        if med > 0 and np.isfinite(med):
            err_scale = sigma_pix / med
            if emap.absolute:
                sigma_model = med
                method = "error-map"
                if not 0.8 < err_scale < 1.25:
                    warn.append(f"the error map {emap.source} gives {med:.4g} per pixel on blank sky but the "
                                f"measured noise is {sigma_pix:.4g} (x{err_scale:.2f}): map rescaled to the data")
            else:
                sigma_model = med * err_scale
                method = "error-map"
                warn.append(f"{emap.source}: a relative weight; its scale is set by the measured noise")

    # gain: override > header (unit-consistent) > error map slope > photometric conversion > sky level
    g = GainEstimate(None, "")
    if gain:
        g = GainEstimate(float(gain), "image option gain")
    elif cfg.gain:
        g = GainEstimate(float(cfg.gain), "setting gain")
    else:
        hg = header_gain(header if header is not None else {}, unit)
        photometric_guess = hg.value is not None and "assumed" in hg.source
        if hg.value is not None and not photometric_guess:
            g = hg
        else:
            eg = None
            if emap is not None and emap.absolute:
                sig_full = emap.sigma
                valid = np.isfinite(sig_full) & np.isfinite(img)
                if m is not None:
                    valid &= ~m
                eg, _ = error_map_gain(img - level, sig_full, valid)
            if eg is not None:
                g = GainEstimate(eg, f"error map {emap.source}: variance vs signal slope")
            elif hg.value is not None:
                g = hg
            elif unit.calibrated and level > 5 * sigma_pix:
                g = GainEstimate(level / (sigma_pix ** 2 * k), "sky level / background variance (read noise "
                                 "neglected: a lower bound, i.e. conservative)",
                                 ["gain estimated from the sky level and its variance"])
            else:
                g = GainEstimate(None, "", hg.warnings)
        warn += g.warnings
    if g.value is None:
        warn.append("no gain known (no usable GAIN, exposure time, photometric conversion or error map): "
                    "the source-noise term is left out; background noise is the empirical estimate")
    elif method == "empirical":
        method = "gain"
        rn, rkey = _read_noise(header if header is not None else {})
        if rn is not None and not unit.calibrated and level > 0:
            # sky Poisson + read noise, both in image units; only where the sky is still in the image
            pred = np.sqrt(level / g.value + (rn / g.value) ** 2) if unit.kind in (COUNTS, ELECTRONS, UNKNOWN) else np.nan
            sigma_model = float(pred)
    # consistency: the sky's Poisson noise cannot exceed the measured total (when the sky is still there)
    if g.value is not None and level > 5 * sigma_pix and level / g.value > 2.0 * k * sigma_pix ** 2:
        if method == "gain":
            sigma_model = float("nan")  # the level is not (only) sky: no prediction from it
        warn.append(f"gain {g.value:.4g} e-/unit predicts more sky noise ({np.sqrt(level / g.value):.4g}) than "
                    f"measured ({sigma_pix * np.sqrt(k):.4g}): bias in the image, or a wrong gain")

    sigma_flux = sigma_pix * np.sqrt(k / sum_p2)
    if unit.kind == UNKNOWN and not unit.bunit and g.value is not None and g.source.startswith("header "):
        unit = UnitInfo("adu", COUNTS, False)  # counts assumed because the header gives a gain (warned above)
    model = NoiseModel(
        bunit=unit.bunit, unit_kind=unit.kind, unit_rate=unit.rate, gain=g.value, gain_source=g.source,
        error_source=emap.source if emap is not None else "none", method=method, sigma_pixel=float(sigma_pix),
        sigma_pixel_model=float(sigma_model), error_scale=float(err_scale), autocorr_lag1=ac1,
        correlation_factor=float(k), sigma_mf=float(sig_mf), sigma_flux=float(sigma_flux), psf_fwhm=float(fwhm_used),
        n_blank=n_blank, background_level=level, crowded=crowded, warnings=warn,
    )
    for w in warn:
        log.warning("%s: %s", where, w)
    return model
