"""Cosmic-ray masks from the MM diagram, dilation, thresholds and user lists.

Mask codes of the MEDIANCR detection (numina-crmasks): 2 = M.M.Cosmic only,
3 = Aux.Cosmic only, 4 = both, 1 = added by the global ``dilation``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT = np.ones((3, 3), dtype=bool)

CODE_DILATION, CODE_MM, CODE_AUX, CODE_BOTH = 1, 2, 3, 4


def dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary dilation with the 3x3 (8-connected) structure, ``iterations`` times."""
    mask = np.asarray(mask, dtype=bool)
    if iterations <= 0 or not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=EIGHT, iterations=int(iterations))


def keep_groups_with(mask: np.ndarray, strong: np.ndarray) -> np.ndarray:
    """Keep the 8-connected groups of ``mask`` that contain at least one ``strong`` pixel."""
    mask = np.asarray(mask, dtype=bool)
    labels, n = ndimage.label(mask, structure=EIGHT)
    if n == 0:
        return mask.copy()
    keep = np.zeros(n + 1, dtype=bool)
    keep[np.unique(labels[mask & np.asarray(strong, dtype=bool)])] = True
    keep[0] = False
    return keep[labels]


def mm_detect(
    x: np.ndarray,
    y: np.ndarray,
    max2d: np.ndarray,
    boundary,
    *,
    threshold: float,
    min_max2d: float,
    dilation: int = 0,
    allowed: np.ndarray | None = None,
    boundary_values: np.ndarray | None = None,
    target: np.ndarray | None = None,
    local_sigma: float = 0.0,
    gain: float = 1.0,
    rnoise: float = 0.0,
) -> np.ndarray:
    """Pixels above the boundary, above ``threshold`` in y and with ``max2d > min_max2d``.

    Then dilated ``dilation`` times; after dilation, groups with no pixel
    above ``threshold`` are dropped (numina's "thresholding again").
    ``allowed`` (False in regions to be skipped) is applied last.
    ``boundary_values`` (= ``boundary(x)``) may be given to skip evaluating it again.

    With ``local_sigma > 0`` (not in numina) a candidate is kept only if its
    ``target`` value (the median, for MEDIANCR) stands more than
    ``local_sigma`` times one exposure's noise above the median of its 24
    neighbours (5x5 ring): a pixel whose y is large only because its
    minimum came out low, or because one exposure alone was hit, has a
    median at the local level and is dropped; a pixel raised by cosmic rays
    in most exposures is not.
    """
    above_thr = y > threshold
    bx = boundary(x) if boundary_values is None else boundary_values
    flag = (y > bx) & above_thr & (max2d > min_max2d)
    if local_sigma > 0 and target is not None and flag.any():
        flag &= stands_above_neighbours(target, flag, local_sigma, gain=gain, rnoise=rnoise)
    if dilation > 0:
        flag = dilate(flag, dilation)
        flag = keep_groups_with(flag, above_thr)
    if allowed is not None:
        flag &= allowed
    return flag


_RING = [(dr, dc) for dr in range(-2, 3) for dc in range(-2, 3) if (dr, dc) != (0, 0)]


def ring_median(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Median of the 24 neighbours (5x5 ring, edges reflected) of the given pixels."""
    ny, nx = image.shape
    vals = np.empty((len(_RING), rows.size), dtype=np.float64)
    for i, (dr, dc) in enumerate(_RING):
        r = np.abs(rows + dr)
        r = np.where(r >= ny, 2 * (ny - 1) - r, r)
        c = np.abs(cols + dc)
        c = np.where(c >= nx, 2 * (nx - 1) - c, c)
        vals[i] = image[r, c]
    return np.median(vals, axis=0)


def stands_above_neighbours(target, candidates, nsigma, *, gain=1.0, rnoise=0.0) -> np.ndarray:
    """Boolean image: True except at candidates whose value is not ``nsigma`` above their ring median."""
    keep = np.ones(candidates.shape, dtype=bool)
    rows, cols = np.nonzero(candidates)
    if rows.size == 0:
        return keep
    local = ring_median(np.asarray(target), rows, cols)
    sigma = np.sqrt(np.clip(local, 0, None) / gain + rnoise**2)
    keep[rows, cols] = np.asarray(target)[rows, cols] - local > nsigma * sigma
    return keep


def fits_pixels_to_mask(pixels, shape) -> np.ndarray:
    """Boolean mask of the [X, Y] FITS pixels (1-based) that fall inside ``shape``."""
    m = np.zeros(shape, dtype=bool)
    for row in pixels:
        x, y = int(row[0]), int(row[1])
        if 1 <= x <= shape[1] and 1 <= y <= shape[0]:
            m[y - 1, x - 1] = True
    return m


def fits_regions_to_mask(regions, shape) -> np.ndarray:
    """Boolean mask of the union of [xmin, xmax, ymin, ymax] FITS regions (inclusive)."""
    m = np.zeros(shape, dtype=bool)
    for xmin, xmax, ymin, ymax in regions:
        m[max(ymin - 1, 0) : min(ymax, shape[0]), max(xmin - 1, 0) : min(xmax, shape[1])] = True
    return m


def combine_codes(flag_mm: np.ndarray, flag_aux: np.ndarray | None) -> np.ndarray:
    """uint8 code image: 2 M.M. only, 3 Aux only, 4 both."""
    code = np.zeros(flag_mm.shape, dtype=np.uint8)
    code[flag_mm] = CODE_MM
    if flag_aux is not None:
        code[flag_aux & ~flag_mm] = CODE_AUX
        code[flag_aux & flag_mm] = CODE_BOTH
    return code


def global_dilation(code: np.ndarray, iterations: int) -> np.ndarray:
    """Dilate a code image; pixels added by the dilation get code 1."""
    if iterations <= 0:
        return code.copy()
    grown = dilate(code > 0, iterations)
    out = code.copy()
    out[grown & (code == 0)] = CODE_DILATION
    return out


def classify_groups(code: np.ndarray):
    """Group flagged pixels (8-connected) and sort the groups into numina's categories.

    Returns (labels, categories) where ``categories`` maps each category name
    (``any4``, ``only3``, ``only2``, ``other``) to the list of group numbers:
    ``any4`` has a pixel found by both methods; ``only3`` only Aux.Cosmic
    pixels (plus dilation); ``only2`` only M.M.Cosmic pixels (plus dilation);
    ``other`` the rest.
    """
    labels, n = ndimage.label(code > 0, structure=EIGHT)
    cats = {"any4": [], "only3": [], "only2": [], "other": []}
    if n == 0:
        return labels, cats
    idx = labels.ravel()
    vals = code.ravel()
    sel = idx > 0
    has = {}
    for c in (1, 2, 3, 4):
        h = np.zeros(n + 1, dtype=bool)
        h[idx[sel & (vals == c)]] = True
        has[c] = h
    for g in range(1, n + 1):
        if has[4][g]:
            cats["any4"].append(g)
        elif has[3][g] and not has[2][g]:
            cats["only3"].append(g)
        elif has[2][g] and not has[3][g]:
            cats["only2"].append(g)
        else:
            cats["other"].append(g)
    return labels, cats
