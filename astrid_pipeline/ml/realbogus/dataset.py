"""The real/bogus triplet set on disk: its classes, columns and reader (written by
:func:`astrid_pipeline.sky.triplet_set.build_triplet_training_set`).

The HDF5 file holds ``triplets`` (N, 3, S, S) float32 (science, reference,
difference; NaN beyond the image edge) and one 1-D dataset per column of
:data:`COLUMNS`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

REAL_TYPES = ("supernova", "variable", "nova", "asteroid", "asteroid_trailed")
BOGUS_TYPES = ("cosmic_ray", "dipole", "psf_mismatch", "bad_column", "hot_pixel", "saturated_star", "noise_peak",
               "residual")
ALL_TYPES = REAL_TYPES + BOGUS_TYPES
SPLITS = ("train", "val", "test")


COLUMNS = ("label", "type", "type_index", "snr", "expected_snr", "sign", "flags", "region", "split", "x", "y",
           "candidate_id")


def summarize_table(table: pd.DataFrame) -> dict:
    """Sizes, class balance and per-type counts per split."""
    out: dict = {"n_triplets": int(len(table)), "n_real": int((table["label"] == 1).sum()),
                 "n_bogus": int((table["label"] == 0).sum())}
    out["real_fraction"] = out["n_real"] / max(out["n_triplets"], 1)
    per = {}
    for sp in SPLITS:
        t = table[table["split"] == sp]
        if not len(t):
            continue
        per[sp] = {"n": int(len(t)), "real": int((t["label"] == 1).sum()), "bogus": int((t["label"] == 0).sum()),
                   "regions": int(t["region"].nunique()),
                   "types": {k: int(v) for k, v in t["type"].value_counts().sort_index().items()}}
    out["splits"] = per
    return out


def near_real_distance(table: pd.DataFrame) -> np.ndarray:
    """Per row, the distance (px) to the nearest *other* real candidate of the same region (inf if none)."""
    d = np.full(len(table), np.inf)
    for _, g in table.groupby("region"):
        real = (g["label"] == 1).to_numpy()
        if not real.any():
            continue
        xy = g[["x", "y"]].to_numpy(float)
        dist = np.hypot(xy[:, None, 0] - xy[None, real, 0], xy[:, None, 1] - xy[None, real, 1])
        ri = np.nonzero(real)[0]
        dist[ri, np.arange(ri.size)] = np.inf  # a real row is not its own neighbour
        d[g.index.to_numpy()] = dist.min(axis=1)
    return d


def load_triplet_set(path: str | os.PathLike, split: str | None = None,
                     exclude_near_real_px: float = 0.0) -> tuple[np.ndarray, pd.DataFrame]:
    """(triplets, table) of a set written by :func:`build_triplet_training_set`, optionally one split.

    ``exclude_near_real_px`` > 0 leaves out the bogus rows within that many
    pixels of a real candidate of the same region: a second detection along
    a trail or a host-galaxy residual beside a supernova shares most of the
    real one's stamp, and is neither a clean real nor a clean bogus example.
    """
    import h5py

    from astrid_pipeline.errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "no such triplet set (build it with build_triplet_training_set)")
    with h5py.File(p, "r") as f:
        if "triplets" not in f or "label" not in f:
            raise InputFileError(p, "is not a triplet training set (no 'triplets' / 'label' datasets)")
        cols = {}
        for c in COLUMNS:
            v = f[c][()]
            if v.dtype.kind in "OS":
                v = np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v], dtype=object)
            cols[c] = v
        table = pd.DataFrame(cols)
        keep = np.ones(len(table), bool) if split is None else table["split"].to_numpy() == split
        if exclude_near_real_px > 0:
            keep &= ~((table["label"].to_numpy() == 0) & (near_real_distance(table) < exclude_near_real_px))
        idx = np.nonzero(keep)[0]
        trip = np.asarray(f["triplets"][idx] if len(idx) else np.zeros((0,) + f["triplets"].shape[1:]),
                          dtype=np.float32)
    return trip, table.iloc[idx].reset_index(drop=True)
