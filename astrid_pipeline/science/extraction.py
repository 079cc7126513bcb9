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

import enum
from dataclasses import dataclass

import numpy as np
import pandas as pd
from astropy.wcs import WCS

from astrid_pipeline.science.background import as_sep_array


class CandidateFlag(enum.IntFlag):
    """Bit flags of a candidate (stored as an integer column ``flags``)."""

    EDGE = 1  # near the image border or the edge of the reference footprint
    SATURATED = 2  # a saturated pixel nearby in the science or reference image
    BAD_PIXEL = 4  # a masked (bad column, NaN) pixel nearby
    DIPOLE = 8  # an opposite-sign lobe next to it: misalignment or PSF mismatch residual
    BRIGHT_STAR = 16  # the change is a small fraction of a bright source in the reference
    SHARP = 32  # sharper than the PSF: cosmic ray or hot pixel


FLAG_DESCRIPTION = "; ".join(f"{f.value}={f.name.lower()}" for f in CandidateFlag)


@dataclass
class ExtractionConfig:
    threshold: float = 5.0  # |S_corr| peak needed
    segment_fraction: float = 0.75  # segmentation threshold as a fraction of ``threshold``
    minarea: int = 3
    edge_margin: int | None = None  # default: half the PSF stamp, at least 10
    dipole_radius_fwhm: float = 2.5
    dipole_ratio: float = 0.3
    dipole_min_sigma: float = 4.0
    bright_ratio: float = 0.05  # |change| / reference flux below this -> BRIGHT_STAR
    bright_min_snr: float = 50.0  # reference source must also be this significant
    saturation_radius_fwhm: float = 2.0
    bad_radius_fwhm: float = 1.5
    sharp_ratio: float = 0.5  # SHARP when the neighbour ratio is below this fraction of the PSF's
    sharp_min_pixel_snr: float = 6.0  # ... and the peak pixel is this significant
    sharp_faint_ratio: float = 0.2  # fainter peaks must be much sharper still:
    sharp_faint_pixel_snr: float = 3.0  # ratio below 0.2 x the PSF's with the peak pixel at >= 3 sigma
    narrow_ratio: float = 0.6  # SHARP when the minor-axis width is below this fraction of the PSF of D's
    narrow_min_snr: float = 6.0  # ... for candidates bright enough for a stable width


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
    st = _stamp(mask.astype(np.float32), x, y, half)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    inside = (xx**2 + yy**2) <= radius**2
    return bool(np.nan_to_num(st, nan=0.0)[inside].any())


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
    h = stamp.shape[0] // 2
    yy, xx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    p = np.clip(stamp, 0, None)
    return float(np.sqrt(((xx**2 + yy**2) * p).sum() / p.sum() / 2))


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
            "ellipticity", "npix", "flags", "edge", "saturated", "bad_pixel", "dipole", "bright_star", "sharp",
            "reference_flux", "neighbour_ratio"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    df = pd.DataFrame(rows)
    half = max(psf_D.shape[0] // 2, 5)
    recs = []
    ref_flux = None
    if reference is not None and psf_reference is not None:
        from astrid_pipeline.science.psf import psf_photometry

        ref_flux = psf_photometry(np.nan_to_num(reference), psf_reference, df["x"].values, df["y"].values)
    for k, r in df.iterrows():
        x, y, sign = r.x, r.y, r.sign
        xp, yp = int(r.xpeak), int(r.ypeak)
        sign = int(sign)
        flags = CandidateFlag(0)
        if x < margin or y < margin or x > nx - 1 - margin or y > ny - 1 - margin or _disc_any(outside, x, y, margin / 2):
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
        if ref_flux is not None and np.isfinite(rf) and reference_err is not None:
            ref_snr = rf / max(reference_err, 1e-12)
            if ref_snr > cfg.bright_min_snr and abs(fl) < cfg.bright_ratio * rf:
                flags |= CandidateFlag.BRIGHT_STAR
        a, b, theta = _weighted_shape(_stamp(sign * np.nan_to_num(D), x, y, half), max(sigma_pd, 1.0))
        nratio = np.nan
        # a track: much narrower than the PSF of D across its length (a trailed asteroid is not)
        if np.isfinite(b) and abs(r.snr) >= cfg.narrow_min_snr and b < cfg.narrow_ratio * b_psf_D:
            flags |= CandidateFlag.SHARP
        if sharpness_image is not None and psf_science is not None:
            st = sign * _stamp(sharpness_image, xp, yp, 3)
            core = np.nan_to_num(st[1:-1, 1:-1], nan=-np.inf)
            iy, ix = np.unravel_index(np.argmax(core), core.shape)
            sub = st[iy : iy + 3, ix : ix + 3]
            if sub.shape == (3, 3) and np.isfinite(sub).all():
                nratio = neighbour_ratio(sub)
                pix_snr = sub[1, 1] / max(sharpness_noise or 1.0, 1e-12)
                if (pix_snr >= cfg.sharp_min_pixel_snr and nratio < cfg.sharp_ratio * psf_ratio) or (
                        pix_snr >= cfg.sharp_faint_pixel_snr and nratio < cfg.sharp_faint_ratio * psf_ratio):
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
