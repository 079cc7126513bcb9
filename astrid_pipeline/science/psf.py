"""The PSF of an image: measured on its stars, or supplied by the user; analytic PSF models.

Stars are chosen by :func:`astrid_pipeline.science.stars.select_psf_stars`
(the stellar locus in half-light radius, unsaturated, isolated, compact), so a
field full of compact galaxies still gives the PSF of its stars. Each star is
fitted with a pixel-integrated Moffat profile (Moffat 1969; Trujillo et al.
2001 for its use as a seeing PSF) on a local background, with bad and
cosmic-ray pixels as missing data (zero weight) rather than a reason to drop
the star (weights: the inverse background variance). The per-star FWHMs
give the locus a second time, sharper than r50 (compact galaxies lie above
the stars); one common elliptical Moffat is then fitted to all stars at once
(per-star positions refined, flux and background solved linearly), stars
whose unexplained fraction of signal stands out (galaxies, blends) are
rejected and the fit is repeated. Joint fitting of many stars at different sub-pixel phases
is what constrains undersampled space-telescope PSFs (FWHM 1-2.5 px; Anderson
& King 2000 use the same idea for their effective PSF).

Whatever happens is said: :class:`PSFModel` carries the number of stars, the
method and a ``warning`` text (few stars, a fallback, an ignored CR mask); a
Gaussian fallback is never silent (``PSFFALLB`` and ``PSFWARN`` header
keywords, a ``logging`` warning).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from astrid_pipeline.errors import PSFEstimationError

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.3548200450309493


@dataclass
class PSFConfig:
    """How stars are chosen and fitted for the PSF (one definition; the Dagster config derives from it)."""

    detect_sigma: float = field(default=10.0, metadata={
        "description": "SEP detection threshold per pixel (sigma) for PSF star candidates"})
    min_snr: float = field(default=30.0, metadata={
        "description": "minimum aperture S/N (within 2 half-light radii) of a PSF star"})
    max_stars: int = field(default=40, metadata={
        "description": "at most this many stars (highest S/N first) enter the PSF fit"})
    min_stars: int = field(default=3, metadata={
        "description": "fewer stars than this give a PSF with a warning (none at all: a Gaussian fallback)"})
    method: str = field(default="moffat", metadata={
        "description": "moffat (joint elliptical Moffat fit) or empirical (median of recentred star stamps)"})
    stamp_size: int = field(default=0, metadata={
        "description": "odd side of the PSF stamp in pixels; 0 = 2*int(4*FWHM)+1 clipped to 15..51"})
    min_axis_ratio: float = field(default=0.6, metadata={
        "description": "minimum b/a (SEP isophotal moments) of a PSF star"})
    saturation_fraction: float = field(default=0.8, metadata={
        "description": "stars whose raw peak exceeds this fraction of the saturation level are not used"})
    model_error: float = field(default=0.0, metadata={
        "description": "fractional model error added in quadrature to the pixel noise in the fit weights"})
    clip_sigma: float = field(default=3.0, metadata={
        "description": "stars deviating by more than this many robust sigma in FWHM or fit residual are rejected"})
    n_iter: int = field(default=3, metadata={
        "description": "fit / reject / refit iterations"})
    beta_prior: float = field(default=3.0, metadata={
        "description": "weak prior centre of the Moffat beta (matters only when the data cannot fix it)"})


# --------------------------------------------------------------------------- analytic profiles
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

    sigma = fwhm / FWHM_PER_SIGMA
    half = size // 2
    edges = np.arange(-half - 0.5, half + 1.5)
    cx = np.diff(0.5 * erf((edges - dx) / (np.sqrt(2) * sigma)))
    cy = np.diff(0.5 * erf((edges - dy) / (np.sqrt(2) * sigma)))
    img = np.outer(cy, cx)
    return img / img.sum()


def integration_oversampling(fwhm: float) -> int:
    """Odd sub-sampling per pixel side that integrates a Moffat of this FWHM (pixels) over pixels to ~1 %.

    (Midpoint rule; measured error of the peak pixel: 0.8 % at FWHM 2.5 with
    3, 1.2 % at FWHM 0.7 with 5, 0.8 % at FWHM 0.4 with 7.)
    """
    return 3 if fwhm >= 2.0 else (5 if fwhm >= 0.8 else 7)


def _moffat_pixels(fwhm, beta, e1, e2, dx, dy, size, os):
    """Unit-integral elliptical Moffat integrated over the pixels of ``size`` stamps, one per (dx, dy).

    Every parameter is a scalar or an array of one value per star. Returns
    (N, size, size): the fraction of each star's flux in each pixel (sums to
    < 1 when the wings leave the stamp).
    """
    def col(v):
        return np.asarray(v, dtype=np.float64).reshape(-1, 1, 1)

    fwhm, beta, e1, e2, dx, dy = (col(v) for v in (fwhm, beta, e1, e2, dx, dy))
    e = np.minimum(np.hypot(e1, e2), 0.8)
    th = 0.5 * np.arctan2(e2, e1)
    q = 1.0 - e
    alpha2 = (fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))) ** 2
    half = size // 2
    sub = (np.arange(os) + 0.5) / os - 0.5
    g = (np.arange(-half, half + 1)[:, None] + sub[None, :]).ravel()  # size*os sample positions
    xx = g[None, None, :] - dx
    yy = g[None, :, None] - dy
    c, s = np.cos(th), np.sin(th)
    xr = c * xx + s * yy
    yr = c * yy - s * xx
    r2 = (q * xr * xr + yr * yr / q) / alpha2
    prof = np.exp(-beta * np.log1p(r2)) * ((beta - 1.0) / (np.pi * alpha2))
    n = prof.shape[0]
    return prof.reshape(n, size, os, size, os).mean(axis=(2, 4))


# --------------------------------------------------------------------------- the model
@dataclass
class PSFModel:
    """A PSF: a centred, odd-sized, unit-sum stamp, its FWHM (pixels) and where it came from.

    ``method`` is ``moffat`` (analytic fit to stars), ``empirical`` (stacked
    stars), ``user`` (a PSF file) or ``gaussian-fallback`` (no usable star).
    ``warning`` is empty when nothing is amiss; ``rejected`` counts the star
    candidates not used, by reason; ``stars`` are the stars used. ``oversampled`` (user PSFs)
    holds the PSF sampled ``oversampling`` times finer than the pixels on the
    same axes, so :meth:`render` can shift it without interpolating pixels.
    """

    stamp: np.ndarray
    fwhm: float  # pixels
    beta: float  # Moffat beta of the fit (inf for a Gaussian fallback)
    n_stars: int
    ellipticity: float
    method: str
    theta: float = 0.0
    warning: str = ""
    source: str = ""
    oversampled: np.ndarray | None = None
    oversampling: int = 1
    rejected: dict = field(default_factory=dict)
    stars: np.ndarray | None = None  # (n, 2) fitted (x, y) of the stars used, 0-based pixels

    @property
    def fallback(self) -> bool:
        return self.method == "gaussian-fallback"

    def render(self, dx: float = 0.0, dy: float = 0.0, size: int | None = None) -> np.ndarray:
        """The PSF centred at (dx, dy) from the stamp centre, unit sum (analytic when fitted)."""
        size = size or self.stamp.shape[0]
        if self.method == "moffat":
            return moffat_stamp(self.fwhm, size, self.beta, dx, dy, integration_oversampling(self.fwhm),
                                self.ellipticity, self.theta)
        if self.method == "gaussian-fallback":
            return gaussian_stamp(self.fwhm, size, dx, dy)
        from scipy import ndimage

        if self.oversampled is not None:
            k = int(self.oversampling)
            o = np.asarray(self.oversampled, dtype=np.float64)
            if dx or dy:
                o = ndimage.shift(o, (dy * k, dx * k), order=3, mode="constant")
            n = o.shape[0] // k
            out = np.clip(o[: n * k, : n * k], 0, None).reshape(n, k, n, k).sum(axis=(1, 3))
            out = _fit_to_size(out, size)
        else:
            out = ndimage.shift(_fit_to_size(self.stamp.astype(np.float64), size), (dy, dx), order=3,
                                mode="constant")
        return out / out.sum()

    def as_header_cards(self, prefix: str = "") -> dict:
        return {
            f"{prefix}FWHM": (round(float(self.fwhm), 4), "PSF FWHM [pix]"),
            f"{prefix}NSTAR": (int(self.n_stars), "stars used for the PSF"),
            f"{prefix}PSFELL": (round(float(self.ellipticity), 4), "PSF ellipticity 1-b/a"),
            f"{prefix}PSFMETH": (self.method, "how the PSF was obtained"),
            f"{prefix}BETA": (float(self.beta) if np.isfinite(self.beta) else 99.0, "Moffat beta"),
            f"{prefix}PSFTHETA": (float(self.theta), "[rad] PSF major-axis angle"),
            f"{prefix}PSFFALLB": (bool(self.fallback), "T: fallback PSF, not measured on stars"),
            f"{prefix}PSFWARN": (self.warning or "", "what is not as it should be ('' = nothing)"),
            f"{prefix}PSFSRC": (str(self.source)[-60:], "PSF file (method user)"),
        }

    @classmethod
    def from_header(cls, stamp: np.ndarray, header, oversampled: np.ndarray | None = None,
                    oversampling: int = 1) -> PSFModel:
        """The model written by :meth:`as_header_cards` (the inverse, for products on disk)."""
        beta = float(header.get("BETA", 3.0))
        method = str(header["PSFMETH"])
        return cls(np.asarray(stamp, dtype=np.float32), float(header["FWHM"]),
                   float("inf") if method == "gaussian-fallback" else beta, int(header["NSTAR"]),
                   float(header.get("PSFELL", 0.0)), method, float(header.get("PSFTHETA", 0.0)),
                   str(header.get("PSFWARN", "")), str(header.get("PSFSRC", "")), oversampled, int(oversampling))


def _fit_to_size(a: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad an odd square array to ``size``."""
    n = a.shape[0]
    if n == size:
        return a
    if n > size:
        o = (n - size) // 2
        return a[o : o + size, o : o + size]
    out = np.zeros((size, size), a.dtype)
    o = (size - n) // 2
    out[o : o + n, o : o + n] = a
    return out


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


