"""Science / reference / difference cutout triplets around candidates (ZTF-alert style)."""

from __future__ import annotations

import numpy as np


def cutout(image: np.ndarray, x: float, y: float, size: int) -> tuple[np.ndarray, bool]:
    """A ``size`` x ``size`` cutout centred on the pixel nearest (x, y), NaN-padded at edges.

    Returns (cutout, touches_edge). For even ``size`` the extra row/column
    is on the high side.
    """
    if size < 3:
        raise ValueError(f"cutout size must be at least 3 pixels, got {size}")
    ny, nx = image.shape
    cx, cy = int(round(x)), int(round(y))
    lo = size // 2
    x0, y0 = cx - lo, cy - lo
    x1, y1 = x0 + size, y0 + size
    out = np.full((size, size), np.nan, dtype=np.float32)
    sx0, sy0 = max(0, x0), max(0, y0)
    sx1, sy1 = min(nx, x1), min(ny, y1)
    edge = x0 < 0 or y0 < 0 or x1 > nx or y1 > ny
    if sx0 < sx1 and sy0 < sy1:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out, edge


def make_triplets(science: np.ndarray, reference: np.ndarray, difference: np.ndarray, xs, ys, size: int = 63):
    """Stack cutouts into an (N, 3, size, size) float32 array plus an (N,) edge flag."""
    n = len(xs)
    out = np.full((n, 3, size, size), np.nan, dtype=np.float32)
    edge = np.zeros(n, dtype=bool)
    for k, (x, y) in enumerate(zip(xs, ys)):
        for j, img in enumerate((science, reference, difference)):
            out[k, j], e = cutout(img, x, y, size)
            edge[k] |= e
    return out, edge
