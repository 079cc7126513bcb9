"""Star detection on an image and cross-matching of two star lists.

Shared by PSF estimation, alignment QA and flux matching.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    return _extract(image, rms, threshold, mask, minarea, filter_kernel, deblend_cont, False)[0]


def detect_sources_segmented(
    image: np.ndarray,
    rms: float | np.ndarray,
    threshold: float = 10.0,
    mask: np.ndarray | None = None,
    minarea: int = 5,
    deblend_cont: float = 0.005,
) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`detect_sources` plus SEP's segmentation map (0 = sky, k = row k-1 of the table)."""
    return _extract(image, rms, threshold, mask, minarea, "default", deblend_cont, True)


def _extract(image, rms, threshold, mask, minarea, filter_kernel, deblend_cont, segmentation):
    import sep

    arr = np.asarray(image)
    data = as_sep_array(arr if np.isfinite(arr).all() else np.nan_to_num(arr, nan=0.0))
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
    out = sep.extract(data, threshold, err=err, mask=m, minarea=minarea, deblend_cont=deblend_cont,
                      segmentation_map=segmentation, **kwargs)
    objs, seg = out if segmentation else (out, None)
    return pd.DataFrame({name: objs[name] for name in objs.dtype.names}), seg


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


# --------------------------------------------------------------------------- PSF star selection
#: why a detected source was not used as a PSF star (the ``reason`` column of :func:`select_psf_stars`)
REJECT_REASONS = ("edge", "saturated", "bad_core", "cr_core", "blended", "sharp", "elongated", "low_snr",
                  "off_locus")


def clip_level(raw: np.ndarray, min_count: int = 3, min_sigma: float = 50.0) -> float | None:
    """The value at which an image is clipped (hard saturation), or None when it is not clipped.

    A clipped image (saturated pixels all written as the same number: a full
    ADC, or the top of an integer range after BSCALE) has its maximum repeated
    on ``min_count`` or more pixels, far (``min_sigma`` robust sigma) above the
    median. Images with a SATURATE keyword should use that instead.
    """
    a = np.asarray(raw, dtype=np.float64)
    v = a[np.isfinite(a)]
    if v.size < 16:
        return None
    top = float(v.max())
    tol = 1e-6 * max(abs(top), 1e-30)
    n_top = int((v >= top - tol).sum())
    if n_top < min_count:
        return None
    med = float(np.median(v))
    sig = 1.4826 * float(np.median(np.abs(v - med)))
    if not sig > 0 or (top - med) < min_sigma * sig:
        return None
    return top


def r50_band(r50: float) -> float:
    """Half-width (dex) of the stellar band in half-light radius at ``r50`` pixels.

    The scatter of bright stars' r50 (~5 %) plus the swing of an undersampled
    PSF's r50 with the sub-pixel phase (~0.1 px, i.e. larger in dex for small r50).
    """
    return 0.02 + 0.04 / max(float(r50), 0.3)


