"""Per-pixel statistics of a stack and the Median-Minimum (MM) diagnostic diagram.

For a stack of N equivalent exposures (bias already subtracted, in ADU) and
``k = mm_cr_coincidences``:

* ``median2d``, ``mean2d``, ``max2d``: per-pixel median, mean and maximum;
* ``min2d``, the "minimum signal": the mean of the N - k lowest values of each
  pixel (for N = 3, k = 2 it is the minimum). If the k highest values are the
  ones hit by cosmic rays, what is left is an unbiased estimate of the signal;
* the diagram plots ``x = min2d`` against ``y = median2d - min2d``
  (Cardiel et al. 2026, numina-crmasks). For a pixel whose median is raised
  by a cosmic ray in more than half of the exposures, ``y`` is far above what
  noise alone gives at that ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def minimum_signal(stack: np.ndarray, k: int) -> np.ndarray:
    """Mean of the ``N - k`` lowest values along axis 0 (the "minimum signal")."""
    stack = np.asarray(stack)
    n = stack.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} must be between 1 and N-1={n - 1}")
    m = n - k
    if m == 1:
        return stack.min(axis=0)
    part = np.partition(stack, m - 1, axis=0)[:m]
    return part.mean(axis=0, dtype=np.float64).astype(stack.dtype, copy=False)


def median_of_stack(stack: np.ndarray) -> np.ndarray:
    """Median along axis 0, with a fast path for 3 exposures."""
    stack = np.asarray(stack)
    if stack.shape[0] == 3:
        a, b, c = stack[0], stack[1], stack[2]
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return np.median(stack, axis=0).astype(stack.dtype, copy=False)


@dataclass
class StackStatistics:
    """Per-pixel combinations of a bias-subtracted (and flux-scaled) stack."""

    median2d: np.ndarray
    mean2d: np.ndarray
    min2d: np.ndarray  # the minimum signal (mean of the N-k lowest)
    max2d: np.ndarray
    k: int

    @property
    def x(self) -> np.ndarray:
        """Abscissa of the MM diagram: the minimum signal."""
        return self.min2d

    @property
    def y(self) -> np.ndarray:
        """Ordinate of the MM diagram: median minus minimum signal."""
        return self.median2d - self.min2d


def stack_statistics(stack: np.ndarray, k: int) -> StackStatistics:
    """Median, mean, minimum signal and maximum of a (N, ny, nx) stack."""
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (N, ny, nx), got shape {stack.shape}")
    return StackStatistics(
        median2d=median_of_stack(stack),
        mean2d=stack.mean(axis=0, dtype=np.float64).astype(stack.dtype, copy=False),
        min2d=minimum_signal(stack, k),
        max2d=stack.max(axis=0),
        k=int(k),
    )


def diagram_xy(stack: np.ndarray, k: int, target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The MM diagram of a stack: ``x = min2d``, ``y = target - min2d`` (target defaults to the median).

    numina applies the same diagram (and boundary) to the mean, to each
    exposure and to the refined mean by changing the target.
    """
    mn = minimum_signal(stack, k)
    tgt = median_of_stack(stack) if target is None else target
    return mn, tgt - mn


def noise_sigma(signal: np.ndarray, gain: float, rnoise: float) -> np.ndarray:
    """Noise of one exposure (ADU) for a bias-subtracted signal (ADU): sqrt(S/g + rn^2)."""
    return np.sqrt(np.clip(signal, 0, None) / gain + rnoise**2)
