"""Star detection on an image and cross-matching of two star lists.

Shared by PSF estimation, alignment QA and flux matching.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from astrid_pipeline.science.background import as_sep_array


def detect_sources(
    image: np.ndarray,
    rms: float | np.ndarray,
    threshold: float = 10.0,
    mask: np.ndarray | None = None,
    minarea: int = 5,
    filter_kernel: np.ndarray | None = "default",
    deblend_cont: float = 0.005,
) -> pd.DataFrame:
    """SEP extraction on a background-subtracted image; returns a DataFrame."""
    import sep

    data = as_sep_array(np.nan_to_num(image, nan=0.0))
    kwargs = {}
    if filter_kernel is None:
        kwargs["filter_kernel"] = None
    elif not (isinstance(filter_kernel, str) and filter_kernel == "default"):
        kwargs["filter_kernel"] = np.asarray(filter_kernel, dtype=np.float32)
    err = as_sep_array(rms) if np.ndim(rms) else float(rms)
    m = None if mask is None else as_sep_array(mask, np.uint8)
    old = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(old, data.size // 2))
    sep.set_sub_object_limit(4096)
    objs = sep.extract(data, threshold, err=err, mask=m, minarea=minarea, deblend_cont=deblend_cont, **kwargs)
    return pd.DataFrame({name: objs[name] for name in objs.dtype.names})


def match_positions(x1, y1, x2, y2, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-neighbour matches of list 1 in list 2 within ``radius`` pixels.

    Returns (index1, index2, distance) of the matched pairs; each object of
    list 2 is used at most once (the closest wins).
    """
    from scipy.spatial import cKDTree

    x1, y1, x2, y2 = (np.asarray(v, dtype=float) for v in (x1, y1, x2, y2))
    if len(x1) == 0 or len(x2) == 0:
        e = np.array([], dtype=int)
        return e, e, np.array([], dtype=float)
    tree = cKDTree(np.column_stack([x2, y2]))
    d, j = tree.query(np.column_stack([x1, y1]), distance_upper_bound=radius)
    ok = np.isfinite(d)
    i = np.nonzero(ok)[0]
    j = j[ok]
    d = d[ok]
    order = np.argsort(d)
    seen: set[int] = set()
    keep = []
    for k in order:
        if j[k] not in seen:
            seen.add(int(j[k]))
            keep.append(k)
    keep = np.array(sorted(keep), dtype=int)
    return i[keep], j[keep], d[keep]


def isolated(x, y, min_sep: float) -> np.ndarray:
    """True for positions with no other position closer than ``min_sep``."""
    from scipy.spatial import cKDTree

    pts = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if len(pts) < 2:
        return np.ones(len(pts), dtype=bool)
    d, _ = cKDTree(pts).query(pts, k=2)
    return d[:, 1] >= min_sep
