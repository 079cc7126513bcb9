"""Training a 2-D CR network on the simulated HDF5 training set.

Adam; the learning rate drops by ``plateau_factor`` when the validation loss
has not improved for ``plateau_patience`` epochs (ReduceLROnPlateau, as the
attention-CR paper does); the kept checkpoint is the epoch with the best
validation *detection* metric (by default TPR at 0.1 % FPR on the
validation pixels; pixel accuracy is useless when 97 % of pixels are sky).
Mini-batches, their order and the flip/rotation augmentation come from one
``numpy`` generator and torch's global seed, both set from ``seed``: the same
seed and data give bit-identical weights on the same machine.

A CPU-time budget (``cpu_budget_s``: process CPU seconds of the training
loop, forward, backward and validation, all threads counted) stops training
after the batch that spends it; the partial epoch is validated and kept if
best. A budgeted run is not bit-reproducible by itself (CPU time varies), so
the summary records ``steps_done``: ``max_steps=steps_done`` with no budget
reproduces it exactly. With ``resume=True`` an interrupted run continues
from ``resume.pt`` (written after every epoch: weights, optimiser, scheduler,
both random states, history and CPU time spent so far).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from astrid_pipeline.errors import ConfigError

from .models import ModelSpec, build_model, default_loss, parameter_count

VAL_METRICS = ("tpr_at_1e-3", "tpr_at_1e-4", "average_precision", "purity_at_95")


@dataclass
class TrainConfig:
    """How a 2-D CR network is trained (every field is a setting of the ``cr_model`` asset)."""

    epochs: int = field(default=6, metadata={"description": "maximum number of epochs"})
    batch_size: int = field(default=16, metadata={"description": "patches per batch"})
    lr: float = field(default=2e-3, metadata={"description": "Adam learning rate"})
    loss: str = field(default="", metadata={"description": "bce, median_weighted_bce or dice_bce; empty = the architecture's default"})
    seed: int = field(default=0, metadata={"description": "weight init, batch order and augmentation seed"})
    max_train_patches: int = field(default=0, metadata={"description": "use only the first N training patches (0 = all)"})
    val_metric: str = field(default="tpr_at_1e-3", metadata={"description": "validation metric that picks the kept epoch"})
    plateau_patience: int = field(default=2, metadata={"description": "epochs without validation-loss gain before the LR drops"})
    plateau_factor: float = field(default=0.1, metadata={"description": "LR multiplier on a plateau"})
    augment: bool = field(default=True, metadata={"description": "random 90-degree rotations and flips"})
    threads: int = field(default=0, metadata={"description": "torch CPU threads (0 = torch default)"})
    cpu_budget_s: float = field(default=0.0, metadata={"description": "stop after this many CPU seconds of training (process time, all threads; 0 = no budget)"})
    max_steps: int = field(default=0, metadata={"description": "stop after this many optimiser steps (0 = no limit); reproduces a budgeted run"})
    resume: bool = field(default=False, metadata={"description": "continue from resume.pt in the output folder when it exists"})

    def validate(self) -> "TrainConfig":
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
        if self.val_metric not in VAL_METRICS:
            raise ConfigError(f"val_metric {self.val_metric!r}: one of {VAL_METRICS}")
        if self.cpu_budget_s < 0 or self.max_steps < 0:
            raise ConfigError("cpu_budget_s and max_steps must be >= 0")
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

    from astrid_pipeline.ml.metrics import score_curve, summarize

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
    from astrid_pipeline.io.hdf5_io import read_group_arrays

    from .checkpoint import save_checkpoint
    from .losses import get_loss

    cfg.validate()
    loss_name = cfg.loss or default_loss(spec)
    loss_fn = get_loss(loss_name)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tr = read_group_arrays(data_path, "train", "a training set")
    va = read_group_arrays(data_path, "val", "a training set")
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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    resume_path = out / "resume.pt"
    history: list[dict] = []
    cpu_per_epoch: list[float] = []  # CPU seconds spent at the end of each epoch (not in history: it varies run to run)
    best, best_state, best_epoch = -np.inf, None, -1
    start_epoch, steps, cpu_before = 1, 0, 0.0
    if cfg.resume and resume_path.exists():
        st = torch.load(resume_path, map_location="cpu", weights_only=True)
        if st.get("spec") != spec.as_dict():
            raise ConfigError(f"{resume_path}: was written for {st.get('spec')}, not {spec.as_dict()}")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        rng.bit_generator.state = json.loads(st["numpy_rng"])
        torch.set_rng_state(st["torch_rng"])
        history, best, best_epoch = json.loads(st["history"]), float(st["best"]), int(st["best_epoch"])
        cpu_per_epoch = json.loads(st["cpu_per_epoch"])
        best_state = st["best_state"]
        start_epoch, steps, cpu_before = int(st["epoch"]) + 1, int(st["steps"]), float(st["cpu_s"])
        if log:
            log(f"resumed from {resume_path} after epoch {start_epoch - 1} ({steps} steps, {cpu_before:.0f} CPU s)")
    cpu0 = time.process_time()

    def spent() -> float:
        return cpu_before + time.process_time() - cpu0

    def exhausted() -> bool:
        return bool((cfg.cpu_budget_s and spent() >= cfg.cpu_budget_s) or (cfg.max_steps and steps >= cfg.max_steps))

    stop_reason = "epochs"
    for epoch in range(start_epoch, cfg.epochs + 1):
        if exhausted():
            stop_reason = "cpu_budget" if cfg.cpu_budget_s and spent() >= cfg.cpu_budget_s else "max_steps"
            break
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
            steps += 1
            if exhausted():
                break
        val = _evaluate(model, loss_fn, xv, yv, wv)
        sched.step(val["loss"])
        row = {"epoch": epoch, "train_loss": run / max(nb, 1), "val_loss": val["loss"],
               **{f"val_{k}": v for k, v in val.items() if k != "loss"}, "lr": opt.param_groups[0]["lr"],
               "steps": steps}
        history.append(row)
        cpu_per_epoch.append(round(spent(), 2))
        score = val[cfg.val_metric]
        if score > best or best_state is None:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if log:
            log(f"epoch {epoch}: train {row['train_loss']:.4f} val {row['val_loss']:.4f} "
                f"{cfg.val_metric} {score:.4f} lr {row['lr']:.2g} steps {steps} cpu {cpu_per_epoch[-1]:.0f}s")
        _save_resume(resume_path, spec, model, opt, sched, rng, history, cpu_per_epoch, best, best_epoch, best_state,
                     epoch, steps, spent())
        if exhausted():
            stop_reason = "cpu_budget" if cfg.cpu_budget_s and spent() >= cfg.cpu_budget_s else "max_steps"
            break
    model.load_state_dict(best_state)
    summary = {"spec": spec.as_dict(), "name": spec.name, "train_config": asdict(cfg), "loss": loss_name,
               "parameters": n_params, "best_epoch": best_epoch, "best_val_metric": float(best),
               "val_metric": cfg.val_metric, "n_train_patches": int(len(xt)), "n_val_patches": int(len(xv)),
               "data": str(data_path), "steps_done": int(steps), "epochs_done": len(history),
               "cpu_s": round(spent(), 2), "cpu_s_per_epoch": cpu_per_epoch, "stop_reason": stop_reason}
    ckpt = save_checkpoint(out / "model.pt", model, spec, extra={"summary_json": json.dumps(summary)})
    atomic_write_text(out / "history.json", json.dumps(history, indent=1))
    atomic_write_text(out / "model.json", json.dumps(summary, indent=1))
    plot = plot_history(history, out / "training_curves.png", cfg.val_metric, spec.name)
    summary.update(checkpoint=str(ckpt), history=history, plot=str(plot))
    return summary


def _save_resume(path, spec, model, opt, sched, rng, history, cpu_per_epoch, best, best_epoch, best_state, epoch, steps,
                 cpu_s):
    """Everything needed to continue training after ``epoch`` (weights-only loadable)."""
    import torch

    from astrid_pipeline.io.atomic import atomic_path

    payload = {"spec": spec.as_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
               "scheduler": sched.state_dict(), "numpy_rng": json.dumps(rng.bit_generator.state),
               "torch_rng": torch.get_rng_state(), "history": json.dumps(history),
               "cpu_per_epoch": json.dumps(cpu_per_epoch), "best": float(best),
               "best_epoch": int(best_epoch), "best_state": best_state, "epoch": int(epoch), "steps": int(steps),
               "cpu_s": float(cpu_s)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def plot_history(history: list[dict], path: Path, metric: str, title: str) -> Path:
    curves = {k[4:]: [h[k] for h in history] for k in ("val_tpr_at_1e-4", "val_tpr_at_1e-3", "val_average_precision")}
    return plot_training_curves(history, path, curves, f"validation (best by {metric})", title, ylim=(0, 1))


def plot_training_curves(history: list[dict], path: Path, curves: dict, ylabel: str, title: str, *,
                         logy: bool = False, ylim=None) -> Path:
    """Loss per epoch (train, validation) beside validation curves ``{label: values per epoch}``; PNG, atomic."""
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
    for label, values in curves.items():
        (ax[1].semilogy if logy else ax[1].plot)(ep, values, "o-", label=label)
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel(ylabel)
    if ylim is not None:
        ax[1].set_ylim(*ylim)
    ax[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return Path(path)
