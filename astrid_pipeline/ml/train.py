"""Training a 2-D CR network on the simulated HDF5 training set.

Adam; the learning rate drops by ``plateau_factor`` when the validation loss
has not improved for ``plateau_patience`` epochs (ReduceLROnPlateau, as the
attention-CR paper does); the kept checkpoint is the epoch with the best
validation *detection* metric (by default TPR at 0.1 % FPR on the
validation pixels; pixel accuracy is useless when 97 % of pixels are sky).
Mini-batches, their order and the flip/rotation augmentation come from one
``numpy`` generator and torch's global seed, both set from ``seed``: the same
seed and data give bit-identical weights on the same machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from astrid_pipeline.errors import ConfigError

from .models import ModelSpec, build_model, default_loss, parameter_count

VAL_METRICS = ("tpr_at_1e-3", "tpr_at_1e-4", "average_precision", "purity_at_95")


@dataclass
class TrainConfig:
    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-3
    loss: str = ""  # "" = the architecture's default (median_weighted_bce for cosmicconn, dice_bce otherwise)
    seed: int = 0
    max_train_patches: int = 0  # 0 = all
    val_metric: str = "tpr_at_1e-3"
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    augment: bool = True
    threads: int = 0  # 0 = torch default

    def validate(self) -> "TrainConfig":
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
        if self.val_metric not in VAL_METRICS:
            raise ConfigError(f"val_metric {self.val_metric!r}: one of {VAL_METRICS}")
        return self


def _augment(rng, x, y, w):
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in (x, y, w):
        a = np.rot90(a, k, axes=(1, 2))
        if flip:
            a = a[:, :, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def _evaluate(model, loss_fn, x, y, w, batch=32):
    import torch

    from astrid_pipeline.science.cosmic_rays.metrics import score_curve, summarize

    model.eval()
    probs, total = [], 0.0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch, None])
            yb = torch.from_numpy(y[i:i + batch, None].astype(np.float32))
            wb = torch.from_numpy(w[i:i + batch, None])
            logits = model(xb)
            total += float(loss_fn(logits, yb, wb)) * len(xb)
            probs.append(torch.sigmoid(logits)[:, 0].numpy())
    p = np.concatenate(probs)
    m = summarize(score_curve(p, y.astype(bool)))
    m["loss"] = total / len(x)
    return m


def train_model(spec: ModelSpec, cfg: TrainConfig, data_path: str | os.PathLike, out_dir: str | os.PathLike,
                log=None) -> dict:
    """Train, keep the best epoch, write ``model.pt``, ``history.json``, ``training_curves.png``; return a summary."""
    import torch

    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.science.cosmic_rays.dataset import load_split

    from .checkpoint import save_checkpoint
    from .losses import get_loss

    cfg.validate()
    loss_name = cfg.loss or default_loss(spec)
    loss_fn = get_loss(loss_name)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tr = load_split(data_path, "train")
    va = load_split(data_path, "val")
    xt, yt, wt = tr["x"].astype(np.float32), tr["y"].astype(np.float32), tr["w"].astype(np.float32)
    if cfg.max_train_patches:
        xt, yt, wt = xt[:cfg.max_train_patches], yt[:cfg.max_train_patches], wt[:cfg.max_train_patches]
    xv, yv, wv = va["x"].astype(np.float32), va["y"], va["w"].astype(np.float32)

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(spec)
    n_params = parameter_count(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.plateau_factor,
                                                       patience=cfg.plateau_patience, threshold=1e-3)
    history = []
    best, best_state, best_epoch = -np.inf, None, -1
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = rng.permutation(len(xt))
        run, nb = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[i:i + cfg.batch_size])
            xb, yb, wb = xt[idx], yt[idx], wt[idx]
            if cfg.augment:
                xb, yb, wb = _augment(rng, xb, yb, wb)
            xb, yb, wb = (torch.from_numpy(a[:, None]) for a in (xb, yb, wb))
            opt.zero_grad()
            loss = loss_fn(model(xb), yb, wb)
            loss.backward()
            opt.step()
            run += float(loss.detach())
            nb += 1
        val = _evaluate(model, loss_fn, xv, yv, wv)
        sched.step(val["loss"])
        row = {"epoch": epoch, "train_loss": run / max(nb, 1), "val_loss": val["loss"],
               **{f"val_{k}": v for k, v in val.items() if k != "loss"}, "lr": opt.param_groups[0]["lr"]}
        history.append(row)
        score = val[cfg.val_metric]
        if score > best or best_state is None:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if log:
            log(f"epoch {epoch}: train {row['train_loss']:.4f} val {row['val_loss']:.4f} "
                f"{cfg.val_metric} {score:.4f} lr {row['lr']:.2g}")
    model.load_state_dict(best_state)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"spec": spec.as_dict(), "name": spec.name, "train_config": asdict(cfg), "loss": loss_name,
               "parameters": n_params, "best_epoch": best_epoch, "best_val_metric": float(best),
               "val_metric": cfg.val_metric, "n_train_patches": int(len(xt)), "n_val_patches": int(len(xv)),
               "data": str(data_path)}
    ckpt = save_checkpoint(out / "model.pt", model, spec, extra={"summary_json": json.dumps(summary)})
    atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    atomic_write_text(out / "model.json", json.dumps(summary, indent=1))
    plot = plot_history(history, out / "training_curves.png", cfg.val_metric, spec.name)
    summary.update(checkpoint=str(ckpt), history=history, plot=str(plot))
    return summary


def plot_history(history: list[dict], path: Path, metric: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrid_pipeline.io.atomic import atomic_path

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    ax[0].plot(ep, [h["val_loss"] for h in history], "s-", label="validation")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss")
    ax[0].legend()
    for k in ("val_tpr_at_1e-4", "val_tpr_at_1e-3", "val_average_precision"):
        ax[1].plot(ep, [h[k] for h in history], "o-", label=k[4:])
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel(f"validation (best by {metric})")
    ax[1].set_ylim(0, 1)
    ax[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)
