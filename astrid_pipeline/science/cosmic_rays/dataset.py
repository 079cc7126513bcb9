"""The CR training set on disk: HDF5 with train / val / test groups.

Layout of the file (all arrays float32 unless noted)::

    /train, /val        x (N, P, P) network input (robust_normalize of the whole field)
                        y (N, P, P) uint8 truth mask
                        w (N, P, P) Cosmic-CoNN median weight
    /test               image (M, S, S) ADU; x; y; saturated (uint8); and per field
                        gain, read_noise, sky, saturation, fwhm (M,)

Train and validation fields come from ``seed`` (two independent streams);
the test fields from ``test_seed``, which training never sees.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from astrid_pipeline.ml.inference import robust_normalize

from .simulate import CRSimConfig, median_weight_map, simulate_field


def _streams(cfg: CRSimConfig):
    base = np.random.SeedSequence(cfg.seed)
    train, val = base.spawn(2)
    test = np.random.SeedSequence(cfg.test_seed)
    return {"train": np.random.default_rng(train), "val": np.random.default_rng(val),
            "test": np.random.default_rng(test)}


def _patches(arr: np.ndarray, p: int) -> np.ndarray:
    n = arr.shape[0] // p
    a = arr[: n * p, : n * p].reshape(n, p, n, p).swapaxes(1, 2)
    return a.reshape(n * n, p, p)


def _load_darks(cfg: CRSimConfig):
    if not cfg.dark_frames:
        return []
    from astrid_pipeline.io.fits_io import open_fits

    out = []
    for p in cfg.dark_frames:
        h = open_fits(p)
        try:
            out.append(np.asarray(h[0].data, float))
        finally:
            h.close()
    return out


def simulate_split(cfg: CRSimConfig, split: str, n: int) -> dict[str, np.ndarray]:
    rng = _streams(cfg)[split]
    darks = _load_darks(cfg)
    cols: dict[str, list] = {k: [] for k in ("x", "y", "w", "image", "saturated", "gain", "read_noise", "sky",
                                             "saturation", "fwhm", "n_hits", "n_faint")}
    for i in range(n):
        dark = darks[i % len(darks)] if darks and split != "test" else None
        f = simulate_field(rng, cfg, dark)
        x = robust_normalize(f.image)
        noise = float(np.sqrt(f.sky / f.gain + f.read_noise**2))
        w = median_weight_map(f.model, f.sky, noise)
        cols["x"].append(x)
        cols["y"].append(f.cr_mask.astype(np.uint8))
        cols["w"].append(w)
        cols["image"].append(f.image)
        cols["saturated"].append(f.saturated.astype(np.uint8))
        for k in ("gain", "read_noise", "sky", "saturation", "fwhm"):
            cols[k].append(getattr(f, k))
        cols["n_hits"].append(len(f.hits))
        cols["n_faint"].append(sum(h["faint"] for h in f.hits))
    return {k: np.asarray(v) for k, v in cols.items()}


def build_training_set(cfg: CRSimConfig, path: str | os.PathLike) -> dict:
    """Simulate all three splits and write them to ``path`` atomically; returns a summary."""
    from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, write_dataset

    cfg.validate()
    summary = {"config": cfg.as_dict()}
    with open_atomic_hdf5(path, step="cr_training_set", attrs={"config_json": json.dumps(cfg.as_dict())}) as f:
        for split, n in (("train", cfg.n_train), ("val", cfg.n_val), ("test", cfg.n_test)):
            d = simulate_split(cfg, split, n)
            g = f.create_group(split)
            if split == "test":
                write_dataset(g, "image", d["image"], unit="adu", description="simulated exposures with CRs")
                write_dataset(g, "x", d["x"], description="network input")
                write_dataset(g, "y", d["y"], description="truth CR mask")
                write_dataset(g, "saturated", d["saturated"], description="saturated pixels")
                for k, u in (("gain", "electron/adu"), ("read_noise", "adu"), ("sky", "adu"), ("saturation", "adu"),
                             ("fwhm", "pix")):
                    write_dataset(g, k, d[k].astype(np.float64), unit=u, compression=None, chunks=None)
            else:
                p = cfg.patch
                for k, desc in (("x", "network input patches"), ("y", "truth CR mask patches"),
                                ("w", "median-weighted loss mask patches")):
                    arr = np.concatenate([_patches(a, p) for a in d[k]])
                    write_dataset(g, k, arr, description=desc, chunks=(min(64, len(arr)), p, p))
            g.attrs["n_fields"] = n
            g.attrs["seed"] = cfg.test_seed if split == "test" else cfg.seed
            summary[split] = {"fields": n, "cr_pixel_fraction": float(d["y"].mean()), "hits": int(d["n_hits"].sum()),
                              "faint_hits": int(d["n_faint"].sum())}
            if split != "test":
                summary[split]["patches"] = int(n * (cfg.image_size // cfg.patch) ** 2)
    summary["path"] = str(Path(path))
    return summary
