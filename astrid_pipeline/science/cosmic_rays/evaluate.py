"""Evaluation of CR detectors on the held-out test split, as the attention-CR paper reports them.

For every method: ROC and PR curves, TPR at 0.01 % and 0.1 % FPR, purity at
95 % TPR, and F1 / IoU / FDR at the operating point (threshold 0.5 for a
network; the chosen ``sigclip`` for L.A.Cosmic), under two protocols:
``pixel`` (truth as simulated) and ``dilated`` (truth and every output
dilated 3x3, the paper's fair comparison). L.A.Cosmic is swept over
``sigclip`` in the same run.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from astrid_pipeline.ml import metrics as M

from .lacosmic import DEFAULT_SIGCLIPS, sigclip_sweep

PROTOCOLS = ("pixel", "dilated")


def _row(method, protocol, curve, op):
    return {"method": method, "protocol": protocol, **M.summarize(curve),
            "f1": op["f1"], "iou": op["iou"], "fdr": op["fdr"], "tpr_op": op["tpr"], "fpr_op": op["fpr"]}


def evaluate_scores(name: str, score: np.ndarray, truth: np.ndarray, threshold: float = 0.5,
                    protocols=PROTOCOLS) -> tuple[list[dict], dict]:
    """Rows and curves for a continuous score (e.g. a network's probability)."""
    rows, curves = [], {}
    for proto in protocols:
        s, t = M.apply_protocol(score, truth, proto)
        c = M.score_curve(s, t)
        rows.append(_row(name, proto, c, M.binary_metrics(s >= threshold, t)))
        curves[(name, proto)] = c
    return rows, curves


def evaluate_masks(name: str, masks: list[np.ndarray], params, truth: np.ndarray, operating_param,
                   protocols=PROTOCOLS) -> tuple[list[dict], dict]:
    """Rows and curves for a family of binary masks (e.g. L.A.Cosmic over sigclip)."""
    rows, curves = [], {}
    params = list(params)
    for proto in protocols:
        ms = [M.apply_protocol(m, truth, proto)[0] for m in masks]
        t = M.apply_protocol(masks[0], truth, proto)[1]
        c = M.mask_curve(ms, t, params)
        op = M.binary_metrics(ms[params.index(operating_param)], t)
        rows.append(_row(name, proto, c, op))
        curves[(name, proto)] = c
    return rows, curves


def lacosmic_on_test(test: dict, sigclips=DEFAULT_SIGCLIPS, sigfrac: float = 0.3, objlim: float = 5.0) -> list[np.ndarray]:
    """One stacked (M, S, S) mask per sigclip over the test fields."""
    per_field = []
    for i in range(len(test["image"])):
        per_field.append(sigclip_sweep(test["image"][i], sigclips, gain=float(test["gain"][i]),
                                       read_noise=float(test["read_noise"][i]),
                                       saturation=float(test["saturation"][i]), sigfrac=sigfrac, objlim=objlim))
    return [np.stack([pf[k] for pf in per_field]) for k in range(len(sigclips))]


def evaluate_test_split(data_path: str | os.PathLike, checkpoints: dict[str, str | os.PathLike],
                        sigclips=DEFAULT_SIGCLIPS, operating_sigclip: float = 4.5, sigfrac: float = 0.3,
                        objlim: float = 5.0, threshold: float = 0.5, plot_dir: str | os.PathLike | None = None,
                        threads: int | None = None) -> dict:
    """All models in ``checkpoints`` and L.A.Cosmic on the test split; returns rows, curves and plot paths."""
    from astrid_pipeline.ml.checkpoint import load_checkpoint
    from astrid_pipeline.ml.inference import predict_normalized

    from astrid_pipeline.io.hdf5_io import read_group_arrays

    test = read_group_arrays(data_path, "test", "a training set")
    truth = test["y"].astype(bool)
    rows, curves, params = [], {}, {}
    for name, ck in checkpoints.items():
        model, spec, _ = load_checkpoint(ck)
        prob = np.stack([predict_normalized(model, x, threads=threads) for x in test["x"]])
        r, c = evaluate_scores(name, prob, truth, threshold)
        rows += r
        curves.update(c)
        params[name] = None
    if operating_sigclip not in sigclips:
        sigclips = tuple(sorted(set(sigclips) | {operating_sigclip}))
    masks = lacosmic_on_test(test, sigclips, sigfrac, objlim)
    r, c = evaluate_masks("lacosmic", masks, sigclips, truth, operating_sigclip)
    rows += r
    curves.update(c)
    out = {"rows": rows, "curves": {f"{k[0]}|{k[1]}": v.as_dict() for k, v in curves.items()},
           "n_test_fields": int(len(truth)), "cr_pixels": int(truth.sum()), "sigclips": list(sigclips)}
    if plot_dir is not None:
        out["plots"] = {p: str(plot_curves(curves, p, Path(plot_dir) / f"roc_pr_{p}.png")) for p in PROTOCOLS}
    return out


def plot_curves(curves: dict, protocol: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrid_pipeline.io.atomic import atomic_path

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for (name, proto), c in curves.items():
        if proto != protocol:
            continue
        style = "o--" if name == "lacosmic" else "-"
        f = np.clip(c.fpr, 1e-7, 1)
        ax[0].semilogx(f, c.tpr, style, label=name, ms=3)
        ax[1].plot(c.tpr, c.precision, style, label=name, ms=3)
    for v in (1e-4, 1e-3):
        ax[0].axvline(v, color="grey", lw=0.5)
    ax[0].set_xlim(1e-6, 1)
    ax[0].set_xlabel("false positive rate")
    ax[0].set_ylabel("true positive rate")
    ax[1].set_xlabel("recall (TPR)")
    ax[1].set_ylabel("precision (purity)")
    ax[0].legend(fontsize=8)
    fig.suptitle(f"CR detection on the test split ({protocol} protocol)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path
