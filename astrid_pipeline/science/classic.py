"""Classic PSF-matched image subtraction.

The sharper of the two images is convolved with a matching kernel K so that
its PSF becomes the other's (K^ = P_broad^ / P_sharp^, regularised where the
sharp PSF's transform is small), then subtracted: D = N - K (x) R when the
reference is sharper (the usual case), or D = K (x) N - R otherwise. Both
images must already be background-subtracted and on one flux scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from astrid_pipeline.science.stats import robust_std
from astrid_pipeline.science.zogy import _workers, centred_stamp, embed_psf


@dataclass
class ClassicResult:
    D: np.ndarray
    kernel: np.ndarray  # centred matching kernel stamp
    convolved: str  # "reference" or "science"
    noise: float  # robust std of D


def matching_kernel_hat(psf_sharp, psf_broad, shape, reg: float = 1e-3):
    ps = sfft.rfft2(embed_psf(psf_sharp, shape, np.float64), workers=_workers())
    pb = sfft.rfft2(embed_psf(psf_broad, shape, np.float64), workers=_workers())
    return pb * np.conj(ps) / (np.abs(ps) ** 2 + reg)


def classic_difference(N, R, psf_n, psf_r, fwhm_n: float, fwhm_r: float, mask=None, kernel_size: int | None = None,
                       reg: float = 1e-3) -> ClassicResult:
    N = np.asarray(N, float)
    R = np.asarray(R, float)
    bad = ~np.isfinite(N) | ~np.isfinite(R)
    if mask is not None:
        bad |= mask
    Nz = np.where(bad, 0.0, N)
    Rz = np.where(bad, 0.0, R)
    shape = N.shape
    w = _workers()
    if fwhm_r <= fwhm_n:
        K_hat = matching_kernel_hat(psf_r, psf_n, shape, reg)
        D = Nz - sfft.irfft2(sfft.rfft2(Rz, workers=w) * K_hat, s=shape, workers=w)
        which = "reference"
    else:
        K_hat = matching_kernel_hat(psf_n, psf_r, shape, reg)
        D = sfft.irfft2(sfft.rfft2(Nz, workers=w) * K_hat, s=shape, workers=w) - Rz
        which = "science"
    size = kernel_size or max(psf_n.shape[0], psf_r.shape[0])
    kernel = centred_stamp(sfft.irfft2(K_hat, s=shape, workers=w), size | 1)
    D = D.astype(np.float32)
    D[bad] = np.nan
    return ClassicResult(D=D, kernel=kernel.astype(np.float32), convolved=which, noise=robust_std(D[::2, ::2]))
