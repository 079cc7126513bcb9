"""Scores of a detection against the simulation's truth.

Jumps are scored per pixel-group (the unit the JWST pipeline flags): a true
jump is a (pixel, group) that received charge; its S/N is the charge in DN
over the noise of a group difference. RTN is scored per pixel, snowballs per
event.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_SNR_BINS = (3.0, 5.0, 10.0, 20.0, 50.0, math.inf)


def _key(y, x, f, nx, n):
    return (np.asarray(y, np.int64) * nx + np.asarray(x, np.int64)) * n + np.asarray(f, np.int64)


def jump_scores(
    flag_y, flag_x, flag_frame, dep_y, dep_x, dep_frame, dep_charge_dn, sigma_diff_dn: float,
    shape: tuple, n_groups: int, science: np.ndarray, *, exclude=None, bins=DEFAULT_SNR_BINS,
) -> dict:
    """Recall by S/N bin and false-flag rate per pixel-group.

    A flag is false when its (pixel, group) got no charge at all (IPC crumbs
    count as charge, so flagging them is not false). ``exclude`` (bool map)
    removes pixels from the false-flag count (e.g. RTN pixels and snowballs,
    scored separately). The false-flag rate is per science pixel-group
    (pixels x (groups - 1) differences).
    """
    ny, nx = shape
    n = n_groups
    dk = _key(dep_y, dep_x, dep_frame, nx, n)
    # several deposits can land on one pixel-group: sum them
    uk, inv = np.unique(dk, return_inverse=True)
    q = np.bincount(inv, weights=np.asarray(dep_charge_dn, np.float64))
    fk = np.unique(_key(flag_y, flag_x, flag_frame, nx, n))
    found = np.isin(uk, fk)
    snr = q / sigma_diff_dn
    recall = {}
    edges = list(bins)
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (snr >= lo) & (snr < hi)
        label = f"{lo:g}-{hi:g}" if math.isfinite(hi) else f">={lo:g}"
        recall[label] = float(found[sel].mean()) if sel.any() else None
    false = ~np.isin(fk, uk)
    fy = fk // n // nx
    fx = (fk // n) % nx
    ok = science[fy, fx]
    if exclude is not None:
        ok &= ~exclude[fy, fx]
    denom = int(science.sum() - (0 if exclude is None else (exclude & science).sum())) * (n - 1)
    return {
        "recall_by_snr": recall,
        "false_flag_rate": float((false & ok).sum() / max(denom, 1)),
        "n_true": int(len(uk)),
        "n_flags": int(len(fk)),
    }


def rtn_scores(det_mask_rtn: np.ndarray, truth_events, read_noise_dn: float, gain: float, science: np.ndarray,
               *, min_amp_sigma: float = 5.0, min_transitions: int = 3) -> dict:
    """RTN recall (amplitude >= ``min_amp_sigma`` x read noise, >= ``min_transitions``) and false RTN per pixel."""
    t = truth_events[truth_events["type"] == "telegraph_noise"]
    ys = t["y"].to_numpy().astype(int)
    xs = t["x"].to_numpy().astype(int)
    amp_sigma = t["amplitude"].to_numpy() / gain / read_noise_dn
    strong = (amp_sigma >= min_amp_sigma) & (t["n_transitions"].to_numpy() >= min_transitions)
    hit = det_mask_rtn[ys, xs]
    true_map = np.zeros_like(det_mask_rtn)
    true_map[ys, xs] = True
    false = det_mask_rtn & ~true_map & science
    return {
        "rtn_recall": float(hit[strong].mean()) if strong.any() else None,
        "n_rtn_strong": int(strong.sum()),
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