def moments_shape(stamp: np.ndarray) -> tuple[float, float]:
    """(1 - b/a, major-axis angle) from Gaussian-weighted second moments of a centred stamp."""
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
    return float(1 - np.sqrt(max(b2, 1e-12) / a2)), float(0.5 * np.arctan2(2 * ixy, ixx - iyy))


def half_max_fwhm(profile: np.ndarray, sampling: float = 1.0) -> float:
    """FWHM from the area above half the peak, 2 sqrt(A / pi), of a well-sampled PSF image.

    ``sampling`` is samples per pixel (the result is in pixels). Model-free:
    right for Airy cores and Moffats alike as long as the image resolves the core.
    """
    p = np.asarray(profile, dtype=np.float64)
    area = float((p >= 0.5 * np.nanmax(p)).sum()) / sampling**2
    return 2.0 * np.sqrt(area / np.pi)


# --------------------------------------------------------------------------- fitting stars
@dataclass
class _Stars:
    data: np.ndarray  # (N, s, s) background-subtracted pixels, 0 where missing
    weight: np.ndarray  # (N, s, s) inverse variance, 0 where missing
    cx: np.ndarray  # integer stamp centres
    cy: np.ndarray
    dx: np.ndarray  # sub-pixel offsets of the star from the stamp centre
    dy: np.ndarray


