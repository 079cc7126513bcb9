"""ZOGY image differencing (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27).

Given a new image N and a reference R on the same pixel grid, both
background-subtracted, with PSFs P_n and P_r, flux zero points F_n and F_r
and background noise sigma_n and sigma_r, ZOGY computes in Fourier space
(hats are 2-D FFTs; equations of the paper in brackets):

- the proper difference image D, whose noise is white with unit variance
  where only background noise matters [eq. 13]::

      D^ = (F_r P_r^ N^ - F_n P_n^ R^) / sqrt(sigma_n^2 F_r^2 |P_r^|^2 + sigma_r^2 F_n^2 |P_n^|^2)

- its PSF P_D and flux zero point F_D [eqs. 14, 15];
- the matched-filter score S = F_D D (x) P_D-bar [eq. 12], which equals
  k_n (x) N - k_r (x) R with the kernels of eqs. 28-29;
- S_corr = S / sqrt(V(S_N) + V(S_R) + V_ast) [eq. 25], where the source-noise
  terms V(S_N) = V(N) (x) k_n^2 and V(S_R) = V(R) (x) k_r^2 use per-pixel
  variance images (background + Poisson noise of sources) and V_ast adds the
  astrometric registration noise sigma_x^2 (d S_N/dx)^2 + ... [eq. 30-31];
- the PSF-photometry flux of a point source alpha = S / F_S with
  F_S = sum |F_D P_D^|^2 / n_pix [eq. 42], and its error sqrt(V_S) / F_S.

Everything is done with real FFTs (``scipy.fft.rfft2``) in single precision
using all cores, and each full-size FFT is computed once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

_EPS = 1e-12


def _workers() -> int:
    return int(os.environ.get("ASTRID_FFT_WORKERS", "0")) or (os.cpu_count() or 1)


def embed_psf(psf: np.ndarray, shape: tuple[int, int], dtype=np.float32) -> np.ndarray:
    """Place a centred, odd-sized PSF stamp in a full-size array with its centre at [0, 0].

    The stamp is normalised to unit sum. Shifting the centre to the origin
    makes convolution by FFT introduce no translation.
    """
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"PSF stamp must be 2-D with odd sides, got shape {psf.shape}")
    if psf.shape[0] > shape[0] or psf.shape[1] > shape[1]:
        raise ValueError(f"PSF stamp {psf.shape} is larger than the image {shape}")
    total = psf.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("PSF stamp must have a positive, finite sum")
    out = np.zeros(shape, dtype=dtype)
    cy, cx = psf.shape[0] // 2, psf.shape[1] // 2
    out[: psf.shape[0], : psf.shape[1]] = psf / total
    return np.roll(out, (-cy, -cx), axis=(0, 1))


def centred_stamp(full: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`embed_psf`: cut a centred ``size`` x ``size`` stamp from an origin-centred array."""
    half = size // 2
    rolled = np.roll(full, (half, half), axis=(0, 1))
    return np.array(rolled[:size, :size])


