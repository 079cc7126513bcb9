"""Scores of a detection against the simulation's truth.

Jumps are scored per pixel-group (the unit the JWST pipeline flags): a true
jump is a (pixel, group) that received cosmic-ray charge; its S/N is the
charge in DN over the white-noise sigma of a group difference at that pixel
(``sqrt(2)`` x the read noise of its readout output). RTN is scored per
pixel, over the RTN pixels whose amplitude is at least ``min_amp_sigma`` x
the read noise per read and that switch at least ``min_transitions`` times;
snowballs per event. :func:`class_scores` scores a class mask pixel by pixel
(recall, precision, IoU per class, recall per S/N bin), for the rules, the
U-Net, their hybrid and stcal alike.
"""

from __future__ import annotations

import math

import numpy as np

from astrid_pipeline.science.ramps.config import CLASS_CODES, CLASS_NAMES

DEFAULT_SNR_BINS = (3.0, 5.0, 10.0, 20.0, 50.0, math.inf)


def _key(y, x, f, nx, n):
    return (np.asarray(y, np.int64) * nx + np.asarray(x, np.int64)) * n + np.asarray(f, np.int64)


def bin_labels(bins=DEFAULT_SNR_BINS) -> list[str]:
    edges = list(bins)
    return [f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">={lo:g}" for lo, hi in zip(edges[:-1], edges[1:])]


def _per_bin(found: np.ndarray, snr: np.ndarray, bins) -> dict:
    out = {}
    edges = list(bins)
    for label, lo, hi in zip(bin_labels(bins), edges[:-1], edges[1:]):
        sel = (snr >= lo) & (snr < hi)
        out[label] = float(found[sel].mean()) if sel.any() else None
    return out


def _lookup(sigma, y, x):
    """A scalar, or a 2-D map read at (y, x)."""
    s = np.asarray(sigma, dtype=np.float64)
    return s if s.ndim == 0 else s[np.asarray(y, np.intp), np.asarray(x, np.intp)]