def stellar_locus(size: np.ndarray, half_width=r50_band, min_members: int = 2,
                  pixel_limit: float | None = 0.65) -> tuple[float, float, np.ndarray]:
    """The stellar sequence in a list of source sizes (half-light radii, fitted FWHMs; pixels).

    Point sources share one size whatever their flux, so they form a narrow
    band at the *smallest* size, while galaxies spread over larger sizes (the
    size-magnitude diagram; Bertin & Arnouts 1996, Fig. 9). The band is found
    as the lower envelope: starting from the smallest source, the first band
    of width 2 ``half_width(size)`` dex that holds ``min_members`` sources
    (fewer when there are fewer sources) is the locus. A single too-small
    outlier cannot anchor it alone, nor can a lone pair below a band of ten
    or more (two unmasked cosmic rays under a rich sequence), and compact
    galaxies above the star sequence do not move it, however many they
    are. The only population
    smaller than stars is pixel-limited (hot pixels and cosmic-ray spots,
    r50 < ``pixel_limit`` px): a band there is passed over when a band of
    larger sources holds at least as many.

    Returns (centre size, half-width in dex, members: within the half-width of the centre).
    """
    s = np.asarray(size, dtype=np.float64)
    ok = np.isfinite(s) & (s > 0)
    members = np.zeros(s.size, bool)
    if not ok.any():
        return float("nan"), float("nan"), members
    ls = np.log10(np.where(ok, s, 1.0))
    v = np.sort(ls[ok])
    hw = np.array([half_width(10**x) for x in v])
    top = np.searchsorted(v, v + 2 * hw, side="right")  # sources in [v_i, v_i + 2 w_i]
    count = top - np.arange(v.size)
    for need in range(min(min_members, v.size), 0, -1):
        cand = np.nonzero(count >= need)[0]
        if cand.size:
            break
    i = int(cand[0])
    if pixel_limit is not None and np.median(v[i : top[i]]) < np.log10(pixel_limit):
        # pixel-limited junk (hot pixels, CR spots) below: the locus is the first band above it holding at least
        # a tenth of the junk's densest band (so a stray pair between the two cannot take its place)
        med = np.array([np.median(v[k : top[k]]) for k in range(v.size)])
        junk = med < np.log10(pixel_limit)
        need_above = max(need, int(np.ceil(0.1 * count[junk].max())))
        above = np.nonzero((count >= need_above) & (v >= np.log10(pixel_limit)))[0]
        if above.size and count[above].max() >= count[i]:
            i = int(above[0])
    # a lone pair below a populous band (two unmasked cosmic-ray spots or hot pixels just above the pixel
    # limit) is not the stellar sequence when a band above holds ten or more sources: the locus is then the
    # first band of three or more (a sparse star sequence under many compact galaxies still anchors it)
    if count[i] <= 2 and count.max() >= 10:
        i = int(np.nonzero(count >= 3)[0][0])
    w = float(hw[i])
    centre = float(v[i] + w)
    members = ok & (np.abs(ls - centre) <= w * (1 + 1e-9))
    return float(10**centre), w, members


@dataclass
class StarSelection:
    """Every source considered as a PSF star, and the stars chosen.

    ``table`` has one row per detected source (SEP columns plus ``r50``,
    ``snr``, ``raw_peak``, ``axis_ratio``, ``seg_id``, ``reason`` ('' for the
    chosen stars) and ``use``); ``segmap`` is SEP's segmentation map (value
    ``seg_id`` for the row's pixels).
    """

    table: pd.DataFrame
    segmap: np.ndarray
    locus_r50: float
    locus_width: float
    notes: list[str]
    cr_ignored_in_cores: bool = False  # the CR mask covered most candidates' cores and was not believed there

    @property
    def stars(self) -> pd.DataFrame:
        return self.table[self.table["use"]]

    def rejected_counts(self) -> dict[str, int]:
        r = self.table.loc[~self.table["use"], "reason"]
        return {k: int(v) for k, v in r.value_counts().items()}


def _disk(shape, x, y, r):
    """(slices, boolean disk) of the pixels within ``r`` of (x, y), clipped to the image."""
    ny, nx = shape
    y0, y1 = max(int(np.floor(y - r)), 0), min(int(np.ceil(y + r)) + 1, ny)
    x0, x1 = max(int(np.floor(x - r)), 0), min(int(np.ceil(x + r)) + 1, nx)
    inside = ((np.arange(x0, x1)[None, :] - x) ** 2 + (np.arange(y0, y1)[:, None] - y) ** 2) <= r * r
    return (slice(y0, y1), slice(x0, x1)), inside


