"""Pixel metrics astronomers publish for CR detectors (Bhavanam et al. 2022; Zhang & Bloom 2020).

- ROC (TPR vs FPR) and precision-recall curves from a score map (a network's
  probability) or from a set of binary masks (an algorithm swept over a
  parameter, e.g. LA-Cosmic's ``sigclip``);
- TPR at a fixed FPR (0.01 % and 0.1 %), purity (precision) at 95 % TPR;
- F1, IoU and FDR of one binary mask;
- the mask-dilation protocol for a fair comparison: the truth is dilated
  with a 3x3 kernel, and so is every method's output (for a score map, a
  3x3 maximum filter: the same as dilating the mask at every threshold).

Pixels where ``valid`` is False (NaN, saturated) are left out of every count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_K3 = np.ones((3, 3), bool)


def dilate(mask_or_score: np.ndarray, size: int = 3) -> np.ndarray:
    """3x3 dilation of a mask (or maximum filter of a score map), per 2-D plane."""
    a = np.asarray(mask_or_score)
    if a.ndim == 3:
        return np.stack([dilate(p, size) for p in a])
    if a.dtype == bool:
        return ndimage.binary_dilation(a, np.ones((size, size), bool))
    return ndimage.maximum_filter(a, size=size, mode="nearest")


@dataclass
class Curve:
    fpr: np.ndarray
    tpr: np.ndarray
    precision: np.ndarray
    thresholds: np.ndarray
    n_pos: int
    n_neg: int

    def tpr_at_fpr(self, target: float) -> float:
        """Highest TPR reachable at FPR <= target, interpolating linearly between operating points."""
        f = np.r_[0.0, self.fpr, 1.0]
        t = np.r_[0.0, self.tpr, 1.0]
        order = np.argsort(f, kind="stable")
        f, t = f[order], np.maximum.accumulate(t[order])
        return float(np.interp(target, f, t))

    def purity_at_tpr(self, target: float = 0.95) -> float:
        """Precision at the first operating point whose TPR reaches ``target`` (nan if none does)."""
        ok = self.tpr >= target
        if not ok.any():
            return float("nan")
        return float(np.max(self.precision[ok & (self.tpr == self.tpr[ok].min())]))

    def average_precision(self) -> float:
        order = np.argsort(self.tpr, kind="stable")
        r, p = self.tpr[order], self.precision[order]
        return float(np.sum(np.diff(np.r_[0.0, r]) * p))

    def as_dict(self, max_points: int = 200) -> dict:
        idx = np.unique(np.linspace(0, len(self.fpr) - 1, min(max_points, len(self.fpr))).astype(int))
        return {"fpr": self.fpr[idx].tolist(), "tpr": self.tpr[idx].tolist(),
                "precision": self.precision[idx].tolist(), "thresholds": self.thresholds[idx].tolist()}


def _flat(truth, valid):
    y = np.asarray(truth, bool).ravel()
    v = np.ones_like(y) if valid is None else np.asarray(valid, bool).ravel()
    return y, v


def score_curve(score: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None,
                max_points: int = 4000) -> Curve:
    """ROC and PR curves of a score map (higher = more CR-like) against a truth mask."""
    y, v = _flat(truth, valid)
    s = np.asarray(score, np.float64).ravel()[v]
    y = y[v]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each distinct score
    # keep every point at low FPR (where the metrics live), subsample the rest
    if last.size > max_points:
        fpr_all = fp[last] / max(n_neg, 1)
        low = last[fpr_all <= 1e-2]
        high = last[fpr_all > 1e-2]
        if low.size > max_points // 2:
            low = low[np.unique(np.linspace(0, low.size - 1, max_points // 2).astype(int))]
        if high.size > max_points // 2:
            high = high[np.unique(np.linspace(0, high.size - 1, max_points // 2).astype(int))]
        last = np.r_[low, high]
    tpr = tp[last] / max(n_pos, 1)
    fpr = fp[last] / max(n_neg, 1)
    prec = tp[last] / np.maximum(tp[last] + fp[last], 1)
    return Curve(fpr, tpr, prec, s[last], n_pos, n_neg)


def mask_curve(masks: list[np.ndarray], truth: np.ndarray, params, valid: np.ndarray | None = None) -> Curve:
    """Operating points of binary masks (one per parameter value) as a curve, sorted by FPR."""
    y, v = _flat(truth, valid)
    yv = y[v]
    n_pos, n_neg = int(yv.sum()), int((~yv).sum())
    pts = []
    for m, p in zip(masks, params):
        mm = np.asarray(m, bool).ravel()[v]
        tp = int((mm & yv).sum())
        fp = int((mm & ~yv).sum())
        pts.append((fp / max(n_neg, 1), tp / max(n_pos, 1), tp / max(tp + fp, 1), float(p)))
    pts.sort()
    a = np.array(pts, float).reshape(-1, 4)
    return Curve(a[:, 0], a[:, 1], a[:, 2], a[:, 3], n_pos, n_neg)


def binary_metrics(pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None) -> dict:
    """TP/FP/FN counts, TPR, FPR, precision, F1, IoU and FDR of one binary mask."""
    y, v = _flat(truth, valid)
    p = np.asarray(pred, bool).ravel()[v]
    y = y[v]
    tp = int((p & y).sum())
    fp = int((p & ~y).sum())
    fn = int((~p & y).sum())
    tn = int((~p & ~y).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    iou = tp / (tp + fp + fn) if (tp + fp + fn) else float("nan")
    fdr = fp / (tp + fp) if tp + fp else 0.0
    return dict(tp=tp, fp=fp, fn=fn, tn=tn, tpr=rec, fpr=fp / (fp + tn) if fp + tn else float("nan"),
                precision=prec, f1=f1, iou=iou, fdr=fdr)


def summarize(curve: Curve) -> dict:
    return {"tpr_at_1e-4": curve.tpr_at_fpr(1e-4), "tpr_at_1e-3": curve.tpr_at_fpr(1e-3),
            "purity_at_95": curve.purity_at_tpr(0.95), "average_precision": curve.average_precision()}


def apply_protocol(score: np.ndarray, truth: np.ndarray, protocol: str):
    """``"pixel"``: as is; ``"dilated"``: truth and output both dilated 3x3 (the paper's comparison)."""
    if protocol == "pixel":
        return score, truth
    if protocol == "dilated":
        return dilate(score), dilate(np.asarray(truth, bool))
    raise ValueError(f"unknown protocol {protocol!r}: use 'pixel' or 'dilated'")
