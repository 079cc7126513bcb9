"""WCS alignment of a reference image onto a science image's pixel grid.

The reference is resampled by its celestial WCS (any projection, TAN-SIP and
TPV distortions, equatorial or galactic frames: astropy's WCS and the
``reproject`` package do the coordinate work) with bicubic interpolation.
The residual misalignment is then measured on stars matched between the
science image and the aligned reference; when it is significant a
sub-pixel shift removes it (WCS zero points of different surveys often
disagree by a fraction of a pixel).
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
    shift_applied: tuple[float, float] = (0.0, 0.0)

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


def reproject_mask(mask: np.ndarray, wcs_in: WCS, wcs_out: WCS, shape_out: tuple[int, int]) -> np.ndarray:
    """A boolean map carried onto another grid: True wherever a True input pixel contributes."""
    from reproject import reproject_interp

    out, _ = reproject_interp((np.asarray(mask, np.float32), wcs_in), wcs_out, shape_out=shape_out,
                              order="bilinear", return_footprint=True)
    return np.nan_to_num(out, nan=0.0) > 0.01


def reproject_image(
    data: np.ndarray,
    wcs_in: WCS,
    wcs_out: WCS,
    shape_out: tuple[int, int],
    bad: np.ndarray | None = None,
    order: str = "bicubic",
    path: str | None = None,
    min_overlap: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Resample ``data`` onto the grid of ``wcs_out``.

    Returns (image, invalid mask, overlap fraction, outside-footprint mask).

    Pixels that are bad in the input (and their interpolation neighbours)
    are invalid in the output. Raises :class:`NoOverlapError` naming ``path``
    when less than ``min_overlap`` of the output grid is covered.
    """
    from reproject import reproject_interp

    arr = np.asarray(data, dtype=np.float64)
    bad_in = ~np.isfinite(arr)
    if bad is not None:
        bad_in |= np.asarray(bad, bool)
    filled = np.where(bad_in, 0.0, arr)
    out, footprint = reproject_interp((filled, wcs_in), wcs_out, shape_out=shape_out, order=order,
                                      return_footprint=True)
    outside = (footprint <= 0) | ~np.isfinite(out)
    invalid = outside.copy()
    if bad_in.any():
        invalid |= reproject_mask(bad_in, wcs_in, wcs_out, shape_out)
    frac = float((~invalid).mean())
    if frac < min_overlap:
        raise NoOverlapError(
            path,
            f"the image does not overlap the target grid (covers {100 * frac:.2f}% of it; "
            f"at least {100 * min_overlap:.0f}% is needed)",
        )
    out = np.where(invalid, np.nan, out)
    return out, invalid, frac, outside


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
    """Median offset and rms (pixels) of stars matched between two background-subtracted images."""
    s = detect_sources(science, sci_rms, threshold=threshold, mask=mask)
    r = detect_sources(reference, ref_rms, threshold=threshold, mask=mask)
    def clean(cat):
        if len(cat) == 0:
            return cat
        keep = cat["flag"] == 0
        if saturation is not None:
            keep &= cat["peak"] < 0.7 * saturation
        return cat[keep].copy()

    s, r = clean(s), clean(r)
    if len(s) == 0 or len(r) == 0:
        return dict(dx=0.0, dy=0.0, rms=float("nan"), rms_x=float("nan"), rms_y=float("nan"), n=0)
    if len(s):
        import sep

        from astrid_pipeline.science.background import as_sep_array

        for cat, img in ((s, science), (r, reference)):
            sig = np.clip(2.0 / 2.3548 * np.sqrt(cat["a"].values * cat["b"].values) * 1.2, 0.8, 5)
            xw, yw, fl = sep.winpos(as_sep_array(np.nan_to_num(img)), cat["x"].values, cat["y"].values, sig)
            ok = fl == 0
            cat.loc[ok, "x"] = xw[ok]
            cat.loc[ok, "y"] = yw[ok]
    i, j, _ = match_positions(s["x"], s["y"], r["x"], r["y"], radius)
    if len(i) == 0:
        return dict(dx=0.0, dy=0.0, rms=float("nan"), rms_x=float("nan"), rms_y=float("nan"), n=0)
    ddx = s["x"].values[i] - r["x"].values[j]
    ddy = s["y"].values[i] - r["y"].values[j]
    dx, dy = float(np.median(ddx)), float(np.median(ddy))
    rx = 1.4826 * float(np.median(np.abs(ddx - dx)))
    ry = 1.4826 * float(np.median(np.abs(ddy - dy)))
    return dict(dx=dx, dy=dy, rms=float(np.hypot(rx, ry)), rms_x=rx, rms_y=ry, n=int(len(i)))


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
    min_refine_stars: int = 10,
    saturation: float | None = None,
    path: str | None = None,
    ref_saturated: np.ndarray | None = None,
) -> AlignmentResult:
    """Align a reference onto a target grid, then measure (and optionally remove) residual offsets.

    ``target_image`` (the science image) is needed for the residual
    measurement; without it only the resampling is done.
    """
    from scipy import ndimage

    from astrid_pipeline.science.background import estimate_background

    aligned, invalid, frac, outside = reproject_image(ref_data, ref_wcs, target_wcs, target_shape, ref_bad, order, path)
    sat = None
    if ref_saturated is not None and np.any(ref_saturated):
        sat = reproject_mask(ref_saturated, ref_wcs, target_wcs, target_shape)
    result = AlignmentResult(aligned, invalid, frac, outside, sat)
    if target_image is None:
        return result
    bad = invalid.copy()
    if target_bad is not None:
        bad |= target_bad
    sci_bkg = estimate_background(target_image, bad)
    ref_bkg = estimate_background(aligned, bad)
    s_img = target_image - sci_bkg.level
    r_img = np.where(bad, 0.0, aligned - ref_bkg.level)
    off = measure_offsets(np.where(bad, 0.0, s_img), r_img, sci_bkg.global_rms, ref_bkg.global_rms, bad,
                          saturation=saturation)
    if refine and off["n"] >= min_refine_stars and np.hypot(off["dx"], off["dy"]) > refine_min_offset:
        shift = (off["dy"], off["dx"])
        filled = np.where(invalid, np.nanmedian(aligned), aligned)
        shifted = ndimage.shift(filled, shift, order=3, mode="nearest")
        inv2 = ndimage.shift(invalid.astype(np.float32), shift, order=1, mode="constant", cval=1.0) > 0.01
        out2 = ndimage.shift(outside.astype(np.float32), shift, order=1, mode="constant", cval=1.0) > 0.01
        sat2 = None if sat is None else ndimage.shift(sat.astype(np.float32), shift, order=1) > 0.01
        aligned = np.where(inv2, np.nan, shifted)
        result = AlignmentResult(aligned, inv2, float((~inv2).mean()), out2, sat2, shift_applied=(off["dx"], off["dy"]))
        r_img = np.where(bad | inv2, 0.0, aligned - ref_bkg.level)
        off = measure_offsets(np.where(bad | inv2, 0.0, s_img), r_img, sci_bkg.global_rms, ref_bkg.global_rms,
                              bad | inv2, saturation=saturation)
    result.dx, result.dy, result.rms = off["dx"], off["dy"], off["rms"]
    result.rms_x, result.rms_y, result.n_matched = off["rms_x"], off["rms_y"], off["n"]
    return result