def select_psf_stars(
    image: np.ndarray,
    rms: float | np.ndarray,
    mask: np.ndarray | None = None,
    *,
    cr_mask: np.ndarray | None = None,
    saturation: float | None = None,
    background: float | np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    clipped_at: float | None = None,
    detect_sigma: float = 10.0,
    min_snr: float = 30.0,
    min_axis_ratio: float = 0.6,
    saturation_fraction: float = 0.8,
    edge: int = 3,
) -> StarSelection:
    """Choose PSF stars in a background-subtracted image: the stellar locus, unsaturated, isolated.

    Each SEP source (``detect_sigma`` per pixel) is measured: half-light radius
    ``r50`` with the pixels of other sources masked (SEP segmentation), an
    aperture S/N within 2 r50, the axis ratio, the raw peak (``image +
    background``). It is rejected, with the first reason that applies
    (:data:`REJECT_REASONS`), when it touches the edge; is saturated (raw peak
    above ``saturation_fraction * saturation``, reaching ``clipped_at`` (the
    value a clipped image is cut at, :func:`clip_level`), a pixel of
    ``saturated`` in its footprint, or a flat top of three or more core pixels within 0.5 % of
    the peak: a clipped or non-linear core without a SATURATE keyword); has a
    ``mask`` (bad) pixel in its core (radius max(1, r50)); has a cosmic-ray
    pixel in its core; has another source's pixels in its core or a brighter
    source within 4 r50; is sharper than a point source (a hot pixel: peak
    above 90 % of the aperture flux, or r50 < 0.3 px); is elongated (b/a below
    ``min_axis_ratio``); has S/N below ``min_snr``; or lies off the stellar
    locus in size (:func:`stellar_locus`: galaxies are larger).

    Cosmic-ray pixels outside a star's core do not reject it (the PSF fit
    treats them as missing data). When the CR mask covers the cores of most
    candidates (a CR detector that took stars for cosmic rays) it is ignored in
    the cores and a note says so.
    """
    import sep
    from scipy.spatial import cKDTree

    img = np.asarray(image, dtype=np.float64)
    if not np.isfinite(img).all():
        img = np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)
    shape = img.shape
    bad = np.zeros(shape, bool) if mask is None else np.asarray(mask, bool)
    cr = np.zeros(shape, bool) if cr_mask is None else np.asarray(cr_mask, bool) & ~bad
    missing = bad | cr if cr_mask is not None else bad
    notes: list[str] = []
    data = as_sep_array(img)
    src, seg = detect_sources_segmented(data, rms, threshold=detect_sigma, mask=missing, minarea=5)
    cols = ["r50", "snr", "raw_peak", "axis_ratio", "seg_id"]
    if len(src) == 0:
        t = pd.DataFrame(columns=list(src.columns) + cols + ["reason", "use"])
        return StarSelection(t, seg, float("nan"), float("nan"), notes)
    src = src.reset_index(drop=True)
    src["seg_id"] = np.arange(1, len(src) + 1, dtype=np.int32)
    x = np.array(src["x"], float)
    y = np.array(src["y"], float)
    seg_ids = np.array(src["seg_id"], np.int32)
    rmax = np.clip(6.0 * np.maximum(np.sqrt(np.array(src["a"]) * np.array(src["b"])), 1.0), 3.0, 60.0)
    err = as_sep_array(rms) if np.ndim(rms) else float(rms)

    def measure(missing_pixels):
        """Half-light radius, its SEP flag, aperture flux within 2 r50 and S/N, other sources masked."""
        miss = as_sep_array(missing_pixels, np.uint8)
        r50, rflag = sep.flux_radius(data, x, y, rmax, 0.5, mask=miss, segmap=seg, seg_id=seg_ids, subpix=5)
        r_ap = np.clip(2.0 * np.nan_to_num(r50, nan=1.0), 1.5, 40.0)
        f_ap, f_err, _ = sep.sum_circle(data, x, y, r_ap, err=err, mask=miss, segmap=seg, seg_id=seg_ids, subpix=5)
        return r50, rflag, f_ap, np.where(f_err > 0, f_ap / np.maximum(f_err, 1e-300), 0.0)

    r50, rflag, f_ap, snr_ap = measure(missing)
    src["r50"] = r50
    src["snr"] = snr_ap
    src["axis_ratio"] = np.array(src["b"]) / np.maximum(np.array(src["a"]), 1e-9)
    bkg = np.broadcast_to(np.asarray(0.0 if background is None else background, float), shape)
    ix = np.clip(np.round(x).astype(int), 0, shape[1] - 1)
    iy = np.clip(np.round(y).astype(int), 0, shape[0] - 1)
    src["raw_peak"] = np.array(src["peak"], float) + bkg[iy, ix]
    reason = np.array([""] * len(src), dtype=object)

    def reject(cond, why):
        sel = (reason == "") & np.asarray(cond, bool)
        reason[sel] = why

    ny, nx = shape
    flag = np.array(src["flag"], int)
    reject(((flag & 2) != 0) | (x < edge) | (y < edge) | (x > nx - 1 - edge) | (y > ny - 1 - edge)
           | ((rflag & 0xC0) != 0) | ~np.isfinite(r50), "edge")  # SEP APER_ALLMASKED | APER_NONPOSITIVE
    sat_map = None if saturated is None else np.asarray(saturated, bool)
    sat_flag = np.zeros(len(src), bool)
    if saturation is not None and np.isfinite(saturation) and saturation > 0:
        sat_flag |= np.array(src["raw_peak"]) >= saturation_fraction * saturation
    if clipped_at is not None and np.isfinite(clipped_at):
        sat_flag |= np.array(src["raw_peak"]) >= clipped_at - 1e-6 * abs(clipped_at)
    core_bad = np.zeros(len(src), bool)
    core_cr = np.zeros(len(src), bool)
    core_blend = np.zeros(len(src), bool)
    snr = np.array(src["snr"], float)
    r_core = np.maximum(np.nan_to_num(r50, nan=1.0), 1.0)
    for k in np.nonzero((reason == "") & (snr >= min_snr))[0]:  # the rest fail on S/N anyway
        sl, inside = _disk(shape, x[k], y[k], r_core[k])
        core_bad[k] = bad[sl][inside].any()
        core_cr[k] = cr[sl][inside].any()
        s_core = seg[sl][inside]
        core_blend[k] = ((s_core != 0) & (s_core != seg_ids[k])).any()
        if sat_map is not None:
            slr, _ = _disk(shape, x[k], y[k], float(rmax[k]))
            if (sat_map[slr] & (seg[slr] == seg_ids[k])).any():
                sat_flag[k] = True
        if snr[k] > 50:
            sl5, in5 = _disk(shape, x[k], y[k], 2.5)
            core = (img[sl5] + bkg[sl5])[in5]
            top = float(core.max())
            amp = top - float(bkg[iy[k], ix[k]])
            if amp > 0 and int((core >= top - 0.005 * amp).sum()) >= 3:
                sat_flag[k] = True
    reject(sat_flag, "saturated")
    reject(core_bad, "bad_core")
    pending = reason == ""
    cr_ignored = bool(core_cr[pending].sum() >= 2 and core_cr[pending].mean() > 0.5)
    if cr_ignored:
        notes.append(f"the cosmic-ray mask covers the cores of {int(core_cr[pending].sum())} of "
                     f"{int(pending.sum())} candidate stars: it was ignored in their cores")
        believed = cr.copy()
        for k in np.nonzero(pending)[0]:
            sl, inside = _disk(shape, x[k], y[k], r_core[k] + 1.0)
            believed[sl][inside] = False
        r50, rflag, f_ap, snr_ap = measure(bad | believed)  # sizes without the disbelieved core pixels
        src["r50"] = r50
        src["snr"] = snr_ap
        r_core = np.maximum(np.nan_to_num(r50, nan=1.0), 1.0)
    else:
        reject(core_cr, "cr_core")
    tree = cKDTree(np.column_stack([x, y]))
    flux = np.array(src["flux"], float)
    brighter = np.zeros(len(src), bool)
    for k, nb in enumerate(tree.query_ball_point(np.column_stack([x, y]), 4.0 * r_core)):
        brighter[k] = any(j != k and flux[j] > flux[k] for j in nb)
    reject(core_blend | brighter, "blended")
    peak_frac = np.array(src["peak"], float) / np.maximum(f_ap, 1e-300)
    # a hot pixel puts > 90 % of its flux in one pixel; an undersampled star centred on a pixel up to ~80 %
    reject((peak_frac > 0.9) | (r50 < 0.3), "sharp")
    reject(src["axis_ratio"] < min_axis_ratio, "elongated")
    reject(src["snr"] < min_snr, "low_snr")
    pending = reason == ""
    centre, width = float("nan"), float("nan")
    if pending.any():
        centre, width, members = stellar_locus(np.where(pending, r50, np.nan))
        if centre < 1.3:
            # critically sampled PSF (FWHM ~ 1 px or less): r50 swings with the sub-pixel phase, from ~0.35 px
            # (centred on a pixel) to the locus and above, so the band reaches down to the hot-pixel limit
            members |= pending & (r50 >= 0.3) & (r50 <= centre * 10**width)
        reject(pending & ~members, "off_locus")
    src["reason"] = reason.astype(str)
    src["use"] = src["reason"] == ""
    src = src.sort_values("snr", ascending=False, kind="stable")
    return StarSelection(src, seg, centre, width, notes, cr_ignored)