def zogy_kernels(
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    shape: tuple[int, int],
    sigma_n: float,
    sigma_r: float,
    F_n: float = 1.0,
    F_r: float = 1.0,
    dtype=np.float32,
):
    """Return (Pn_hat, Pr_hat, sqrt(denominator), F_D, F_S, kn_hat, kr_hat, PD_hat) on an rfft grid.

    ``shape`` is the image shape; PSFs are centred odd-sized stamps.
    """
    if sigma_n <= 0 or sigma_r <= 0 or not np.isfinite(sigma_n) or not np.isfinite(sigma_r):
        raise ValueError(f"background noise must be positive and finite (sigma_n={sigma_n}, sigma_r={sigma_r})")
    if F_n <= 0 or F_r <= 0:
        raise ValueError(f"flux zero points must be positive (F_n={F_n}, F_r={F_r})")
    w = _workers()
    Pn_hat = sfft.rfft2(embed_psf(psf_n, shape, dtype), workers=w)
    Pr_hat = sfft.rfft2(embed_psf(psf_r, shape, dtype), workers=w)
    abs_pn2 = (Pn_hat.real**2 + Pn_hat.imag**2)
    abs_pr2 = (Pr_hat.real**2 + Pr_hat.imag**2)
    denom = (sigma_n**2 * F_r**2) * abs_pr2 + (sigma_r**2 * F_n**2) * abs_pn2
    denom = np.maximum(denom, _EPS * denom.max()).astype(dtype)
    denom_sqrt = np.sqrt(denom)
    F_D = F_r * F_n / np.sqrt(sigma_n**2 * F_r**2 + sigma_r**2 * F_n**2)
    PD_hat = (F_r * F_n / F_D) * Pn_hat * Pr_hat / denom_sqrt
    # F_S = sum over the full plane of |F_D P_D^|^2 / n_pix; rfft holds half the plane.
    full = _full_plane_sum((F_D**2) * (PD_hat.real**2 + PD_hat.imag**2), shape)
    F_S = float(full / (shape[0] * shape[1]))
    kn_hat = (F_n * F_r**2) * np.conj(Pn_hat) * abs_pr2 / denom
    kr_hat = (F_r * F_n**2) * np.conj(Pr_hat) * abs_pn2 / denom
    return Pn_hat, Pr_hat, denom_sqrt, float(F_D), F_S, kn_hat.astype(Pn_hat.dtype), kr_hat.astype(Pn_hat.dtype), PD_hat.astype(Pn_hat.dtype)


def _full_plane_sum(half: np.ndarray, shape: tuple[int, int]) -> float:
    """Sum of a Hermitian-symmetric quantity over the full FFT plane from its rfft half."""
    nx = shape[1]
    s = half.sum(dtype=np.float64) * 2.0
    s -= half[:, 0].sum(dtype=np.float64)
    if nx % 2 == 0:
        s -= half[:, -1].sum(dtype=np.float64)
    return float(s)


@dataclass
class ZogyResult:
    """Outputs of :func:`zogy_difference`; images have the input shape, float32."""

    D: np.ndarray
    S: np.ndarray
    S_corr: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    psf_D: np.ndarray
    F_D: float
    F_S: float
    noise_D: float
    noise_S_corr: float
    params: dict = field(default_factory=dict)


def robust_std(values: np.ndarray) -> float:
    """Standard deviation from the median absolute deviation (outlier-resistant)."""
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    med = np.median(v)
    return float(1.482602218505602 * np.median(np.abs(v - med)))


