"""Reuse saved masks: the combinations of a stack from a ``crmasks.fits`` written earlier, no recomputation.

numina-crmasks does this with ``--crmasks FILE``: it reads MEDIANCR, MEANCRT,
CRMASKi, MEANCR and AUXCLEAN and the flux factors FLUXFi from the file and
applies them to the exposures the parameter file names, writing only the
``combined_*.fits`` images (``Masks UUID`` in their HISTORY names the masks).
Here the same, plus: a stack that was PSF-matched when the masks were made
(``PSFMATCH = T``, the FWHMi cards) is matched again the same way, so the
combinations equal those of the run that wrote the masks.

Errors name the file: a missing extension, a mask of the wrong shape, a
different number of exposures than CRMASKi extensions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import MissingExtensionError, ShapeMismatchError, StackError


@dataclass
class SavedMasks:
    path: Path
    uuid: str
    masks: dict  # MEDIANCR, MEANCRT, CRMASK1..N, MEANCR (bool)
    auxclean: np.ndarray
    flux_factors: np.ndarray
    fwhm: list  # per exposure, NaN where unknown
    psf_matched: bool
    n_exposures: int


def read_crmasks(path: str | os.PathLike) -> SavedMasks:
    """The masks, AUXCLEAN, flux factors and seeing cards of a crmasks.fits file."""
    from astrid_pipeline.io.fits_io import open_fits

    p = Path(path)
    hdul = open_fits(p)
    try:
        names = [h.name for h in hdul]
        n = sum(1 for nm in names if nm.startswith("CRMASK") and nm[6:].isdigit())
        need = ["MEDIANCR", "MEANCRT", *[f"CRMASK{i + 1}" for i in range(n)], "MEANCR", "AUXCLEAN"]
        missing = [nm for nm in need if nm not in names]
        if n == 0 or missing:
            raise MissingExtensionError(p, f"is not a crmasks.fits file: missing {missing or ['CRMASK1']} "
                                           f"(it has {', '.join(names)})")
        hdr = hdul[0].header
        if "UUID" not in hdr:
            raise MissingExtensionError(p, "has no UUID in its primary header (not written by numina-crmasks)")
        masks = {nm: np.asarray(hdul[nm].data).astype(bool) for nm in need if nm != "AUXCLEAN"}
        shapes = {nm: m.shape for nm, m in masks.items()}
        if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
            raise ShapeMismatchError(p, f"its masks do not share one 2-D shape: {shapes}")
        aux = np.asarray(hdul["AUXCLEAN"].data, dtype=np.float32)
        if aux.shape != masks["MEDIANCR"].shape:
            raise ShapeMismatchError(p, f"AUXCLEAN has shape {aux.shape}, the masks {masks['MEDIANCR'].shape}")
        ff = np.array([float(hdr.get(f"FLUXF{i + 1}", 1.0)) for i in range(n)])
        fwhm = [float(hdr[f"FWHM{i + 1}"]) if float(hdr.get(f"FWHM{i + 1}", -1.0)) > 0 else float("nan")
                for i in range(n)]
        return SavedMasks(p, str(hdr["UUID"]), masks, aux, ff, fwhm, bool(hdr.get("PSFMATCH", False)), n)
    finally:
        hdul.close()


def combine_with_saved_masks(arrays, saved: SavedMasks, *, gain: float, rnoise: float, bias=0.0,
                             requirements=None, names=None):
    """``(stack, combinations, seeing)``: the seven combinations of ``arrays`` with the saved masks."""
    from .combine import all_combinations
    from .params import Requirements
    from .pipeline import _bias_array, cr_cleaned_exposure, validate_stack
    from .seeing import SeeingReport, psf_match

    req = requirements or Requirements()
    raw = validate_stack(arrays, k=req.mm_cr_coincidences, names=names)
    n, ny, nx = raw.shape
    if n != saved.n_exposures:
        raise StackError(saved.path, f"holds masks for {saved.n_exposures} exposures (CRMASK1..{saved.n_exposures}); "
                                     f"the parameter file names {n}")
    if saved.masks["MEDIANCR"].shape != (ny, nx):
        raise ShapeMismatchError(saved.path, f"masks have shape {saved.masks['MEDIANCR'].shape}; the exposures "
                                             f"{(ny, nx)}")
    stack = raw - _bias_array(bias, (ny, nx))[None]
    seeing = None
    if saved.psf_matched:
        good = [f for f in saved.fwhm if np.isfinite(f)]
        var = (max(good) - min(good)) / min(good) if len(good) >= 2 else float("nan")
        seeing = SeeingReport(list(saved.fwhm), var, req.seeing_tolerance)
        stack = psf_match(stack, seeing, clean=lambda i: cr_cleaned_exposure(stack[i], seeing.fwhm[i], req,
                                                                           gain=gain, rnoise=rnoise))
    if np.any(saved.flux_factors != 1.0):
        stack = stack / saved.flux_factors.astype(np.float32)[:, None, None]
    combos = all_combinations(stack, k=req.mm_cr_coincidences, masks=saved.masks, auxclean=saved.auxclean,
                              use_auxmedian=req.use_auxmedian,
                              replace_rows=req.pixels_to_be_replaced_by_local_median)
    return stack, combos, seeing
