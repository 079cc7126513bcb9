"""Candidate extraction on the ZOGY significance image S_corr.

Positive and negative candidates are segmented with SEP on S_corr (already a
matched-filter image, so no further filtering), kept where the peak |S_corr|
reaches the threshold, and measured: position (windowed centroid), RA/Dec,
PSF flux S/F_S and its error, S/N, shape from weighted second moments of the
proper difference D, and quality flags (:class:`CandidateFlag`).

A candidate with ``flags == 0`` is a clean transient candidate; any flag
marks a likely artifact or a measurement to treat with care.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import enum
from dataclasses import dataclass
from typing import Optional

import numpy as np

from astrid_pipeline.science.background import as_sep_array
from astrid_pipeline.setting import setting

if TYPE_CHECKING:  # for annotations only: definition loading stays light
    import pandas as pd
    from astropy.wcs import WCS


class CandidateFlag(enum.IntFlag):
    """Bit flags of a candidate (stored as an integer column ``flags``)."""

    EDGE = 1  # near the image border or the edge of the reference footprint
    SATURATED = 2  # a saturated pixel nearby in the science or reference image
    BAD_PIXEL = 4  # a masked (bad column, NaN) pixel nearby
    DIPOLE = 8  # an opposite-sign lobe next to it: misalignment or PSF mismatch residual
    BRIGHT_STAR = 16  # the change is a small fraction of a bright source in the reference
    SHARP = 32  # sharper than the PSF: cosmic ray or hot pixel
    HOLE = 64  # one image dips below its sky there: a brightening over a reference hole, a fading into a science hole


FLAG_DESCRIPTION = "; ".join(f"{f.value}={f.name.lower()}" for f in CandidateFlag)


@dataclass
class ExtractionConfig:
    """Settings of candidate extraction on S_corr and of the artifact flags."""

    threshold: float = setting(5.0, "|S_corr| peak a candidate needs (sigma)")
    segment_fraction: float = setting(0.75, "segmentation threshold as a fraction of threshold")
    minarea: int = setting(3, "pixels a segment needs")
    edge_margin: Optional[int] = setting(None, "pixels from the image border flagged EDGE; None = half the PSF stamp, "
                                          "at least 10 (the FFT's periodic border)")
    edge_radius_fwhm: float = setting(2.0, "EDGE when no-data (outside the reference footprint, or the science "
                                      "image's empty border) is within this many science FWHM")
    dipole_radius_fwhm: float = setting(2.5, "radius (FWHM) searched for an opposite-sign lobe")
    dipole_ratio: float = setting(0.3, "DIPOLE when the opposite lobe reaches this fraction of |S/N| ...")
    dipole_min_sigma: float = setting(4.0, "... and at least this many sigma")
    bright_ratio: float = setting(0.05, "BRIGHT_STAR when |change| / reference flux is below this ...")
    bright_min_snr: float = setting(50.0, "... and the reference source is this significant")
    bright_radius_fwhm: float = setting(2.0, "the reference source is the brightest PSF flux within this many FWHM (a "
                                        "PSF-mismatch residual sits on the star's wing, not its centre)")
    saturation_radius_fwhm: float = setting(2.0, "SATURATED when a saturated pixel is within this many FWHM")
    bad_radius_fwhm: float = setting(1.5, "BAD_PIXEL when a masked pixel is within this many FWHM")
    sharp_ratio: float = setting(0.5, "SHARP needs the neighbour ratio below this fraction of the PSF's ...")
    sharp_nsigma: float = setting(4.0, "... and below the PSF's by this many standard errors of the ratio (noise of "
                                  "the peak and its neighbours; 1 of the 4 covers taking the minimum of 4 directions)")
    narrow_ratio: float = setting(0.6, "SHARP (a track) when the minor-axis width is below this fraction of the PSF "
                                  "of D's ...")
    narrow_min_snr: float = setting(10.0, "... for candidates bright enough for a stable width")
    hole_nsigma: float = setting(3.0, "HOLE when a brightening's reference PSF flux is below -this x its error (the "
                                 "reference dips below its sky: over-subtraction, a masked or interpolated patch), "
                                 "or a fading's science flux (reference + change) is below -this x the change's error")
    hole_fraction: float = setting(0.5, "... and that dip makes up at least this fraction of the change (a real source "
                                   "on a slightly low patch of sky is not flagged)")


def _stamp(img, x, y, half):
    ny, nx = img.shape
    cx, cy = int(round(x)), int(round(y))
    out = np.full((2 * half + 1, 2 * half + 1), np.nan, dtype=np.float64)
    y0, y1 = max(0, cy - half), min(ny, cy + half + 1)
    x0, x1 = max(0, cx - half), min(nx, cx + half + 1)
    if y0 < y1 and x0 < x1:
        out[y0 - (cy - half) : y1 - (cy - half), x0 - (cx - half) : x1 - (cx - half)] = img[y0:y1, x0:x1]
    return out


def _disc_any(mask, x, y, radius):
    if mask is None:
        return False
    half = int(np.ceil(radius))
    ny, nx = mask.shape
    cx, cy = int(round(x)), int(round(y))
    # work on the cut-out only: converting the whole map for every candidate costs O(pixels) each
    y0, y1 = max(0, cy - half), min(ny, cy + half + 1)
    x0, x1 = max(0, cx - half), min(nx, cx + half + 1)
    if y0 >= y1 or x0 >= x1:
        return False
    sub = np.asarray(mask[y0:y1, x0:x1], dtype=bool)
    if not sub.any():
        return False
    yy, xx = np.mgrid[y0 - cy:y1 - cy, x0 - cx:x1 - cx]
    return bool(sub[(xx**2 + yy**2) <= radius**2].any())


def neighbour_ratio(stamp: np.ndarray) -> float:
    """Smallest mean of the two opposite neighbours of the central pixel, over the 4 directions, / centre.

    About 0.5-0.9 for a PSF of FWHM 2-4 pixels whatever its sub-pixel phase;
    near 0 across a cosmic-ray spot or track (sharper than any PSF).
    """
    c = stamp.shape[0] // 2
    centre = stamp[c, c]
    if not np.isfinite(centre) or centre <= 0:
        return np.nan
    pairs = [((0, 1), (0, -1)), ((1, 0), (-1, 0)), ((1, 1), (-1, -1)), ((1, -1), (-1, 1))]
    vals = []
    for (ay, ax), (by, bx) in pairs:
        vals.append(0.5 * (stamp[c + ay, c + ax] + stamp[c + by, c + bx]))
    return float(np.nanmin(vals) / centre)


def _nearby_reference_flux(reference, psf, xs, ys, radius):
    """The largest PSF-fit flux of the reference within ``radius`` pixels of each (x, y): linear PSF photometry
    (correlation with the unit-sum reference PSF over sum P^2, zero beyond the image edge) at every pixel of
    the disc, computed on each candidate's own patch (the same values as one whole-image FFT correlation,
    without its ~8 bytes x 5 per pixel of memory)."""
    from numpy.lib.stride_tricks import sliding_window_view

    p = np.asarray(getattr(psf, "stamp", psf), dtype=np.float64)
    p = p / p.sum()
    norm = (p * p).sum()
    img = np.asarray(reference)
    ny, nx = img.shape
    hy, hx = p.shape[0] // 2, p.shape[1] // 2
    r = max(1, int(np.ceil(radius)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (xx**2 + yy**2) <= radius**2
    out = np.full(len(xs), np.nan)
    for k, (x, y) in enumerate(zip(xs, ys)):
        cx, cy = int(round(float(x))), int(round(float(y)))
        # reference pixels the disc's PSF fits touch, zero beyond the image (as the FFT correlation pads)
        patch = np.zeros((2 * (r + hy) + 1, 2 * (r + hx) + 1))
        y0, x0 = cy - r - hy, cx - r - hx
        a, b = max(0, y0), min(ny, cy + r + hy + 1)
        c, d = max(0, x0), min(nx, cx + r + hx + 1)
        if a < b and c < d:
            patch[a - y0:b - y0, c - x0:d - x0] = np.nan_to_num(np.asarray(img[a:b, c:d], dtype=np.float64))
        st = np.tensordot(sliding_window_view(patch, p.shape), p, axes=([2, 3], [0, 1])) / norm
        inside = ((np.arange(cy - r, cy + r + 1) >= 0) & (np.arange(cy - r, cy + r + 1) < ny))[:, None] & \
                 ((np.arange(cx - r, cx + r + 1) >= 0) & (np.arange(cx - r, cx + r + 1) < nx))[None, :]
        v = np.where(disc & inside & np.isfinite(st), st, -np.inf)
        out[k] = float(v.max()) if np.isfinite(v).any() else np.nan
    return out


def _nearby_reference_flux_fft(reference, psf, xs, ys, radius):
    """The whole-image FFT form of :func:`_nearby_reference_flux` (reference for its test)."""
    from scipy.signal import fftconvolve

    p = np.asarray(getattr(psf, "stamp", psf), dtype=np.float64)
    p = p / p.sum()
    ref = np.nan_to_num(np.asarray(reference, dtype=np.float64))
    fmap = fftconvolve(ref, p[::-1, ::-1], mode="same") / (p * p).sum()
    r = max(1, int(np.ceil(radius)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (xx**2 + yy**2) <= radius**2
    out = np.full(len(xs), np.nan)
    for k, (x, y) in enumerate(zip(xs, ys)):
        st = _stamp(fmap, float(x), float(y), r)
        v = np.where(disc & np.isfinite(st), st, -np.inf)
        out[k] = float(v.max()) if np.isfinite(v).any() else np.nan
    return out


def _weighted_shape(stamp, sigma_w):
    """Shape from Gaussian-weighted second moments, corrected for the weight (a, b in pixels, sigma-like)."""
    h = stamp.shape[0] // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    w = np.exp(-(xx**2 + yy**2) / (2 * sigma_w**2)) * np.clip(np.nan_to_num(stamp), 0, None)
    s = w.sum()
    if s <= 0:
        return np.nan, np.nan, np.nan
    mx, my = (w * xx).sum() / s, (w * yy).sum() / s
    ixx = (w * (xx - mx) ** 2).sum() / s
    iyy = (w * (yy - my) ** 2).sum() / s
    ixy = (w * (xx - mx) * (yy - my)).sum() / s
    t = np.sqrt(((ixx - iyy) / 2) ** 2 + ixy**2)
    l1, l2 = (ixx + iyy) / 2 + t, (ixx + iyy) / 2 - t
    theta = 0.5 * np.arctan2(2 * ixy, ixx - iyy)
    sw2 = sigma_w**2

    def deweight(lam):
        lam = min(max(lam, 1e-3), 0.95 * sw2)
        return np.sqrt(lam * sw2 / (sw2 - lam))

    return float(deweight(l1)), float(deweight(l2)), float(theta)


def _psf_sigma(stamp):
    from astrid_pipeline.science.stats import psf_sigma

    return psf_sigma(stamp)


def extract_candidates(
    S_corr: np.ndarray,
    D: np.ndarray,
    flux: np.ndarray,
    flux_err: np.ndarray,
    psf_D: np.ndarray,
    wcs: WCS | None,
    fwhm: float,
    *,
    sharpness_image: np.ndarray | None = None,
    sharpness_noise: float | None = None,
    psf_science: np.ndarray | None = None,
    reference: np.ndarray | None = None,
    reference_err: float | None = None,
    psf_reference: np.ndarray | None = None,
    saturated: np.ndarray | None = None,
    bad_pixels: np.ndarray | None = None,
    outside: np.ndarray | None = None,
    config: ExtractionConfig | None = None,
) -> pd.DataFrame:
    """Find and measure candidates on S_corr; returns one row per candidate (see module docs).

    ``fwhm`` is the science PSF FWHM in pixels (sets the flag radii);
    ``reference`` (scaled to science counts) with ``psf_reference`` enables
    the BRIGHT_STAR flag; ``saturated``, ``bad_pixels`` and ``outside`` are
    boolean maps for the SATURATED, BAD_PIXEL and EDGE flags.
    ``sharpness_image`` (a PSF-matched classic difference, in science
    counts, with background noise ``sharpness_noise``) and ``psf_science``
    enable the SHARP flag: the candidate's peak pixel is compared with its
    neighbours there, against the same ratio for the science PSF.
    """
    import pandas as pd

    import sep

    cfg = config or ExtractionConfig()
    sc = np.nan_to_num(np.asarray(S_corr, dtype=np.float32), nan=0.0)
    ny, nx = sc.shape
    margin = cfg.edge_margin if cfg.edge_margin is not None else max(10, psf_D.shape[0] // 2)
    old = sep.get_extract_pixstack()
    sep.set_extract_pixstack(max(old, sc.size // 2))
    rows = []
    sigma_pd = _psf_sigma(psf_D)
    psf_ratio = neighbour_ratio(psf_science) if psf_science is not None else np.nan
    _, b_psf_D, _ = _weighted_shape(psf_D, max(sigma_pd, 1.0))
    seg_thresh = cfg.threshold * cfg.segment_fraction
    for sign in (1, -1):
        img = as_sep_array(sign * sc)
        objs = sep.extract(img, seg_thresh, err=1.0, minarea=cfg.minarea, filter_kernel=None, deblend_cont=0.01)
        for o in objs:
            peak = float(o["peak"])
            if peak < cfg.threshold:
                continue
            xp, yp = int(o["xpeak"]), int(o["ypeak"])
            xw, yw, wflag = sep.winpos(img, np.array([float(xp)]), np.array([float(yp)]),
                                       np.array([max(sigma_pd, 0.8)]))
            x, y = (float(xw[0]), float(yw[0])) if wflag[0] == 0 and abs(xw[0] - xp) < 2 and abs(yw[0] - yp) < 2 else (float(xp), float(yp))
            rows.append(dict(sign=sign, x=x, y=y, xpeak=xp, ypeak=yp, snr=sign * peak, npix=int(o["npix"]),
                             seg_a=float(o["a"]), seg_b=float(o["b"])))
    cols = ["candidate_id", "x", "y", "ra", "dec", "flux", "flux_err", "snr", "sign", "a", "b", "theta", "fwhm",
            "ellipticity", "npix", "flags", "edge", "saturated", "bad_pixel", "dipole", "bright_star", "sharp", "hole",
            "reference_flux", "neighbour_ratio"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    df = pd.DataFrame(rows)
    half = max(psf_D.shape[0] // 2, 5)
    recs = []
    ref_flux = None
    ref_near = None
    if reference is not None and psf_reference is not None:
        from astrid_pipeline.science.psf import psf_photometry

        ref_flux = psf_photometry(np.nan_to_num(reference), psf_reference, df["x"].values, df["y"].values)
        ref_near = _nearby_reference_flux(reference, psf_reference, df["xpeak"].values, df["ypeak"].values,
                                          cfg.bright_radius_fwhm * fwhm)
    for k, r in df.iterrows():
        x, y, sign = r.x, r.y, r.sign
        xp, yp = int(r.xpeak), int(r.ypeak)
        sign = int(sign)
        flags = CandidateFlag(0)
        if x < margin or y < margin or x > nx - 1 - margin or y > ny - 1 - margin or \
                _disc_any(outside, x, y, cfg.edge_radius_fwhm * fwhm):
            flags |= CandidateFlag.EDGE
        if _disc_any(saturated, x, y, cfg.saturation_radius_fwhm * fwhm):
            flags |= CandidateFlag.SATURATED
        if _disc_any(bad_pixels, x, y, cfg.bad_radius_fwhm * fwhm):
            flags |= CandidateFlag.BAD_PIXEL
        # opposite-sign lobe in S_corr
        rad = cfg.dipole_radius_fwhm * fwhm
        st = _stamp(sc, x, y, int(np.ceil(rad)))
        yy, xx = np.mgrid[-st.shape[0] // 2 + 1 : st.shape[0] // 2 + 1, -st.shape[1] // 2 + 1 : st.shape[1] // 2 + 1]
        disc = (xx**2 + yy**2) <= rad**2
        opp = np.nanmax(np.where(disc, -sign * st, -np.inf))
        if np.isfinite(opp) and opp >= max(cfg.dipole_min_sigma, cfg.dipole_ratio * abs(r.snr)):
            flags |= CandidateFlag.DIPOLE
        fl = float(flux[yp, xp]) if np.isfinite(flux[yp, xp]) else np.nan
        fe = float(flux_err[yp, xp]) if np.isfinite(flux_err[yp, xp]) else np.nan
        rf = float(ref_flux[k]) if ref_flux is not None else np.nan
        rb = float(ref_near[k]) if ref_near is not None else np.nan
        if ref_near is not None and np.isfinite(rb) and reference_err is not None:
            ref_snr = rb / max(reference_err, 1e-12)
            if ref_snr > cfg.bright_min_snr and abs(fl) < cfg.bright_ratio * rb:
                flags |= CandidateFlag.BRIGHT_STAR
        if reference_err is not None and np.isfinite(rf) and np.isfinite(fl):
            if sign > 0 and rf < -cfg.hole_nsigma * reference_err and -rf >= cfg.hole_fraction * fl:
                flags |= CandidateFlag.HOLE
            elif sign < 0 and np.isfinite(fe) and rf + fl < -cfg.hole_nsigma * fe and \
                    -(rf + fl) >= cfg.hole_fraction * -fl:
                flags |= CandidateFlag.HOLE
        a, b, theta = _weighted_shape(sign * np.nan_to_num(_stamp(D, x, y, half)), max(sigma_pd, 1.0))
        nratio = np.nan
        # a track: much narrower than the PSF of D across its length (a trailed asteroid is not)
        if np.isfinite(b) and abs(r.snr) >= cfg.narrow_min_snr and b < cfg.narrow_ratio * b_psf_D:
            flags |= CandidateFlag.SHARP
        if sharpness_image is not None and psf_science is not None:
            # the brightest pixel within one pixel of the S_corr peak (a wider search picks noise spikes
            # around faint sources), and its 3x3 neighbourhood
            st = sign * _stamp(sharpness_image, xp, yp, 3)
            core = np.nan_to_num(st[2:-2, 2:-2], nan=-np.inf)
            iy, ix = np.unravel_index(np.argmax(core), core.shape)
            sub = st[iy + 1 : iy + 4, ix + 1 : ix + 4]
            if sub.shape == (3, 3) and np.isfinite(sub).all():
                nratio = neighbour_ratio(sub)
                pix_snr = sub[1, 1] / max(sharpness_noise or 1.0, 1e-12)
                if pix_snr > 0 and np.isfinite(nratio):
                    # standard error of the ratio from the pixel noise: the mean of two neighbours has half the
                    # variance of one pixel, the centre's noise scales the ratio itself
                    err = np.sqrt(0.5 + nratio**2) / pix_snr
                    if nratio < cfg.sharp_ratio * psf_ratio and (psf_ratio - nratio) > cfg.sharp_nsigma * err:
                        flags |= CandidateFlag.SHARP
        fwhm_c = 2.3548 * np.sqrt((a**2 + b**2) / 2) if np.isfinite(a) else np.nan
        recs.append(dict(flux=fl, flux_err=fe, a=a, b=b, theta=theta, fwhm=fwhm_c,
                         ellipticity=(1 - b / a) if np.isfinite(a) and a > 0 else np.nan,
                         flags=int(flags), reference_flux=rf, neighbour_ratio=nratio))
    out = pd.concat([df.reset_index(drop=True), pd.DataFrame(recs)], axis=1)
    for f in CandidateFlag:
        out[f.name.lower()] = (out["flags"] & f.value) != 0
    if wcs is not None:
        sky = wcs.pixel_to_world(out["x"].values, out["y"].values)
        sky = sky.icrs if hasattr(sky, "icrs") else sky
        out["ra"] = sky.ra.deg
        out["dec"] = sky.dec.deg
    else:
        out["ra"] = np.nan
        out["dec"] = np.nan
    out = out.sort_values("snr", key=np.abs, ascending=False).reset_index(drop=True)
    out["candidate_id"] = np.arange(len(out), dtype=np.int64)
    return out[cols]