def _linear_amp_bkg(P, D, W):
    """Weighted least-squares flux A and background B of D ~ A P + B, per star (vectorised)."""
    sw = W.sum(axis=(1, 2))
    sp = (W * P).sum(axis=(1, 2))
    spp = (W * P * P).sum(axis=(1, 2))
    sd = (W * D).sum(axis=(1, 2))
    spd = (W * P * D).sum(axis=(1, 2))
    det = spp * sw - sp * sp
    det = np.where(np.abs(det) > 1e-300, det, np.inf)
    A = (spd * sw - sp * sd) / det
    B = (spp * sd - sp * spd) / det
    return A, B


def _cut_stamps(img, missing, rms, sel, size, model_error, segmap, grow):
    """Stamps of the candidate stars with weights; other sources' pixels (grown by ``grow``) are missing."""
    from scipy import ndimage

    half = size // 2
    ny, nx = img.shape
    rows = []
    for _, s in sel.iterrows():
        cx, cy = int(round(s.x)), int(round(s.y))
        if cx - half < 0 or cy - half < 0 or cx + half >= nx or cy + half >= ny:
            continue
        sl = (slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1))
        d = img[sl].astype(np.float64)
        m = missing[sl] | ~np.isfinite(d)
        if segmap is not None:
            seg = segmap[sl]
            other = (seg != 0) & (seg != int(s.seg_id))
            if grow and other.any():
                other = ndimage.binary_dilation(other, iterations=grow) & (seg != int(s.seg_id))
            m = m | other
        if m.mean() > 0.4:
            continue
        r = float(rms) if np.ndim(rms) == 0 else rms[sl].astype(np.float64)
        var = np.broadcast_to(np.asarray(r, float) ** 2, d.shape) + (model_error * np.clip(d, 0, None)) ** 2
        w = np.where(m, 0.0, 1.0 / np.maximum(var, 1e-300))
        rows.append((np.where(m, 0.0, d), w, cx, cy, s.x - cx, s.y - cy, s.name))
    if not rows:
        return None, []
    st = _Stars(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]), np.array([r[2] for r in rows]),
                np.array([r[3] for r in rows]), np.array([r[4] for r in rows], float),
                np.array([r[5] for r in rows], float))
    return st, [r[6] for r in rows]


