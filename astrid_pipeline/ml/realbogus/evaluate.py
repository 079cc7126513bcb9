"""Evaluation of a real/bogus classifier on a held-out set, with the numbers surveys publish.

- ROC and precision-recall curves of the score (real = positive), the area
  under the ROC;
- FPR at 95 % TPR (the bogus fraction let through when 95 % of reals are
  kept) and FNR at 1 % FPR (the reals lost when 1 % of bogus pass), as in
  Duev et al. 2019 (braai) and Mahabal et al. 2019;
- at the operating threshold: recall of every real type, and the rejection
  rate of every bogus type; recall per S/N bin;
- the confusion matrix of the type head on the reals (true type x predicted
  type);
- the calibration (reliability) curve: fraction real per score bin.

The curve arithmetic is :mod:`astrid_pipeline.ml.metrics`'s
(the same ROC code as the CR metrics).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

SNR_BINS = (0.0, 6.0, 8.0, 12.0, 20.0, 50.0, np.inf)


def roc_metrics(score: np.ndarray, truth: np.ndarray) -> dict:
    """AUC, FPR at 95 % TPR, FNR at 1 % FPR, the score thresholds there, and the curves."""
    from astrid_pipeline.ml.metrics import score_curve

    s = np.asarray(score, float)
    y = np.asarray(truth, bool)
    c = score_curve(s, y, max_points=100_000)
    f = np.r_[0.0, c.fpr, 1.0]
    t = np.r_[0.0, c.tpr, 1.0]
    auc = float(np.trapezoid(t, f))
    i95 = int(np.argmax(c.tpr >= 0.95)) if (c.tpr >= 0.95).any() else len(c.tpr) - 1
    return {"auc": auc, "fpr_at_95tpr": float(c.fpr[i95]), "threshold_at_95tpr": float(c.thresholds[i95]),
            "fnr_at_1fpr": float(1.0 - c.tpr_at_fpr(0.01)), "average_precision": c.average_precision(),
            "n_real": int(y.sum()), "n_bogus": int((~y).sum()), "curve": c}


def calibration_curve(score: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(score, edges) - 1, 0, bins - 1)
    mean_p, frac, n = [], [], []
    for b in range(bins):
        sel = idx == b
        n.append(int(sel.sum()))
        mean_p.append(float(score[sel].mean()) if sel.any() else float("nan"))
        frac.append(float(np.asarray(truth)[sel].mean()) if sel.any() else float("nan"))
    ok = np.array(n) > 0
    ece = float(np.nansum(np.abs(np.array(mean_p) - np.array(frac))[ok] * np.array(n)[ok]) / max(sum(n), 1))
    return {"bin_edges": edges.tolist(), "mean_score": mean_p, "fraction_real": frac, "n": n,
            "expected_calibration_error": ece}


def evaluate_scores(rb: np.ndarray, type_probs: np.ndarray, table: pd.DataFrame, real_types, threshold: float) -> dict:
    """Every number of the module docstring for scores ``rb`` of the rows of ``table`` (label, type, snr)."""
    y = table["label"].to_numpy() == 1
    roc = roc_metrics(rb, y)
    curve = roc.pop("curve")
    passed = rb >= threshold
    per_type = {}
    for t, g in table.groupby("type"):
        sel = g.index.to_numpy()
        if (g["label"] == 1).all():
            per_type[t] = {"n": int(len(sel)), "recall": float(passed[sel].mean())}
        else:
            per_type[t] = {"n": int(len(sel)), "rejected": float((~passed[sel]).mean())}
    snr = np.abs(table["snr"].to_numpy(float))
    by_snr = {}
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:]):
        sel = y & (snr >= lo) & (snr < hi)
        if sel.any():
            by_snr[f"{lo:g}-{hi:g}"] = {"n": int(sel.sum()), "recall": float(passed[sel].mean())}
    real_types = list(real_types)
    conf = np.zeros((len(real_types), len(real_types)), int)
    pred = np.argmax(type_probs, axis=1) if len(type_probs) else np.zeros(0, int)
    for k in np.nonzero(y)[0]:
        t = table["type"].iloc[k]
        if t in real_types:
            conf[real_types.index(t), pred[k]] += 1
    type_acc = float(np.trace(conf) / max(conf.sum(), 1))
    return {**roc, "threshold": float(threshold), "tpr_at_threshold": float(passed[y].mean()) if y.any() else float("nan"),
            "fpr_at_threshold": float(passed[~y].mean()) if (~y).any() else float("nan"),
            "per_type": per_type, "per_type_recall": {t: v["recall"] for t, v in per_type.items() if "recall" in v},
            "recall_by_snr": by_snr, "type_confusion": {"types": real_types, "matrix": conf.tolist()},
            "type_accuracy": type_acc, "calibration": calibration_curve(rb, y),
            "roc": {"fpr": curve.fpr[:: max(1, len(curve.fpr) // 300)].tolist(),
                    "tpr": curve.tpr[:: max(1, len(curve.tpr) // 300)].tolist(),
                    "precision": curve.precision[:: max(1, len(curve.precision) // 300)].tolist()}}


def evaluate_realbogus(model, triplets: np.ndarray, table: pd.DataFrame, threshold: float | None = None,
                       plot_dir: str | os.PathLike | None = None, threads: int | None = None) -> dict:
    """Score ``triplets`` with ``model`` (network, checkpoint path or None for the shipped weights) and evaluate.

    ``threshold`` defaults to the checkpoint's operating threshold (95 % TPR
    on its validation split), else 0.5.
    """
    import time

    from .score import load_realbogus, score_triplets

    payload = {}
    if model is None or isinstance(model, (str, os.PathLike)):
        model, payload = load_realbogus(model)
    real_types = payload.get("types") or ["supernova", "variable", "nova", "asteroid", "asteroid_trailed"]
    thr = threshold if threshold is not None else float(payload.get("threshold", 0.5))
    table = table.reset_index(drop=True)
    t0 = time.perf_counter()
    rb, tp = score_triplets(model, triplets, table["sign"].to_numpy() if "sign" in table else None, threads=threads)
    seconds = time.perf_counter() - t0
    out = evaluate_scores(rb, tp, table, real_types, thr)
    out["seconds_per_1000"] = 1000.0 * seconds / max(len(rb), 1)
    if plot_dir is not None:
        out["plots"] = plot_evaluation(out, Path(plot_dir))
    return out


def plot_evaluation(ev: dict, out_dir: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrid_pipeline.io.atomic import atomic_path

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.8))
    f, t = np.array(ev["roc"]["fpr"]), np.array(ev["roc"]["tpr"])
    ax[0].semilogx(np.clip(f, 1e-4, 1), t)
    ax[0].axhline(0.95, color="grey", lw=0.5)
    ax[0].axvline(0.01, color="grey", lw=0.5)
    ax[0].set_xlabel("false positive rate (bogus kept)")
    ax[0].set_ylabel("true positive rate (reals kept)")
    ax[0].set_title(f"ROC, AUC {ev['auc']:.4f}")
    ax[1].plot(t, ev["roc"]["precision"])
    ax[1].set_xlabel("recall")
    ax[1].set_ylabel("precision")
    ax[1].set_title("precision-recall")
    cal = ev["calibration"]
    ax[2].plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax[2].plot(cal["mean_score"], cal["fraction_real"], "o-")
    ax[2].set_xlabel("mean score")
    ax[2].set_ylabel("fraction real")
    ax[2].set_title(f"calibration, ECE {cal['expected_calibration_error']:.3f}")
    conf = np.array(ev["type_confusion"]["matrix"], float)
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    ax[3].imshow(norm, vmin=0, vmax=1, cmap="Blues")
    types = ev["type_confusion"]["types"]
    ax[3].set_xticks(range(len(types)), [s[:9] for s in types], rotation=45, fontsize=7)
    ax[3].set_yticks(range(len(types)), [s[:9] for s in types], fontsize=7)
    ax[3].set_title("type confusion (rows: truth)")
    for i in range(len(types)):
        for j in range(len(types)):
            ax[3].text(j, i, f"{int(conf[i, j])}", ha="center", va="center", fontsize=7)
    fig.tight_layout()
    path = out_dir / "realbogus_evaluation.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return {"evaluation": str(path)}
