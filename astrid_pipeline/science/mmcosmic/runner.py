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

from astrid_pipeline.io.fits_io import open_fits

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
) -> RunSummary:
    """Compute the masks of in-memory exposures and write every product into ``output_dir``.

    ``replace_folder`` makes ``output_dir`` hold exactly this run's products
    (the folder is swapped in one rename); otherwise the files are moved into
    ``output_dir`` next to whatever is there, each only once all are written.
    """
    req = requirements or Requirements()
    result = compute_crmasks(arrays, gain=gain, rnoise=rnoise, bias=bias, requirements=req, names=names)
    writer = write_folder if replace_folder else write_into
    files = writer(result, output_dir, inputs=list(names or []), plots=plots)
    bat = {}
    if result.boundary is not None:
        for xv in (0.0, 100.0, 1000.0, 10000.0):
            bat[xv] = float(result.boundary(np.array(xv)))
    return RunSummary(Path(output_dir), files, result.counts, result.timings, bat, result if keep_result else None)


def run_config(
    config: CRMasksConfig,
    output_dir: str | os.PathLike,
    *,
    replace_folder: bool = False,
    plots: bool = True,
    keep_result: bool = False,
) -> RunSummary:
    """Read the exposures a parameter file names, run, write the products."""
    arrays = read_stack(config.images, config.extnum)
    bias = read_bias(config.bias, config.extnum)
    return run_arrays(
        arrays, output_dir, gain=config.gain, rnoise=config.rnoise, bias=bias,
        requirements=config.requirements, names=list(config.images), replace_folder=replace_folder,
        plots=plots, keep_result=keep_result,
    )
