"""JWST data-quality flags for ramps: our detections as a ``GROUPDQ`` / ``PIXELDQ`` pair.

The bit values are those of the JWST pipeline's ``dqflags`` (stdatamodels'
``pixel`` dictionary): a group flagged ``JUMP_DET`` (4) holds the first
charge of a jump, ``SATURATED`` (2) marks a saturated group and every later
one, ``DO_NOT_USE`` (1) a group ramp fitting must skip. ``GROUPDQ`` is
uint8 (integrations, groups, rows, cols), ``PIXELDQ`` uint32 (rows, cols),
as in a JWST ``RampModel``, so ``stcal``'s ramp fitting takes them as they
are (:func:`astrid_pipeline.science.ramps.peer_stcal.stcal_ramp_fit`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from astrid_pipeline.errors import BadShapeError, InputFileError

#: JWST dqflags (stdatamodels.dqflags.pixel); groups use the low 8 bits
JWST_DQ = {
    "GOOD": 0,
    "DO_NOT_USE": 2**0,
    "SATURATED": 2**1,
    "JUMP_DET": 2**2,
    "DROPOUT": 2**3,
    "OUTLIER": 2**4,
    "PERSISTENCE": 2**5,
    "AD_FLOOR": 2**6,
    "CHARGELOSS": 2**7,
    "UNRELIABLE_ERROR": 2**8,
    "NON_SCIENCE": 2**9,
    "DEAD": 2**10,
    "HOT": 2**11,
    "WARM": 2**12,
    "LOW_QE": 2**13,
    "RC": 2**14,
    "TELEGRAPH": 2**15,
    "NONLINEAR": 2**16,
    "BAD_REF_PIXEL": 2**17,
    "NO_FLAT_FIELD": 2**18,
    "NO_GAIN_VALUE": 2**19,
    "NO_LIN_CORR": 2**20,
    "NO_SAT_CHECK": 2**21,
    "UNRELIABLE_BIAS": 2**22,
    "UNRELIABLE_DARK": 2**23,
    "UNRELIABLE_SLOPE": 2**24,
    "UNRELIABLE_FLAT": 2**25,
    "OPEN": 2**26,
    "ADJ_OPEN": 2**27,
    "FLUX_ESTIMATED": 2**28,
    "MSA_FAILED_OPEN": 2**29,
    "OTHER_BAD_PIXEL": 2**30,
    "REFERENCE_PIXEL": 2**31,
}


def groupdq_from_detection(result, shape: tuple | None = None, *, n_integrations: int = 1,
                           integration: int | None = None, refpix: tuple | None = None,
                           rtn_switches: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(GROUPDQ, PIXELDQ)`` of one detection.

    ``JUMP_DET`` on every flagged (pixel, group) of ``result.jumps`` (the
    group that first holds the charge, the JWST convention), with
    ``rtn_switches`` also on every up and down switch of the RTN pixels (so
    ramp fitting fits each stretch of one RTN state on its own),
    ``SATURATED`` on each pixel's first saturated group and all later ones; in ``PIXELDQ``
    ``TELEGRAPH`` on RTN pixels and ``REFERENCE_PIXEL`` on the reference
    border. ``shape`` is (groups, rows, cols) (default: the result's).
    Integrations other than the detected one stay 0.
    """
    from astrid_pipeline.science.ramps.config import CLASS_CODES

    ny, nx = result.mask.shape
    n = result.n_groups
    if shape is not None and tuple(shape) != (n, ny, nx):
        raise BadShapeError(None, f"GROUPDQ shape {tuple(shape)} does not match the detection ({n}, {ny}, {nx})")
    integ = result.integration if integration is None else int(integration)
    if not 0 <= integ < n_integrations:
        raise BadShapeError(None, f"integration {integ} is outside 0..{n_integrations - 1}")
    gdq = np.zeros((n_integrations, n, ny, nx), np.uint8)
    j = result.jumps
    sel = np.ones(len(j["y"]), bool)
    if rtn_switches and "event" in j:
        sel = np.asarray(j["event"]) != -2  # steps of RTN pixels: their switches are flagged below instead
    if sel.any():
        gdq[integ, j["frame"][sel].astype(np.intp), j["y"][sel].astype(np.intp),
            j["x"][sel].astype(np.intp)] |= JWST_DQ["JUMP_DET"]
    sw = getattr(result, "rtn_switches", None)
    if rtn_switches and sw is not None and len(sw["y"]):
        # every switch of an RTN pixel, up and down: ramp fitting then fits each stretch in one state
        gdq[integ, sw["frame"].astype(np.intp), sw["y"].astype(np.intp), sw["x"].astype(np.intp)] |= JWST_DQ["JUMP_DET"]
    fs = result.features.get("first_saturated_frame")
    if fs is not None:
        sat = (fs >= 0)[None] & (np.arange(n)[:, None, None] >= fs[None])
        gdq[integ][sat] |= JWST_DQ["SATURATED"]
    pdq = np.zeros((ny, nx), np.uint32)
    pdq[result.mask == CLASS_CODES["telegraph_noise"]] |= np.uint32(JWST_DQ["TELEGRAPH"])
    b = refpix if refpix is not None else tuple(result.meta.get("refpix", (0, 0, 0, 0)))
    if any(b):
        ref = np.ones((ny, nx), bool)
        ref[b[0]: ny - b[1], b[2]: nx - b[3]] = False
        pdq[ref] |= np.uint32(JWST_DQ["REFERENCE_PIXEL"])
    return gdq, pdq


