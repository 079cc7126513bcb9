"""stcal (the JWST pipeline's algorithm library) as a peer: its jump step and its ramp fitting on our arrays.

Used by the benchmark, the evaluation and the tests, so every comparison
calls stcal the same way. stcal is an optional dependency (the ``bench``
extra); :class:`StcalMissingError` names it when it is absent.

- :func:`stcal_detect_jumps` runs ``stcal.jump.jump.detect_jumps_data``
  (two-point differences, Anderson & Gordon 2011) with the JWST jump step's
  default parameters (4 sigma, four neighbours of 10-1000 sigma jumps
  flagged) on a reference-corrected cube, with the CDS read noise per pixel
  and the saturation flags the JWST pipeline would give it.
- :func:`stcal_ramp_fit` runs ``stcal.ramp_fitting.ramp_fit.ramp_fit_data``
  (ordinary least squares with optimal weighting, the JWST default) on a
  cube and a ``GROUPDQ`` array such as
  :func:`astrid_pipeline.science.ramps.jwst_dq.groupdq_from_detection` makes.
"""

from __future__ import annotations

import time

import numpy as np

from astrid_pipeline.errors import AstridError
from astrid_pipeline.science.ramps.jwst_dq import JWST_DQ


class StcalMissingError(AstridError, ImportError):
    """stcal is not installed (``pip install stcal``, the ``bench`` extra)."""


def _require_stcal():
    try:
        import stcal  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise StcalMissingError("stcal is not installed (pip install stcal, the 'bench' extra)") from exc


def _as_map(value, shape) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float32), shape).astype(np.float32)


def stcal_detect_jumps(cube: np.ndarray, saturated: np.ndarray, read_noise_cds, gain, *, max_cores: str = "1",
                       group_time: float = 1.0) -> dict:
    """stcal's jump step on one integration ``cube`` (groups, rows, cols), reference-corrected, in DN.

    ``saturated`` (groups, rows, cols) bool; ``read_noise_cds`` the noise of a
    group difference in DN (a number or a map); ``gain`` e-/DN (a number or a
    map). Returns the flagged ``y, x, group`` and ``seconds`` (the call alone).
    """
    _require_stcal()
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    n, ny, nx = cube.shape
    data = np.asarray(cube, dtype=np.float32)[None].copy()
    gdq = np.where(saturated, JWST_DQ["SATURATED"], 0).astype(np.uint8)[None]
    jd = JumpData(gain2d=_as_map(gain, (ny, nx)), rnoise2d=_as_map(read_noise_cds, (ny, nx)), dqflags=JWST_DQ)
    jd.init_arrays_from_arrays(data, gdq, np.zeros((ny, nx), np.uint32))
    jd.nframes = 1
    jd.dt_group = np.ones(1) * group_time
    jd.n_reads_groupdiff = np.ones(1) * 2
    # JWST defaults of the jump step: 4 sigma, four neighbours of 10-1000 sigma jumps flagged;
    # snowball flagging (expand_large_events) off, as in the project's anchor timing
    jd.expand_large_events = False
    jd.max_cores = max_cores
    t0 = time.perf_counter()
    gdq_out = detect_jumps_data(jd)[0]
    dt = time.perf_counter() - t0
    g, y, x = np.nonzero(gdq_out[0] & JWST_DQ["JUMP_DET"])
    return {"y": y, "x": x, "group": g, "seconds": dt}


def stcal_ramp_fit(cube: np.ndarray, groupdq: np.ndarray, read_noise_cds, gain, *, group_time: float,
                   frame_time: float | None = None, pixeldq: np.ndarray | None = None) -> dict:
    """stcal's OLS ramp fitting: slope (DN/s) and its variances per pixel for integration 0.

    ``cube`` is (groups, rows, cols) or (integrations, groups, rows, cols) in
    DN; ``groupdq`` uint8 of the same 4-D shape (JWST bits: JUMP_DET,
    SATURATED, DO_NOT_USE); ``read_noise_cds`` DN (a number or a map).
    """
    _require_stcal()
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    from stcal.ramp_fitting.ramp_fit_class import RampData

    data = np.asarray(cube, dtype=np.float32)
    if data.ndim == 3:
        data = data[None]
    gdq = np.asarray(groupdq, dtype=np.uint8)
    if gdq.shape != data.shape:
        from astrid_pipeline.errors import BadShapeError

        raise BadShapeError(None, f"GROUPDQ shape {gdq.shape} does not match the cube {data.shape}")
    nint, n, ny, nx = data.shape
    rd = RampData()
    rd.set_arrays(data.copy(), gdq.copy(), (np.zeros((ny, nx), np.uint32) if pixeldq is None
                                            else np.asarray(pixeldq, np.uint32).copy()),
                  np.zeros((ny, nx), np.float32))
    rd.set_meta(name="NIRCAM", frame_time=frame_time or group_time, group_time=group_time, groupgap=0, nframes=1)
    rd.algorithm = "OLS_C"
    rd.set_dqflags(JWST_DQ)
    rd.start_row = 0
    rd.num_rows = ny
    rd.suppress_one_group_ramps = False
    image_info, _integ, _opt = ramp_fit_data(rd, False, _as_map(read_noise_cds, (ny, nx)).copy(),
                                             _as_map(gain, (ny, nx)).copy(), "OLS_C", "optimal", "none")
    if image_info is None:  # stcal's answer when no pixel has a usable group
        from astrid_pipeline.errors import EmptyDataError

        raise EmptyDataError(None, "stcal ramp fitting found no usable group (all flagged DO_NOT_USE or saturated)")
    if isinstance(image_info, dict):  # stcal >= 1.x returns named arrays
        return {k: image_info[k] for k in ("slope", "dq", "var_poisson", "var_rnoise", "err")}
    slope, dq, var_p, var_r, err = image_info
    return {"slope": slope, "dq": dq, "var_poisson": var_p, "var_rnoise": var_r, "err": err}
