"""Sky background and noise estimation (SEP's mesh-based background, as SExtractor)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Background:
    level: np.ndarray  # background map, same shape as the image
    rms: np.ndarray  # background noise map
    global_level: float
    global_rms: float

    def subtract(self, image: np.ndarray) -> np.ndarray:
        return image - self.level


def as_sep_array(a: np.ndarray, dtype=np.float32) -> np.ndarray:
    """C-contiguous, native byte order, as SEP requires."""
    return np.ascontiguousarray(np.asarray(a), dtype=np.dtype(dtype).newbyteorder("="))


def estimate_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    box: int = 64,
    filter_size: int = 3,
) -> Background:
    """Mesh background (sigma-clipped mode per box, median filtered, spline interpolated).

    Masked and non-finite pixels are ignored. ``box`` is reduced for small
    images so there are at least 4 meshes along each axis.
    """
    import sep

    data = as_sep_array(image)
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    # SEP's mesh statistics lose precision on a large pedestal with small, quantised noise (a raw frame's
    # bias level): work on the image minus its median and add the median back
    # (a median of at most ~1e6 pixels on a regular sub-grid: the pedestal only has to be near the level)
    k = max(1, int(np.sqrt(data.size / 1_000_000)))
    sub = data[::k, ::k][~bad[::k, ::k]]
    if sub.size == 0:
        sub = data[~bad]
    pedestal = float(np.median(sub)) if sub.size else 0.0
    filled = np.where(bad, 0.0, data - pedestal).astype(np.float32)
    ny, nx = data.shape
    b = int(max(8, min(box, ny // 4, nx // 4)))
    bk = sep.Background(as_sep_array(filled), mask=as_sep_array(bad, np.uint8), bw=b, bh=b, fw=filter_size, fh=filter_size)
    level = bk.back() + np.float32(pedestal)
    rms = bk.rms()
    return Background(level=level, rms=rms, global_level=float(bk.globalback) + pedestal,
                      global_rms=float(bk.globalrms))
