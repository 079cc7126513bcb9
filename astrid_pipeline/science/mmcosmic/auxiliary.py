"""Auxiliary single-image detector (Aux.Cosmic): L.A.Cosmic via astroscrappy, peaks then tails.

As numina-crmasks runs it: a first pass with the first values of
``la_sigclip``/``la_sigfrac``/``la_objlim`` finds the conspicuous CR pixels
(peaks); a second pass with the second values finds fainter pixels (tails);
a tail pixel is kept only if its connected group (8-connectivity) contains a
peak. The image is padded by ``la_padwidth`` pixels (mirror reflection) so
hits at the border are found.

Speed: the tails pass only matters next to peaks, so when the peaks cover a
small part of the image the second pass runs on tiles around them (each
with a margin larger than the L.A.Cosmic filters) instead of the whole
frame; when peaks are everywhere it runs on the whole frame.

astroscrappy works in electrons; images here are ADU (bias subtracted):
``readnoise = rnoise * gain``, ``satlevel = la_satlevel * gain``; the
cleaned image comes back in ADU.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from astrid_pipeline.science.cosmic_rays.lacosmic import merge_peaks_tails, run_astroscrappy

from .aux_result import AuxResult
from .params import Requirements

_EIGHT = np.ones((3, 3), dtype=bool)


def gauss_kernel_xy(fwhm_x: float, fwhm_y: float, size: int) -> np.ndarray:
    """Normalised elliptical Gaussian kernel (numina's ``gaussxy`` PSF model)."""
    sx = fwhm_x / 2.3548200450309493
    sy = fwhm_y / 2.3548200450309493
    half = size // 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    k = np.exp(-0.5 * ((xx / sx) ** 2 + (yy / sy) ** 2))
    return (k / k.sum()).astype(np.float32)


def _lacosmic_kwargs(req: Requirements, gain: float, rnoise: float, run: int) -> dict:
    kw = dict(
        sigclip=float(req.la_sigclip[run]),
        sigfrac=float(req.la_sigfrac[run]),
        objlim=float(req.la_objlim[run]),
        gain=float(gain),
        readnoise=float(rnoise * gain),
        satlevel=float(req.la_satlevel * gain),
        niter=int(req.la_niter),
        sepmed=bool(req.la_sepmed),
        cleantype=req.la_cleantype,
        fsmode=req.la_fsmode,
        psfsize=int(req.la_psfsize),
        psfbeta=float(req.la_psfbeta),
        verbose=False,
    )
    model = req.la_psfmodel
    if req.la_fsmode == "convolve":
        if model == "gaussxy":
            kw["psfk"] = gauss_kernel_xy(req.la_psffwhm_x, req.la_psffwhm_y, req.la_psfsize)
            kw["psfmodel"] = "gauss"
            kw["psffwhm"] = 0.5 * (req.la_psffwhm_x + req.la_psffwhm_y)
        else:
            kw["psfmodel"] = model
            kw["psffwhm"] = {
                "gauss": 0.5 * (req.la_psffwhm_x + req.la_psffwhm_y),
                "moffat": 0.5 * (req.la_psffwhm_x + req.la_psffwhm_y),
                "gaussx": req.la_psffwhm_x,
                "gaussy": req.la_psffwhm_y,
            }[model]
    else:
        kw["psfmodel"] = "gauss"
        kw["psffwhm"] = 0.5 * (req.la_psffwhm_x + req.la_psffwhm_y)
    return kw


def lacosmic_peaks_tails(
    image: np.ndarray,
    req: Requirements,
    *,
    gain: float,
    rnoise: float,
    allowed: np.ndarray | None = None,
    tile: int = 64,
    max_tile_fraction: float = 0.5,
) -> AuxResult:
    """Run L.A.Cosmic twice (peaks, then tails) on a bias-subtracted ADU image.

    astroscrappy's OpenMP loops run with :func:`astrid_pipeline.science.threads.openmp_threads` threads (the
    cores free now, or as configured): on a shared machine fewer threads are faster. The masks do not depend
    on the thread count.
    """
    import astroscrappy  # noqa: F401  (its OpenMP runtime must be loaded before it can be limited)

    from astrid_pipeline.science.threads import openmp_limit

    with openmp_limit():
        return _peaks_tails(image, req, gain=gain, rnoise=rnoise, allowed=allowed, tile=tile,
                            max_tile_fraction=max_tile_fraction)


def _peaks_tails(image, req: Requirements, *, gain: float, rnoise: float, allowed, tile: int,
                 max_tile_fraction: float) -> AuxResult:
    image = np.asarray(image, dtype=np.float32)
    ny, nx = image.shape
    pad = int(req.la_padwidth)
    padded = np.pad(image, pad, mode="reflect") if pad > 0 else image
    kw1 = _lacosmic_kwargs(req, gain, rnoise, 0)
    kw2 = _lacosmic_kwargs(req, gain, rnoise, 1)
    m1, c1 = run_astroscrappy(padded, kw1)
    core = (slice(pad, pad + ny), slice(pad, pad + nx))
    peaks = m1[core]
    cleaned = c1[core].copy()
    two_runs = any(kw1[k] != kw2[k] for k in ("sigclip", "sigfrac", "objlim"))
    n_windows = 0
    if not two_runs or not peaks.any():
        mask = peaks
    else:
        # tiles (in the unpadded frame) that contain a peak or touch one
        near = ndimage.binary_dilation(peaks, structure=_EIGHT, iterations=3)
        ty, tx = -(-ny // tile), -(-nx // tile)
        occ = np.zeros((ty, tx), dtype=bool)
        rr, cc = np.nonzero(near)
        occ[rr // tile, cc // tile] = True
        margin = int(req.la_psfsize) + 8
        big = pad + margin  # reflected border of the tiled frame
        window_area = occ.sum() * (tile + 2 * big) ** 2
        if window_area > max_tile_fraction * ny * nx or big >= min(ny, nx):
            m2, c2 = run_astroscrappy(padded, kw2)
            tails = m2[core]
            cleaned = c2[core].copy()
        else:
            tails = np.zeros_like(peaks)
            pimg = np.pad(image, big, mode="reflect")
            for iy, ix in zip(*np.nonzero(occ)):
                y0, y1 = iy * tile, min((iy + 1) * tile, ny)
                x0, x1 = ix * tile, min((ix + 1) * tile, nx)
                m2, c2 = run_astroscrappy(pimg[y0 : y1 + 2 * big, x0 : x1 + 2 * big], kw2)
                sl = (slice(big, big + y1 - y0), slice(big, big + x1 - x0))
                tails[y0:y1, x0:x1] = m2[sl]
                cleaned[y0:y1, x0:x1] = c2[sl]
                n_windows += 1
        mask = merge_peaks_tails(peaks, tails)
    if allowed is not None:
        mask = mask & allowed
    return AuxResult(mask=mask, cleaned=cleaned, n_peaks=int(peaks.sum()), n_tails_windows=n_windows)
