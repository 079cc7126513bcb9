"""Empirical PSF from the stars of an image, and analytic PSF models.

The PSF is the median of sub-pixel-recentred, flux-normalised stamps of
bright, isolated, unsaturated stars selected on the stellar locus (the
tight sequence of smallest half-light radii; galaxies are larger). Its FWHM
comes from a Moffat fit to the stacked stamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astrid_pipeline.errors import PSFEstimationError
from astrid_pipeline.science.background import as_sep_array
from astrid_pipeline.science.stars import detect_sources, isolated


def moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_stamp(fwhm: float, size: int, beta: float = 3.0, dx: float = 0.0, dy: float = 0.0,
                 oversample: int = 3, ellipticity: float = 0.0, theta: float = 0.0) -> np.ndarray:
    """Pixel-integrated (by sub-sampling) Moffat profile on an odd ``size`` stamp, unit sum.

    (dx, dy) shift the centre from the stamp's central pixel.
    """
    alpha = moffat_alpha(fwhm, beta)
    half = size // 2
    o = oversample
    sub = (np.arange(o) + 0.5) / o - 0.5
    grid = np.arange(-half, half + 1)
    yy = (grid[:, None, None, None] + sub[None, None, :, None]) - dy
    xx = (grid[None, :, None, None] + sub[None, None, None, :]) - dx
    if ellipticity:
        q = 1.0 - ellipticity
        c, s = np.cos(theta), np.sin(theta)
        xr = c * xx + s * yy
        yr = -s * xx + c * yy
        r2 = xr**2 / (1.0 / np.sqrt(q)) ** 2 + yr**2 / np.sqrt(q) ** 2
    else:
        r2 = xx**2 + yy**2
    prof = (1.0 + r2 / alpha**2) ** (-beta)
    img = prof.mean(axis=(2, 3))
    return img / img.sum()


def gaussian_stamp(fwhm: float, size: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Pixel-integrated circular Gaussian on an odd ``size`` stamp, unit sum (exact, via erf)."""
    from scipy.special import erf

    sigma = fwhm / 2.3548200450309493
    half = size // 2
    edges = np.arange(-half - 0.5, half + 1.5)
    cx = np.diff(0.5 * erf((edges - dx) / (np.sqrt(2) * sigma)))
    cy = np.diff(0.5 * erf((edges - dy) / (np.sqrt(2) * sigma)))
    img = np.outer(cy, cx)
    return img / img.sum()


@dataclass
class PSFModel:
    stamp: np.ndarray  # odd-sized, unit sum, centred
    fwhm: float  # pixels
    beta: float  # Moffat beta of the fit (inf for a Gaussian fallback)
    n_stars: int
    ellipticity: float
    method: str
    theta: float = 0.0

    def render(self, dx: float = 0.0, dy: float = 0.0, size: int | None = None) -> np.ndarray:
        """The PSF centred at (dx, dy) from the stamp centre, unit sum (analytic when fitted)."""
        size = size or self.stamp.shape[0]
        if self.method == "moffat":
            return moffat_stamp(self.fwhm, size, self.beta, dx, dy, 3, self.ellipticity, self.theta)
        if self.method == "gaussian-fallback":
            return gaussian_stamp(self.fwhm, size, dx, dy)
        from scipy import ndimage

        out = ndimage.shift(self.stamp.astype(np.float64), (dy, dx), order=3, mode="constant")
        return out / out.sum()

    def as_header_cards(self, prefix: str = "") -> dict:
        return {
            f"{prefix}FWHM": (round(float(self.fwhm), 4), "PSF FWHM [pix]"),
            f"{prefix}NSTAR": (int(self.n_stars), "stars stacked into the PSF"),
            f"{prefix}PSFELL": (round(float(self.ellipticity), 4), "PSF ellipticity 1-b/a"),
            f"{prefix}PSFMETH": (self.method, "how the PSF was obtained"),
        }


def fit_moffat_fwhm(stamp: np.ndarray) -> tuple[float, float]:
    """FWHM and beta of a Moffat fitted to a centred stamp (least squares on pixels)."""
    from scipy.optimize import least_squares

    size = stamp.shape[0]
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    data = stamp / stamp.max()

    def model(p):
        amp, x0, y0, alpha, beta = p
        return amp * (1 + ((x - x0) ** 2 + (y - y0) ** 2) / alpha**2) ** (-beta)

    r = least_squares(
        lambda p: (model(p) - data).ravel(),
        x0=[1.0, 0.0, 0.0, 2.0, 3.0],
        bounds=([0, -2, -2, 0.2, 1.05], [10, 2, 2, 50, 20]),
    )
    _, _, _, alpha, beta = r.x
    return float(2 * alpha * np.sqrt(2 ** (1 / beta) - 1)), float(beta)


