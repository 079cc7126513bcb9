"""Read a stack of FITS exposures, run M.M.Cosmic, write the products.

Used by the ``astrid-crmasks`` command and by the Dagster asset; plain
functions, usable from a notebook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from astrid_pipeline.io.fits_io import inherit_primary_keywords, open_fits

from .errors import MissingExtensionError, ShapeMismatchError, StackError
from .outputs import write_folder, write_into
from .params import CRMasksConfig, Requirements
from .pipeline import CRMasksResult, compute_crmasks


def read_exposure(path: str | os.PathLike, extnum: int | str = 0) -> np.ndarray:
    """One 2-D exposure from ``path`` extension ``extnum`` (float32).

    Named errors: not FITS / truncated (from the FITS reader), missing
    extension, no data or not 2-D.
    """
    hdul = open_fits(path)
    try:
        try:
            hdu = hdul[extnum]
        except (KeyError, IndexError):
            names = [h.name for h in hdul]
            raise MissingExtensionError(
                path, f"has no extension {extnum!r} (it has {len(hdul)}: {', '.join(names)})"
            ) from None
        if hdu.data is None:
            raise ShapeMismatchError(path, f"extension {extnum!r} holds no data")
        data = np.asarray(hdu.data)
    finally:
        hdul.close()
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ShapeMismatchError(path, f"extension {extnum!r} has {data.ndim}-D data {data.shape}; need a 2-D image")
    if not np.issubdtype(data.dtype, np.number):
        raise StackError(path, f"extension {extnum!r} is not numeric ({data.dtype})")
    return data.astype(np.float32)


def read_header(path: str | os.PathLike, extnum: int | str = 0):
    """The header of extension ``extnum`` with the primary header's cards it lacks (EXPTIME, DATE-OBS...)."""
    hdul = open_fits(path)
    try:
        try:
            hdu = hdul[extnum]
        except (KeyError, IndexError):
            raise MissingExtensionError(path, f"has no extension {extnum!r}") from None
        hdr = hdu.header.copy()
        if hdu is not hdul[0]:
            inherit_primary_keywords(hdr, hdul[0].header)
        return hdr
    finally:
        hdul.close()


def read_stack(paths: Sequence[str | os.PathLike], extnum: int | str = 0) -> list[np.ndarray]:
    """All exposures of a stack (validation of the set is done by the pipeline)."""
    return [read_exposure(p, extnum) for p in paths]


def read_bias(bias, extnum: int | str = 0):
    """A scalar bias, or a bias frame read from a FITS path."""
    if isinstance(bias, (str, os.PathLike)):
        return read_exposure(bias, extnum if isinstance(extnum, int) else 0)
    return float(bias)


@dataclass
class RunSummary:
    output_dir: Path
    files: list
    counts: dict
    timings: dict
    boundary_at: dict = field(default_factory=dict)  # x -> boundary y, for a quick look
    result: CRMasksResult | None = None
    seeing: dict = field(default_factory=dict)  # per-exposure FWHM, variation, warning, PSF matching
    reused_masks: str = ""  # the crmasks.fits the combinations were made with (``--crmasks``), else ""


def run_arrays(
    arrays,
    output_dir: str | os.PathLike,
    *,
    gain: float,
    rnoise: float,
    bias=0.0,
    requirements: Requirements | None = None,
    names: Sequence[str] | None = None,
    replace_folder: bool = False,
    plots: bool = True,
    keep_result: bool = False,
    header=None,
) -> RunSummary:
    """Compute the masks of in-memory exposures and write every product into ``output_dir``.

    ``replace_folder`` makes ``output_dir`` hold exactly this run's products
    (the folder is swapped in one rename); otherwise the files are moved into
    ``output_dir`` next to whatever is there, each only once all are written.
    ``header``: the first exposure's header (:func:`read_header`), whose WCS,
    EXPTIME and epoch the combined images keep.
    """
    req = requirements or Requirements()
    result = compute_crmasks(arrays, gain=gain, rnoise=rnoise, bias=bias, requirements=req, names=names)
    writer = write_folder if replace_folder else write_into
    files = writer(result, output_dir, inputs=list(names or []), plots=plots, header=header)
    bat = {}
    if result.boundary is not None:
        for xv in (0.0, 100.0, 1000.0, 10000.0):
            bat[xv] = float(result.boundary(np.array(xv)))
    seeing = result.seeing.as_dict() if result.seeing is not None else {}
    return RunSummary(Path(output_dir), files, result.counts, result.timings, bat, result if keep_result else None,
                      seeing)


def run_with_saved_masks(
    arrays,
    crmasks: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    gain: float,
    rnoise: float,
    bias=0.0,
    requirements: Requirements | None = None,
    names: Sequence[str] | None = None,
    header=None,
) -> RunSummary:
    """The combinations of ``arrays`` with the masks of a saved ``crmasks.fits`` (numina's ``--crmasks``).

    No mask is recomputed; only the ``combined_*.fits`` files are written
    (into ``output_dir``, all-or-nothing), as numina-crmasks does.
    """
    import time

    from .outputs import files_into, write_combinations
    from .reuse import combine_with_saved_masks, read_crmasks

    req = requirements or Requirements()
    t0 = time.perf_counter()
    saved = read_crmasks(crmasks)
    stack, combos, seeing = combine_with_saved_masks(arrays, saved, gain=gain, rnoise=rnoise, bias=bias,
                                                     requirements=req, names=names)
    files = files_into(output_dir, lambda tmp: write_combinations(
        combos, tmp, uid=saved.uuid, n=stack.shape[0], k=req.mm_cr_coincidences, masks=saved.masks, gain=gain,
        rnoise=rnoise, use_auxmedian=req.use_auxmedian, inputs=list(names or []), header=header, seeing=seeing))
    counts = {"n_exposures": int(stack.shape[0]),
              **{f"{nm.lower()}_pixels": int(m.sum()) for nm, m in saved.masks.items()}}
    return RunSummary(Path(output_dir), files, counts, {"total": time.perf_counter() - t0},
                      seeing=seeing.as_dict() if seeing is not None else {}, reused_masks=str(saved.path))


def run_config(
    config: CRMasksConfig,
    output_dir: str | os.PathLike,
    *,
    replace_folder: bool = False,
    plots: bool = True,
    keep_result: bool = False,
    crmasks: str | os.PathLike | None = None,
) -> RunSummary:
    """Read the exposures a parameter file names, run, write the products.

    ``crmasks``: a ``crmasks.fits`` written earlier; its masks are applied
    as they are (no recomputation) and only the combined images are written.
    """
    arrays = read_stack(config.images, config.extnum)
    bias = read_bias(config.bias, config.extnum)
    header = read_header(config.images[0], config.extnum)
    if crmasks:
        return run_with_saved_masks(arrays, crmasks, output_dir, gain=config.gain, rnoise=config.rnoise, bias=bias,
                                    requirements=config.requirements, names=list(config.images), header=header)
    return run_arrays(
        arrays, output_dir, gain=config.gain, rnoise=config.rnoise, bias=bias,
        requirements=config.requirements, names=list(config.images), replace_folder=replace_folder,
        plots=plots, keep_result=keep_result, header=header,
    )
