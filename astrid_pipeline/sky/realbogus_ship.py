"""Remake the shipped real/bogus weights: ``python -m astrid_pipeline.sky.realbogus_ship [--work DIR] [--out PATH]``.

1. the training set: :data:`SHIP_TRAIN_SET` (300 simulated 256x256 regions,
   seed 1, 15 % of the regions for validation) and :data:`SHIP_EXTRA_SET`
   (100 regions, seed 2, most with a local registration error of the
   template: dipoles on stars, as a PSF or astrometry change leaves), and the test set
   :data:`SHIP_TEST_SET` (100 regions from seed 1001, never seen in
   training), both by :func:`astrid_pipeline.sky.triplet_set.build_triplet_training_set`
   (reused from ``--work`` when already there);
2. training: :func:`~astrid_pipeline.ml.realbogus.train.train_realbogus` with
   :data:`SHIP_TRAIN` (seed 0, one thread, a budget of CPU seconds);
3. evaluation on the test set, and a copy of the weights with a JSON card
   (command, seeds, configurations, history, test metrics) to
   ``astrid_pipeline/ml/realbogus/weights/``.

Run it under ``nice -n 19`` on a shared machine. A budgeted run stops after
the epoch that spends the budget; the card records ``epochs_done``, and
``--epochs N --no-budget`` reproduces it bit for bit on the same machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from astrid_pipeline.sky.triplet_set import TripletSetConfig

from astrid_pipeline.ml.realbogus.score import SHIPPED
from astrid_pipeline.ml.realbogus.train import RBTrainConfig

SHIP_TRAIN_SET = TripletSetConfig(n_regions=300, seed=1, val_fraction=0.15, test_fraction=0.0)
#: a supplementary training set rich in local registration errors (dipoles on stars, e.g. DECam's PSF-change star)
SHIP_EXTRA_SET = TripletSetConfig(n_regions=100, seed=2, val_fraction=0.15, test_fraction=0.0, p_misregistration=0.8,
                                  p_psf_variation=0.5)
SHIP_TEST_SET = TripletSetConfig(n_regions=100, seed=1001, val_fraction=0.0, test_fraction=1.0)
SHIP_TRAIN = RBTrainConfig(epochs=30, batch_size=64, lr=1e-3, seed=0, threads=1, cpu_budget_s=1500.0)


def build_sets(work: Path, log=print, names=("train_set", "extra_set", "test_set")) -> dict:
    """Build (or reuse) the training and test triplet sets in ``work``; returns their summaries."""
    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.sky.triplet_set import build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    out = {}
    for name, cfg in (("train_set", SHIP_TRAIN_SET), ("extra_set", SHIP_EXTRA_SET), ("test_set", SHIP_TEST_SET)):
        if name not in names:
            continue
        path = work / f"{name}.h5"
        card = work / f"{name}.json"
        if not path.exists():
            m = build_triplet_training_set(cfg, path, run_sky_chain, log=log)
            atomic_write_text(card, json.dumps(m, indent=1, default=str))
        out[name] = json.loads(card.read_text()) if card.exists() else {"path": str(path)}
    return out


def _reuse(model_dir: Path, train_sets, cfg: RBTrainConfig) -> dict:
    """The summary of an already trained model, with its operating threshold re-derived on the val split."""
    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.realbogus.dataset import load_triplet_set

    from astrid_pipeline.ml.realbogus.normalize import normalize_triplets
    from astrid_pipeline.ml.realbogus.score import load_realbogus, save_realbogus
    from astrid_pipeline.ml.realbogus.train import operating_threshold

    model, payload = load_realbogus(model_dir / "realbogus.pt")
    summary = json.loads(payload["summary_json"])
    parts = [load_triplet_set(p, "val", cfg.exclude_near_real_px) for p in train_sets if Path(p).exists()]
    xv = np.concatenate([a for a, _ in parts])
    sign = np.concatenate([t["sign"].to_numpy() for _, t in parts])
    real = np.concatenate([t["label"].to_numpy() == 1 for _, t in parts])
    z, _ = normalize_triplets(xv, sign)
    summary["threshold"] = operating_threshold(model, z, real)
    summary["threshold_note"] = "re-derived with 8-orientation averaging by train.operating_threshold (--reuse-model)"
    ckpt = save_realbogus(model_dir / "realbogus.pt", model, types=payload["types"], threshold=summary["threshold"],
                          summary=summary)
    atomic_write_text(model_dir / "model.json", json.dumps({k: v for k, v in summary.items() if k != "history"},
                                                           indent=1, default=str))
    summary["checkpoint"] = str(ckpt)
    return summary


def main(argv=None) -> int:
    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.realbogus.dataset import load_triplet_set

    from astrid_pipeline.ml.realbogus.evaluate import evaluate_realbogus
    from astrid_pipeline.ml.realbogus.train import train_realbogus

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="", help="folder for the triplet sets and the run (default: a temp dir)")
    ap.add_argument("--out", default=str(SHIPPED), help="where to write the weights")
    ap.add_argument("--epochs", type=int, default=SHIP_TRAIN.epochs)
    ap.add_argument("--no-budget", action="store_true", help="train exactly --epochs epochs (reproduce a card)")
    ap.add_argument("--reuse-model", action="store_true",
                    help="do not train: re-derive the operating threshold of <work>/model/realbogus.pt and re-evaluate")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="astrid_rb_ship_"))
    work.mkdir(parents=True, exist_ok=True)
    sets = build_sets(work, names=("train_set", "extra_set"))
    data = [work / "train_set.h5", work / "extra_set.h5"]
    cfg = replace(SHIP_TRAIN, epochs=args.epochs, cpu_budget_s=0.0 if args.no_budget else SHIP_TRAIN.cpu_budget_s)
    if args.reuse_model:
        s = _reuse(work / "model", data, cfg)
    else:
        s = train_realbogus(data, work / "model", cfg, log=lambda m: print(m, flush=True))
    sets.update(build_sets(work, names=("test_set",)))  # after training: the test seed plays no part in it
    x, t = load_triplet_set(work / "test_set.h5", exclude_near_real_px=cfg.exclude_near_real_px)
    ev = evaluate_realbogus(s["checkpoint"], x, t, plot_dir=work / "model", threads=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(s["checkpoint"], out)
    keep = ("auc", "fpr_at_95tpr", "fnr_at_1fpr", "threshold", "tpr_at_threshold", "fpr_at_threshold",
            "per_type", "recall_by_snr", "type_confusion", "type_accuracy", "n_real", "n_bogus", "seconds_per_1000")
    import sys

    invoked = " ".join(["python -m astrid_pipeline.sky.realbogus_ship", *(sys.argv[1:] if argv is None else argv)])
    card = {"command": invoked,
            "train_command": "python -m astrid_pipeline.sky.realbogus_ship --work <dir>  (trains with train_config)",
            "train_set": asdict(SHIP_TRAIN_SET), "extra_set": asdict(SHIP_EXTRA_SET), "test_set": asdict(SHIP_TEST_SET),
            "train_config": asdict(cfg),
            "train_set_summary": {k: v for k, v in sets["train_set"].items() if k != "config"},
            "extra_set_summary": {k: v for k, v in sets["extra_set"].items() if k != "config"},
            "test_set_summary": {k: v for k, v in sets["test_set"].items() if k != "config"},
            **{k: s[k] for k in ("parameters", "model_config", "best_epoch", "epochs_done", "cpu_s", "threshold",
                                 "best_val_fpr_at_95tpr", "best_val_auc", "history")},
            "threshold_note": s.get("threshold_note", "score at 95 % TPR on the val split, 8-orientation averaging"),
            "test": {k: ev[k] for k in keep}}
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=1, default=str))
    print(json.dumps({"epochs_done": s["epochs_done"], **{k: ev[k] for k in ("auc", "fpr_at_95tpr", "fnr_at_1fpr")}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
