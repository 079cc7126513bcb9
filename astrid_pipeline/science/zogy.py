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
with the thread count of :func:`astrid_pipeline.science.threads.fft_workers`,
and each full-size FFT is computed once; an image whose side is not a fast
FFT length (:func:`fast_shape`) is transformed on the next fast grid, the
added pixels masked.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from astrid_pipeline.science.stats import clipped_std, psf_sigma, robust_std  # noqa: F401 (re-exported)
from astrid_pipeline.setting import setting

_EPS = 1e-12


def _workers() -> int:
    """``scipy.fft`` workers (:func:`astrid_pipeline.science.threads.fft_workers`: the cores free now, or as set)."""
    from astrid_pipeline.science.threads import fft_workers

    return fft_workers()


#: glibc's largest dynamic mmap threshold (bytes): arrays above it are fresh mmaps, page-faulted on first touch
_GLIBC_MMAP_MAX = 32 * 1024 * 1024


@contextlib.contextmanager
def _heap_for_large_arrays(nbytes: int):
    """Within the block, serve allocations up to ``2 * nbytes`` from the heap instead of fresh ``mmap`` regions.

    glibc gives every allocation above 32 MB its own mmap and unmaps it on free, so each of ZOGY's ~40
    full-size temporaries at 4096² (67 MB each) is page-faulted and zeroed anew: measured 5.8 s instead of
    3.1 s for one 4096² difference, 2.6x the n log n scaling from 2048² instead of 0.96x. The heap keeps
    freed blocks for reuse; the memory is handed back (``malloc_trim``) at the end. No-op below the
    threshold and where glibc is absent.
    """
    if nbytes <= _GLIBC_MMAP_MAX:
        yield
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim, m_mmap = -1, -3  # mallopt parameters M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
        ok = libc.mallopt(m_mmap, int(min(2 * nbytes, 2**31 - 1))) and libc.mallopt(m_trim, int(2**31 - 1))
    except (OSError, AttributeError):
        ok = False
    try:
        yield
    finally:
        if ok:
            libc.mallopt(m_mmap, _GLIBC_MMAP_MAX)
            libc.mallopt(m_trim, 2 * _GLIBC_MMAP_MAX)
            libc.malloc_trim(0)


