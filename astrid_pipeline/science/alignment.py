"""WCS alignment of a reference image onto a science image's pixel grid, with one interpolation.

1. The residual offset between the two WCS solutions is measured *before*
   any resampling: stars are detected in the reference on its own grid,
   their positions are mapped through both WCS onto the science grid and
   matched with the science image's stars (WCS zero points of different
   surveys often disagree by a fraction of a pixel).
2. When the offset is significant it is folded into the pixel mapping
   (science pixel -> reference pixel, through the celestial WCS: any
   projection, TAN-SIP and TPV distortions, equatorial or galactic frames,
   via astropy's ``pixel_to_pixel`` as ``reproject`` does).
3. The reference, its masks and its error map are resampled once with that
   mapping (``scipy.ndimage.map_coordinates``; bicubic spline by default).
   Resampling twice would correlate the noise twice (Fruchter & Hook 2002,
   PASP 114, 144).
4. The residual is measured again on the aligned product for the QA
   keywords (no further resampling).

Computing the mapping (:func:`pixel_mapping`) and resampling with it
(:func:`resample`, :func:`resample_mask`) are separate so the mapping can be
reused and computed more cheaply later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS

from astrid_pipeline.errors import NoOverlapError
from astrid_pipeline.science.stars import detect_sources, match_positions


@dataclass
class AlignmentResult:
    data: np.ndarray  # reference resampled onto the target grid (NaN where invalid)
    mask: np.ndarray  # bool: no valid reference data here (outside the footprint or bad)
    footprint_fraction: float
    outside: np.ndarray | None = None  # bool: outside the reference footprint
    saturated: np.ndarray | None = None  # bool: saturated in the reference
    dx: float = 0.0  # median residual offset science - reference after alignment (pix)
    dy: float = 0.0
    rms: float = float("nan")  # rms of the matched-star offsets (pix)
    rms_x: float = float("nan")
    rms_y: float = float("nan")
    n_matched: int = 0
    shift_applied: tuple[float, float] = (0.0, 0.0)  # residual WCS offset folded into the mapping (pix)
    native: dict | None = None  # the offset measured before resampling (dx, dy, rms, n)
    variance: np.ndarray | None = None  # the reference's error map squared, resampled with the same mapping
    mapping_info: dict | None = None  # how the pixel mapping was computed (pixel_mapping_info)

    def qa(self) -> dict:
        return dict(footprint_fraction=self.footprint_fraction, residual_dx=self.dx, residual_dy=self.dy,
                    residual_rms=self.rms, residual_rms_x=self.rms_x, residual_rms_y=self.rms_y,
                    n_matched=self.n_matched, shift_x=self.shift_applied[0], shift_y=self.shift_applied[1])


def overlap_fraction(wcs_a: WCS, shape_a: tuple[int, int], wcs_b: WCS, shape_b: tuple[int, int], n: int = 24) -> float:
    """Fraction of image A's area that image B covers, from an n x n grid of sample points (cheap)."""
    import warnings

    ys, xs = np.meshgrid(np.linspace(0, shape_a[0] - 1, n), np.linspace(0, shape_a[1] - 1, n), indexing="ij")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sky = wcs_a.pixel_to_world(xs.ravel(), ys.ravel())
        try:
            bx, by = wcs_b.world_to_pixel(sky)
        except Exception:  # a projection that cannot represent these positions at all
            return 0.0
    inside = np.isfinite(bx) & np.isfinite(by) & (bx > -0.5) & (bx < shape_b[1] - 0.5) & (by > -0.5) & (by < shape_b[0] - 0.5)
    return float(inside.mean())


ORDERS = {"nearest-neighbor": 0, "nearest": 0, "bilinear": 1, "biquadratic": 2, "bicubic": 3}


def _order(order) -> int:
    if isinstance(order, (int, np.integer)):
        return int(order)
    try:
        return ORDERS[str(order)]
    except KeyError:
        raise ValueError(f"interpolation order {order!r} is not one of {sorted(ORDERS)}") from None