def _fit_star_moffat(stamp, dx0, dy0, fwhm0):
    """Fit a pixel-integrated elliptical Moffat to one star; returns (fwhm, beta, e1, e2) or None."""
    from scipy.optimize import least_squares

    size = stamp.shape[0]
    data = stamp.astype(np.float64)
    total = data.sum()
    if not np.isfinite(total) or total <= 0:
        return None
    scale = data.max()
    d = data / scale

    def model(p):
        amp, x0, y0, fwhm, beta, e1, e2 = p
        ell = min(np.hypot(e1, e2), 0.8)
        th = 0.5 * np.arctan2(e2, e1)
        return amp * moffat_stamp(fwhm, size, beta, x0, y0, 2, ell, th)

    p0 = [total / scale, dx0, dy0, max(fwhm0, 1.2), 3.0, 0.0, 0.0]
    try:
        r = least_squares(lambda p: (model(p) - d).ravel(), p0,
                          bounds=([0, -2, -2, 0.8, 1.2, -0.5, -0.5], [np.inf, 2, 2, 30, 15, 0.5, 0.5]),
                          x_scale=[p0[0], 0.2, 0.2, 0.3, 1.0, 0.05, 0.05], max_nfev=200)
    except ValueError:
        return None
    if not r.success:
        return None
    _, _, _, fwhm, beta, e1, e2 = r.x
    return float(fwhm), float(beta), float(e1), float(e2)


def _moments_ellipticity(stamp: np.ndarray) -> float:
    half = stamp.shape[0] // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    w = np.clip(stamp, 0, None)
    w = w * np.exp(-(x**2 + y**2) / (2 * (half / 2.0) ** 2))
    s = w.sum()
    mx, my = (w * x).sum() / s, (w * y).sum() / s
    ixx = (w * (x - mx) ** 2).sum() / s
    iyy = (w * (y - my) ** 2).sum() / s
    ixy = (w * (x - mx) * (y - my)).sum() / s
    t = np.sqrt(((ixx - iyy) / 2) ** 2 + ixy**2)
    a2, b2 = (ixx + iyy) / 2 + t, (ixx + iyy) / 2 - t
    return float(1 - np.sqrt(max(b2, 1e-12) / a2))


def stellar_fwhm(image: np.ndarray, rms: float, mask: np.ndarray | None = None, saturation: float | None = None,
                 threshold: float = 20.0) -> float:
    """Quick FWHM (pixels) from the stellar locus of half-light radii (FWHM ~ 2 r50)."""
    src = _locus_candidates(np.nan_to_num(np.asarray(image, dtype=np.float32)), rms, mask, saturation, threshold, None)
    return 2.0 * _locus(src)


