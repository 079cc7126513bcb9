"""The network's input: each 63x63 stamp normalised on its own, robustly, and sign-canonical.

For every stamp (science, reference, difference) of a triplet:
``z = (v - median) / sigma`` with ``sigma`` the MAD-based standard deviation
of its finite pixels (the standard deviation if the MAD is 0, 1 if that is 0
too), then ``asinh(z)``, which is linear within the noise and logarithmic on
bright stars; NaN pixels (beyond an image edge) become 0. The scale and
sky level of the counts drop out, so the same function serves our triplets
(background-subtracted, flux-matched, ZOGY D) and a survey's alert stamps
(raw counts with sky, template counts, difference in counts).

**Sign.** A fading (a negative difference) is turned into the brightening it
mirrors: the difference is negated and science and reference swap places,
so the network only ever sees positive changes. The sign comes from the
candidate (``sign``, or ZTF's ``isdiffpos``) when given, else from the sum
of the difference's central 5x5 pixels.
"""

from __future__ import annotations

import numpy as np

from astrid_pipeline.errors import BadShapeError

MAD_TO_SIGMA = 1.482602218505602


def as_triplet_array(triplets, size: int = 63) -> np.ndarray:
    """(N, 3, size, size) float32 from one triplet (3, H, W) or many (N, 3, H, W).

    Stamps smaller than ``size`` (a survey's cut-outs at a CCD edge) are
    NaN-padded symmetrically; larger ones are cropped about their centre.
    """
    a = np.asarray(triplets, dtype=np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[1] != 3:
        raise BadShapeError(None, f"triplets must be (3, H, W) or (N, 3, H, W) (science, reference, difference); "
                                  f"got shape {a.shape}")
    n, _, h, w = a.shape
    if (h, w) == (size, size):
        return a
    out = np.full((n, 3, size, size), np.nan, np.float32)
    sy0, sx0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    crop = a[:, :, sy0:sy0 + min(h, size), sx0:sx0 + min(w, size)]
    dy0, dx0 = (size - crop.shape[2]) // 2, (size - crop.shape[3]) // 2
    out[:, :, dy0:dy0 + crop.shape[2], dx0:dx0 + crop.shape[3]] = crop
    return out


def infer_sign(difference: np.ndarray, half: int = 2) -> np.ndarray:
    """+1 / -1 per stamp from the sum of the central (2 half + 1)^2 difference pixels (NaN ignored)."""
    d = np.asarray(difference, dtype=np.float64)
    c0, c1 = d.shape[-2] // 2, d.shape[-1] // 2
    core = np.nansum(d[..., c0 - half:c0 + half + 1, c1 - half:c1 + half + 1], axis=(-2, -1))
    return np.where(core < 0, -1, 1).astype(np.int8)


def normalize_triplets(triplets, sign=None, size: int = 63, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(network input (N, 3, size, size) float32, the sign used per triplet); see the module docstring.

    Works ``chunk`` triplets at a time, so memory stays at the output plus one chunk.
    """
    a = as_triplet_array(triplets, size)
    n = a.shape[0]
    if sign is not None:
        s_all = np.asarray(sign).reshape(-1)
        if s_all.size == 1 and n > 1:
            s_all = np.repeat(s_all, n)
        if s_all.size != n:
            raise BadShapeError(None, f"{s_all.size} signs for {n} triplets")
    out = np.empty(a.shape, np.float32)
    signs = np.empty(n, np.int8)
    for i in range(0, n, chunk):
        x, s = _normalize_chunk(a[i:i + chunk], None if sign is None else s_all[i:i + chunk])
        out[i:i + chunk], signs[i:i + chunk] = x, s
    return out, signs


def _normalize_chunk(a: np.ndarray, sign) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    a = a.astype(np.float64)
    n = a.shape[0]
    flat = a.reshape(n, 3, -1)
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stamps
        med = np.nanmedian(flat, axis=2, keepdims=True)
        sig = MAD_TO_SIGMA * np.nanmedian(np.abs(flat - med), axis=2, keepdims=True)
        std = np.nanstd(flat, axis=2, keepdims=True)
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, np.where(np.isfinite(std) & (std > 0), std, 1.0))
    med = np.where(np.isfinite(med), med, 0.0)
    z = np.where(finite, (flat - med) / sig, 0.0).reshape(a.shape)
    if sign is None:
        s = infer_sign(z[:, 2])
    else:
        s = np.where(np.asarray(sign, dtype=float) < 0, -1, 1).astype(np.int8)
    neg = s < 0
    if neg.any():
        z[neg] = z[neg][:, [1, 0, 2]]
        z[neg, 2] *= -1.0
    return np.arcsinh(z).astype(np.float32), s
