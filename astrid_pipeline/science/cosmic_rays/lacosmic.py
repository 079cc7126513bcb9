"""L.A.Cosmic (van Dokkum 2001) through astroscrappy, for single images and sigclip sweeps.

The astroscrappy call itself is the M.M.Cosmic auxiliary detector's
(:func:`run_astroscrappy`); this module only
chooses parameters. Images are ADU; ``gain`` in e-/ADU, ``read_noise`` in
ADU, ``saturation`` in ADU (converted to electrons as astroscrappy wants).
NaN pixels are replaced by the image median before the call and never
flagged.
"""

from __future__ import annotations

import numpy as np

from astrid_pipeline.errors import BadShapeError, EmptyDataError

# astroscrappy's own defaults
DEFAULTS = dict(sigclip=4.5, sigfrac=0.3, objlim=5.0)
# the paper's sweep: sigclip in [1, 20] with objlim=1, sigfrac=0.1 (Bhavanam et al. 2022, sec. 4.1)
PAPER_SWEEP = dict(sigfrac=0.1, objlim=1.0)
DEFAULT_SIGCLIPS = (1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)


def _prepare(image):
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise BadShapeError(None, f"L.A.Cosmic needs a 2-D image, got shape {img.shape}")
    ok = np.isfinite(img)
    if not ok.any():
        raise EmptyDataError(None, "image has no finite pixel")
    return np.where(ok, img, np.median(img[ok])).astype(np.float32), ok


def sky_pedestal(image: np.ndarray, gain: float, read_noise: float) -> float:
    """ADU to add so that L.A.Cosmic's noise model ``sqrt(I/gain + rn^2)`` matches the measured sky noise.

    L.A.Cosmic (van Dokkum 2001, eq. 10) derives each pixel's noise from its
    own value. On a sky-subtracted image (the shared DECam epochs: median ~0
    ADU, sky ~4100 ADU removed) it would see almost no noise and flag most of
    the frame (48 862 of 65 536 DECam pixels at sigclip 4.5). The pedestal is
    the level ``b`` with ``b/gain + rn^2 = sigma_sky^2``, less the image's
    median; never negative. ``sigma_sky`` (ADU) is the robust std of
    neighbouring-pixel differences over sqrt(2), so sources, sky lines and
    gradients do not inflate it.
    """
    from astrid_pipeline.science.stats import robust_std

    img = np.asarray(image, dtype=np.float64)
    sigma = robust_std(np.diff(img, axis=1)) / np.sqrt(2.0) if img.shape[1] > 1 else robust_std(img)
    if not (np.isfinite(sigma) and sigma > 0 and gain > 0):
        return 0.0
    level = gain * max(sigma ** 2 - read_noise ** 2, 0.0)
    return float(max(0.0, level - float(np.nanmedian(img))))


def merge_peaks_tails(peaks: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Tail groups (8-connected) that contain at least one peak pixel, plus the peaks."""
    from scipy import ndimage

    peaks = np.asarray(peaks, dtype=bool)
    tails = np.asarray(tails, dtype=bool) | peaks
    labels, n = ndimage.label(tails, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros_like(peaks)
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(labels[peaks])] = True
    keep[0] = False
    return keep[labels]


def run_astroscrappy(image: np.ndarray, kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """(mask, cleaned image) of astroscrappy's L.A.Cosmic (van Dokkum 2001) with keyword arguments ``kw``."""
    import astroscrappy

    mask, clean = astroscrappy.detect_cosmics(np.ascontiguousarray(image, dtype=np.float32), **kw)
    return np.asarray(mask, dtype=bool), np.asarray(clean, dtype=np.float32)


def lacosmic_mask(image: np.ndarray, *, gain: float = 1.0, read_noise: float = 5.0, saturation: float = 65535.0,
                  sigclip: float = 4.5, sigfrac: float = 0.3, objlim: float = 5.0, niter: int = 4,
                  pedestal: float = 0.0) -> np.ndarray:
    """Boolean CR mask of one ADU image by L.A.Cosmic.

    ``pedestal`` (ADU) is added before the call (and to ``saturation``), e.g.
    :func:`sky_pedestal` for a sky-subtracted image.
    """
    img, ok = _prepare(np.asarray(image, dtype=np.float64) + float(pedestal))
    saturation = saturation + float(pedestal)
    kw = dict(sigclip=float(sigclip), sigfrac=float(sigfrac), objlim=float(objlim), gain=float(gain),
              readnoise=float(read_noise * gain), satlevel=float(saturation * gain), niter=int(niter),
              sepmed=True, cleantype="meanmask", fsmode="median", verbose=False)
    mask, _ = run_astroscrappy(img, kw)
    return mask & ok


def sigclip_sweep(image: np.ndarray, sigclips=DEFAULT_SIGCLIPS, **kw) -> list[np.ndarray]:
    """One mask per ``sigclip`` value (other parameters fixed)."""
    return [lacosmic_mask(image, sigclip=s, **kw) for s in sigclips]