#: coarse-grid spacing (target pixels) of the interpolated pixel mapping
MAPPING_STEP = 32
#: largest interpolation error (pixels) of the coarse-grid mapping against the exact transform; beyond it the
#: mapping is computed exactly for every pixel
MAPPING_MAX_ERROR = 0.01


def _exact_points(target_wcs: WCS, source_wcs: WCS, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel (x, y) of target pixel positions ``(xx, yy)`` (any shape); NaN where the round trip fails."""
    import warnings

    from astropy.wcs.utils import pixel_to_pixel

    shape = np.shape(xx)
    xf, yf = np.ravel(xx).astype(np.float64), np.ravel(yy).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sx, sy = pixel_to_pixel(target_wcs, source_wcs, xf, yf)
            bx, by = pixel_to_pixel(source_wcs, target_wcs, sx, sy)
        except Exception:  # a projection that cannot represent these positions at all
            sx = sy = np.full(xf.size, np.nan)
            bx = by = sx
    sx, sy = np.array(sx, float).ravel(), np.array(sy, float).ravel()
    bad = ~(np.abs(np.asarray(bx).ravel() - xf) <= 1) | ~(np.abs(np.asarray(by).ravel() - yf) <= 1)
    sx[bad] = np.nan
    sy[bad] = np.nan
    return sx.reshape(shape), sy.reshape(shape)


def _spline_weights(nodes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Matrix W (len(at), len(nodes)) with W @ f(nodes) = the not-a-knot cubic spline of f evaluated at ``at``."""
    from scipy.interpolate import CubicSpline

    return CubicSpline(nodes, np.eye(len(nodes)), axis=0)(at)


def pixel_mapping_info(target_wcs: WCS, target_shape: tuple[int, int], source_wcs: WCS,
                       offset: tuple[float, float] = (0.0, 0.0), rows_per_block: int = 256,
                       step: int = MAPPING_STEP, max_error: float = MAPPING_MAX_ERROR) -> tuple[np.ndarray, dict]:
    """:func:`pixel_mapping` and how it was computed: ``{"method": "coarse" | "exact", "max_error_px", "step"}``.

    The WCS transform is evaluated exactly (round trip included) on a grid
    every ``step`` target pixels (plus the last row and column) and
    interpolated with a separable not-a-knot cubic spline (two small matrix
    products per axis). The interpolation is checked against the exact
    transform at the centre of every grid cell, where a spline's error is
    largest; when that error exceeds ``max_error`` pixels, when any grid
    point fails the round trip (a projection's limb, a distortion that does
    not invert) or when the image is too small for a grid, the mapping is
    computed exactly for every pixel. ``max_error_px`` is the measured bound
    (0 for the exact mapping).
    """
    ny, nx = target_shape
    dx, dy = float(offset[0]), float(offset[1])
    step = int(step)
    if step >= 2 and min(ny, nx) >= 4 * step:
        ys = np.unique(np.r_[np.arange(0, ny, step), ny - 1]).astype(np.float64)
        xs = np.unique(np.r_[np.arange(0, nx, step), nx - 1]).astype(np.float64)
        yy, xx = np.meshgrid(ys - dy, xs - dx, indexing="ij")
        sx, sy = _exact_points(target_wcs, source_wcs, xx, yy)
        if np.isfinite(sx).all() and np.isfinite(sy).all():
            yc, xc = 0.5 * (ys[1:] + ys[:-1]), 0.5 * (xs[1:] + xs[:-1])
            wyc, wxc = _spline_weights(ys, yc), _spline_weights(xs, xc)
            cyy, cxx = np.meshgrid(yc - dy, xc - dx, indexing="ij")
            ex, ey = _exact_points(target_wcs, source_wcs, cxx, cyy)
            err = np.hypot(wyc @ sx @ wxc.T - ex, wyc @ sy @ wxc.T - ey)
            worst = float(np.max(err)) if np.isfinite(err).all() else float("inf")
            if worst <= max_error:
                wy, wx = _spline_weights(ys, np.arange(ny, dtype=np.float64)), _spline_weights(xs, np.arange(
                    nx, dtype=np.float64))
                out = np.empty((2, ny, nx), dtype=np.float64)
                np.matmul(wy @ sy, wx.T, out=out[0])
                np.matmul(wy @ sx, wx.T, out=out[1])
                return out, {"method": "coarse", "max_error_px": worst, "step": step}
    return _exact_mapping(target_wcs, target_shape, source_wcs, offset, rows_per_block), {
        "method": "exact", "max_error_px": 0.0, "step": 1}


def pixel_mapping(target_wcs: WCS, target_shape: tuple[int, int], source_wcs: WCS,
                  offset: tuple[float, float] = (0.0, 0.0), rows_per_block: int = 256) -> np.ndarray:
    """For each target pixel, the (y, x) source-pixel coordinates that land on it; shape (2, ny, nx).

    ``offset`` = (dx, dy) is a measured residual in target pixels (where a
    star of the source appears in the target, minus where the WCS predicts
    it): target pixel (x, y) takes the source at the WCS image of
    (x - dx, y - dy). Positions the source WCS cannot represent (beyond a
    projection's limb, or not round-tripping to within a pixel, as in
    ``reproject``) are NaN. Interpolated from a coarse grid with a measured
    error of at most :data:`MAPPING_MAX_ERROR` pixels, else exact
    (:func:`pixel_mapping_info`).
    """
    return pixel_mapping_info(target_wcs, target_shape, source_wcs, offset, rows_per_block)[0]


def _exact_mapping(target_wcs: WCS, target_shape: tuple[int, int], source_wcs: WCS,
                   offset: tuple[float, float] = (0.0, 0.0), rows_per_block: int = 256) -> np.ndarray:
    """The exact mapping of every pixel (the WCS transform and its round trip), in row blocks to bound memory."""
    ny, nx = target_shape
    out = np.empty((2, ny, nx), dtype=np.float64)
    dx, dy = float(offset[0]), float(offset[1])
    xs = np.arange(nx, dtype=np.float64) - dx
    for y0 in range(0, ny, rows_per_block):
        y1 = min(ny, y0 + rows_per_block)
        yy, xx = np.meshgrid(np.arange(y0, y1, dtype=np.float64) - dy, xs, indexing="ij")
        sx, sy = _exact_points(target_wcs, source_wcs, xx, yy)
        out[0, y0:y1] = sy
        out[1, y0:y1] = sx
    return out


def _inside(mapping: np.ndarray, shape) -> np.ndarray:
    sy, sx = mapping
    with np.errstate(invalid="ignore"):
        return (sx >= -0.5) & (sx <= shape[1] - 0.5) & (sy >= -0.5) & (sy <= shape[0] - 0.5)


_COORDS: dict = {}


def _coords(mapping: np.ndarray, shape) -> np.ndarray:
    """map_coordinates input for ``mapping`` on a source of ``shape``: NaN -> far outside, the half-pixel border
    beyond the outer pixel centres clamped onto them (the edge value, as reproject does). Kept for the last
    mapping, so the image, its masks and its error map share one copy."""
    import weakref

    key = (id(mapping), tuple(shape))
    hit = _COORDS.get("last")
    if hit is not None and hit[0] == key and hit[1]() is mapping:
        return hit[2]
    coords = np.nan_to_num(mapping, nan=-10.0)
    for axis in (0, 1):
        c, n = coords[axis], shape[axis]
        c[(c >= -0.5) & (c < 0)] = 0.0
        c[(c > n - 1) & (c <= n - 0.5)] = n - 1
    _COORDS["last"] = (key, weakref.ref(mapping), coords)
    weakref.finalize(mapping, _drop_coords, key)  # freed with the mapping, not kept for the process's life
    return coords


def _drop_coords(key) -> None:
    hit = _COORDS.get("last")
    if hit is not None and hit[0] == key:
        _COORDS.pop("last", None)


def _sample(data: np.ndarray, mapping: np.ndarray, order: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.map_coordinates(data, _coords(mapping, data.shape), order=order, mode="nearest",
                                   prefilter=order > 1)


def _sample_bilinear_sparse(mask: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """``_sample(mask, mapping, 1)`` for a sparse boolean mask: evaluated only where a True pixel is among the
    four bilinear neighbours (exactly the same values; zero elsewhere)."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    ny, nx = m.shape
    coords = _coords(mapping, m.shape)
    # near[i, j]: any of m[i:i+2, j:j+2] (edges clamped, as mode="nearest" does)
    near = m.copy()
    near[:-1] |= m[1:]
    near[:, :-1] |= near[:, 1:].copy()
    iy = np.clip(np.floor(coords[0]), 0, ny - 1).astype(np.intp)
    ix = np.clip(np.floor(coords[1]), 0, nx - 1).astype(np.intp)
    cand = near[iy, ix]
    out = np.zeros(mapping.shape[1:], np.float32)
    if cand.any():
        pts = coords[:, cand]
        out[cand] = ndimage.map_coordinates(m.astype(np.float32), pts, order=1, mode="nearest", prefilter=False)
    return out


def resample(data: np.ndarray, mapping: np.ndarray, bad: np.ndarray | None = None, order="bicubic"):
    """Resample ``data`` with a :func:`pixel_mapping`; returns (image, invalid, outside).

    Bad and non-finite input pixels are filled with the median before the
    spline (a NaN would spread through the whole spline), and every output
    pixel they contribute to is invalid. ``outside`` marks target pixels
    beyond the source footprint. Invalid pixels are NaN in the image.
    """
    arr = np.asarray(data, dtype=np.float64)
    bad_in = ~np.isfinite(arr)
    if bad is not None:
        bad_in |= np.asarray(bad, bool)
    fill = float(np.median(arr[~bad_in])) if (~bad_in).any() else 0.0
    out = _sample(np.where(bad_in, fill, arr), mapping, _order(order))
    outside = ~_inside(mapping, arr.shape)
    invalid = outside.copy()
    if bad_in.any():
        invalid |= resample_mask(bad_in, mapping)
    out[invalid] = np.nan
    return out, invalid, outside


def resample_mask(mask: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """A boolean map carried onto the target grid: True wherever a True input pixel contributes (bilinear)."""
    m = np.asarray(mask, bool)
    if m.mean() < 0.25:  # sparse (bad pixels, saturated stars): only near the True pixels
        out = _sample_bilinear_sparse(m, mapping)
    else:
        out = _sample(m.astype(np.float32), mapping, 1)
    return (out > 0.01) & _inside(mapping, m.shape)


def resample_variance(variance: np.ndarray, mapping: np.ndarray) -> np.ndarray:
    """A variance map on the target grid (bilinear, so it stays positive; NaN outside)."""
    v = np.asarray(variance, np.float64)
    ok = np.isfinite(v)
    fill = float(np.median(v[ok])) if ok.any() else 0.0
    out = _sample(np.where(ok, v, fill), mapping, 1)
    out[~_inside(mapping, v.shape)] = np.nan
    return out


def reproject_mask(mask: np.ndarray, wcs_in: WCS, wcs_out: WCS, shape_out: tuple[int, int]) -> np.ndarray:
    """A boolean map carried onto another grid: True wherever a True input pixel contributes."""
    return resample_mask(mask, pixel_mapping(wcs_out, shape_out, wcs_in))


def reproject_image(
    data: np.ndarray,
    wcs_in: WCS,
    wcs_out: WCS,
    shape_out: tuple[int, int],
    bad: np.ndarray | None = None,
    order: str = "bicubic",
    path: str | None = None,
    min_overlap: float = 0.01,
    offset: tuple[float, float] = (0.0, 0.0),
    mapping: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Resample ``data`` onto the grid of ``wcs_out`` (one interpolation).

    Returns (image, invalid mask, overlap fraction, outside-footprint mask).

    Pixels that are bad in the input (and their interpolation neighbours)
    are invalid in the output. Raises :class:`NoOverlapError` naming ``path``
    when less than ``min_overlap`` of the output grid is covered.
    """
    own = mapping is None
    if own:
        mapping = pixel_mapping(wcs_out, shape_out, wcs_in, offset)
    out, invalid, outside = resample(data, mapping, bad, order)
    if own:
        _COORDS.clear()
    frac = float((~invalid).mean())
    if frac < min_overlap:
        raise NoOverlapError(
            path,
            f"the image does not overlap the target grid (covers {100 * frac:.2f}% of it; "
            f"at least {100 * min_overlap:.0f}% is needed)",
        )
    return out, invalid, frac, outside


def _clean_stars(cat, saturation):
    if len(cat) == 0:
        return cat
    keep = cat["flag"] == 0
    if saturation is not None:
        keep &= cat["peak"] < 0.7 * saturation
    return cat[keep].copy()


def star_positions(image: np.ndarray, rms: float, mask: np.ndarray | None = None, threshold: float = 15.0,
                   saturation: float | None = None):
    """Clean, unsaturated stars of a background-subtracted image with windowed (sub-pixel) centroids."""
    import sep

    from astrid_pipeline.science.background import as_sep_array

    cat = _clean_stars(detect_sources(image, rms, threshold=threshold, mask=mask), saturation)
    if len(cat):
        sig = np.clip(2.0 / 2.3548 * np.sqrt(cat["a"].values * cat["b"].values) * 1.2, 0.8, 5)
        xw, yw, fl = sep.winpos(as_sep_array(np.nan_to_num(image)), cat["x"].values, cat["y"].values, sig)
        ok = fl == 0
        cat.loc[ok, "x"] = xw[ok]
        cat.loc[ok, "y"] = yw[ok]
    return cat


def _offset_stats(ddx, ddy) -> dict:
    dx, dy = float(np.median(ddx)), float(np.median(ddy))
    rx = 1.4826 * float(np.median(np.abs(ddx - dx)))
    ry = 1.4826 * float(np.median(np.abs(ddy - dy)))
    return dict(dx=dx, dy=dy, rms=float(np.hypot(rx, ry)), rms_x=rx, rms_y=ry, n=int(len(ddx)))


_NO_MATCH = dict(dx=0.0, dy=0.0, rms=float("nan"), rms_x=float("nan"), rms_y=float("nan"), n=0)


def measure_offsets(
    science: np.ndarray,
    reference: np.ndarray,
    sci_rms: float,
    ref_rms: float,
    mask: np.ndarray | None = None,
    threshold: float = 15.0,
    radius: float = 2.0,
    saturation: float | None = None,
) -> dict:
    """Median offset and rms (pixels) of stars matched between two background-subtracted images on one grid."""
    s = star_positions(science, sci_rms, mask, threshold, saturation)
    r = star_positions(reference, ref_rms, mask, threshold, saturation)
    if len(s) == 0 or len(r) == 0:
        return dict(_NO_MATCH)
    i, j, _ = match_positions(s["x"], s["y"], r["x"], r["y"], radius)
    if len(i) == 0:
        return dict(_NO_MATCH)
    return _offset_stats(s["x"].values[i] - r["x"].values[j], s["y"].values[i] - r["y"].values[j])


def native_offset(
    ref_data: np.ndarray,
    ref_wcs: WCS,
    target_image: np.ndarray,
    target_wcs: WCS,
    ref_bad: np.ndarray | None = None,
    target_bad: np.ndarray | None = None,
    threshold: float = 15.0,
    saturation: float | None = None,
    radius: float = 3.0,
) -> dict:
    """Residual WCS offset measured without resampling: (dx, dy) = science position - WCS-mapped reference position.

    Stars are detected on each image's own grid; the reference positions are
    mapped through both WCS onto the target grid; a first match within
    ``radius`` gives the median offset, a second match within 1.5 pixels of
    the offset-corrected positions gives the final median and rms.
    """
    import warnings

    from astropy.wcs.utils import pixel_to_pixel

    from astrid_pipeline.science.background import estimate_background

    def stars(img, bad, sat):
        b = np.zeros(np.shape(img), bool) if bad is None else np.asarray(bad, bool)
        b = b | ~np.isfinite(img)
        bk = estimate_background(img, b)
        return star_positions(np.where(b, 0.0, img - bk.level), bk.global_rms, b, threshold, sat)

    r = stars(np.asarray(ref_data, float), ref_bad, None)
    s = stars(np.asarray(target_image, float), target_bad, saturation)
    if len(s) == 0 or len(r) == 0:
        return dict(_NO_MATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mx, my = pixel_to_pixel(ref_wcs, target_wcs, r["x"].values, r["y"].values)
    mx, my = np.asarray(mx, float), np.asarray(my, float)
    ok = np.isfinite(mx) & np.isfinite(my)
    mx, my = mx[ok], my[ok]
    i, j, _ = match_positions(s["x"], s["y"], mx, my, radius)
    if len(i) == 0:
        return dict(_NO_MATCH)
    first = _offset_stats(s["x"].values[i] - mx[j], s["y"].values[i] - my[j])
    i, j, _ = match_positions(s["x"].values - first["dx"], s["y"].values - first["dy"], mx, my, 1.5)
    if len(i) == 0:
        return first
    return _offset_stats(s["x"].values[i] - mx[j], s["y"].values[i] - my[j])


def align_to_grid(
    ref_data: np.ndarray,
    ref_wcs: WCS,
    target_wcs: WCS,
    target_shape: tuple[int, int],
    ref_bad: np.ndarray | None = None,
    target_image: np.ndarray | None = None,
    target_bad: np.ndarray | None = None,
    order: str = "bicubic",
    refine: bool = True,
    refine_min_offset: float = 0.05,
    min_refine_stars: int = 3,
    saturation: float | None = None,
    path: str | None = None,
    ref_saturated: np.ndarray | None = None,
    ref_variance: np.ndarray | None = None,
) -> AlignmentResult:
    """Align a reference onto a target grid with one interpolation (see the module docstring).

    ``target_image`` (the science image) is needed to measure the residual
    offset; without it only the WCS mapping is used. The offset is folded
    in when ``refine`` is set, at least ``min_refine_stars`` stars match and
    the offset exceeds both ``refine_min_offset`` and three times its own
    standard error. ``ref_variance`` (an error map squared) is resampled
    with the same mapping into ``AlignmentResult.variance``.
    """
    from astrid_pipeline.science.background import estimate_background

    offset = (0.0, 0.0)
    native = dict(_NO_MATCH)
    if target_image is not None and refine:
        native = native_offset(ref_data, ref_wcs, target_image, target_wcs, ref_bad, target_bad,
                               saturation=saturation)
        n = native["n"]
        if n >= min_refine_stars:
            err = 1.2533 * max(native["rms"], 0.02) / np.sqrt(n)
            if np.hypot(native["dx"], native["dy"]) > max(refine_min_offset, 3 * err):
                offset = (native["dx"], native["dy"])
    mapping, mapping_info = pixel_mapping_info(target_wcs, target_shape, ref_wcs, offset)
    aligned, invalid, frac, outside = reproject_image(ref_data, ref_wcs, target_wcs, target_shape, ref_bad, order,
                                                      path, mapping=mapping)
    sat = None
    if ref_saturated is not None and np.any(ref_saturated):
        sat = resample_mask(ref_saturated, mapping)
    result = AlignmentResult(aligned, invalid, frac, outside, sat, shift_applied=offset)
    result.native = native
    result.mapping_info = mapping_info
    if ref_variance is not None:
        result.variance = resample_variance(ref_variance, mapping)
    _COORDS.clear()  # the resampling coordinates (2 x 8 bytes per pixel) are not needed any more
    del mapping
    if target_image is None:
        return result
    bad = invalid.copy()
    if target_bad is not None:
        bad |= target_bad
    sci_bkg = estimate_background(target_image, bad)
    ref_bkg = estimate_background(aligned, bad)
    s_img = np.where(bad, 0.0, target_image - sci_bkg.level)
    r_img = np.where(bad, 0.0, aligned - ref_bkg.level)
    off = measure_offsets(s_img, r_img, sci_bkg.global_rms, ref_bkg.global_rms, bad, saturation=saturation)
    result.dx, result.dy, result.rms = off["dx"], off["dy"], off["rms"]
    result.rms_x, result.rms_y, result.n_matched = off["rms_x"], off["rms_y"], off["n"]
    return result
