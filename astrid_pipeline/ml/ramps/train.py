"""Training the ramp 3D U-Net on temporal patches (ohana's ``train``), seeded, selected by per-class IoU.

:func:`train_unet` reads the patch files of :mod:`.patches`, keeps whole
exposures apart for validation (patches of one exposure overlap, so a
random patch split would leak), and trains with Adam on random crops
(``crop`` pixels, random flips and transposes) of the training patches.
The loss is class-weighted cross-entropy (weights ``f_c^-1/2`` from the
training labels: background is ~99 % of pixels) plus a soft Dice term per
anomaly class. After every epoch the whole validation patches are
predicted and the per-class IoU computed; the kept model is the epoch with
the best mean IoU over the three anomaly classes (pixel accuracy would
pick a model that calls everything background).

Products in ``out_dir`` (ohana's names): ``best_model_unet3d.pth`` (state
dict, network spec, training config and validation scores; load with
``torch.load(weights_only=True)``, :func:`astrid_pipeline.ml.ramps.infer.load_unet`),
``training_history_unet3d.json`` (loss and per-class IoU per epoch) and
``training_history_unet3d.png``. Batches, crops and initial weights come
from ``seed``: the same seed, data and thread count give the same weights
on the same machine. A GPU is used when present (``device="auto"``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from astrid_pipeline.errors import ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "best_model_unet3d.pth"
HISTORY_FILE = "training_history_unet3d.json"
PLOT_FILE = "training_history_unet3d.png"
FORMAT = "astrid-ramp-unet3d/1"
ANOMALY_CLASSES = ("cosmic_ray", "telegraph_noise", "snowball")


@dataclass(frozen=True)
class UNetTrainConfig:
    """How the ramp 3D U-Net is trained (every field a setting of the training asset and of ``train``)."""

    epochs: int = field(default=8, metadata={"description": "epochs (ohana's --epochs)"})
    batch_size: int = field(default=8, metadata={"description": "crops per batch (ohana's --batch_size)"})
    lr: float = field(default=2e-3, metadata={"description": "Adam learning rate"})
    seed: int = field(default=0, metadata={"description": "weight init, split, batch order and crop seed"})
    crop: int = field(default=32, metadata={"description": "side of the random training crops (px); 0 = whole patches"})
    steps_per_epoch: int = field(default=0, metadata={"description": "batches per epoch (0 = one crop per training patch)"})
    val_fraction: float = field(default=0.15, metadata={"description": "share of the exposures kept for validation"})
    hidden: int = field(default=8, metadata={"description": "network channels at full resolution"})
    depth: int = field(default=2, metadata={"description": "network levels"})
    dice_weight: float = field(default=0.5, metadata={"description": "weight of the soft Dice term"})
    threads: int = field(default=1, metadata={"description": "torch CPU threads (0 = torch default)"})
    device: str = field(default="auto", metadata={"description": "auto (GPU when present), cpu or cuda"})

    def validate(self) -> "UNetTrainConfig":
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ConfigError("epochs and batch_size must be >= 1 and lr > 0")
        if self.crop < 0 or (self.crop and self.crop % 4):
            raise ConfigError(f"crop must be 0 or a positive multiple of 4, got {self.crop}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        if self.hidden < 2 or self.depth < 1:
            raise ConfigError("hidden must be >= 2 and depth >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        return self


@dataclass
class TrainResult:
    """What :func:`train_unet` wrote, and the figures the training asset reports."""

    model_path: Path
    history_path: Path
    plot_path: Path | None
    metadata: dict = field(default_factory=dict)


def pick_device(name: str = "auto"):
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for but torch sees no GPU")
        return torch.device("cuda")
    return torch.device("cpu")


class _Patches:
    """Index over the patch files: (file, row) per patch, grouped by exposure and by number of time bins."""

    def __init__(self, files: list[Path]):
        import h5py

        from astrid_pipeline.errors import BadShapeError, InputFileError

        self.files = files
        self.handles = []
        self.rows = []  # (file index, row)
        self.groups = []  # exposure key of each patch
        self.T = []
        for fi, p in enumerate(files):
            try:
                h = h5py.File(p, "r")
            except OSError as exc:
                raise InputFileError(p, f"cannot be opened as HDF5 ({exc})") from exc
            if "x" not in h or "y" not in h:
                h.close()
                raise BadShapeError(p, "is not a ramp training file (no /x and /y)")
            self.handles.append(h)
            n = h["y"].shape[0]
            det = h["detector"][()]
            exp = h["exposure"][()]
            for i in range(n):
                d = det[i].decode() if isinstance(det[i], bytes) else str(det[i])
                self.rows.append((fi, i))
                self.groups.append(f"{fi}/{d}/{int(exp[i])}")
                self.T.append(h["x"].shape[2])
        self.rows = np.array(self.rows, dtype=np.int64).reshape(-1, 2)
        self.groups = np.array(self.groups)
        self.T = np.array(self.T)

    def get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        fi, i = self.rows[k]
        h = self.handles[fi]
        return h["x"][i].astype(np.float32), h["y"][i].astype(np.int64)

    def close(self):
        for h in self.handles:
            h.close()


def class_weights(labels_count: np.ndarray) -> np.ndarray:
    """Cross-entropy class weights ``f_c^-1/2``, normalised to mean 1 (classes never seen get weight 1)."""
    f = labels_count / max(labels_count.sum(), 1)
    w = np.where(f > 0, 1.0 / np.sqrt(np.maximum(f, 1e-12)), 0.0)
    w = w / w[w > 0].mean() if (w > 0).any() else np.ones_like(w)
    w[w == 0] = 1.0
    return w.astype(np.float32)


def iou_per_class(conf: np.ndarray) -> dict:
    """Per-class IoU from a 4 x 4 confusion matrix (truth rows, prediction columns)."""
    names = ("background",) + ANOMALY_CLASSES
    out = {}
    for c, name in enumerate(names):
        tp = conf[c, c]
        den = conf[c, :].sum() + conf[:, c].sum() - tp
        out[name] = float(tp / den) if den > 0 else None
    return out


def _augment(rng, x: np.ndarray, y: np.ndarray):
    if rng.random() < 0.5:
        x, y = x[..., ::-1], y[..., ::-1]
    if rng.random() < 0.5:
        x, y = x[..., ::-1, :], y[..., ::-1, :]
    if rng.random() < 0.5:
        x, y = np.swapaxes(x, -1, -2), np.swapaxes(y, -1, -2)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _crop(rng, x, y, c: int):
    H, W = y.shape
    if not c or (c >= H and c >= W):
        return x, y
    r0 = int(rng.integers(0, max(H - c, 0) + 1))
    c0 = int(rng.integers(0, max(W - c, 0) + 1))
    return x[..., r0:r0 + c, c0:c0 + c], y[r0:r0 + c, c0:c0 + c]


def _loss_fn(torch, weights, dice_weight: float):
    import torch.nn.functional as F

    def loss(logits, target):
        ce = F.cross_entropy(logits, target, weight=weights)
        if dice_weight <= 0:
            return ce
        p = torch.softmax(logits, dim=1)
        oh = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
        inter = (p * oh).sum(dim=(0, 2, 3))
        den = p.sum(dim=(0, 2, 3)) + oh.sum(dim=(0, 2, 3))
        dice = 1 - (2 * inter + 1.0) / (den + 1.0)
        return ce + dice_weight * dice[1:].mean()

    return loss


def _plot(history: list[dict], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        return None
    from astrid_pipeline.io.atomic import atomic_path

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5), dpi=80)
    ax[0].plot(ep, [h["train_loss"] for h in history], label="train")
    ax[0].plot(ep, [h["val_loss"] for h in history], label="validation")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("loss")
    ax[0].legend()
    for name in ANOMALY_CLASSES:
        ax[1].plot(ep, [h["val_iou"].get(name) or 0.0 for h in history], label=name)
    ax[1].set_xlabel("epoch")
    ax[1].set_ylabel("validation IoU")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def train_unet(cfg: UNetTrainConfig, data, out_dir: str | os.PathLike, *, max_steps: int = 0,
               log_fn: Callable[[str], None] | None = None) -> TrainResult:
    """Train on the patch files in ``data`` (a folder or a list of files); write the products into ``out_dir``.

    ``max_steps`` (> 0) stops after that many optimiser steps in all (tests).
    """
    import torch

    from astrid_pipeline.io.atomic import atomic_path, atomic_write_text

    from .model import UNet3D, UNet3DSpec, parameter_count
    from .patches import training_files

    cfg.validate()
    say = log_fn or log.info
    files = training_files(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = pick_device(cfg.device)
    data_ = _Patches(files)
    try:
        groups = np.unique(data_.groups)
        if len(groups) < 2:
            raise ConfigError("the training set holds one exposure: validation needs at least two "
                              "(raise num_exposure_events or --end_index)")
        n_val = max(1, int(round(cfg.val_fraction * len(groups))))
        val_groups = set(rng.permutation(groups)[:n_val].tolist())
        is_val = np.array([g in val_groups for g in data_.groups])
        train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        counts = np.zeros(4, np.int64)
        for k in train_idx:
            fi, i = data_.rows[k]
            counts += np.bincount(data_.handles[fi]["y"][i].ravel(), minlength=4)[:4]
        weights = class_weights(counts)
        t_max = int(data_.handles[0].attrs.get("t_max", 32))
        spec = UNet3DSpec(hidden=cfg.hidden, depth=cfg.depth, t_max=t_max)
        model = UNet3D(spec).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        loss_fn = _loss_fn(torch, torch.tensor(weights, device=device), cfg.dice_weight)
        say(f"train: {len(train_idx)} patches, validation: {len(val_idx)} patches ({n_val} exposures), "
            f"{parameter_count(model)} parameters, device {device}, class weights {np.round(weights, 2).tolist()}")
        history: list[dict] = []
        best, best_state, best_epoch = -1.0, None, 0
        steps = 0
        t0 = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            n_steps = cfg.steps_per_epoch or max(1, len(train_idx) // cfg.batch_size)
            losses = []
            for _ in range(n_steps):
                # one time length per batch (files of different presets have different T)
                Ts = data_.T[train_idx]
                T = rng.choice(np.unique(Ts))
                pool = train_idx[Ts == T]
                pick = rng.choice(pool, size=cfg.batch_size, replace=len(pool) < cfg.batch_size)
                xs, ys = [], []
                for k in pick:
                    x, y = data_.get(int(k))
                    x, y = _crop(rng, x, y, cfg.crop)
                    x, y = _augment(rng, x, y)
                    xs.append(x)
                    ys.append(y)
                xb = torch.from_numpy(np.stack(xs)).to(device)
                yb = torch.from_numpy(np.stack(ys)).to(device)
                loss = loss_fn(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                steps += 1
                if max_steps and steps >= max_steps:
                    break
            val_loss, conf = _validate(torch, model, data_, val_idx, loss_fn, device)
            iou = iou_per_class(conf)
            score = float(np.mean([iou[c] or 0.0 for c in ANOMALY_CLASSES]))
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                            "val_iou": iou, "val_mean_anomaly_iou": score, "steps": steps,
                            "seconds": round(time.perf_counter() - t0, 1)})
            say(f"epoch {epoch}: train loss {np.mean(losses):.4f}, val loss {val_loss:.4f}, IoU "
                + ", ".join(f"{c} {iou[c] or 0:.3f}" for c in ANOMALY_CLASSES))
            if score > best:
                best, best_epoch = score, epoch
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if max_steps and steps >= max_steps:
                break
        payload = {
            "format": FORMAT, "spec": spec.as_dict(), "state_dict": best_state,
            "train_config": asdict(cfg), "best_epoch": best_epoch, "val_mean_anomaly_iou": best,
            "val_iou": history[best_epoch - 1]["val_iou"], "class_weights": weights.tolist(),
            "inputs": "asinh(z/3) of noise-normalised group differences, saturation flag (ml/ramps/features.py)",
            "training_files": [p.name for p in files],
        }
        model_path = out / CHECKPOINT_FILE
        with atomic_path(model_path) as tmp:
            torch.save(payload, tmp)
        hist_path = atomic_write_text(out / HISTORY_FILE, json.dumps({
            "history": history, "best_epoch": best_epoch, "selection": "mean IoU of cosmic_ray, telegraph_noise, snowball",
            "train_config": asdict(cfg), "spec": spec.as_dict(), "parameters": parameter_count(model),
            "train_patches": int(len(train_idx)), "val_patches": int(len(val_idx)),
            "class_pixels_train": counts.tolist()}, indent=1))
        plot_path = _plot(history, out / PLOT_FILE)
    finally:
        data_.close()
    return TrainResult(model_path=model_path, history_path=hist_path, plot_path=plot_path, metadata={
        "best_epoch": best_epoch, "val_mean_anomaly_iou": round(best, 4),
        "val_iou": {k: (None if v is None else round(v, 4)) for k, v in history[best_epoch - 1]["val_iou"].items()},
        "history": [{"epoch": h["epoch"], "train_loss": round(h["train_loss"], 5), "val_loss": round(h["val_loss"], 5),
                     "val_mean_anomaly_iou": round(h["val_mean_anomaly_iou"], 4)} for h in history],
        "parameters": parameter_count(model), "steps": steps, "device": str(device),
        "train_patches": int(len(train_idx)), "val_patches": int(len(val_idx)),
        "model_path": str(model_path), "seconds": round(time.perf_counter() - t0, 1),
    })


def _validate(torch, model, data_, idx, loss_fn, device):
    model.eval()
    conf = np.zeros((4, 4), np.int64)
    losses = []
    with torch.no_grad():
        for k in idx:
            x, y = data_.get(int(k))
            xb = torch.from_numpy(x[None]).to(device)
            yb = torch.from_numpy(y[None]).to(device)
            logits = model(xb)
            losses.append(float(loss_fn(logits, yb)))
            pred = logits.argmax(dim=1).cpu().numpy().ravel()
            conf += np.bincount(4 * y.ravel() + pred, minlength=16).reshape(4, 4)
    return float(np.mean(losses)) if losses else float("nan"), conf
