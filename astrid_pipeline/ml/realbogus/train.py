"""Training the real/bogus network on a triplet set (:mod:`astrid_pipeline.sky.triplet_set`).

Loss: binary cross-entropy of the real/bogus logit, the classes weighted to
balance (the set has several bogus per real), plus ``type_weight`` times
the cross-entropy of the type head on the reals only. Adam with weight
decay; the learning rate drops by ``plateau_factor`` when the validation
loss stalls; augmentation by the 8 rotations/flips of the square (a triplet
has no preferred orientation). The kept epoch has the lowest validation FPR
at 95 % TPR (ties: the higher AUC). Its operating threshold, the score at
95 % TPR on the validation split as :func:`~.score.score_normalized` gives it
(8-orientation averaging included), is stored with the weights
(:func:`operating_threshold`).

Batches, their order and the augmentation come from one numpy generator
and torch's seed, both from ``seed``; a ``cpu_budget_s`` (process CPU
seconds) stops training after the epoch that spends it, and the summary
records the epochs done, so ``epochs=<epochs_done>`` with no budget
reproduces the run exactly on the same machine and thread count.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.setting import setting


@dataclass
class RBTrainConfig:
    """How the real/bogus network is trained (every field is a setting of the training asset)."""

    epochs: int = setting(30, "maximum number of epochs")
    batch_size: int = setting(64, "triplets per batch")
    lr: float = setting(1e-3, "Adam learning rate")
    weight_decay: float = setting(1e-4, "Adam weight decay")
    type_weight: float = setting(0.3, "weight of the type-head cross-entropy (reals only)")
    seed: int = setting(0, "weight init, batch order and augmentation seed")
    plateau_patience: int = setting(3, "epochs without validation-loss gain before the LR drops")
    plateau_factor: float = setting(0.3, "LR multiplier on a plateau")
    augment: bool = setting(True, "random rotations by 90 degrees and flips")
    threads: int = setting(1, "torch CPU threads (0 = torch default)")
    cpu_budget_s: float = setting(0.0, "stop after the epoch that reaches this many CPU seconds (0 = no budget)")
    exclude_near_real_px: float = setting(8.0, "leave out bogus within this many px of a real candidate (duplicates)")
    max_train: int = setting(0, "use at most this many training triplets (0 = all; for quick experiments)")

    def validate(self) -> "RBTrainConfig":
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0 or self.type_weight < 0:
            raise ConfigError("epochs and batch_size must be >= 1, lr > 0 and type_weight >= 0")
        return self


def _dihedral(rng, x):
    k = int(rng.integers(4))
    x = np.rot90(x, k, axes=(2, 3))
    if rng.integers(2):
        x = x[:, :, :, ::-1]
    return np.ascontiguousarray(x)


def _type_targets(table, real_types):
    idx = {t: i for i, t in enumerate(real_types)}
    return np.array([idx.get(t, -1) for t in table["type"]], np.int64)


def _val_pass(model, x, y, yt, loss_fn, batch=256):
    import torch

    model.eval()
    rbs, tps, total = [], [], 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            lr, lt = model(torch.from_numpy(x[i:i + batch]))
            total += float(loss_fn(lr, lt, torch.from_numpy(y[i:i + batch]), torch.from_numpy(yt[i:i + batch]))) * len(lr)
            rbs.append(torch.sigmoid(lr).numpy())
            tps.append(torch.softmax(lt, 1).numpy())
    return np.concatenate(rbs), np.concatenate(tps), total / max(len(x), 1)


def train_realbogus(data_path, out_dir: str | os.PathLike, cfg: RBTrainConfig | None = None,
                    model_cfg=None, log=None) -> dict:
    """Train on the ``train`` split of a triplet set (or of several: a list of paths), keep the best epoch on
    ``val``; write weights, history and the loss plot; return a summary."""
    import pandas as pd
    import torch
    from torch.nn import functional as F

    from astrid_pipeline.io.atomic import atomic_write_text
    from .dataset import REAL_TYPES, load_triplet_set

    from .evaluate import roc_metrics
    from .model import RBModelConfig, RealBogusNet, parameter_count
    from .normalize import normalize_triplets
    from .score import save_realbogus

    cfg = (cfg or RBTrainConfig()).validate()
    model_cfg = model_cfg or RBModelConfig(n_types=len(REAL_TYPES))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)

    def load(split):
        parts = [load_triplet_set(p, split, cfg.exclude_near_real_px) for p in paths]
        return (np.concatenate([a for a, _ in parts]),
                pd.concat([t for _, t in parts], ignore_index=True))

    tr_x, tr_t = load("train")
    va_x, va_t = load("val")
    if cfg.max_train and len(tr_t) > cfg.max_train:
        sel = np.sort(np.random.default_rng(cfg.seed).choice(len(tr_t), cfg.max_train, replace=False))
        tr_x, tr_t = tr_x[sel], tr_t.iloc[sel].reset_index(drop=True)
    if len(tr_t) == 0 or len(va_t) == 0 or tr_t["label"].nunique() < 2 or va_t["label"].nunique() < 2:
        raise ConfigError(f"{paths}: the train and val splits need both real and bogus triplets "
                          f"(train {len(tr_t)}, val {len(va_t)})")
    xt, _ = normalize_triplets(tr_x, tr_t["sign"].to_numpy())
    xv, _ = normalize_triplets(va_x, va_t["sign"].to_numpy())
    del tr_x, va_x
    yt = tr_t["label"].to_numpy(np.float32)
    yv = va_t["label"].to_numpy(np.float32)
    tt = _type_targets(tr_t, REAL_TYPES)
    tv = _type_targets(va_t, REAL_TYPES)
    pos_weight = float((yt == 0).sum() / max((yt == 1).sum(), 1))

    def loss_fn(lr, lt, y, ty):
        w = torch.where(y > 0.5, torch.full_like(y, pos_weight), torch.ones_like(y))
        loss = (F.binary_cross_entropy_with_logits(lr, y, reduction="none") * w).sum() / w.sum()
        real = ty >= 0
        if cfg.type_weight and bool(real.any()):
            loss = loss + cfg.type_weight * F.cross_entropy(lt[real], ty[real])
        return loss

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = RealBogusNet(model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor,
                                                       patience=cfg.plateau_patience)
    history, cpu_per_epoch = [], []
    best_key, best_state, best_epoch, best_thr = None, None, -1, 0.5
    cpu0 = time.process_time()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(xt))
        run, nb = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[i:i + cfg.batch_size])
            xb = _dihedral(rng, xt[idx]) if cfg.augment else xt[idx]
            opt.zero_grad()
            lr, lt = model(torch.from_numpy(xb))
            loss = loss_fn(lr, lt, torch.from_numpy(yt[idx]), torch.from_numpy(tt[idx]))
            loss.backward()
            opt.step()
            run += float(loss.detach())
            nb += 1
        rb, tp, vloss = _val_pass(model, xv, yv, tv, loss_fn)
        sched.step(vloss)
        m = roc_metrics(rb, yv > 0.5)
        real = tv >= 0
        type_acc = float((np.argmax(tp[real], 1) == tv[real]).mean()) if real.any() else float("nan")
        row = {"epoch": epoch, "train_loss": run / max(nb, 1), "val_loss": vloss, "val_auc": m["auc"],
               "val_fpr_at_95tpr": m["fpr_at_95tpr"], "val_fnr_at_1fpr": m["fnr_at_1fpr"],
               "val_type_accuracy": type_acc, "lr": opt.param_groups[0]["lr"]}
        history.append(row)
        cpu_per_epoch.append(round(time.process_time() - cpu0, 1))
        key = (m["fpr_at_95tpr"], -m["auc"])
        if best_key is None or key < best_key:
            best_key, best_epoch, best_thr = key, epoch, m["threshold_at_95tpr"]
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if log:
            log(f"epoch {epoch}: train {row['train_loss']:.4f} val {vloss:.4f} AUC {m['auc']:.4f} "
                f"FPR@95%TPR {m['fpr_at_95tpr']:.4f} FNR@1%FPR {m['fnr_at_1fpr']:.4f} types {type_acc:.3f} "
                f"cpu {cpu_per_epoch[-1]:.0f}s")
        if cfg.cpu_budget_s and time.process_time() - cpu0 >= cfg.cpu_budget_s:
            break
    model.load_state_dict(best_state)
    best_thr = operating_threshold(model, xv, yv > 0.5)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"train_config": asdict(cfg), "model_config": model_cfg.as_dict(), "parameters": parameter_count(model),
               "best_epoch": best_epoch, "best_val_fpr_at_95tpr": best_key[0], "best_val_auc": -best_key[1],
               "threshold": best_thr, "epochs_done": len(history), "cpu_s": cpu_per_epoch[-1],
               "cpu_s_per_epoch": cpu_per_epoch, "n_train": int(len(yt)), "n_val": int(len(yv)),
               "train_real_fraction": float(yt.mean()), "pos_weight": pos_weight, "data": [str(p) for p in paths],
               "types": list(REAL_TYPES)}
    ckpt = save_realbogus(out / "realbogus.pt", model, types=REAL_TYPES, threshold=best_thr,
                          summary={**summary, "history": history})
    atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    atomic_write_text(out / "model.json", json.dumps(summary, indent=1))
    plot = plot_history(history, out / "training_curves.png")
    summary.update(checkpoint=str(ckpt), history=history, plot=str(plot))
    return summary


def operating_threshold(model, x_val: np.ndarray, is_real: np.ndarray) -> float:
    """The score at which 95 % of the validation reals pass, as the default scorer (with TTA) scores them."""
    from .evaluate import roc_metrics
    from .score import score_normalized

    rb, _ = score_normalized(model, x_val, tta=True)
    return float(roc_metrics(rb, np.asarray(is_real, bool))["threshold_at_95tpr"])


def plot_history(history: list[dict], path: Path) -> Path:
    from astrid_pipeline.ml.train import plot_training_curves

    curves = {"FPR at 95% TPR": [max(h["val_fpr_at_95tpr"], 1e-4) for h in history],
              "FNR at 1% FPR": [max(h["val_fnr_at_1fpr"], 1e-4) for h in history],
              "1 - AUC": [max(1 - h["val_auc"], 1e-5) for h in history]}
    return plot_training_curves(history, path, curves, "validation", "real/bogus training (validation split)",
                                logy=True)