def zogy_difference(
    N: np.ndarray,
    R: np.ndarray,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    sigma_n: float,
    sigma_r: float,
    *,
    F_n: float = 1.0,
    F_r: float = 1.0,
    var_n: np.ndarray | None = None,
    var_r: np.ndarray | None = None,
    astrometric_sigma: tuple[float, float] = (0.0, 0.0),
    mask: np.ndarray | None = None,
    psf_d_size: int | None = None,
    noise_sample: int = 4,
) -> ZogyResult:
    """ZOGY proper difference, score and corrected score of two aligned images.

    Parameters
    ----------
    N, R : 2-D arrays, same shape
        Background-subtracted new (science) and reference images on one grid.
    psf_n, psf_r : 2-D arrays
        Centred PSF stamps with odd sides (normalised here).
    sigma_n, sigma_r : float
        Background noise (standard deviation per pixel) of N and R.
    F_n, F_r : float
        Flux zero points: the count rate of a unit-flux source in N and R.
    var_n, var_r : 2-D arrays, optional
        Per-pixel variance of N and R including source Poisson noise. Default:
        the background variance only.
    astrometric_sigma : (float, float)
        Registration noise in x and y (pixels), e.g. the rms of matched-star
        offsets after alignment.
    mask : 2-D bool array, optional
        Pixels to ignore (bad, saturated, outside the overlap): they are set
        to zero in N and R before the transforms and to NaN in the outputs.

    Returns
    -------
    ZogyResult
        D (unit-variance proper difference), S, S_corr (unit variance where
        the noise model holds), flux and flux_err images for point sources
        (in the flux unit where N = F_n * flux), the centred PSF of D, F_D,
        F_S and the measured robust noise of D and S_corr.
    """
    N = np.asarray(N)
    R = np.asarray(R)
    if N.ndim != 2 or N.shape != R.shape:
        raise ValueError(f"N and R must be 2-D images of one shape, got {N.shape} and {R.shape}")
    shape = N.shape
    dtype = np.float32
    bad = ~np.isfinite(N) | ~np.isfinite(R)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    Nz = np.where(bad, 0.0, N).astype(dtype)
    Rz = np.where(bad, 0.0, R).astype(dtype)
    w = _workers()

    Pn_hat, Pr_hat, dsq, F_D, F_S, kn_hat, kr_hat, PD_hat = zogy_kernels(
        psf_n, psf_r, shape, sigma_n, sigma_r, F_n, F_r, dtype
    )
    N_hat = sfft.rfft2(Nz, workers=w)
    R_hat = sfft.rfft2(Rz, workers=w)

    D_hat = (F_r * Pr_hat * N_hat - F_n * Pn_hat * R_hat) / dsq
    D = sfft.irfft2(D_hat, s=shape, workers=w)
    S_N = sfft.irfft2(kn_hat * N_hat, s=shape, workers=w)
    S_R = sfft.irfft2(kr_hat * R_hat, s=shape, workers=w)
    S = S_N - S_R

    # Source-noise terms: V(S_N) = V_n (x) k_n^2, V(S_R) = V_r (x) k_r^2.
    if var_n is None:
        var_n = np.full(shape, sigma_n**2, dtype=dtype)
    if var_r is None:
        var_r = np.full(shape, sigma_r**2, dtype=dtype)
    vn = np.where(bad, sigma_n**2, var_n).astype(dtype)
    vr = np.where(bad, sigma_r**2, var_r).astype(dtype)
    kn = sfft.irfft2(kn_hat, s=shape, workers=w)
    kr = sfft.irfft2(kr_hat, s=shape, workers=w)
    V_hat = sfft.rfft2(vn, workers=w) * sfft.rfft2(kn * kn, workers=w)
    V_hat += sfft.rfft2(vr, workers=w) * sfft.rfft2(kr * kr, workers=w)
    V_S = sfft.irfft2(V_hat, s=shape, workers=w)
    sx, sy = astrometric_sigma
    if sx > 0 or sy > 0:
        gy_n, gx_n = np.gradient(S_N)
        gy_r, gx_r = np.gradient(S_R)
        V_S += (sx**2) * (gx_n * gx_n + gx_r * gx_r) + (sy**2) * (gy_n * gy_n + gy_r * gy_r)
    # V_S is F_S where only background noise matters; guard against FFT round-off near zero.
    np.maximum(V_S, 1e-3 * F_S, out=V_S)
    sqrt_VS = np.sqrt(V_S)
    S_corr = S / sqrt_VS
    flux = S / F_S
    flux_err = sqrt_VS / F_S

    for arr in (D, S, S_corr, flux, flux_err):
        arr[bad] = np.nan

    size = psf_d_size or max(psf_n.shape[0], psf_r.shape[0])
    if size % 2 == 0:
        size += 1
    psf_D = centred_stamp(sfft.irfft2(PD_hat, s=shape, workers=w), size)
    psf_D = psf_D / psf_D.sum()

    step = max(1, noise_sample)
    good = ~bad[::step, ::step]
    noise_D = robust_std(D[::step, ::step][good])
    noise_Sc = robust_std(S_corr[::step, ::step][good])
    params = dict(sigma_n=float(sigma_n), sigma_r=float(sigma_r), F_n=float(F_n), F_r=float(F_r),
                  astrometric_sigma_x=float(sx), astrometric_sigma_y=float(sy))
    return ZogyResult(
        D=D.astype(dtype, copy=False), S=S.astype(dtype, copy=False), S_corr=S_corr.astype(dtype, copy=False),
        flux=flux.astype(dtype, copy=False), flux_err=flux_err.astype(dtype, copy=False),
        psf_D=psf_D.astype(np.float32), F_D=F_D, F_S=F_S, noise_D=noise_D, noise_S_corr=noise_Sc, params=params,
    )


