"""Reproduce the packaged weights: ``python -m astrid_pipeline.science.cosmic_rays.ship [--out FILE.pt] [--work DIR]``.

Builds the simulated training set with :data:`SHIP_DATA` (seed 1; test
fields from seed 9000001), trains :data:`SHIP_SPEC` with :data:`SHIP_TRAIN`
(seed 0) through the same :func:`astrid_pipeline.ml.train.train_model` the
``cr_model`` asset uses, and copies the best checkpoint to
``astrid_pipeline/ml/weights/`` with a JSON of the command, seeds and
validation metrics next to it. Same seeds on the same machine give the same
weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from astrid_pipeline.ml.checkpoint import SHIPPED
from astrid_pipeline.ml.models import ModelSpec
from astrid_pipeline.ml.train import TrainConfig

from .simulate import CRSimConfig

SHIP_DATA = CRSimConfig(image_size=256, n_train=48, n_val=4, n_test=4, seed=1, test_seed=9_000_001)
SHIP_SPEC = ModelSpec(architecture="deepcr", hidden=8, depth=2, attention=False)
SHIP_TRAIN = TrainConfig(epochs=16, batch_size=16, lr=2e-3, loss="bce", seed=0, val_metric="tpr_at_1e-4",
                         plateau_patience=2, threads=2)


def main(argv=None) -> int:
    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.train import train_model

    from .dataset import build_training_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(SHIPPED), help="where to write the checkpoint")
    ap.add_argument("--work", default="", help="folder for the training set and run products (default: a temp dir)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="astrid_ship_"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "training_set.h5"
    build_training_set(SHIP_DATA, data)
    s = train_model(SHIP_SPEC, SHIP_TRAIN, data, work / "model", log=print)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "model" / "model.pt", out)
    card = {"command": "python -m astrid_pipeline.science.cosmic_rays.ship", "data_config": SHIP_DATA.as_dict(),
            "spec": SHIP_SPEC.as_dict(), "train_config": s["train_config"], "parameters": s["parameters"],
            "best_epoch": s["best_epoch"], "val_metric": s["val_metric"], "best_val_metric": s["best_val_metric"],
            "history": s["history"]}
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=1))
    print(json.dumps({k: card[k] for k in ("parameters", "best_epoch", "best_val_metric")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
