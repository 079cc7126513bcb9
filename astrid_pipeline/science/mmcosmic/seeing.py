"""Seeing across a stack: measure it, warn when it varies, optionally PSF-match to the worst.

M.M.Cosmic compares each pixel's median with its minimum across the
exposures. When the seeing differs between exposures, a star's core is
brighter in the sharp exposures than in the blurred ones, so median - min
is large on every bright star and the diagnostic diagram takes star cores
for cosmic rays (the issue's stack with FWHM 4.0 -> 5.9 px: masks on
bright-star cores). :func:`measure_seeing` measures each exposure's FWHM on
its stars (:func:`astrid_pipeline.science.psf.stellar_fwhm`) and reports the
spread; :func:`psf_match` convolves every exposure with a Gaussian of FWHM
``sqrt(worst^2 - own^2)`` so all reach the worst seeing (a Gaussian
approximation of the PSF difference, as in classic image co-addition,
e.g. Alard & Lupton 1998 for the kernel idea). Convolution lowers and
correlates the noise of the sharper exposures; M.M.Cosmic's noise model is
then conservative there (fewer, not more, false detections).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.3548200450309493
#: default tolerance: warn when (worst - best) / best exceeds it
SEEING_TOLERANCE = 0.2


@dataclass
class SeeingReport:
    fwhm: list  # pixels, per exposure (NaN where no star could be measured)
    variation: float  # (worst - best) / best over the measured exposures
    tolerance: float
    warning: str = ""
    psf_matched: bool = False
    kernel_fwhm: list = field(default_factory=list)  # pixels, per exposure (0 = not convolved)

    @property
    def varies(self) -> bool:
        return bool(np.isfinite(self.variation) and self.variation > self.tolerance)

    def as_dict(self) -> dict:
        return {"fwhm_px": [round(float(f), 4) for f in self.fwhm], "seeing_variation": round(float(self.variation), 4)
                if np.isfinite(self.variation) else None, "seeing_tolerance": self.tolerance,
                "seeing_warning": self.warning, "psf_matched": self.psf_matched,
                "psf_match_kernel_fwhm_px": [round(float(k), 4) for k in self.kernel_fwhm]}

    def header_cards(self) -> dict:
        cards = {f"FWHM{i + 1}": (float(f) if np.isfinite(f) else -1.0,  # full precision: --crmasks re-matches
                                  f"[pix] stellar FWHM of exposure {i + 1} (-1: no star)")
                 for i, f in enumerate(self.fwhm)}
        cards["SEEVAR"] = (round(float(self.variation), 4) if np.isfinite(self.variation) else -1.0,
                           "(worst-best)/best seeing across the stack")
        cards["SEEWARN"] = (self.varies, f"T: seeing varies by more than {self.tolerance:.0%}")
        cards["PSFMATCH"] = (self.psf_matched, "T: exposures convolved to the worst seeing")
        return cards


def single_exposure_sources(images, rms, threshold: float = 10.0, radius: float = 2.0) -> list[np.ndarray]:
    """Masks of the sources seen in one exposure only (cosmic rays: a registered stack shows its stars in every
    exposure), so the seeing is measured on stars. One boolean mask per exposure (its segmentation pixels)."""
    from astrid_pipeline.science.stars import detect_sources_segmented, match_positions

    found = [detect_sources_segmented(img, r, threshold=threshold) for img, r in zip(images, rms)]
    masks = []
    for i, (tab, seg) in enumerate(found):
        seen = np.zeros(len(tab), int)
        for j, (other, _) in enumerate(found):
            if j == i or len(tab) == 0 or len(other) == 0:
                continue
            a, _, _ = match_positions(tab["x"], tab["y"], other["x"], other["y"], radius)
            seen[a] += 1
        alone = np.nonzero(seen == 0)[0] + 1  # segmentation ids are row + 1
        masks.append(np.isin(seg, alone) if alone.size else np.zeros(seg.shape, bool))
    return masks


def measure_seeing(stack: np.ndarray, *, saturation: float | None = None,
                   tolerance: float = SEEING_TOLERANCE) -> SeeingReport:
    """FWHM (pixels) of each exposure of a bias-subtracted (N, ny, nx) stack, and a warning if it varies.

    Each exposure's background (SEP mesh) is subtracted first; ``saturation``
    (ADU, bias subtracted) keeps saturated stars out of the measurement.
    """
    from astrid_pipeline.science.background import estimate_background
    from astrid_pipeline.science.psf import stellar_fwhm

    data = np.asarray(stack)
    subtracted, backgrounds = [], []
    for img in data:
        bkg = estimate_background(img)
        subtracted.append(img - bkg.level)
        backgrounds.append(bkg)
    transients = single_exposure_sources(subtracted, [b.rms for b in backgrounds])
    fwhms = []
    for i, img in enumerate(subtracted):
        try:
            bkg = backgrounds[i]
            sat = None if saturation is None else saturation - float(bkg.global_level)
            f = float(stellar_fwhm(img, bkg.rms, transients[i], sat))
        except Exception as exc:  # noqa: BLE001 - an unmeasurable exposure is reported, not fatal
            log.warning("M.M.Cosmic: could not measure the seeing of exposure %d (%s)", i + 1, exc)
            f = float("nan")
        fwhms.append(f if np.isfinite(f) and f > 0 else float("nan"))
    good = [f for f in fwhms if np.isfinite(f)]
    variation = (max(good) - min(good)) / min(good) if len(good) >= 2 else float("nan")
    rep = SeeingReport(fwhms, variation, float(tolerance))
    if rep.varies:
        worst = int(np.nanargmax(fwhms)) + 1
        best = int(np.nanargmin(fwhms)) + 1
        rep.warning = (f"seeing varies by {variation:.0%} across the stack (FWHM {min(good):.2f} px in exposure "
                       f"{best} to {max(good):.2f} px in exposure {worst}; tolerance {tolerance:.0%}): "
                       "median-minimum masks may fall on bright-star cores; set psf_match: true")
        log.warning("M.M.Cosmic: %s", rep.warning)
    if len(good) < len(fwhms):
        missing = [i + 1 for i, f in enumerate(fwhms) if not np.isfinite(f)]
        note = f"no stellar FWHM for exposure(s) {missing}"
        rep.warning = f"{rep.warning}; {note}" if rep.warning else note
    return rep


def psf_match(stack: np.ndarray, report: SeeingReport, clean=None) -> np.ndarray:
    """Each exposure convolved with a Gaussian of FWHM ``sqrt(worst^2 - own^2)`` (float32 copy).

    ``clean(i) -> image`` (optional) gives exposure ``i`` with its obvious
    single-exposure cosmic rays removed (L.A.Cosmic's cleaned image): then
    only the sky and the stars are convolved and the cosmic-ray signal
    (exposure - cleaned) is added back sharp, so the coincident hits that
    M.M.Cosmic looks for are not smeared below its threshold. Exposures
    without a measured FWHM are left as they are (and said so in the
    report's warning). ``report`` is updated: ``psf_matched`` and
    ``kernel_fwhm``.
    """
    from scipy import ndimage

    stack = np.asarray(stack, dtype=np.float32)
    good = [f for f in report.fwhm if np.isfinite(f)]
    out = stack.copy()
    kernels = []
    if not good:
        report.warning = (report.warning + "; " if report.warning else "") + "psf_match: no FWHM measured, not matched"
        report.kernel_fwhm = [0.0] * len(stack)
        return out
    worst = max(good)
    for i, f in enumerate(report.fwhm):
        k = float(np.sqrt(max(worst**2 - f**2, 0.0))) if np.isfinite(f) else 0.0
        kernels.append(k)
        if k > 0.1:
            base = stack[i].astype(np.float64) if clean is None else np.asarray(clean(i), dtype=np.float64)
            conv = ndimage.gaussian_filter(base, k / FWHM_PER_SIGMA, mode="reflect", truncate=4.0)
            out[i] = (conv + (stack[i] - base)).astype(np.float32)
    report.psf_matched = True
    report.kernel_fwhm = kernels
    return out