def source_variance(image: np.ndarray, psf: np.ndarray, gain: float, sigma: float, scale: float = 1.0) -> np.ndarray:
    """Per-pixel variance: background sigma^2 plus the Poisson noise of the sources.

    The source term uses the image smoothed by its PSF, not the raw image:
    with the raw image, positive noise peaks would raise their own variance
    and negative ones not, which makes the negative tail of S_corr heavier
    than the positive one. ``scale`` converts counts of a rescaled image back
    to the detector's (variance of ``scale * X`` is ``scale * (scale * X) / gain``).
    """
    img = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    w = _workers()
    smooth = sfft.irfft2(sfft.rfft2(img, workers=w) * sfft.rfft2(embed_psf(psf, img.shape), workers=w),
                         s=img.shape, workers=w)
    np.clip(smooth, 0, None, out=smooth)
    return (smooth * (scale / gain) + sigma**2).astype(np.float32)


def point_source_snr(
    signal_n: np.ndarray,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    var_n,
    var_r,
    F_n: float = 1.0,
    F_r: float = 1.0,
    signal_r: np.ndarray | None = None,
) -> float:
    """The optimal (ZOGY) detection S/N of a noise-free change on a small stamp.

    ``signal_n`` is the change in the new image (in N's counts) on a stamp
    centred on the source; ``signal_r`` the change in the reference, if any.
    ``var_n``/``var_r`` are the per-pixel noise variances (background plus
    Poisson noise of what is there): scalars, or stamps of the signal's shape
    for sources on top of stars and galaxies. The value is the peak of
    |S| / sqrt(V_S), with V_S = var_n (x) k_n^2 + var_r (x) k_r^2 as in
    S_corr: what a perfect pipeline would measure, i.e. the physical limit of
    detection for this change.
    """
    side = int(2 ** np.ceil(np.log2(2 * max(signal_n.shape + psf_n.shape + psf_r.shape))))
    shape = (side, side)
    sig_n = _pad_centre(signal_n, shape)
    sig_r = None if signal_r is None else _pad_centre(signal_r, shape)

    def var_image(v):
        v = np.asarray(v, dtype=np.float64)
        if v.ndim == 0:
            return np.full(shape, float(v)), float(v)
        edge = float(np.median(np.concatenate([v[0], v[-1], v[:, 0], v[:, -1]])))
        out = np.full(shape, edge)
        y0 = (shape[0] - v.shape[0]) // 2
        x0 = (shape[1] - v.shape[1]) // 2
        out[y0 : y0 + v.shape[0], x0 : x0 + v.shape[1]] = v
        return out, edge

    vn_img, vn_bkg = var_image(var_n)
    vr_img, vr_bkg = var_image(var_r)
    _, _, _, _, _, kn_hat, kr_hat, _ = zogy_kernels(psf_n, psf_r, shape, np.sqrt(vn_bkg), np.sqrt(vr_bkg),
                                                   F_n, F_r, np.float64)
    S_hat = kn_hat * sfft.rfft2(sig_n)
    if sig_r is not None:
        S_hat = S_hat - kr_hat * sfft.rfft2(sig_r)
    S = sfft.irfft2(S_hat, s=shape)
    kn = sfft.irfft2(kn_hat, s=shape)
    kr = sfft.irfft2(kr_hat, s=shape)
    VS = sfft.irfft2(sfft.rfft2(vn_img) * sfft.rfft2(kn * kn) + sfft.rfft2(vr_img) * sfft.rfft2(kr * kr), s=shape)
    snr = np.abs(S) / np.sqrt(np.maximum(VS, 1e-30))
    return float(snr.max())


def _pad_centre(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float64)
    y0 = (shape[0] - a.shape[0]) // 2
    x0 = (shape[1] - a.shape[1]) // 2
    out[y0 : y0 + a.shape[0], x0 : x0 + a.shape[1]] = a
    return out
