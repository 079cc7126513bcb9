"""The seven combinations of numina-crmasks, each with its variance and map.

All inputs are the bias-subtracted (and, with ``apply_flux_factor_to:
original``, flux-scaled) exposures. For every combination the variance is
the per-pixel sample variance of the exposures used (ddof=1) and the map is
the number of exposures used:

* ``mean``, ``median``, ``min``: no masks; ``min`` is the minimum signal
  (mean of the N - k lowest values; the minimum for N = 3, k = 2).
* ``mediancr``: the median, with MEDIANCR pixels replaced by the minimum
  signal (or by AUXCLEAN with ``use_auxmedian``); variance 0 and map 1 there.
* ``meancrt``: the mean, with MEANCRT pixels replaced by the mediancr value
  (variance 0 and map 1 there).
* ``meancr``: the mean of the exposures not masked in their own CRMASKi;
  pixels masked in every exposure take the minimum signal (or AUXCLEAN).
* ``meancr2``: meancr with the MEANCR pixels replaced by the minimum signal
  (or AUXCLEAN); map 1 there.

Finally the pixels listed in ``pixels_to_be_replaced_by_local_median`` take
the median of their window (the pixel itself left out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .diagram import median_of_stack, minimum_signal
from .params import VALID_COMBINATIONS


@dataclass
class Combined:
    image: np.ndarray  # float32
    variance: np.ndarray  # float32
    map: np.ndarray  # int16


def _var(stack: np.ndarray) -> np.ndarray:
    return stack.var(axis=0, ddof=1, dtype=np.float64).astype(np.float32)


def replace_by_local_median(image: np.ndarray, rows) -> np.ndarray:
    """Replace each [X, Y, X_width, Y_width] pixel (FITS) by the median of its window, itself excluded."""
    out = image.copy()
    ny, nx = image.shape
    for x, y, wx, wy in rows:
        xi, yi = int(x) - 1, int(y) - 1
        if not (0 <= xi < nx and 0 <= yi < ny):
            continue
        x1, x2 = max(xi - wx // 2, 0), min(xi + wx // 2 + 1, nx)
        y1, y2 = max(yi - wy // 2, 0), min(yi + wy // 2 + 1, ny)
        box = image[y1:y2, x1:x2]
        sel = np.ones(box.shape, dtype=bool)
        sel[yi - y1, xi - x1] = False
        if sel.any():
            out[yi, xi] = np.median(box[sel])
    return out


def combine(
    stack: np.ndarray,
    combination: str,
    *,
    k: int,
    masks: dict | None = None,
    auxclean: np.ndarray | None = None,
    use_auxmedian: bool = False,
    replace_rows=(),
    _cache: dict | None = None,
) -> Combined:
    """One combination of a (N, ny, nx) stack; ``masks`` holds MEDIANCR, MEANCRT, CRMASK1.., MEANCR."""
    if combination not in VALID_COMBINATIONS:
        raise ValueError(f"combination {combination!r} is not one of {', '.join(VALID_COMBINATIONS)}")
    stack = np.asarray(stack, dtype=np.float32)
    n, ny, nx = stack.shape
    cache = {} if _cache is None else _cache
    if use_auxmedian and auxclean is None:
        raise ValueError("use_auxmedian needs the AUXCLEAN image")

    def get(name, fn):
        if name not in cache:
            cache[name] = fn()
        return cache[name]

    median = get("median", lambda: median_of_stack(stack))
    minsig = get("min", lambda: minimum_signal(stack, k))
    mean = get("mean", lambda: stack.mean(axis=0, dtype=np.float64).astype(np.float32))
    var_all = get("var", lambda: _var(stack))
    full_map = np.full((ny, nx), n, dtype=np.int16)
    replacement = auxclean if use_auxmedian else minsig

    def mediancr():
        m = masks["MEDIANCR"].astype(bool)
        img = median.copy()
        img[m] = replacement[m]
        return img, m

    if combination == "mean":
        img, var, mp = mean.copy(), var_all.copy(), full_map
    elif combination == "median":
        img, var, mp = median.copy(), var_all.copy(), full_map
    elif combination == "min":
        img, var, mp = minsig.copy(), var_all.copy(), full_map
    elif combination == "mediancr":
        img, m = mediancr()
        var = var_all.copy()
        var[m] = 0.0
        mp = full_map.copy()
        mp[m] = 1
    elif combination == "meancrt":
        med_cr, _ = get("mediancr_img", mediancr)
        m = masks["MEANCRT"].astype(bool)
        img = mean.copy()
        img[m] = med_cr[m]
        var = var_all.copy()
        var[m] = 0.0
        mp = full_map.copy()
        mp[m] = 1
    else:  # meancr, meancr2
        crm = np.stack([masks[f"CRMASK{i + 1}"].astype(bool) for i in range(n)])
        good = ~crm
        ngood = good.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(good, stack, 0.0).sum(axis=0, dtype=np.float64)
            img = (s / np.maximum(ngood, 1)).astype(np.float32)
            dev = np.where(good, stack - img[None], 0.0)
            var = ((dev.astype(np.float64) ** 2).sum(axis=0) / np.maximum(ngood - 1, 1)).astype(np.float32)
        var[ngood <= 1] = 0.0
        nodata = ngood == 0
        img[nodata] = replacement[nodata]
        mp = ngood.astype(np.int16)
        if combination == "meancr2":
            m = masks["MEANCR"].astype(bool)
            img[m] = replacement[m]
            mp[m] = 1
    if replace_rows:
        img = replace_by_local_median(img, replace_rows)
    return Combined(image=img.astype(np.float32), variance=var.astype(np.float32), map=mp.astype(np.int16))


def all_combinations(stack, *, k, masks, auxclean=None, use_auxmedian=False, replace_rows=()) -> dict:
    """The seven combinations, keyed by name, sharing the per-pixel statistics."""
    cache: dict = {}
    return {
        name: combine(
            stack, name, k=k, masks=masks, auxclean=auxclean, use_auxmedian=use_auxmedian,
            replace_rows=replace_rows, _cache=cache,
        )
        for name in VALID_COMBINATIONS
    }


# --------------------------------------------------------------------------- the combined image's own variance
_FACTORS: dict = {}


def estimator_factors(n: int, k: int, n_samples: int = 200_000, seed: int = 20260101) -> tuple[float, float]:
    """``(median, minimum signal)`` variance factors: var(estimator of n unit-variance normals).

    The mean's factor is ``1/n``; the median's is ``pi/(2n)`` for large n
    (0.449 for n = 3); the minimum signal (mean of the n - k lowest) has
    its own. Computed once per (n, k) by a seeded Monte Carlo (``n_samples``
    draws: about 0.3 % precision).
    """
    key = (int(n), int(k))
    if key not in _FACTORS:
        rng = np.random.default_rng(seed)
        x = np.sort(rng.standard_normal((n_samples, n)), axis=1)
        med = np.median(x, axis=1)
        low = x[:, : max(n - k, 1)].mean(axis=1)
        _FACTORS[key] = (float(med.var()), float(low.var()))
    return _FACTORS[key]


def combination_variance(combination: str, image: np.ndarray, *, n: int, k: int, masks: dict, gain: float,
                         rnoise: float, use_auxmedian: bool = False) -> np.ndarray:
    """Variance (ADU^2) of each pixel of a combined image: the error map the sky branch reads.

    Each exposure's variance at a pixel is modelled from the combined value
    itself, ``max(image, 0) / gain + rnoise^2`` (Poisson + read noise, ADU),
    and propagated through the estimator that made the pixel: the mean of
    the exposures used (``1/n_used``), the median or the minimum signal
    (:func:`estimator_factors`), AUXCLEAN (taken as the median's). This is the
    variance *of the combination*, not numina's sample variance of the
    inputs (written as ``SCATTER``), which is noisy with n - 1 degrees of
    freedom and zero where a pixel was replaced.
    """
    s2 = np.clip(np.asarray(image, dtype=np.float64), 0, None) / float(gain) + float(rnoise) ** 2
    c_med, c_min = estimator_factors(n, k)
    repl = c_med if use_auxmedian else c_min
    shape = np.shape(image)
    if combination == "mean":
        f = np.full(shape, 1.0 / n)
    elif combination == "median":
        f = np.full(shape, c_med)
    elif combination == "min":
        f = np.full(shape, c_min)
    elif combination in ("mediancr", "meancrt"):
        f = np.where(masks["MEDIANCR"].astype(bool), repl, c_med)
        if combination == "meancrt":
            f = np.where(masks["MEANCRT"].astype(bool), f, 1.0 / n)
    elif combination in ("meancr", "meancr2"):
        ngood = n - np.sum([masks[f"CRMASK{i + 1}"].astype(bool) for i in range(n)], axis=0)
        f = 1.0 / np.maximum(ngood, 1)
        f = np.where(ngood == 0, repl, f)
        if combination == "meancr2":
            f = np.where(masks["MEANCR"].astype(bool), repl, f)
    else:
        raise ValueError(f"combination {combination!r} is not one of {', '.join(VALID_COMBINATIONS)}")
    return (f * s2).astype(np.float32)