def jump_scores(
    flag_y, flag_x, flag_frame, dep_y, dep_x, dep_frame, dep_charge_dn, sigma_diff_dn,
    shape: tuple, n_groups: int, science: np.ndarray, *, exclude=None, bins=DEFAULT_SNR_BINS,
) -> dict:
    """Recall by S/N bin and false-flag rate per pixel-group.

    ``sigma_diff_dn`` is the noise of a group difference: a number, or a map
    (rows, cols). A flag is false when its (pixel, group) got no charge at
    all (IPC crumbs count as charge, so flagging them is not false).
    ``exclude`` (bool map) removes pixels from the false-flag count (e.g.
    RTN pixels and snowballs, scored separately). The false-flag rate is per
    science pixel-group (pixels x (groups - 1) differences).
    """
    ny, nx = shape
    n = n_groups
    dk = _key(dep_y, dep_x, dep_frame, nx, n)
    # several deposits can land on one pixel-group: sum them
    uk, first, inv = np.unique(dk, return_index=True, return_inverse=True)
    q = np.bincount(inv, weights=np.asarray(dep_charge_dn, np.float64))
    fk = np.unique(_key(flag_y, flag_x, flag_frame, nx, n))
    found = np.isin(uk, fk)
    snr = q / _lookup(sigma_diff_dn, np.asarray(dep_y)[first], np.asarray(dep_x)[first]) if len(uk) else q
    false = ~np.isin(fk, uk)
    fy = fk // n // nx
    fx = (fk // n) % nx
    ok = science[fy, fx]
    if exclude is not None:
        ok &= ~exclude[fy, fx]
    denom = int(science.sum() - (0 if exclude is None else (exclude & science).sum())) * (n - 1)
    return {
        "recall_by_snr": _per_bin(found, snr, bins),
        "false_flag_rate": float((false & ok).sum() / max(denom, 1)),
        "n_true": int(len(uk)),
        "n_flags": int(len(fk)),
    }


def rtn_scores(det_mask_rtn: np.ndarray, truth_events, read_noise_dn, gain: float, science: np.ndarray,
               *, min_amp_sigma: float = 5.0, min_transitions: int = 2, truth_mask: np.ndarray | None = None) -> dict:
    """RTN recall and false RTN per pixel.

    Recall is over the RTN pixels whose amplitude is at least
    ``min_amp_sigma`` x the read noise per read at that pixel (``read_noise_dn``:
    a number or a map, DN) and that switch at least ``min_transitions`` times
    within the ramp; with ``truth_mask``, only those whose truth class is RTN
    (an RTN pixel under a snowball or hit by a cosmic ray belongs to that
    event's class in the truth mask, one class per pixel, and is left out:
    ``n_rtn_other_class`` counts them). False RTN are detected RTN pixels
    where none was injected.
    """
    t = truth_events[truth_events["type"] == "telegraph_noise"]
    ys = t["y"].to_numpy().astype(int)
    xs = t["x"].to_numpy().astype(int)
    amp_sigma = t["amplitude"].to_numpy() / gain / _lookup(read_noise_dn, ys, xs)
    strong = (amp_sigma >= min_amp_sigma) & (t["n_transitions"].to_numpy() >= min_transitions)
    other = np.zeros(len(ys), bool)
    if truth_mask is not None:
        other = truth_mask[ys, xs] != CLASS_CODES["telegraph_noise"]
    n_other = int((strong & other).sum())
    strong &= ~other
    hit = det_mask_rtn[ys, xs]
    true_map = np.zeros_like(det_mask_rtn)
    true_map[ys, xs] = True
    false = det_mask_rtn & ~true_map & science
    return {
        "rtn_recall": float(hit[strong].mean()) if strong.any() else None,
        "n_rtn_strong": int(strong.sum()),
        "n_rtn_other_class": n_other,
        "rtn_recall_all": float(hit.mean()) if len(hit) else None,
        "rtn_false_per_pixel": float(false.sum() / max(int(science.sum()), 1)),
        "n_false_rtn": int(false.sum()),
    }


def snowball_scores(det_events, truth_events, *, min_core_radius: float = 3.0, match_radius: float = 3.0) -> dict:
    """Snowballs found (core radius >= ``min_core_radius``) and snowballs called where none was injected."""
    ts = truth_events[truth_events["type"] == "snowball"]
    ds = det_events[det_events["type"] == "snowball"]
    tx, ty = ts["x"].to_numpy(), ts["y"].to_numpy()
    dx, dy = ds["centroid_x"].to_numpy(), ds["centroid_y"].to_numpy()
    if len(ts) and len(ds):
        dist = np.hypot(tx[:, None] - dx[None, :], ty[:, None] - dy[None, :])
        found = (dist <= np.maximum(match_radius, 0.5 * ts["radius"].to_numpy())[:, None]).any(axis=1)
        matched = (dist <= np.maximum(match_radius, 0.5 * ts["radius"].to_numpy())[:, None]).any(axis=0)
    else:
        found = np.zeros(len(ts), bool)
        matched = np.zeros(len(ds), bool)
    big = ts["radius"].to_numpy() >= min_core_radius
    return {
        "snowball_recall": float(found[big].mean()) if big.any() else None,
        "n_snowballs": int(big.sum()),
        "false_snowballs": int((~matched).sum()),
    }


# ----------------------------------------------------------------------------
# one scoring of a detection against a simulated exposure (benchmark, evaluation, tests)
# ----------------------------------------------------------------------------

def cosmic_ray_deposits(plan) -> dict:
    """The cosmic-ray deposits of a simulation plan (y, x, frame, charge in DN)."""
    types = np.asarray(plan.events["type"])
    is_cr = types[plan.dep_event] == "cosmic_ray" if len(plan.dep_event) else np.zeros(0, bool)
    return {"y": plan.dep_y[is_cr], "x": plan.dep_x[is_cr], "frame": plan.dep_frame[is_cr],
            "charge_dn": plan.dep_charge[is_cr] / plan.gain}


def read_noise_map(plan) -> np.ndarray:
    """White read noise per read (DN) of every pixel of a simulated exposure (its output's)."""
    ny, nx = plan.shape
    return np.broadcast_to(plan.noise_dn_columns(nx)[None, :], (ny, nx))


def score_jumps_against_truth(flag_y, flag_x, flag_frame, plan, science, exclude, bins=DEFAULT_SNR_BINS) -> dict:
    """:func:`jump_scores` for cosmic-ray deposits of ``plan``, S/N per pixel from its output's read noise."""
    dep = cosmic_ray_deposits(plan)
    return jump_scores(flag_y, flag_x, flag_frame, dep["y"], dep["x"], dep["frame"], dep["charge_dn"],
                       math.sqrt(2) * read_noise_map(plan), plan.shape, plan.num_frames, science,
                       exclude=exclude, bins=bins)


def score_detection(result, plan, science: np.ndarray, bins=DEFAULT_SNR_BINS) -> dict:
    """Jumps, RTN and snowballs of a :class:`DetectionResult` against the truth of a simulated exposure.

    RTN pixels and snowball areas (true or detected) are left out of the
    jump false flags; they are scored by their own figures.
    """
    import pandas as pd

    truth = pd.DataFrame(plan.events)
    exclude = np.isin(plan.class_mask, (2, 3)) | np.isin(result.mask, (2, 3))
    js = score_jumps_against_truth(result.jumps["y"], result.jumps["x"], result.jumps["frame"], plan, science,
                                   exclude, bins)
    rs = rtn_scores(result.mask == CLASS_CODES["telegraph_noise"], truth, read_noise_map(plan), plan.gain, science,
                    truth_mask=plan.class_mask)
    sb = snowball_scores(pd.DataFrame(result.events), truth)
    return {**js, **rs, **sb, "exclude": exclude}


def truth_snr_map(plan) -> np.ndarray:
    """S/N of every truth pixel: cosmic ray and snowball = largest deposit / sigma of a group difference,
    RTN = amplitude / read noise per read; 0 elsewhere."""
    ny, nx = plan.shape
    rn = read_noise_map(plan)
    snr = np.zeros((ny, nx))
    if len(plan.dep_y):
        q = plan.dep_charge / plan.gain / (math.sqrt(2) * rn[plan.dep_y, plan.dep_x])
        np.maximum.at(snr, (plan.dep_y, plan.dep_x), q)
    if len(plan.rtn_y):
        a = plan.rtn_offset / plan.gain / rn[plan.rtn_y, plan.rtn_x]
        snr[plan.rtn_y, plan.rtn_x] = np.maximum(snr[plan.rtn_y, plan.rtn_x], a)
    return snr


def class_scores(pred: np.ndarray, truth: np.ndarray, science: np.ndarray, snr: np.ndarray | None = None,
                 bins=DEFAULT_SNR_BINS) -> dict:
    """Per-class pixel recall, precision and IoU of a class mask, and recall per S/N bin of the truth pixels.

    ``pred`` and ``truth`` hold the class codes (0 background, 1 cosmic ray,
    2 telegraph noise, 3 snowball); only ``science`` pixels count.
    """
    out = {}
    p = pred[science]
    t = truth[science]
    s = snr[science] if snr is not None else None
    for code, name in enumerate(CLASS_NAMES):
        if code == 0:
            continue
        pc, tc = p == code, t == code
        tp = int((pc & tc).sum())
        n_pred, n_true = int(pc.sum()), int(tc.sum())
        row = {
            "recall": tp / n_true if n_true else None,
            "precision": tp / n_pred if n_pred else None,
            "iou": tp / (n_pred + n_true - tp) if (n_pred + n_true - tp) else None,
            "n_true": n_true,
            "n_pred": n_pred,
            "false_per_pixel": float((pc & ~tc & (t == 0)).sum() / max(len(t), 1)),
        }
        if s is not None:
            row["recall_by_snr"] = _per_bin(pc[tc], s[tc], bins)
        out[name] = row
    ious = [v["iou"] for v in out.values() if v["iou"] is not None]
    out["mean_iou"] = float(np.mean(ious)) if ious else None
    return out
