"""Flux factors and small offsets between the exposures of a stack.

* Flux factor of exposure i: ``f_i = image_i / median`` measured on pixels
  with a clear signal (median above ``min_snr`` times its noise) inside the
  given regions, as the median of the ratios (robust to cosmic rays).
  Dividing exposure i by ``f_i`` puts it on the median's scale; a simulated
  exposure i is the model multiplied by ``f_i``.
* Offset of exposure i: how far the median must be shifted in (x, y) to
  coincide with exposure i, from the peak of their cross-correlation in a
  region (FFT, with a parabolic fit for the sub-pixel part).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .diagram import noise_sigma
from .masks import fits_regions_to_mask


def auto_flux_factors(
    stack: np.ndarray,
    median2d: np.ndarray,
    *,
    gain: float,
    rnoise: float,
    regions=(),
    min_snr: float = 10.0,
    min_pixels: int = 50,
) -> np.ndarray:
    """Per-exposure flux factors relative to the median (1.0 where too few pixels have signal)."""
    n = stack.shape[0]
    sel = median2d > min_snr * noise_sigma(median2d, gain, rnoise)
    if regions:
        sel &= fits_regions_to_mask(regions, median2d.shape)
    out = np.ones(n)
    if sel.sum() < min_pixels:
        return out
    m = median2d[sel].astype(np.float64)
    for i in range(n):
        out[i] = float(np.median(stack[i][sel] / m))
    return out


def _parabolic_peak(c_m, c_0, c_p) -> float:
    den = c_m - 2 * c_0 + c_p
    if den == 0:
        return 0.0
    return float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))


def crosscorr_offset(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float]:
    """(dx, dy) such that ``reference`` shifted by (dx, dy) matches ``moving``."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(moving, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    fa = np.fft.rfft2(a)
    fb = np.fft.rfft2(b)
    cc = np.fft.irfft2(fb * np.conj(fa), s=a.shape)
    iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
    ny, nx = cc.shape
    sy = _parabolic_peak(cc[(iy - 1) % ny, ix], cc[iy, ix], cc[(iy + 1) % ny, ix])
    sx = _parabolic_peak(cc[iy, (ix - 1) % nx], cc[iy, ix], cc[iy, (ix + 1) % nx])
    dy = iy + sy
    dx = ix + sx
    if dy > ny / 2:
        dy -= ny
    if dx > nx / 2:
        dx -= nx
    return float(dx), float(dy)


def region_slices(region, shape):
    xmin, xmax, ymin, ymax = region
    return (slice(max(ymin - 1, 0), min(ymax, shape[0])), slice(max(xmin - 1, 0), min(xmax, shape[1])))


def crosscorr_offsets(stack_clean: np.ndarray, median2d: np.ndarray, region) -> list[tuple[float, float]]:
    """Offsets (dx, dy) of every exposure relative to the median, measured in ``region`` (FITS)."""
    sl = region_slices(region, median2d.shape)
    ref = median2d[sl]
    return [crosscorr_offset(ref, stack_clean[i][sl]) for i in range(stack_clean.shape[0])]


def shift_image(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift by (dx, dy) pixels with linear interpolation (edges repeat the border)."""
    if dx == 0 and dy == 0:
        return np.asarray(image, dtype=np.float64).copy()
    return ndimage.shift(np.asarray(image, dtype=np.float64), (dy, dx), order=1, mode="nearest")