def _on_heap_when_large(fn):
    """Decorator: run ``fn(N, R, ...)`` inside :func:`_heap_for_large_arrays` sized for N's FFT half-plane."""
    import functools

    @functools.wraps(fn)
    def run(N, R, *args, **kwargs):
        shape = fast_shape(np.shape(N)) if np.ndim(N) == 2 else (0, 0)
        with _heap_for_large_arrays(shape[0] * (shape[1] // 2 + 1) * 8):  # one complex64 half-plane
            return fn(N, R, *args, **kwargs)

    return run


def fast_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The FFT grid for an image of ``shape``: each side raised to ``scipy.fft.next_fast_len`` (unchanged when
    already fast: 2^a 3^b 5^c 7^d 11^e). A prime side is 3-10x slower to transform than a fast one."""
    import scipy.fft as sfft

    return (int(sfft.next_fast_len(int(shape[0]))), int(sfft.next_fast_len(int(shape[1]), real=True)))


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
    import scipy.fft as sfft

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


@_on_heap_when_large
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
    import scipy.fft as sfft

    N = np.asarray(N)
    R = np.asarray(R)
    if N.ndim != 2 or N.shape != R.shape:
        raise ValueError(f"N and R must be 2-D images of one shape, got {N.shape} and {R.shape}")
    shape0 = N.shape
    dtype = np.float32
    bad = ~np.isfinite(N) | ~np.isfinite(R)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    shape = fast_shape(shape0)
    if shape != shape0:  # transform on a fast grid; the added pixels are masked (zero in N and R)
        pad = ((0, shape[0] - shape0[0]), (0, shape[1] - shape0[1]))
        N, R = np.pad(N, pad), np.pad(R, pad)
        bad = np.pad(bad, pad, constant_values=True)
        var_n = None if var_n is None else np.pad(np.broadcast_to(var_n, shape0), pad)
        var_r = None if var_r is None else np.pad(np.broadcast_to(var_r, shape0), pad)
    Nz = np.where(bad, 0.0, N).astype(dtype)
    Rz = np.where(bad, 0.0, R).astype(dtype)
    w = _workers()

    Pn_hat, Pr_hat, dsq, F_D, F_S, kn_hat, kr_hat, PD_hat = zogy_kernels(
        psf_n, psf_r, shape, sigma_n, sigma_r, F_n, F_r, dtype
    )
    # (intermediates are released as soon as they are used: the peak memory of a 2048² difference is what
    # bounds a region's; the arithmetic is unchanged)
    N_hat = sfft.rfft2(Nz, workers=w)
    del Nz
    R_hat = sfft.rfft2(Rz, workers=w)
    del Rz

    D_hat = (F_r * Pr_hat * N_hat - F_n * Pn_hat * R_hat) / dsq
    del Pn_hat, Pr_hat, dsq
    D = sfft.irfft2(D_hat, s=shape, workers=w)
    del D_hat
    N_hat *= kn_hat
    S_N = sfft.irfft2(N_hat, s=shape, workers=w)
    del N_hat
    R_hat *= kr_hat
    S_R = sfft.irfft2(R_hat, s=shape, workers=w)
    del R_hat
    S = S_N - S_R

    # Source-noise terms: V(S_N) = V_n (x) k_n^2, V(S_R) = V_r (x) k_r^2.
    def var_term(var, sigma, k_hat):
        v = np.full(shape, sigma**2, dtype=dtype) if var is None else np.where(bad, sigma**2, var).astype(dtype)
        k = sfft.irfft2(k_hat, s=shape, workers=w)
        k *= k
        t = sfft.rfft2(v, workers=w)
        del v
        t *= sfft.rfft2(k, workers=w)
        return t

    V_hat = var_term(var_n, sigma_n, kn_hat)
    del kn_hat
    V_hat += var_term(var_r, sigma_r, kr_hat)
    del kr_hat
    V_S = sfft.irfft2(V_hat, s=shape, workers=w)
    del V_hat
    sx, sy = astrometric_sigma
    if sx > 0 or sy > 0:
        for img in (S_N, S_R):
            gy, gx = np.gradient(img)
            gx *= gx
            gy *= gy
            V_S += (sx**2) * gx + (sy**2) * gy
            del gx, gy
    del S_N, S_R
    # V_S is F_S where only background noise matters; guard against FFT round-off near zero.
    np.maximum(V_S, 1e-3 * F_S, out=V_S)
    sqrt_VS = np.sqrt(V_S)
    S_corr = S / sqrt_VS
    flux = S / F_S
    flux_err = sqrt_VS / F_S

    for arr in (D, S, S_corr, flux, flux_err):
        arr[bad] = np.nan
    if shape != shape0:
        D, S, S_corr, flux, flux_err = (a[:shape0[0], :shape0[1]] for a in (D, S, S_corr, flux, flux_err))
        bad = bad[:shape0[0], :shape0[1]]

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


def source_variance(image: np.ndarray, psf: np.ndarray, gain: float | None, sigma, scale: float = 1.0) -> np.ndarray:
    """Per-pixel variance: background sigma^2 plus the Poisson noise of the sources.

    The source term uses the image smoothed by its PSF, not the raw image:
    with the raw image, positive noise peaks would raise their own variance
    and negative ones not, which makes the negative tail of S_corr heavier
    than the positive one. ``scale`` converts counts of a rescaled image back
    to the detector's (variance of ``scale * X`` is ``scale * (scale * X) / gain``).
    ``gain`` is in electrons per image unit; ``None`` (unknown) leaves the
    source term out. ``sigma`` is a number or a background-noise map.
    """
    import scipy.fft as sfft

    img = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    bkg = np.asarray(sigma, dtype=np.float32) ** 2
    if gain is None or not np.isfinite(gain) or gain <= 0:
        return np.broadcast_to(bkg, img.shape).astype(np.float32)
    w = _workers()
    smooth = sfft.irfft2(sfft.rfft2(img, workers=w) * sfft.rfft2(embed_psf(psf, img.shape), workers=w),
                         s=img.shape, workers=w)
    np.clip(smooth, 0, None, out=smooth)
    return (smooth * (scale / gain) + bkg).astype(np.float32)


# --------------------------------------------------------------------------- S_corr normalisation
@dataclass
class ScorrNormSettings:
    """Empirical normalisation of S_corr on source-free pixels (correlated noise of resampled images)."""

    enabled: bool = setting(True, "divide S_corr (and multiply the flux errors) by its robust std on source-free pixels")
    block: int = setting(0, "side (pix) of the checkerboard blocks; the normalisation uses one colour, the other is "
                       "held out for the check; 0 = 3 x the FWHM of the PSF of D (at least 16)")
    tile: int = setting(0, "side (pix) of the tiles of a spatially varying factor; 0 = automatic (enough independent "
                      "samples per tile), -1 = one global factor")
    min_samples: int = setting(300, "independent samples (areas of the PSF of D) each tile needs")
    source_nsigma: float = setting(4.0, "|S_corr| (in units of its first-pass std) above which pixels are masked with "
                                   "their neighbourhood before the noise is measured")


def holdout_blocks(shape: tuple[int, int], block: int) -> np.ndarray:
    """The held-out half of a checkerboard of ``block``-pixel squares (True = held out, not used to normalise)."""
    ny, nx = shape
    by = (np.arange(ny) // block)[:, None]
    bx = (np.arange(nx) // block)[None, :]
    return ((by + bx) % 2) == 1


@dataclass
class ScorrNormalization:
    """What :func:`normalize_scorr` measured and applied."""

    factor: np.ndarray  # per-pixel divisor of S_corr (float32)
    global_factor: float  # robust std of S_corr on the calibration pixels before normalisation
    factor_min: float
    factor_max: float
    n_used: int  # calibration pixels
    n_holdout: int  # held-out blank pixels
    noise_holdout: float  # robust std of the normalised S_corr on the held-out pixels
    block: int
    tile: int  # 0 = global factor only
    n_tiles: int

    def header_cards(self) -> dict:
        return {
            "SCNORM": (round(self.global_factor, 5), "S_corr divided by this (robust std, blank sky)"),
            "SCNORMLO": (round(self.factor_min, 5), "smallest local S_corr divisor"),
            "SCNORMHI": (round(self.factor_max, 5), "largest local S_corr divisor"),
            "SCNPIX": (self.n_used, "blank pixels used to normalise S_corr"),
            "SCNBLK": (self.block, "[pix] checkerboard block; odd blocks held out"),
            "SCNTILE": (self.tile, "[pix] tile of the local factor; 0 = global"),
            "SCHOLD": (round(self.noise_holdout, 5), "std of normalised S_corr, held-out blank"),
            "SCNHOLD": (self.n_holdout, "held-out blank pixels"),
        }


def normalize_scorr(S_corr: np.ndarray, usable: np.ndarray, psf_D: np.ndarray,
                    settings: ScorrNormSettings | None = None) -> ScorrNormalization:
    """Measure the noise of S_corr on source-free pixels, globally and in tiles.

    ``usable`` marks pixels free of sources in either image and away from
    masked pixels and edges. Remaining S_corr peaks (residuals of sources
    too faint to segment) are masked with their neighbourhood. One colour of
    a checkerboard of blocks is used; the other colour is held out and the
    std of the normalised S_corr there is returned for an independent check.
    Tiles are large enough to hold ``min_samples`` independent samples (one
    per area 4 pi sigma_D^2 of the S_corr autocorrelation); the tile map is
    median-filtered and interpolated bilinearly. Correlated noise of
    resampled images (drizzled mosaics, co-adds) makes the matched-filter
    noise exceed the white-noise prediction by a factor of 1.5-3; this
    measures and removes exactly that.
    """
    from scipy import ndimage


    cfg = settings or ScorrNormSettings()
    sc = np.asarray(S_corr, dtype=np.float64)
    shape = sc.shape
    sig_d = max(psf_sigma(psf_D), 0.5)
    fwhm_d = 2.3548 * sig_d
    area = 4 * np.pi * sig_d**2
    # blocks a few correlation lengths wide: the halves' pixel noise is independent, and both halves sample
    # the same larger-scale structure (so the held-out check measures the estimator, not the block pattern)
    block = int(cfg.block) if cfg.block > 0 else int(max(16, round(3 * fwhm_d)))
    ok = np.asarray(usable, bool) & np.isfinite(sc)
    if ok.sum() < 100:
        ok = np.isfinite(sc)
    hold = holdout_blocks(shape, block)

    def tile_map(values_ok, estimator, t):
        """Per-tile noise (NaN where a tile has too few pixels), median-filtered, on the pixel grid; None when
        the image holds fewer than 2 x 2 tiles or fewer than 4 tiles are measured."""
        ny_t, nx_t = shape[0] // t, shape[1] // t
        if ny_t < 2 or nx_t < 2:
            return None, 0
        need = cfg.min_samples * area * 0.5
        grid = np.full((ny_t, nx_t), np.nan)
        for i in range(ny_t):
            y0, y1 = i * t, (i + 1) * t if i < ny_t - 1 else shape[0]
            for j in range(nx_t):
                x0, x1 = j * t, (j + 1) * t if j < nx_t - 1 else shape[1]
                c = values_ok[y0:y1, x0:x1]
                if c.sum() >= need:
                    grid[i, j] = estimator(sc[y0:y1, x0:x1][c])
        if np.isfinite(grid).sum() < 4:
            return None, 0
        grid = np.where(np.isfinite(grid), grid, np.nanmedian(grid))
        if min(grid.shape) >= 3:
            grid = ndimage.median_filter(grid, size=3, mode="nearest")
        # tile centres -> pixel map (bilinear, flat beyond the outer centres)
        cy = (np.arange(ny_t) + 0.5) * t
        cx = (np.arange(nx_t) + 0.5) * t
        yy = np.clip(np.interp(np.arange(shape[0]), cy, np.arange(ny_t)), 0, ny_t - 1)
        xx = np.clip(np.interp(np.arange(shape[1]), cx, np.arange(nx_t)), 0, nx_t - 1)
        m = ndimage.map_coordinates(grid, np.meshgrid(yy, xx, indexing="ij"), order=1, mode="nearest")
        return m.astype(np.float32), int(ny_t * nx_t)

    t = 0
    if cfg.tile >= 0:
        frac = max(float((ok & ~hold).mean()), 1e-3)
        t_auto = int(np.ceil(np.sqrt(cfg.min_samples * area / frac)))
        t = int(cfg.tile) if cfg.tile > 0 else max(t_auto, 2 * block)
    # first pass: the local noise level (MAD, all usable pixels), so that source residuals are found as peaks
    # against the noise where they are, also where the depth changes across the field
    s0 = robust_std(sc[ok][:: max(1, ok.sum() // 500_000)])
    local = None
    if t:
        local, _ = tile_map(ok, robust_std, t)
    level = local if local is not None else np.float32(s0)
    if np.isfinite(s0) and s0 > 0:
        peaks = np.abs(np.nan_to_num(sc)) > cfg.source_nsigma * level
        if peaks.any():
            ok &= ~ndimage.binary_dilation(peaks, iterations=int(np.ceil(fwhm_d)))
    calib = ok & ~hold
    held = ok & hold
    g = clipped_std(sc[calib])
    if not np.isfinite(g) or g <= 0:
        g = 1.0
    factor = np.full(shape, g, dtype=np.float32)
    tile, n_tiles = 0, 1
    if t and calib.any():
        fmap, n = tile_map(calib, clipped_std, t)
        if fmap is not None:
            factor, tile, n_tiles = fmap, t, n
    normed = sc / factor
    noise_hold = robust_std(normed[held]) if held.sum() >= 50 else float("nan")  # what a user would check
    return ScorrNormalization(factor=factor, global_factor=float(g), factor_min=float(factor.min()),
                              factor_max=float(factor.max()), n_used=int(calib.sum()), n_holdout=int(held.sum()),
                              noise_holdout=float(noise_hold), block=block, tile=tile, n_tiles=n_tiles)


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
    import scipy.fft as sfft

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