def _batched_lm(resid, p0, lo, hi, steps, n_iter=20, tol=1e-4):
    """Levenberg-Marquardt on many independent small problems at once (one per star).

    ``resid(P)`` maps parameters (N, k) to weighted residuals (N, M); the
    Jacobian is by forward differences with ``steps`` (k,), all stars in one
    call. Returns (parameters, chi^2, converged).
    """
    p = np.clip(np.array(p0, dtype=np.float64), lo, hi)
    n, k = p.shape
    r = resid(p)
    cost = (r * r).sum(axis=1)
    lam = np.full(n, 1e-3)
    done = np.zeros(n, bool)
    eye = np.eye(k)
    for _ in range(n_iter):
        J = np.empty(r.shape + (k,))
        for j in range(k):
            q = p.copy()
            q[:, j] += steps[j]
            J[:, :, j] = (resid(q) - r) / steps[j]
        JTJ = np.einsum("nmk,nml->nkl", J, J)
        g = np.einsum("nmk,nm->nk", J, r)
        A = JTJ + lam[:, None, None] * (JTJ * eye + 1e-12 * eye)
        try:
            dp = -np.linalg.solve(A, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            dp = -g / np.maximum(np.einsum("nkk->nk", A), 1e-300)
        dp[done] = 0.0
        pn = np.clip(p + dp, lo, hi)
        rn = resid(pn)
        cn = (rn * rn).sum(axis=1)
        better = (cn < cost) & ~done
        p[better], r[better], cost[better] = pn[better], rn[better], cn[better]
        lam = np.where(better, lam * 0.3, lam * 10.0)
        done |= (better & (np.abs(dp) <= tol * np.maximum(np.abs(p), 1.0)).all(axis=1)) | (lam > 1e8)
        if done.all():
            break
    return p, cost, done


def _stars_resid(st: _Stars, size, os, shape):
    """Residual function of per-star (dx, dy[, fwhm]) with linear flux and background, for :func:`_batched_lm`."""
    sw = np.sqrt(st.weight).reshape(len(st.cx), -1)

    def resid(P):
        fwhm = P[:, 2] if P.shape[1] > 2 else shape[0]
        M = _moffat_pixels(fwhm, shape[1], shape[2], shape[3], P[:, 0], P[:, 1], size, os)
        A, B = _linear_amp_bkg(M, st.data, st.weight)
        return ((A[:, None, None] * M + B[:, None, None] - st.data).reshape(len(A), -1)) * sw

    return resid


def _fit_each(st: _Stars, size, fwhm0, os, beta=3.0):
    """Per-star circular Moffat (fixed beta): sub-pixel position and FWHM of each star; NaN rows on failure."""
    n = len(st.cx)
    p0 = np.column_stack([np.clip(st.dx, -1.4, 1.4), np.clip(st.dy, -1.4, 1.4), np.full(n, float(fwhm0))])
    lo, hi = np.array([-1.5, -1.5, 0.1]), np.array([1.5, 1.5, 40.0])
    p, _, _ = _batched_lm(_stars_resid(st, size, os, (None, beta, 0.0, 0.0)), p0, lo, hi,
                          np.array([0.01, 0.01, 0.01 * fwhm0]), n_iter=12, tol=1e-3)
    p[~np.isfinite(p).all(axis=1)] = np.nan
    p[p[:, 2] >= hi[2] * 0.9999] = np.nan  # pinned at the upper bound: not a star
    return p


def _fit_joint(st: _Stars, size, os, p0, beta_prior, prior_width=0.7):
    """One elliptical Moffat (fwhm, ln beta, e1, e2) for all stars, fluxes and backgrounds solved linearly."""
    from scipy.optimize import least_squares

    sw = np.sqrt(st.weight)

    def res(p):
        P = _moffat_pixels(p[0], np.exp(p[1]), p[2], p[3], st.dx, st.dy, size, os)
        A, B = _linear_amp_bkg(P, st.data, st.weight)
        r = ((A[:, None, None] * P + B[:, None, None] - st.data) * sw).ravel()
        prior = (p[1] - np.log(beta_prior)) / prior_width
        return np.concatenate([r, [prior]])

    lo = [0.3, np.log(1.5), -0.5, -0.5]
    hi = [40.0, np.log(15.0), 0.5, 0.5]
    x0 = np.clip(np.asarray(p0, float), np.array(lo) + 1e-6, np.array(hi) - 1e-6)
    r = least_squares(res, x0, bounds=(lo, hi), x_scale=[0.05 * x0[0], 0.1, 0.02, 0.02], max_nfev=60,
                      ftol=1e-6, xtol=1e-6)
    P = _moffat_pixels(r.x[0], np.exp(r.x[1]), r.x[2], r.x[3], st.dx, st.dy, size, os)
    A, B = _linear_amp_bkg(P, st.data, st.weight)
    chi2 = ((A[:, None, None] * P + B[:, None, None] - st.data) ** 2 * st.weight).sum(axis=(1, 2))
    dof = np.maximum((st.weight > 0).sum(axis=(1, 2)) - 4, 1)
    signal = ((A[:, None, None] * P) ** 2 * st.weight).sum(axis=(1, 2))
    # the part of each star the common PSF does not explain, as a fraction of its signal (chi^2 beyond the noise):
    # the same for a faint and a bright star that share the PSF, larger for a galaxy or a blend
    mismatch = np.maximum(chi2 - dof, 0.0) / np.maximum(signal, 1e-300)
    return r.x, mismatch, A


def _refine_positions(st: _Stars, size, os, p):
    """Sub-pixel positions of each star for a fixed common shape (in place)."""
    shape = (float(p[0]), float(np.exp(p[1])), float(p[2]), float(p[3]))
    q, _, _ = _batched_lm(_stars_resid(st, size, os, shape), np.column_stack([st.dx, st.dy]),
                          np.array([-1.5, -1.5]), np.array([1.5, 1.5]), np.array([0.01, 0.01]), n_iter=6, tol=1e-3)
    st.dx[:], st.dy[:] = q[:, 0], q[:, 1]


def fwhm_band(fwhm: float) -> float:
    """Half-width (dex) of the stellar band in per-star fitted FWHM: ~3 % for well-sampled bright stars,
    wider for undersampled ones (the fit of one undersampled star is less certain)."""
    return 0.012 + 0.04 / max(float(fwhm), 0.3)


def _robust_outliers(v, clip, floor):
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    return np.abs(v - med) > max(clip * mad, floor)


def _empirical_stack(st: _Stars, size, A):
    """Median of flux-normalised, recentred stamps (missing pixels ignored), clipped at 0, unit sum."""
    from scipy import ndimage

    stack = []
    for i in range(len(st.cx)):
        valid = (st.weight[i] > 0).astype(np.float64)
        d = ndimage.shift(st.data[i] * valid, (-st.dy[i], -st.dx[i]), order=3, mode="constant")
        v = ndimage.shift(valid, (-st.dy[i], -st.dx[i]), order=1, mode="constant")
        stack.append(np.where(v > 0.5, d / np.maximum(v, 1e-9), np.nan) / A[i])
    psf = np.nanmedian(np.stack(stack), axis=0)
    psf = np.clip(np.nan_to_num(psf, nan=0.0), 0, None)
    return _fit_to_size(psf, size) / psf.sum()


def estimate_psf(
    image: np.ndarray,
    rms: float | np.ndarray,
    mask: np.ndarray | None = None,
    saturation: float | None = None,
    stamp_size: int | None = None,
    max_stars: int | None = None,
    min_stars: int | None = None,
    threshold: float | None = None,
    path: str | None = None,
    method: str | None = None,
    *,
    cr_mask: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    clipped_at: float | None = None,
    background: float | np.ndarray | None = None,
    fwhm_hint: float | None = None,
    fwhm_hint_source: str = "",
    config: PSFConfig | None = None,
) -> PSFModel:
    """Measure the PSF of a background-subtracted image from its stars.

    ``rms`` is the background noise (scalar or map, image units); ``mask``
    marks unusable pixels; ``cr_mask`` marks cosmic-ray pixels, which are
    missing data in the fit and reject a star only when they hit its core;
    ``saturation`` (raw units, with ``background`` the level that was
    subtracted), ``clipped_at`` (the value a clipped image without SATURATE is
    cut at: :func:`astrid_pipeline.science.stars.clip_level`) and
    ``saturated`` (a map) exclude saturated stars. Explicit
    arguments override the fields of ``config``.

    Fewer than ``min_stars`` stars give the fitted PSF with a ``warning``. No
    usable star gives a Gaussian fallback (``method='gaussian-fallback'``,
    a warning naming the reason) whose FWHM is ``fwhm_hint`` (e.g. a header
    FWHM/SEEING keyword) or else twice the median half-light radius of the
    smallest detected sources; with no source and no hint it raises
    :class:`PSFEstimationError` naming ``path``.
    """
    from astrid_pipeline.science.stars import select_psf_stars, stellar_locus

    cfg = config or PSFConfig()
    max_stars = cfg.max_stars if max_stars is None else int(max_stars)
    min_stars = cfg.min_stars if min_stars is None else int(min_stars)
    method = cfg.method if method is None else method
    if method not in ("moffat", "empirical"):
        raise ValueError(f"PSF method must be 'moffat' or 'empirical', got {method!r}")
    detect = cfg.detect_sigma if threshold is None else float(threshold)
    img = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    bad = (np.zeros(img.shape, bool) if mask is None else np.asarray(mask, bool)) | ~np.isfinite(image)
    sel = select_psf_stars(img, rms, bad, cr_mask=cr_mask, saturation=saturation, background=background,
                           saturated=saturated, clipped_at=clipped_at, detect_sigma=detect, min_snr=cfg.min_snr,
                           min_axis_ratio=cfg.min_axis_ratio, saturation_fraction=cfg.saturation_fraction)
    notes = list(sel.notes)
    rejected = sel.rejected_counts()
    cand = sel.stars.head(max_stars)
    fwhm0 = 1.7 * sel.locus_r50 if np.isfinite(sel.locus_r50) else np.nan  # r50 ~ 0.6 FWHM for a Moffat

    def fallback(reason: str) -> PSFModel:
        tab = sel.table
        if fwhm_hint is not None and np.isfinite(fwhm_hint) and fwhm_hint > 0:
            f, how = float(fwhm_hint), f"the header's {fwhm_hint_source or 'FWHM hint'}"
        elif len(tab) and np.isfinite(tab["r50"]).any():
            small = np.sort(tab["r50"].dropna().values)[: max(3, len(tab) // 2)]
            f = float(max(2.0 * np.median(small), 1.0))
            how = f"twice the median half-light radius of {len(small)} detected source(s) that may not be stars"
        else:
            raise PSFEstimationError(path, f"no source above {detect} sigma to measure the PSF from, "
                                           "and no FWHM/SEEING header keyword to fall back on")
        size = stamp_size or int(np.clip(2 * int(4.0 * f) + 1, 15, 51))
        text = (f"PSF fallback: {reason}; Gaussian of FWHM {f:.2f} px from {how}"
                + (f"; rejected: {_fmt_counts(rejected)}" if rejected else ""))
        log.warning("%s: %s", path or "<in-memory image>", text)
        return PSFModel(gaussian_stamp(f, size).astype(np.float32), f, float("inf"), 0, 0.0, "gaussian-fallback",
                        warning="; ".join([text] + notes), rejected=rejected)

    if len(cand) == 0:
        return fallback("no usable star" if len(sel.table) else "no source detected")
    r_fit = int(np.clip(np.ceil(2.5 * fwhm0), 3, 20))  # fit radius: core and inner wings, 2.5 FWHM
    fit_size = 2 * r_fit + 1
    missing = bad
    if cr_mask is not None:
        cr = np.asarray(cr_mask, bool)
        if sel.cr_ignored_in_cores:  # not believed on the stars' cores: keep those pixels in the fit
            from astrid_pipeline.science.stars import _disk

            cr = cr.copy()
            for _, c in cand.iterrows():
                sl, inside = _disk(cr.shape, c.x, c.y, max(1.0, float(c.r50)) + 1.0)
                cr[sl][inside] = False
        missing = bad | cr
    # the pixels of other sources (grown by ~FWHM/2 for their wings) are missing data for a star
    st, _ = _cut_stamps(img, missing, rms, cand, fit_size, cfg.model_error, sel.segmap,
                          max(1, int(round(0.5 * fwhm0))))
    if st is None:
        return fallback(f"no star has a full {fit_size}x{fit_size} stamp inside the image")
    os = integration_oversampling(fwhm0)
    each = _fit_each(st, fit_size, fwhm0, os)
    ok = np.isfinite(each).all(axis=1)
    n_failed = int((~ok).sum())
    keep = ok.copy()
    if ok.sum() >= 3 and np.median(each[ok, 2]) >= 1.5:
        # the locus again, in fitted FWHM (sharper than r50): compact galaxies and blends lie above it
        keep[ok] = stellar_locus(each[ok, 2], fwhm_band, min_members=1, pixel_limit=None)[2]
    elif ok.sum() >= 4:  # undersampled: one star's FWHM swings with its phase; only clear outliers go
        keep[ok] = ~_robust_outliers(np.log(each[ok, 2]), cfg.clip_sigma, 0.1)
    n_fwhm_out = int(ok.sum() - keep.sum())
    if not keep.any():
        return fallback(f"the fit failed on all {len(ok)} candidate star(s)")
    st.dx[ok], st.dy[ok] = each[ok, 0], each[ok, 1]
    st = _take(st, keep)
    f_each = float(np.median(each[keep, 2]))
    os = integration_oversampling(f_each)
    p = np.array([f_each, np.log(cfg.beta_prior), 0.0, 0.0])
    n_res_out = 0
    p, _, A = _fit_joint(st, fit_size, os, p, cfg.beta_prior)
    _refine_positions(st, fit_size, os, p)  # positions for the common shape (the first ones assumed beta = 3)
    for it in range(max(1, cfg.n_iter)):
        p, mis, A = _fit_joint(st, fit_size, os, p, cfg.beta_prior)
        if len(mis) < 4 or it == cfg.n_iter - 1:
            break
        med = float(np.median(mis))
        mad = 1.4826 * float(np.median(np.abs(mis - med)))
        bad_fit = mis > max(4.0 * med, med + cfg.clip_sigma * mad, 2e-3)
        if not bad_fit.any():
            break
        n_res_out += int(bad_fit.sum())
        st = _take(st, ~bad_fit)
        A = A[~bad_fit]
    fwhm, beta = float(p[0]), float(np.exp(p[1]))
    ell = float(min(np.hypot(p[2], p[3]), 0.8))
    theta = 0.5 * float(np.arctan2(p[3], p[2]))
    n = len(st.cx)
    for k, v in (("fit_failed", n_failed), ("fwhm_outlier", n_fwhm_out), ("residual_outlier", n_res_out)):
        if v:
            rejected[k] = rejected.get(k, 0) + v
    size = stamp_size or cfg.stamp_size or int(np.clip(2 * int(4.0 * fwhm) + 1, 15, 51))
    size = size + 1 - size % 2
    if n < min_stars:
        notes.insert(0, f"PSF from only {n} star(s), fewer than min_stars={min_stars}"
                        + (f" (rejected: {_fmt_counts(rejected)})" if rejected else ""))
    if method == "empirical":
        psf = _empirical_stack(st, fit_size, A)
        psf = _fit_to_size(psf, size)
        psf /= psf.sum()
        e, th = moments_shape(psf)
        model = PSFModel(psf.astype(np.float32), fwhm, beta, n, e, "empirical", th)
    else:
        stamp = moffat_stamp(fwhm, size, beta, 0.0, 0.0, integration_oversampling(fwhm), ell, theta)
        model = PSFModel(stamp.astype(np.float32), fwhm, beta, n, ell, "moffat", theta)
    model.warning = "; ".join(notes)
    model.rejected = rejected
    model.stars = np.column_stack([st.cx + st.dx, st.cy + st.dy])
    if model.warning:
        log.warning("%s: %s", path or "<in-memory image>", model.warning)
    return model


def fit_pixel_moffat(stamp: np.ndarray, beta_prior: float = 3.0) -> tuple[float, float, float, float]:
    """(FWHM px, beta, ellipticity, theta) of a pixel-integrated elliptical Moffat fitted to a noiseless stamp."""
    d = np.asarray(stamp, dtype=np.float64)
    d = d / d.sum()
    w = np.full((1,) + d.shape, 1.0 / (1e-3 * d.max()) ** 2)  # as if the noise were 0.1 % of the peak
    st = _Stars(d[None], w, np.zeros(1, int), np.zeros(1, int), np.zeros(1), np.zeros(1))
    size = d.shape[0]
    f0 = max(half_max_fwhm(d), 0.8)
    p = np.array([f0, np.log(beta_prior), 0.0, 0.0])
    for _ in range(2):
        os = integration_oversampling(p[0])
        p, _, _ = _fit_joint(st, size, os, p, beta_prior, prior_width=10.0)
        _refine_positions(st, size, os, p)
    return float(p[0]), float(np.exp(p[1])), float(min(np.hypot(p[2], p[3]), 0.8)), 0.5 * float(np.arctan2(p[3], p[2]))


def image_psf(data: np.ndarray, mask: np.ndarray | None = None, header=None, *, saturated: np.ndarray | None = None,
              cr_mask: np.ndarray | None = None, pixel_scale: float | None = None,
              header_pixel_scale: float | None = None, config: PSFConfig | None = None,
              path: str | None = None) -> tuple[PSFModel, dict]:
    """The PSF of an image as it comes (not background-subtracted), with what was assumed.

    The background is SEP's mesh background on the unmasked pixels (CR pixels
    excluded); saturation is the header's SATURATE (raw units), else a clip
    level found in the data (:func:`~astrid_pipeline.science.stars.clip_level`),
    else none; the fallback FWHM hint is a FWHM/SEEING header keyword
    (:func:`header_fwhm`, converted with
    ``header_pixel_scale``, arcsec per pixel of the image the header describes,
    to pixels of ``pixel_scale``). Returns (model, info) with ``saturation``,
    ``saturation_source`` and ``rejected`` (star candidates by reason).
    """
    from astrid_pipeline.science.background import estimate_background
    from astrid_pipeline.science.stars import clip_level

    d = np.asarray(data, dtype=np.float64)
    bad = (np.zeros(d.shape, bool) if mask is None else np.asarray(mask, bool)) | ~np.isfinite(d)
    bkg = estimate_background(d, bad if cr_mask is None else bad | np.asarray(cr_mask, bool))
    img = np.where(bad, np.nan, d - bkg.level)
    sat = None
    if header is not None and "SATURATE" in header:
        try:
            sat = float(header["SATURATE"])
        except (TypeError, ValueError):
            sat = None
        sat = sat if sat is not None and np.isfinite(sat) and sat > 0 else None
    clip = None if sat is not None else clip_level(np.where(bad, np.nan, d))
    hint, key = (None, "")
    if header is not None:
        hint, key = header_fwhm(header, header_pixel_scale or pixel_scale)
    scale = pixel_scale or header_pixel_scale
    # the noise map where the noise varies (mosaics of uneven depth), else its global value (SEP is faster with it)
    lo, hi = np.percentile(bkg.rms[::7, ::7], [5, 95])
    rms = bkg.rms if hi > 1.2 * lo else bkg.global_rms
    model = estimate_psf(img, rms, bad, sat, path=path, cr_mask=cr_mask, saturated=saturated, clipped_at=clip,
                         background=bkg.level, fwhm_hint=None if hint is None or not scale else hint / scale,
                         fwhm_hint_source=f"{key} keyword" if key else "", config=config)
    info = {"saturation": float(sat if sat is not None else (clip if clip is not None else -1.0)),
            "saturation_source": ("header SATURATE" if sat is not None else "clip level detected in the data"
                                  if clip is not None else "none (no SATURATE keyword, no clipped pixels)"),
            "rejected": dict(model.rejected)}
    return model, info


def header_fwhm(header, pixel_scale_arcsec: float | None) -> tuple[float | None, str]:
    """Seeing FWHM in arcsec from a header (FWHM, PSF_FWHM, SEEING, FWHM_AVE), and the keyword used.

    ``FWHM`` is taken in pixels (as NOAO/DECam community pipelines write it)
    unless its comment says arcsec; ``SEEING``/``PSF_FWHM``/``FWHM_AVE`` in
    arcsec unless the comment says pixels. (None, '') when absent or absurd.
    """
    for key, default_px in (("FWHM", True), ("PSF_FWHM", False), ("SEEING", False), ("FWHM_AVE", False)):
        if key not in header:
            continue
        try:
            v = float(header[key])
        except (TypeError, ValueError):
            continue
        if not (np.isfinite(v) and v > 0):
            continue
        comment = str(header.comments[key]).lower() if hasattr(header, "comments") else ""
        in_px = ("pix" in comment) or (default_px and "arcsec" not in comment and '"' not in comment)
        if in_px:
            if not pixel_scale_arcsec:
                continue
            v *= pixel_scale_arcsec
        if 0.01 < v < 60.0:
            return v, key
    return None, ""


def _take(st: _Stars, keep: np.ndarray) -> _Stars:
    return _Stars(st.data[keep], st.weight[keep], st.cx[keep], st.cy[keep], st.dx[keep].copy(), st.dy[keep].copy())


def _fmt_counts(d: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


def stellar_fwhm(image: np.ndarray, rms: float, mask: np.ndarray | None = None, saturation: float | None = None,
                 threshold: float = 10.0) -> float:
    """FWHM (pixels) of the stars of a background-subtracted image: the Moffat fit of :func:`estimate_psf` to at
    most 15 stars of the locus (cosmic-ray spots and galaxies stay out of it); 2 r50 of the locus when no star
    can be fitted; NaN without stars."""
    from astrid_pipeline.errors import PSFEstimationError
    from astrid_pipeline.science.stars import select_psf_stars

    img = np.asarray(image, dtype=np.float64)
    try:
        model = estimate_psf(img, rms, mask, saturation, max_stars=15, threshold=threshold)
        if not model.fallback and np.isfinite(model.fwhm):
            return float(model.fwhm)
    except PSFEstimationError:
        pass
    sel = select_psf_stars(img, rms, mask, saturation=saturation, detect_sigma=threshold)
    return 2.0 * sel.locus_r50


# --------------------------------------------------------------------------- photometry
def psf_photometry(image: np.ndarray, psf, x, y, bad: np.ndarray | None = None) -> np.ndarray:
    """Linear PSF-fit fluxes at fixed positions: sum(w P I) / sum(w P^2), P shifted to each position.

    ``psf`` is a centred unit-sum stamp or a :class:`PSFModel`; the result is
    in the PSF's flux definition (flux inside the stamp), so two images
    photometered with their own PSFs give exactly the flux ratio ZOGY's zero
    points need. Bad (``bad``) and non-finite pixels have weight w = 0, as do
    pixels beyond the image edge: the estimate stays unbiased. A star gets NaN
    only when the missing pixels carry more than 30 % of the PSF's
    information sum(P^2) (its core), or its centre is off the image.
    """
    img = np.asarray(image, dtype=np.float64)
    model = psf if isinstance(psf, PSFModel) else PSFModel(np.asarray(psf), 0.0, 0.0, 0, 0.0, "empirical")
    half = model.stamp.shape[0] // 2
    ny, nx = img.shape
    xs, ys = np.atleast_1d(x), np.atleast_1d(y)
    out = np.full(len(xs), np.nan)
    for k, (xi, yi) in enumerate(zip(xs, ys)):
        if not (np.isfinite(xi) and np.isfinite(yi)):
            continue
        cx, cy = int(round(xi)), int(round(yi))
        if cx < 0 or cy < 0 or cx >= nx or cy >= ny:
            continue
        y0, y1 = max(cy - half, 0), min(cy + half + 1, ny)
        x0, x1 = max(cx - half, 0), min(cx + half + 1, nx)
        p_full = model.render(xi - cx, yi - cy)
        p = p_full[y0 - (cy - half) : y1 - (cy - half), x0 - (cx - half) : x1 - (cx - half)]
        stamp = img[y0:y1, x0:x1]
        w = np.isfinite(stamp)
        if bad is not None:
            w &= ~np.asarray(bad[y0:y1, x0:x1], bool)
        info = float((p_full * p_full).sum())
        used = float((p * p)[w].sum())
        if info <= 0 or used < 0.7 * info:
            continue
        out[k] = float((p * stamp)[w].sum() / used)
    return out
