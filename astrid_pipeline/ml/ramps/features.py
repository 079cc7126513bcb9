"""Network inputs from a reference-corrected ramp block (numpy only; no torch here).

For every pixel and group difference ``d_k`` the 3D U-Net sees two channels:

1. ``asinh(z_k / 3)`` with ``z_k = (d_k - c) / sigma_d``: ``c`` the pixel's
   robust centre (mean of its differences without the largest and the
   smallest), ``sigma_d^2 = 2 sigma_read^2 + max(c, 0) / gain`` from the read
   noise measured per output (:class:`~astrid_pipeline.science.ramps.prepare.RampPrep`).
   Noise-normalised inputs are what lets one network serve detectors with
   other noise, gain and group counts; ``asinh`` keeps a 10 000 sigma
   snowball and a 5 sigma cosmic ray in one range.
2. 1 where the later read of the difference is saturated, else 0.

Ramps with more than ``t_max`` differences are binned in time to ``t_max``
bins of consecutive differences (sum of ``d - c`` over ``sqrt(k) sigma_d``
for a bin of ``k``; the saturation flag is the bin's maximum), so memory
and time stay bounded for ramps of hundreds of groups.
"""

from __future__ import annotations

import numpy as np

from astrid_pipeline.science.ramps.jumps import trimmed_center

N_CHANNELS = 2
Z_SOFT = 3.0


def time_bins(m: int, t_max: int) -> list[np.ndarray]:
    """Indices of the differences in each time bin: one bin per difference up to ``t_max``."""
    if m <= t_max:
        return [np.array([k]) for k in range(m)]
    return [b for b in np.array_split(np.arange(m), t_max) if len(b)]


def difference_features(cube: np.ndarray, sat: tuple, read_noise_col: np.ndarray, gain: float,
                        t_max: int = 32) -> np.ndarray:
    """``(2, T, rows, cols)`` float32 inputs of one block ``cube`` (groups, rows, cols).

    ``sat`` is ``(iy, ix, S)`` as :meth:`RampPrep.load` returns it (saturating
    pixels and their per-group flags).
    """
    n, R, nx = cube.shape
    m = n - 1
    D = np.diff(cube, axis=0)
    c = trimmed_center(D) if m >= 3 else D.mean(axis=0)
    sd = np.sqrt(2 * np.asarray(read_noise_col, np.float32)[None, :] ** 2 + np.maximum(c, 0) / np.float32(gain))
    S = np.zeros((n, R, nx), bool)
    s_iy, s_ix, S_sat = sat
    if len(s_iy):
        S[:, s_iy, s_ix] = S_sat
    dsat = S[1:]
    D -= c[None]
    D[dsat & S[:-1]] = 0.0  # between two saturated reads: no information
    bins = time_bins(m, t_max)
    out = np.empty((N_CHANNELS, len(bins), R, nx), np.float32)
    for t, b in enumerate(bins):
        z = D[b].sum(axis=0) / (sd * np.float32(np.sqrt(len(b))))
        out[0, t] = np.arcsinh(z / Z_SOFT)
        out[1, t] = dsat[b].any(axis=0)
    return out
