"""Training sets of temporal patches for the 3D U-Net (ohana's ``create-training``), numpy + h5py.

:func:`build_training_set` simulates, for every index in ``start_index ..
end_index`` (inclusive, as ohana's flags) and every detector of the gain
library, the config's exposures (``num_exposure_events`` with anomalies and
``num_baseline_exposures`` without), reads each back through the same
preprocessing as detection (:class:`~astrid_pipeline.science.ramps.prepare.RampPrep`:
reference pixels, read noise measured per output) and cuts it into
``patch_size`` patches that overlap by ``overlap`` pixels (ohana's keys),
labelled with the simulation's truth class mask (0 background, 1 cosmic
ray, 2 telegraph noise, 3 snowball).

Each index writes its own file, ``<out_dir>/training_<index:05d>.h5``
(atomically), so the indices of a job array run in parallel without
touching each other's files. The seed of index ``i`` is drawn from
``(config seed, i)``: the same config and index give the same patches.
Frames are simulated to a temporary HDF5 file and read back by strips, so
memory is bounded by one strip of patches, even for 2048 x 2048 x 450.

File layout: ``/x`` (patches, 2, T, rows, cols) float16 network inputs
(:mod:`.features`), ``/y`` (patches, rows, cols) uint8 labels, ``/origin``
(row, col of each patch), ``/exposure``, ``/detector``; attributes hold the
config, the index and ``t_max``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from astrid_pipeline.errors import ConfigError, InputFileError
from astrid_pipeline.science.ramps.config import CLASS_CODES, SimulationConfig

from .features import N_CHANNELS, difference_features, time_bins

log = logging.getLogger(__name__)
TRAINING_FILE = "training_{index:05d}.h5"
FORMAT = "astrid-ramp-patches/1"


@dataclass
class TrainingSetResult:
    """What :func:`build_training_set` wrote."""

    paths: list[Path]
    metadata: dict = field(default_factory=dict)


def patch_origins(size: int, patch: int, overlap: int) -> list[int]:
    """Starts of patches of ``patch`` pixels overlapping by ``overlap`` that cover ``0..size`` (the last one
    flush with the end)."""
    if patch >= size:
        return [0]
    stride = patch - overlap
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def index_seed(seed: int, index: int) -> int:
    """The simulation seed of training index ``index`` (independent streams per index)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _write_exposure_patches(f, cfg: SimulationConfig, detector: str, exposure: int, t_max: int, tmp_dir: Path) -> dict:
    """Simulate one exposure, cut it into patches and append them to the open file ``f``."""
    from astrid_pipeline.science.ramps.readers import open_ramp
    from astrid_pipeline.science.ramps.prepare import RampPrep
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    fd, name = tempfile.mkstemp(prefix=".sim_", suffix=".h5", dir=tmp_dir)
    os.close(fd)
    path = Path(name)
    try:
        path.unlink()
        plan = simulate_exposure(cfg, detector, exposure, path)
        ph, pw = cfg.patch_size
        ny, nx = cfg.image_shape
        counts = np.zeros(4, np.int64)
        n_patches = 0
        with open_ramp(path) as src:
            prep = RampPrep(src, 0, calibrate_gls=False)  # the inputs need the read noise, not the jump threshold
            cols = patch_origins(nx, pw, cfg.overlap)
            for r0 in patch_origins(ny, ph, cfg.overlap):
                cube, sat = prep.load(r0, r0 + ph)
                x = difference_features(cube, sat, prep.rn_col, prep.gain, t_max)
                del cube
                for c0 in cols:
                    xp = x[:, :, :, c0:c0 + pw].astype(np.float16)
                    yp = plan.class_mask[r0:r0 + ph, c0:c0 + pw]
                    i = f["y"].shape[0]
                    for k in ("x", "y", "origin", "exposure", "detector"):
                        f[k].resize(i + 1, axis=0)
                    f["x"][i] = xp
                    f["y"][i] = yp
                    f["origin"][i] = (r0, c0)
                    f["exposure"][i] = exposure
                    f["detector"][i] = detector
                    counts += np.bincount(yp.ravel(), minlength=4)[:4]
                    n_patches += 1
        return {"patches": n_patches, "class_pixels": counts, "read_noise_dn": plan.noise_dn}
    finally:
        path.unlink(missing_ok=True)


