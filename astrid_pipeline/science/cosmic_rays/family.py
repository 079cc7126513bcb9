"""Train every 2-D CR model family on the same data with the same CPU-time budget.

``python -m astrid_pipeline.science.cosmic_rays.family --work DIR [--budget-min 12] [--only NAME ...]``

Builds one simulated training set (:data:`FAMILY_DATA`: train/val from seed
1, test fields from seed 9000001 that training never sees) and trains each
configuration of :data:`FAMILY` through :func:`astrid_pipeline.ml.train.train_model`
(the function the ``cr_model`` asset calls) with :data:`FAMILY_TRAIN`: the
same seed, batch size, learning rate and validation metric (TPR at 0.1 %
FPR), each architecture with its published loss (deepCR: BCE; Cosmic-CoNN:
median-weighted BCE; TransUNet: (1 - Dice + BCE) / 2), and the same budget
of process CPU seconds on one thread. Training resumes from ``resume.pt``
when interrupted; the models run one after another (``nice -n 19`` on a
shared machine). ``benchmarks/cosmic_rays_2d.py --family DIR`` then compares
them with astroscrappy and picks the one to ship.

Sizes: the four U-Nets have 8 channels at full resolution and 2 levels (the
shipped deepCR-style model's size); the TransUNet keeps the slides' small
transformer (hidden 60, MLP 64, 6 layers, 6 heads) but sits one level deeper
(3 levels, tokens at 1/8 resolution), because at 1/4 resolution its global
attention takes about 170 s on a 2048x2048 frame on 2 cores (measured),
against about 30 s at 1/8.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from astrid_pipeline.ml.models import ModelSpec
from astrid_pipeline.ml.train import TrainConfig

from .simulate import CRSimConfig

#: one training set for every family
FAMILY_DATA = CRSimConfig(image_size=256, patch=64, n_train=256, n_val=16, n_test=16, seed=1, test_seed=9_000_001)

#: the model configurations, named as the ``cr_model`` asset's partitions
FAMILY = {
    "deepcr": ModelSpec(architecture="deepcr", hidden=8, depth=2, attention=False),
    "att_deepcr": ModelSpec(architecture="deepcr", hidden=8, depth=2, attention=True),
    "cosmicconn": ModelSpec(architecture="cosmicconn", hidden=8, depth=2, attention=False),
    "att_cosmicconn": ModelSpec(architecture="cosmicconn", hidden=8, depth=2, attention=True),
    "transunet": ModelSpec(architecture="transunet", hidden=8, depth=3, attention=False),
}

#: the same settings and budget for every family (12 CPU minutes of one thread by default)
FAMILY_TRAIN = TrainConfig(epochs=10_000, batch_size=16, lr=2e-3, loss="", seed=0, val_metric="tpr_at_1e-3",
                           plateau_patience=3, plateau_factor=0.3, threads=1, cpu_budget_s=720.0, resume=True)


def train_family(work: str | Path, budget_s: float | None = None, only=None, log=print) -> dict:
    """Build the set (once) and train every family member into ``work/<name>/``; returns their summaries."""
    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.train import train_model

    from .dataset import build_training_set

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "training_set.h5"
    if not data.exists():
        s = build_training_set(FAMILY_DATA, data)
        atomic_write_text(work / "training_set.json", json.dumps(s, indent=1))
    cfg = FAMILY_TRAIN if budget_s is None else replace(FAMILY_TRAIN, cpu_budget_s=float(budget_s))
    out = {}
    for name, spec in FAMILY.items():
        if only and name not in only:
            continue
        if log:
            log(f"--- {name}: {spec.name}, budget {cfg.cpu_budget_s:.0f} CPU s on {cfg.threads} thread(s)")
        s = train_model(spec, cfg, data, work / name, log=log)
        out[name] = {k: s[k] for k in ("name", "parameters", "loss", "best_epoch", "best_val_metric", "steps_done",
                                       "epochs_done", "cpu_s", "stop_reason", "checkpoint")}
    atomic_write_text(work / "family.json", json.dumps({"data": FAMILY_DATA.as_dict(), "train": cfg.__dict__,
                                                       "models": out}, indent=1, default=str))
    return out


def ship_member(work: str | Path, name: str, out: str | Path, comparison: dict | None = None) -> Path:
    """Copy ``work/<name>/model.pt`` to ``out`` with a JSON card (command, seeds, settings, history, comparison)."""
    import shutil

    from astrid_pipeline.io.atomic import atomic_path, atomic_write_text

    work, out = Path(work), Path(out)
    src = work / name / "model.pt"
    summary = json.loads((work / name / "model.json").read_text())
    history = json.loads((work / name / "history.json").read_text())
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
    card = {"command": f"python -m astrid_pipeline.science.cosmic_rays.family --work {work} --budget-min "
                       f"{FAMILY_TRAIN.cpu_budget_s / 60:g}; python benchmarks/cosmic_rays_2d.py --family {work}",
            "family_member": name, "data_config": FAMILY_DATA.as_dict(), "spec": FAMILY[name].as_dict(),
            **{k: summary[k] for k in ("train_config", "parameters", "best_epoch", "val_metric", "best_val_metric",
                                       "steps_done", "epochs_done", "cpu_s", "stop_reason")},
            "reproduce_exactly": f"TrainConfig(..., cpu_budget_s=0, max_steps={summary['steps_done']})",
            "history": history, "comparison": comparison or {}}
    atomic_write_text(out.with_suffix(".json"), json.dumps(card, indent=1, default=str))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="folder for the training set and the trained models")
    ap.add_argument("--budget-min", type=float, default=FAMILY_TRAIN.cpu_budget_s / 60,
                    help="CPU minutes per model (process time, one thread)")
    ap.add_argument("--only", nargs="*", default=None, help=f"train only these of {list(FAMILY)}")
    ap.add_argument("--ship", default="", help="copy this trained member to --out (with its card) instead of training")
    ap.add_argument("--out", default="", help="where --ship writes the weights")
    ap.add_argument("--comparison", default="", help="JSON file of the benchmark comparison to keep in the card")
    args = ap.parse_args(argv)
    if args.ship:
        comp = json.loads(Path(args.comparison).read_text()) if args.comparison else None
        print(ship_member(args.work, args.ship, args.out, comp))
        return 0
    res = train_family(args.work, args.budget_min * 60, args.only)
    print(json.dumps({k: {kk: v[kk] for kk in ("best_val_metric", "epochs_done", "cpu_s")} for k, v in res.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
