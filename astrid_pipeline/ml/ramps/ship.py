"""Rebuild the shipped ramp U-Net: ``python -m astrid_pipeline.ml.ramps.ship [--out PATH] [--work DIR]``.

Builds the training set of every preset in :data:`SHIP_PRESETS` with
:func:`astrid_pipeline.ml.ramps.patches.build_training_set` (the function
the training-set asset and ``astrid-ramps create-training`` call; indices
:data:`SHIP_INDICES`, the preset's physics at :data:`SHIP_SIM` size and
densities), trains with :func:`astrid_pipeline.ml.ramps.train.train_unet`
(:data:`SHIP_TRAIN`, seed 0, one CPU thread) and copies the selected
checkpoint to ``astrid_pipeline/ml/ramps/weights/ramp_unet3d_h8.pt`` with a
JSON card (command, configurations, seeds, history, validation IoU) beside
it. Same seeds, machine and thread count: same weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from . import SHIPPED_WEIGHTS
from .train import UNetTrainConfig

SHIP_PRESETS = ("h2rg", "nircam")
SHIP_INDICES = (0, 1)
#: size and densities of the simulated training exposures (the preset gives the detector physics)
SHIP_SIM = {"image_shape": [256, 256], "patch_size": [64, 64], "overlap": 16, "num_exposure_events": 3,
            "num_baseline_exposures": 0, "cosmic_ray_per_exp_range": [218, 218], "rtn_per_exp_range": [131, 131],
            "snowballs_per_exp_range": [1, 2]}
SHIP_TRAIN = UNetTrainConfig(epochs=16, batch_size=8, lr=2e-3, seed=0, crop=32, val_fraction=0.17, hidden=8, depth=2,
                             dice_weight=0.5, threads=1, device="cpu")


def ship_sim_config(preset: str):
    """The training-set SimulationConfig of one shipped preset (its first detector only)."""
    from astrid_pipeline.presets import load_preset

    base = load_preset(preset)
    det = base.detectors[0]
    return base.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in SHIP_SIM.items()},
                        gain_library={det: base.gain_library[det]})


def main(argv=None) -> int:
    from astrid_pipeline.io.atomic import atomic_write_text

    from .patches import build_training_set
    from .train import train_unet

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(SHIPPED_WEIGHTS), help="where to write the checkpoint")
    ap.add_argument("--work", default="", help="folder for the training sets and the run (default: a temp dir)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="astrid_ramp_ship_"))
    data = work / "patches"
    sets = {}
    for preset in SHIP_PRESETS:
        cfg = ship_sim_config(preset)
        res = build_training_set(cfg, SHIP_INDICES[0], SHIP_INDICES[-1], data / preset)
        sets[preset] = {"config_seed": cfg.seed, "indices": list(SHIP_INDICES), **res.metadata}
    files = sorted(str(p) for p in data.rglob("training_*.h5"))
    run = train_unet(SHIP_TRAIN, files, work / "model", log_fn=print)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.model_path, out)
    hist = json.loads(run.history_path.read_text())
    card = {"command": "python -m astrid_pipeline.ml.ramps.ship", "presets": list(SHIP_PRESETS),
            "simulation_overrides": SHIP_SIM, "training_sets": sets, "train_config": hist["train_config"],
            "spec": hist["spec"], "parameters": hist["parameters"], "best_epoch": hist["best_epoch"],
            "selection": hist["selection"], "val_iou": run.metadata["val_iou"],
            "val_mean_anomaly_iou": run.metadata["val_mean_anomaly_iou"], "history": hist["history"]}
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=1, default=str))
    print(json.dumps({k: card[k] for k in ("parameters", "best_epoch", "val_mean_anomaly_iou", "val_iou")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
