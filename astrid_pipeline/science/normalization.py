"""Background subtraction and photometric matching of a science/reference pair.

The flux ratio (science counts per reference count of the same star) is the
sigma-clipped median ratio of PSF-fit fluxes of bright, unsaturated stars
matched between the two images, each photometered with its own PSF. That is
exactly the ratio of ZOGY's flux zero points for those PSFs, and PSF
weighting makes it insensitive to small background errors (a large aperture
is not). Without enough stars it falls back to the header zero points
(MAGZP) or exposure times (EXPTIME).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from astrid_pipeline.science.background import estimate_background
from astrid_pipeline.science.stars import detect_sources, match_positions


@dataclass
class NormalizationParams:
    sci_background: float
    ref_background: float
    sci_rms: float  # background noise of the science image (its ADU)
    ref_rms: float  # background noise of the reference, in science units after scaling
    flux_ratio: float  # science ADU per reference ADU
    flux_ratio_err: float
    method: str  # "matched-stars", "zeropoint", "calibrated-units", "exptime" or "unity"
    n_stars: int
    header_ratio: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def header_flux_ratio(sci_header, ref_header) -> tuple[float | None, str]:
    """Flux ratio from MAGZP (preferred), calibrated units, or EXPTIME keywords; (None, "") if none is usable.

    Two images in the same calibrated unit (MJy/sr, nJy, ...) or the same rate
    unit (e-/s, DN/s) are already on one flux scale: the ratio is 1, whatever
    their exposure times; EXPTIME scales only counts.
    """
    from astrid_pipeline.science.noise import parse_bunit

    try:
        zs, zr = float(sci_header["MAGZP"]), float(ref_header["MAGZP"])
        return 10 ** (0.4 * (zs - zr)), "zeropoint"
    except (KeyError, TypeError, ValueError):
        pass
    us, ur = parse_bunit(sci_header.get("BUNIT")), parse_bunit(ref_header.get("BUNIT"))
    if (us.calibrated or us.rate) and (us.kind, us.rate) == (ur.kind, ur.rate) and \
            us.bunit.replace(" ", "").lower() == ur.bunit.replace(" ", "").lower():
        return 1.0, "calibrated-units"
    try:
        ts, tr = float(sci_header["EXPTIME"]), float(ref_header["EXPTIME"])
        if ts > 0 and tr > 0:
            return ts / tr, "exptime"
    except (KeyError, TypeError, ValueError):
        pass
    return None, ""


def matched_star_ratio(sci, ref, sci_rms, ref_rms, bad, psf_sci, psf_ref, saturation=None, threshold=20.0):
    """(ratio, n_stars, error): sigma-clipped median of PSF-fit flux ratios of matched stars."""
    from astrid_pipeline.science.psf import psf_photometry

    s = detect_sources(sci, sci_rms, threshold=threshold, mask=bad)
    r = detect_sources(ref, ref_rms, threshold=threshold, mask=bad)
    if len(s) == 0 or len(r) == 0:
        return None, 0, np.nan
    i, j, _ = match_positions(s["x"], s["y"], r["x"], r["y"], 1.5)
    ok = (s["flag"].values[i] == 0) & (r["flag"].values[j] == 0)
    if saturation is not None:
        ok &= (s["peak"].values[i] < 0.7 * saturation) & (r["peak"].values[j] < 0.7 * saturation)
    i, j = i[ok], j[ok]
    if len(i) < 3:
        return None, int(len(i)), np.nan
    fs = psf_photometry(sci, psf_sci, s["x"].values[i], s["y"].values[i], bad)
    fr = psf_photometry(ref, psf_ref, r["x"].values[j], r["y"].values[j], bad)
    good = np.isfinite(fs) & np.isfinite(fr) & (fr > 0) & (fs > 0)
    if good.sum() < 3:
        return None, int(good.sum()), np.nan
    ratio = fs[good] / fr[good]
    med = np.median(ratio)
    keep = np.ones(ratio.size, bool)
    for _ in range(3):
        mad = 1.4826 * np.median(np.abs(ratio - med))
        keep = np.abs(ratio - med) < 3 * max(mad, 1e-6 * abs(med))
        med = np.median(ratio[keep])
    n = int(keep.sum())
    err = 1.2533 * 1.4826 * np.median(np.abs(ratio[keep] - med)) / np.sqrt(max(n, 1))
    return float(med), n, float(err)


def subtract_backgrounds(science, reference, bad, background_box: int = 64):
    """Background-subtracted science and reference (NaN on bad pixels) and their Background objects."""
    sb = estimate_background(science, bad, box=background_box)
    rb = estimate_background(reference, bad, box=background_box)
    s = np.where(bad, np.nan, science - sb.level)
    r = np.where(bad, np.nan, reference - rb.level)
    return s, r, sb, rb


def normalize_pair(
    science: np.ndarray,
    reference: np.ndarray,
    bad: np.ndarray,
    psf_sci: np.ndarray,
    psf_ref: np.ndarray,
    sci_header=None,
    ref_header=None,
    saturation: float | None = None,
    background_box: int = 64,
):
    """Subtract backgrounds and scale the reference to the science flux scale.

    Returns (science_bkgsub, reference_scaled, params): both images in the
    science image's counts, with bad pixels set to NaN.
    """
    s, r, sb, rb = subtract_backgrounds(science, reference, bad, background_box)
    hdr_ratio, hdr_method = (None, "")
    if sci_header is not None and ref_header is not None:
        hdr_ratio, hdr_method = header_flux_ratio(sci_header, ref_header)
    ratio, n, err = matched_star_ratio(np.nan_to_num(s), np.nan_to_num(r), sb.global_rms, rb.global_rms, bad,
                                       psf_sci, psf_ref, saturation)
    method = "matched-stars"
    if ratio is None or not np.isfinite(ratio) or ratio <= 0:
        ratio, method, err = (hdr_ratio, hdr_method, np.nan) if hdr_ratio else (1.0, "unity", np.nan)
    r_scaled = r * ratio
    params = NormalizationParams(
        sci_background=sb.global_level, ref_background=rb.global_level, sci_rms=sb.global_rms,
        ref_rms=rb.global_rms * ratio, flux_ratio=float(ratio), flux_ratio_err=float(err), method=method,
        n_stars=int(n), header_ratio=hdr_ratio,
    )
    return s, r_scaled, params