def write_dq_fits(path: str | os.PathLike, groupdq: np.ndarray, pixeldq: np.ndarray, header: dict | None = None) -> Path:
    """Write ``GROUPDQ`` and ``PIXELDQ`` extensions (JWST ``RampModel`` names) to a FITS file, atomically."""
    from astropy.io import fits

    from astrid_pipeline.io.atomic import atomic_path

    gdq = np.asarray(groupdq)
    pdq = np.asarray(pixeldq)
    if gdq.ndim != 4 or gdq.dtype != np.uint8:
        raise BadShapeError(path, f"GROUPDQ must be uint8 (integrations, groups, rows, cols), got {gdq.dtype} {gdq.shape}")
    if pdq.shape != gdq.shape[2:] or pdq.dtype != np.uint32:
        raise BadShapeError(path, f"PIXELDQ must be uint32 {gdq.shape[2:]}, got {pdq.dtype} {pdq.shape}")
    prim = fits.PrimaryHDU()
    prim.header["ORIGIN"] = "astrid-pipeline"
    prim.header["DQFLAGS"] = ("JWST", "bit values of the JWST pipeline dqflags")
    for k, v in (header or {}).items():
        prim.header[k[:8].upper()] = v
    g = fits.ImageHDU(gdq, name="GROUPDQ")
    g.header["JUMP_DET"] = (JWST_DQ["JUMP_DET"], "bit of a group holding a jump")
    g.header["SATURATD"] = (JWST_DQ["SATURATED"], "bit of a saturated group")
    g.header["DONOTUSE"] = (JWST_DQ["DO_NOT_USE"], "bit of a group not to use")
    p = fits.ImageHDU(pdq, name="PIXELDQ")
    p.header["TELEGRAF"] = (JWST_DQ["TELEGRAPH"], "bit of an RTN pixel")
    with atomic_path(path) as tmp:
        fits.HDUList([prim, g, p]).writeto(tmp)
    return Path(path)


def read_dq_fits(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(GROUPDQ uint8, PIXELDQ uint32)`` from a file written by :func:`write_dq_fits` (or a JWST ramp file)."""
    from astrid_pipeline.io.fits_io import open_fits

    with open_fits(path) as hdul:
        names = [h.name for h in hdul]
        if "GROUPDQ" not in names:
            raise InputFileError(path, "has no GROUPDQ extension")
        gdq = np.array(hdul["GROUPDQ"].data, dtype=np.uint8)
        pdq = (np.array(hdul["PIXELDQ"].data, dtype=np.uint32) if "PIXELDQ" in names
               else np.zeros(gdq.shape[2:], np.uint32))
    if gdq.ndim != 4:
        raise BadShapeError(path, f"GROUPDQ must be 4-D (integrations, groups, rows, cols), got {gdq.shape}")
    return gdq, pdq
