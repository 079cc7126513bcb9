"""M.M.Cosmic from a stack to masks and combinations (numina-crmasks' flow, no prompts).

:func:`compute_crmasks` takes the raw exposures (ADU, bias included), the
detector (gain, read noise, bias) and the validated ``requirements``, and
returns every mask, the diagram, the boundary and the combinations.

The bias is subtracted once, at the start, from every exposure; every
quantity after that (diagram, thresholds, simulations, combinations,
max2d) uses the bias-subtracted data. (numina 0.40.0 mixes raw and
bias-subtracted values when the bias is not zero.)

The seeing of every exposure is measured first (:mod:`.seeing`); when it
varies by more than ``seeing_tolerance`` the run warns (and
``result.seeing`` says so), and with ``psf_match`` the exposures are
convolved to the worst seeing before anything else, so star cores do not
enter the median-minimum diagram as cosmic rays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .auxiliary import AuxResult, lacosmic_peaks_tails
from .boundary import (
    Boundary,
    SimulatedDiagram,
    fit_spline_boundary,
    piecewise_boundary,
    red_crosses,
    simulate_diagram,
    x_bin_edges,
)
from .combine import all_combinations, combine
from .diagram import StackStatistics, noise_sigma, stack_statistics
from .errors import NonFiniteDataError, ParameterError, ShapeMismatchError, TooFewExposuresError
from .masks import (
    CODE_AUX,
    CODE_BOTH,
    CODE_MM,
    combine_codes,
    dilate,
    fits_pixels_to_mask,
    fits_regions_to_mask,
    global_dilation,
    keep_groups_with,
    mm_detect,
)
from .params import Requirements
from .registration import auto_flux_factors, crosscorr_offsets, shift_image


@dataclass
class CRMasksResult:
    """Everything one run produces (arrays are (ny, nx) unless said otherwise)."""

    stack: np.ndarray  # (N, ny, nx) bias-subtracted (and flux-scaled with apply_flux_factor_to=original)
    stats: StackStatistics
    flux_factors: np.ndarray  # applied to the data (ones unless apply_flux_factor_to=original)
    simulated_flux_factors: np.ndarray  # applied to the simulated exposures
    offsets: list  # (dx, dy) per exposure used in the simulations
    boundary: Boundary | None
    simulated: SimulatedDiagram | None
    crosses: tuple  # (x, y) red crosses
    mm_threshold: float
    code: np.ndarray  # uint8 MEDIANCR codes: 1 dilation, 2 MM, 3 Aux, 4 both
    masks: dict  # name -> bool array: MEDIANCR, MEANCRT, CRMASK1..N, MEANCR
    auxclean: np.ndarray  # float32 (the median cleaned by Aux.Cosmic; the median itself without one)
    allowed: np.ndarray  # False in regions_to_be_skipped
    requirements: Requirements
    gain: float
    rnoise: float
    bias: object
    combinations: dict = field(default_factory=dict)  # name -> Combined
    timings: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    seeing: object = None  # .seeing.SeeingReport: per-exposure FWHM, variation, warning, PSF matching


def validate_stack(arrays, *, k: int = 2, names=None) -> np.ndarray:
    """Check a list of 2-D exposures and return them as one float32 (N, ny, nx) array.

    Raises :class:`TooFewExposuresError` (fewer than 3, or not more than k),
    :class:`ShapeMismatchError` and :class:`NonFiniteDataError`, naming the file.
    """
    arrays = list(arrays)
    names = list(names) if names is not None else [f"exposure #{i + 1}" for i in range(len(arrays))]
    where = names[0] if names else None
    if len(arrays) < 3:
        raise TooFewExposuresError(where, f"M.M.Cosmic needs at least 3 exposures, got {len(arrays)}")
    if len(arrays) <= k:
        raise TooFewExposuresError(where, f"mm_cr_coincidences={k} needs more than {k} exposures, got {len(arrays)}")
    shape0 = np.shape(arrays[0])
    for a, nm in zip(arrays, names):
        if np.ndim(a) != 2:
            raise ShapeMismatchError(nm, f"data are {np.ndim(a)}-D; each exposure must be a 2-D image")
        if np.shape(a) != shape0:
            raise ShapeMismatchError(nm, f"shape {np.shape(a)} differs from {shape0} of {names[0]}")
    stack = np.empty((len(arrays),) + tuple(shape0), dtype=np.float32)
    for i, (a, nm) in enumerate(zip(arrays, names)):
        stack[i] = a
        bad = ~np.isfinite(stack[i])
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise NonFiniteDataError(
                nm, f"{int(bad.sum())} NaN/infinite pixel(s), first at FITS (x={c + 1}, y={r + 1}); "
                "M.M.Cosmic needs a value in every pixel of every exposure"
            )
    return stack


def _bias_array(bias, shape):
    b = np.asarray(bias, dtype=np.float32)
    if b.ndim == 0:
        return b
    if b.shape != tuple(shape):
        raise ShapeMismatchError(None, f"bias frame has shape {b.shape}, exposures have {tuple(shape)}")
    if not np.isfinite(b).all():
        raise NonFiniteDataError(None, "bias frame holds NaN/infinite pixels")
    return b


def auxiliary_detect(image: np.ndarray, req: Requirements, *, gain: float, rnoise: float,
                     allowed: np.ndarray | None = None) -> AuxResult:
    """The configured auxiliary single-image method on one image: L.A.Cosmic (peaks, tails) or a CR network."""
    if req.aux_method == "lacosmic":
        return lacosmic_peaks_tails(image, req, gain=gain, rnoise=rnoise, allowed=allowed)
    from .aux_ml import NetworkAuxSettings, network_aux

    s = NetworkAuxSettings.from_requirements(req.crmethod, dict(req.aux_params))
    return network_aux(image, s, gain=gain, rnoise=rnoise, allowed=allowed)


def cr_cleaned_exposure(image: np.ndarray, fwhm: float, req: Requirements, *, gain: float, rnoise: float):
    """One exposure with its single-exposure CRs replaced (L.A.Cosmic, PSF of FWHM ``fwhm`` when measured)."""
    from dataclasses import replace

    r = replace(req, la_psffwhm_x=float(fwhm), la_psffwhm_y=float(fwhm)) if np.isfinite(fwhm) else req
    aux = lacosmic_peaks_tails(image, r, gain=gain, rnoise=rnoise)
    # only the pixels of the final mask: the tails pass also cleans pixels whose group holds no peak
    return np.where(aux.mask, aux.cleaned, image)


def compute_crmasks(
    arrays,
    *,
    gain: float,
    rnoise: float,
    bias=0.0,
    requirements: Requirements | None = None,
    names=None,
    with_combinations: bool = True,
) -> CRMasksResult:
    """Run M.M.Cosmic (and the auxiliary method) on a stack of exposures."""
    req = requirements or Requirements()
    t_all = time.perf_counter()
    timings: dict = {}
    k = req.mm_cr_coincidences
    raw = validate_stack(arrays, k=k, names=names)
    if req.mm_xy_offsets is not None and len(req.mm_xy_offsets) != raw.shape[0]:
        raise ParameterError("mm_xy_offsets", f"has {len(req.mm_xy_offsets)} pairs for {raw.shape[0]} exposures")
    n, ny, nx = raw.shape
    if not (np.isfinite(gain) and gain > 0):
        raise ParameterError("gain", f"must be > 0, got {gain}")
    if not (np.isfinite(rnoise) and rnoise >= 0):
        raise ParameterError("rnoise", f"must be >= 0, got {rnoise}")
    stack = raw - _bias_array(bias, (ny, nx))[None]

    # ---- seeing: measure, warn, optionally match to the worst ------------------------------
    t = time.perf_counter()
    from .seeing import measure_seeing, psf_match

    seeing = measure_seeing(stack, saturation=req.la_satlevel - float(np.mean(bias)),
                            tolerance=req.seeing_tolerance)
    if req.psf_match:
        # convolve sky and stars only: each exposure's own obvious CRs (L.A.Cosmic with the exposure's own
        # seeing as its PSF, so star cores are not taken for CRs) are added back sharp
        stack = psf_match(stack, seeing, clean=lambda i: cr_cleaned_exposure(stack[i], seeing.fwhm[i], req,
                                                                           gain=gain, rnoise=rnoise))
    timings["seeing"] = time.perf_counter() - t

    allowed = ~fits_regions_to_mask(req.regions_to_be_skipped, (ny, nx)) if req.regions_to_be_skipped else np.ones((ny, nx), bool)
    ignored = fits_pixels_to_mask(req.pixels_to_be_ignored_as_cr, (ny, nx))
    forced = fits_pixels_to_mask(req.pixels_to_be_flagged_as_cr, (ny, nx))

    # ---- flux factors --------------------------------------------------------------------
    t = time.perf_counter()
    if req.flux_factor is None:
        ff = np.ones(n)
    elif req.flux_factor == "auto":
        from .diagram import median_of_stack

        ff = auto_flux_factors(stack, median_of_stack(stack), gain=gain, rnoise=rnoise, regions=req.flux_factor_regions)
    elif isinstance(req.flux_factor, tuple):
        if len(req.flux_factor) != n:
            raise ParameterError("flux_factor", f"has {len(req.flux_factor)} values for {n} exposures")
        ff = np.asarray(req.flux_factor, dtype=np.float64)
    else:
        ff = np.full(n, float(req.flux_factor))
    if req.apply_flux_factor_to == "original":
        data_ff, sim_ff = ff, np.ones(n)
        if np.any(ff != 1.0):
            stack = stack / ff.astype(np.float32)[:, None, None]
    else:
        data_ff, sim_ff = np.ones(n), ff
    stats = stack_statistics(stack, k)
    x, y = stats.x, stats.y
    timings["statistics"] = time.perf_counter() - t
    mm_threshold = req.mm_threshold_rnoise * rnoise
    strong = y > mm_threshold

    # ---- auxiliary method on the median --------------------------------------------------
    t = time.perf_counter()
    aux_med: AuxResult | None = None
    flag_aux = None
    if req.aux_method is not None:
        aux_med = auxiliary_detect(stats.median2d, req, gain=gain, rnoise=rnoise, allowed=allowed)
        flag_aux = aux_med.mask
        if req.uses_mm:
            flag_aux = keep_groups_with(flag_aux, strong)
    auxclean = aux_med.cleaned if aux_med is not None else stats.median2d.copy()
    timings["aux_median"] = time.perf_counter() - t

    # ---- M.M.Cosmic: simulations, boundary, detection ------------------------------------
    boundary = None
    simulated = None
    crosses: tuple = (np.zeros(0), np.zeros(0))
    offsets = [(0.0, 0.0)] * n
    flag_mm = np.zeros((ny, nx), dtype=bool)
    bx = None
    if req.uses_mm:
        t = time.perf_counter()
        model = stats.median2d.astype(np.float64).copy()
        if flag_aux is not None:
            model[flag_aux] = stats.min2d[flag_aux]
        np.clip(model, 0, None, out=model)
        sig = noise_sigma(stats.median2d, gain, rnoise)
        if req.mm_synthetic == "single":
            if req.mm_xy_offsets is not None or req.mm_crosscorr_region is not None:
                raise ParameterError("mm_synthetic", "'single' cannot be combined with offsets (as in numina)")
            cleaned_single = np.where(stack - model[None] > 4 * sig[None], model[None], stack)
            lam = np.clip(cleaned_single, 0, None).astype(np.float64)
        else:
            if req.mm_xy_offsets is not None:
                offsets = [tuple(o) for o in req.mm_xy_offsets]
            elif req.mm_crosscorr_region is not None:
                xmin, xmax, ymin, ymax = req.mm_crosscorr_region
                if xmax > nx or ymax > ny:
                    raise ParameterError(
                        "mm_crosscorr_region", f"{list(req.mm_crosscorr_region)} reaches beyond the {nx}x{ny} image"
                    )
                cleaned = np.where(stack - model[None] > 4 * sig[None], model[None], stack)
                offsets = crosscorr_offsets(cleaned, model, req.mm_crosscorr_region)
            lam = np.empty((n, ny, nx), dtype=np.float64)
            for i in range(n):
                lam[i] = shift_image(model, *offsets[i]) if offsets[i] != (0.0, 0.0) else model
        lam *= sim_ff[:, None, None]
        keep = allowed.copy()
        if flag_aux is not None:
            keep &= ~flag_aux
        scale = gain * rnoise**2 if rnoise > 0 else 1.0
        # bins of the measured x (the diagram's abscissa), as numina does: a bin's crosses are
        # then the conditional levels of y at that x, which is what detection compares with.
        # numina: 100 linear bins; default here: quantile bins (equal pixel counts).
        nbins = 100 if req.mm_xbinning == "linear" else req.mm_nbins_xdiag
        edges = x_bin_edges(x[keep] if keep.any() else x, nbins, req.mm_xbinning, scale=scale)
        timings["model"] = time.perf_counter() - t
        t = time.perf_counter()
        simulated = simulate_diagram(
            lam, gain=gain, rnoise=rnoise, k=k, x_edges=edges, nsimulations=req.mm_nsimulations,
            seed=req.mm_seed, distribution=req.mm_photon_distribution, nbinom_shape=req.mm_nbinom_shape,
            keep=keep, threads=req.mm_threads,
        )
        timings["simulations"] = time.perf_counter() - t
        t = time.perf_counter()
        cx, cy, _ = red_crosses(
            simulated, req.mm_hist2d_min_neighbors,
            x_data=(x[keep] if keep.any() else x) if req.mm_xbinning != "linear" else None,
            expected_per_bin=req.mm_false_per_bin,
        )
        crosses = (cx, cy)
        if req.mm_boundary_fit == "piecewise":
            boundary = piecewise_boundary(req.mm_fixed_points_in_boundary)
        else:
            boundary = fit_spline_boundary(
                cx, cy, n_knots=req.mm_knots_splfit, niter_extension=req.mm_niter_boundary_extension,
                weight_extension=req.mm_weight_boundary_extension, fixed_points=req.mm_fixed_points_in_boundary,
                scale=gain * rnoise**2 if rnoise > 0 else 1.0,
            )
        min_max2d = req.mm_minimum_max2d_rnoise * rnoise
        bx = boundary(x).astype(np.float32)
        flag_mm = mm_detect(
            x, y, stats.max2d, boundary, threshold=mm_threshold, min_max2d=min_max2d,
            dilation=req.mm_dilation, allowed=allowed, boundary_values=bx,
            target=stats.median2d, local_sigma=req.mm_local_sigma, gain=gain, rnoise=rnoise,
        )
        timings["boundary_and_detection"] = time.perf_counter() - t

    def detect_on(target: np.ndarray, aux: np.ndarray | None) -> np.ndarray:
        """numina's detection on another target image: MM with y = target - min2d, or Aux."""
        f = np.zeros((ny, nx), dtype=bool)
        if boundary is not None:
            f |= mm_detect(
                x, target - stats.min2d, stats.max2d, boundary, threshold=mm_threshold,
                min_max2d=req.mm_minimum_max2d_rnoise * rnoise, dilation=req.mm_dilation, allowed=allowed,
                boundary_values=bx, target=target, local_sigma=req.mm_local_sigma, gain=gain, rnoise=rnoise,
            )
        if aux is not None:
            f |= aux & allowed
        return f

    # ---- MEDIANCR -------------------------------------------------------------------------
    t = time.perf_counter()
    code = combine_codes(flag_mm, flag_aux)
    code[forced & (code == 0)] = CODE_MM
    code = global_dilation(code, req.dilation)
    code[ignored] = 0
    code[~allowed & ~forced] = 0
    mediancr = code > 0

    # ---- MEANCRT, CRMASKi, MEANCR ---------------------------------------------------------
    # without M.M.Cosmic (crmethod: lacosmic) the auxiliary method is the only detector: run it everywhere
    run_aux_all = req.aux_method is not None and (req.aux_targets == "all" or not req.uses_mm)

    def aux_on(img):
        if not run_aux_all:
            return None
        r = auxiliary_detect(img, req, gain=gain, rnoise=rnoise, allowed=allowed)
        return keep_groups_with(r.mask, strong) if req.uses_mm else r.mask

    def finish(mask):
        mask = dilate(mask, req.dilation) if req.dilation > 0 else mask
        return mask & ~ignored

    meancrt = finish(detect_on(stats.mean2d, aux_on(stats.mean2d)) | mediancr)
    masks = {"MEDIANCR": mediancr, "MEANCRT": meancrt}
    for i in range(n):
        masks[f"CRMASK{i + 1}"] = finish(detect_on(stack[i], aux_on(stack[i]))) & meancrt
    meancr_img = combine(stack, "meancr", k=k, masks=masks, auxclean=auxclean, use_auxmedian=req.use_auxmedian).image
    masks["MEANCR"] = finish(detect_on(meancr_img, aux_on(meancr_img)))
    timings["masks"] = time.perf_counter() - t

    result = CRMasksResult(
        stack=stack, stats=stats, flux_factors=np.asarray(data_ff, dtype=np.float64),
        simulated_flux_factors=np.asarray(sim_ff, dtype=np.float64), offsets=list(offsets),
        boundary=boundary, simulated=simulated, crosses=crosses, mm_threshold=float(mm_threshold),
        code=code, masks=masks, auxclean=np.asarray(auxclean, dtype=np.float32), allowed=allowed,
        requirements=req, gain=float(gain), rnoise=float(rnoise), bias=bias, timings=timings, seeing=seeing,
    )
    if with_combinations:
        t = time.perf_counter()
        result.combinations = all_combinations(
            stack, k=k, masks=masks, auxclean=result.auxclean, use_auxmedian=req.use_auxmedian,
            replace_rows=req.pixels_to_be_replaced_by_local_median,
        )
        timings["combinations"] = time.perf_counter() - t
    result.counts = {
        "n_exposures": int(n),
        "mm_pixels": int(flag_mm.sum()),
        "aux_pixels": int(flag_aux.sum()) if flag_aux is not None else 0,
        "both_pixels": int((code == CODE_BOTH).sum()),
        "mm_only_pixels": int((code == CODE_MM).sum()),
        "aux_only_pixels": int((code == CODE_AUX).sum()),
        **{f"{name.lower()}_pixels": int(m.sum()) for name, m in masks.items()},
        "problematic_pixels": int(np.logical_and.reduce([masks[f"CRMASK{i + 1}"] for i in range(n)]).sum()),
    }
    timings["total"] = time.perf_counter() - t_all
    return result