def build_training_set(cfg: SimulationConfig, start_index: int, end_index: int, out_dir: str | os.PathLike, *,
                       t_max: int = 32, progress: Callable[[str], None] | None = None) -> TrainingSetResult:
    """Simulate and cut the patches of indices ``start_index..end_index`` into ``out_dir``; one file per index."""
    import h5py

    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5

    if start_index < 0 or end_index < start_index:
        raise ConfigError(f"--start_index {start_index} / --end_index {end_index}: need 0 <= start <= end")
    if t_max < 2:
        raise ConfigError(f"t_max must be >= 2, got {t_max}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ph, pw = cfg.patch_size
    T = len(time_bins(cfg.num_frames - 1, t_max))
    paths = []
    totals = np.zeros(4, np.int64)
    n_total = 0
    for index in range(start_index, end_index + 1):
        icfg = cfg.replace(seed=index_seed(cfg.seed, index))
        path = out / TRAINING_FILE.format(index=index)
        with open_atomic_hdf5(path, step="ramp_training_set",
                              attrs={"format": FORMAT, "config": cfg.to_dict(), "index": index,
                                     "seed": icfg.seed, "t_max": t_max, "time_bins": T,
                                     "class_codes": CLASS_CODES, "preset": cfg.preset}) as f:
            f.create_dataset("x", shape=(0, N_CHANNELS, T, ph, pw), maxshape=(None, N_CHANNELS, T, ph, pw),
                             dtype=np.float16, chunks=(1, N_CHANNELS, T, ph, pw), compression="gzip",
                             compression_opts=1, shuffle=True)
            f.create_dataset("y", shape=(0, ph, pw), maxshape=(None, ph, pw), dtype=np.uint8, chunks=(1, ph, pw))
            f.create_dataset("origin", shape=(0, 2), maxshape=(None, 2), dtype=np.int32)
            f.create_dataset("exposure", shape=(0,), maxshape=(None,), dtype=np.int16)
            f.create_dataset("detector", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
            for det in icfg.detectors:
                for exp in range(icfg.num_exposures):
                    info = _write_exposure_patches(f, icfg, det, exp, t_max, out)
                    totals += info["class_pixels"]
                    n_total += info["patches"]
                    msg = f"index {index}: {det} exposure {exp}: {info['patches']} patches"
                    log.info(msg)
                    if progress is not None:
                        progress(msg)
        paths.append(path)
    names = ("background", "cosmic_ray", "telegraph_noise", "snowball")
    return TrainingSetResult(paths=paths, metadata={
        "files": [str(p) for p in paths], "patches": int(n_total), "time_bins": T,
        "patch_size": list(cfg.patch_size), "overlap": cfg.overlap, "preset": cfg.preset,
        "class_pixels": {k: int(v) for k, v in zip(names, totals)},
        "indices": [start_index, end_index],
    })


def training_files(data: str | os.PathLike | list) -> list[Path]:
    """The training files of a folder (``training_*.h5``), or the given list of files."""
    if isinstance(data, (list, tuple)):
        files = [Path(p) for p in data]
    else:
        d = Path(data)
        if d.is_file():
            files = [d]
        elif d.is_dir():
            files = sorted(d.glob("training_*.h5"))
        else:
            raise InputFileError(d, "no such training-set folder or file")
    if not files:
        raise InputFileError(data if not isinstance(data, (list, tuple)) else None,
                             "holds no training_*.h5 files (run `astrid-ramps create-training` first)")
    for p in files:
        if not p.is_file():
            raise InputFileError(p, "training file does not exist")
    return files