def _locus(cand) -> float:
    small = np.sort(cand["r50"].values)[: max(3, len(cand) // 2)]
    return float(np.median(small))


def _locus_candidates(img, rms, mask, saturation, threshold, path):
    import sep

    bad = np.zeros(img.shape, bool) if mask is None else np.asarray(mask, bool)
    src = detect_sources(img, rms, threshold=threshold, mask=bad, minarea=5)
    if len(src) == 0:
        raise PSFEstimationError(path, f"no source above {threshold} sigma to measure the PSF from")
    r50, rflag = sep.flux_radius(as_sep_array(img), np.array(src["x"], float), np.array(src["y"], float),
                                 6.0 * np.maximum(np.array(src["a"], float), 1.0), 0.5, subpix=5)
    src["r50"] = r50
    good = (src["flag"] == 0) & (rflag == 0) & np.isfinite(src["r50"]) & (src["r50"] > 0.3)
    if saturation is not None:
        good &= src["peak"] < 0.6 * saturation
    if good.sum() == 0:
        good = np.isfinite(src["r50"]) & (src["r50"] > 0.3)
    cand = src[good].copy()
    if len(cand) == 0:
        raise PSFEstimationError(path, "no unsaturated, unblended star to measure the PSF from")
    cand.attrs["all"] = src
    return cand


def estimate_psf(
    image: np.ndarray,
    rms: float,
    mask: np.ndarray | None = None,
    saturation: float | None = None,
    stamp_size: int | None = None,
    max_stars: int = 40,
    min_stars: int = 3,
    threshold: float = 20.0,
    path: str | None = None,
    method: str = "moffat",
) -> PSFModel:
    """Measure the PSF of a background-subtracted image from its stars.

    Falls back to a Gaussian of the measured half-light size when fewer than
    ``min_stars`` clean stars exist; raises :class:`PSFEstimationError`
    (naming ``path``) when no star at all can be used.
    """
    from scipy import ndimage

    img = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    bad = np.zeros(img.shape, bool) if mask is None else np.asarray(mask, bool)
    cand = _locus_candidates(img, rms, bad, saturation, threshold, path)
    src = cand.attrs["all"]
    locus = _locus(cand)
    fwhm_guess = 2.0 * locus
    if stamp_size is None:
        stamp_size = int(np.clip(2 * int(4.0 * fwhm_guess) + 1, 15, 51))
    half = stamp_size // 2
    ny, nx = img.shape
    sel = cand[(np.abs(cand["r50"] - locus) < 0.2 * locus)
               & (cand["b"] / cand["a"] > 0.6)
               & (cand["x"] > half + 3) & (cand["x"] < nx - half - 4)
               & (cand["y"] > half + 3) & (cand["y"] < ny - half - 4)]
    if len(sel):
        iso = isolated(src["x"].values, src["y"].values, 1.2 * half)
        iso_sel = iso[sel.index.values] if len(iso) == len(src) else np.ones(len(sel), bool)
        sel = sel[iso_sel]
    sel = sel.sort_values("flux", ascending=False).head(max_stars)
    stamps = []
    fits_ = []
    for _, s in sel.iterrows():
        cx, cy = int(round(s.x)), int(round(s.y))
        if bad[cy - half - 2 : cy + half + 3, cx - half - 2 : cx + half + 3].any():
            continue
        big = img[cy - half - 2 : cy + half + 3, cx - half - 2 : cx + half + 3].astype(np.float64)
        if method == "moffat":
            fit = _fit_star_moffat(big[2:-2, 2:-2], s.x - cx, s.y - cy, fwhm_guess)
            if fit is not None:
                fits_.append(fit)
            continue
        shifted = ndimage.shift(big, (cy - s.y, cx - s.x), order=3, mode="nearest")[2:-2, 2:-2]
        total = shifted.sum()
        if total > 0:
            stamps.append(shifted / total)
    if method == "moffat" and len(fits_) >= min_stars:
        pars = np.array(fits_)
        fwhm, beta, e1, e2 = (float(np.median(pars[:, k])) for k in range(4))
        ell = float(min(np.hypot(e1, e2), 0.6))
        theta = 0.5 * float(np.arctan2(e2, e1))
        stamp = moffat_stamp(fwhm, stamp_size, beta, 0.0, 0.0, 3, ell, theta)
        return PSFModel(stamp.astype(np.float32), fwhm, beta, len(fits_), ell, "moffat", theta)
    if len(stamps) >= min_stars:
        psf = np.median(np.stack(stamps), axis=0)
        psf = np.clip(psf, 0, None)
        psf /= psf.sum()
        fwhm, beta = fit_moffat_fwhm(psf)
        return PSFModel(psf.astype(np.float32), fwhm, beta, len(stamps), _moments_ellipticity(psf), "empirical")
    stamp = gaussian_stamp(fwhm_guess, stamp_size)
    return PSFModel(stamp.astype(np.float32), fwhm_guess, float("inf"), len(stamps), 0.0, "gaussian-fallback")


def psf_photometry(image: np.ndarray, psf, x, y, bad: np.ndarray | None = None) -> np.ndarray:
    """Linear PSF-fit fluxes at fixed positions: sum(P I) / sum(P^2), P shifted to each position.

    ``psf`` is a centred unit-sum stamp; the result is in the PSF's flux
    definition (flux inside the stamp), so two images photometered with their
    own PSFs give exactly the flux ratio ZOGY's zero points need. Stars whose
    stamp leaves the image or touches a bad pixel get NaN.
    """
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    model = psf if isinstance(psf, PSFModel) else PSFModel(np.asarray(psf), 0.0, 0.0, 0, 0.0, "empirical")
    half = model.stamp.shape[0] // 2
    ny, nx = img.shape
    out = np.full(len(np.atleast_1d(x)), np.nan)
    for k, (xi, yi) in enumerate(zip(np.atleast_1d(x), np.atleast_1d(y))):
        cx, cy = int(round(xi)), int(round(yi))
        if cx - half < 0 or cy - half < 0 or cx + half >= nx or cy + half >= ny:
            continue
        sl = (slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1))
        if bad is not None and bad[sl].any():
            continue
        p = model.render(xi - cx, yi - cy)
        stamp = img[sl]
        if not np.isfinite(stamp).all():
            continue
        out[k] = float((p * stamp).sum() / (p * p).sum())
    return out
