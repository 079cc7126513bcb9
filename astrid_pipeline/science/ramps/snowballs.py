"""Grouping of jumping pixels into events, and snowball classification.

Jumps that occur in the same group in 8-connected pixels form one event
(a cosmic-ray spot or track, or a snowball). Grouping works on the sparse
jump list of the whole frame (a connected-components pass over a graph of
neighbouring jumps), so snowballs that span row blocks are found whole and
memory is bounded by the number of jumps, not the cube.

A snowball (a large, round charge deposit seen in H2RG arrays) is an event
whose *core* — pixels whose jump reaches saturation or most of the headroom
to it — is a filled disk of radius >= ``min_radius``, and which is
surrounded by a halo: most pixels of the ring just outside the core jump in
the same or the next group. Halo pixels that jump in the following groups
within the halo's reach are merged into the snowball (its expansion).
Roundness is measured against the part of the disk that lies inside the
image, so a snowball cut by the edge is still round while a cosmic-ray
track — saturated or not, near an edge or not — never is.
"""

from __future__ import annotations

import math

import numpy as np


def connected_groups(y: np.ndarray, x: np.ndarray, frame: np.ndarray, nx: int, ny: int) -> np.ndarray:
    """Label of the 8-connected same-frame group of each jump record."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    N = len(y)
    if N == 0:
        return np.zeros(0, dtype=np.int64)
    key = (frame.astype(np.int64) * ny + y.astype(np.int64)) * nx + x.astype(np.int64)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    rows, cols = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        yy = y.astype(np.int64) + dy
        xx = x.astype(np.int64) + dx
        ok = (yy < ny) & (xx >= 0) & (xx < nx)
        nk = (frame.astype(np.int64) * ny + yy) * nx + xx
        pos = np.searchsorted(skey, nk)
        pos = np.minimum(pos, N - 1)
        found = ok & (skey[pos] == nk)
        rows.append(np.nonzero(found)[0])
        cols.append(order[pos[found]])
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    g = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(N, N))
    _, labels = connected_components(g, directed=False)
    return labels.astype(np.int64)


def split_multiple_cores(labels: np.ndarray, y: np.ndarray, x: np.ndarray, core: np.ndarray,
                         min_radius: float) -> np.ndarray:
    """Split groups that hold several separate snowball cores (their halos touch in the same group).

    Within a group, the core pixels (jumps into or near saturation) are split
    into 8-connected components; when two or more are at least as large as a
    disk of ``min_radius`` / sqrt(2), every record of the group goes to the
    nearest such core (distance to its centroid less its radius), each core
    starting its own group. Two snowballs that arrive in one group side by
    side are then two events, each round, instead of one odd-shaped one.
    """
    from scipy import ndimage

    G = int(labels.max()) + 1
    n_core = np.bincount(labels, core.astype(np.int64), minlength=G)
    min_core = np.pi * min_radius**2 / 2.0
    out = labels.copy()
    next_label = G
    for g in np.nonzero(n_core >= 2 * min_core)[0]:
        sel = np.nonzero(labels == g)[0]
        c = sel[core[sel]]
        y0, x0 = y[c].min(), x[c].min()
        img = np.zeros((y[c].max() - y0 + 1, x[c].max() - x0 + 1), bool)
        img[y[c] - y0, x[c] - x0] = True
        lab, n = ndimage.label(img, structure=np.ones((3, 3), bool))
        if n < 2:
            continue
        areas = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        big = np.nonzero(areas >= min_core)[0] + 1
        if len(big) < 2:
            continue
        cyx = np.array(ndimage.center_of_mass(img, lab, big)) + (y0, x0)
        rad = np.sqrt(areas[big - 1] / np.pi)
        d = np.hypot(y[sel][:, None] - cyx[None, :, 0], x[sel][:, None] - cyx[None, :, 1]) - rad[None, :]
        nearest = np.argmin(d, axis=1)
        new = np.concatenate([[g], next_label + np.arange(len(big) - 1)])
        out[sel] = new[nearest]
        next_label += len(big) - 1
    return out


def _disk_count_in_bounds(cy: float, cx: float, r: float, shape: tuple, valid: tuple) -> int:
    """Number of pixel centres within ``r`` of (cy, cx) inside the valid area."""
    (y0, y1), (x0, x1) = valid
    ys = np.arange(max(int(math.floor(cy - r)), y0), min(int(math.ceil(cy + r)) + 1, y1))
    xs = np.arange(max(int(math.floor(cx - r)), x0), min(int(math.ceil(cx + r)) + 1, x1))
    if len(ys) == 0 or len(xs) == 0:
        return 0
    return int(((ys[:, None] - cy) ** 2 + (xs[None, :] - cx) ** 2 <= r * r + 1e-9).sum())


def group_events(
    rec: dict,
    shape: tuple,
    valid: tuple,
    *,
    core_fraction: float,
    min_radius: float,
    max_radius: float,
    circularity_threshold: float,
    halo_fraction: float,
    min_area: int,
    max_area: int,
    find_snowballs: bool = True,
) -> tuple[dict, np.ndarray]:
    """Group jump records into events.

    ``rec`` holds arrays ``y, x, frame, amp, z, to_sat, headroom, fit_quality``
    (full-frame coordinates). ``valid`` is ((y0, y1), (x0, x1)), the science
    area. Returns (events as a dict of arrays, event index of each record).
    """
    ny, nx = shape
    y, x, fr = rec["y"], rec["x"], rec["frame"]
    amp_raw = rec["amp"].astype(np.float64)
    measured = np.isfinite(amp_raw)  # IPC neighbours are flagged, not measured
    amp = np.where(measured, amp_raw, 0.0)
    zrec = np.where(np.isfinite(rec["z"]), rec["z"], -np.inf).astype(np.float64)
    N = len(y)
    labels = connected_groups(y, x, fr, nx, ny)
    if find_snowballs and N:
        core0 = rec["to_sat"] | (amp >= core_fraction * rec["headroom"])
        labels = split_multiple_cores(labels, y, x, core0, min_radius)
    G = int(labels.max()) + 1 if N else 0
    w = np.where(measured, np.maximum(amp, 1e-6), 1e-6)
    npix = np.bincount(labels, minlength=G)
    wsum = np.bincount(labels, w, minlength=G)
    cy = np.bincount(labels, w * y, minlength=G) / np.maximum(wsum, 1e-12)
    cx = np.bincount(labels, w * x, minlength=G) / np.maximum(wsum, 1e-12)
    gframe = np.zeros(G, dtype=np.int64)
    gframe[labels] = fr
    max_int = np.full(G, -np.inf)
    np.maximum.at(max_int, labels, amp)
    max_z = np.full(G, -np.inf)
    np.maximum.at(max_z, labels, zrec)
    # fit quality of the brightest pixel of each group
    order = np.lexsort((amp, labels))
    last = np.r_[labels[order][1:] != labels[order][:-1], True] if N else np.zeros(0, bool)
    fq = np.zeros(G)
    fq[labels[order][last]] = np.nan_to_num(rec["fit_quality"][order][last])
    rmax = np.zeros(G)
    np.maximum.at(rmax, labels, np.hypot(y - cy[labels], x - cx[labels]))
    core = rec["to_sat"] | (amp >= core_fraction * rec["headroom"])
    n_core = np.bincount(labels, core.astype(np.int64), minlength=G)
    n_sat = np.bincount(labels, rec["to_sat"].astype(np.int64), minlength=G)

    gtype = np.array(["cosmic_ray"] * G, dtype=object)
    circ = np.full(G, np.nan)
    core_r = np.sqrt(n_core / np.pi)
    halo_frac = np.full(G, np.nan)
    expansion = np.full(G, np.nan)
    merged_into = np.arange(G)

    if find_snowballs and G:
        cand = np.nonzero((core_r >= min_radius) & (core_r <= max_radius))[0]
        if len(cand):
            # per-frame lookup of jump positions for the ring and expansion tests
            key_all = (fr.astype(np.int64) * ny + y) * nx + x
            key_sorted = np.sort(key_all)

            def jumped(frames, yy, xx):
                hit = np.zeros(len(yy), dtype=bool)
                for f in frames:
                    k = (np.int64(f) * ny + yy) * nx + xx
                    pos = np.minimum(np.searchsorted(key_sorted, k), len(key_sorted) - 1)
                    hit |= key_sorted[pos] == k
                return hit

            for g in cand:
                sel = (labels == g) & core
                ccy, ccx = y[sel].mean(), x[sel].mean()
                rc = float(np.max(np.hypot(y[sel] - ccy, x[sel] - ccx))) + 0.5
                disk = _disk_count_in_bounds(ccy, ccx, rc, shape, valid)
                c = n_core[g] / max(disk, 1)
                circ[g] = c
                # halo: the ring between the core edge and two pixels further out
                R = int(math.ceil(rc + 2))
                yy, xx = np.mgrid[int(ccy) - R : int(ccy) + R + 1, int(ccx) - R : int(ccx) + R + 1]
                rr = np.hypot(yy - ccy, xx - ccx)
                inb = (yy >= valid[0][0]) & (yy < valid[0][1]) & (xx >= valid[1][0]) & (xx < valid[1][1])
                ring = inb & (rr > rc) & (rr <= rc + 2)
                f0 = gframe[g]
                hf = jumped((f0, f0 + 1), yy[ring].astype(np.int64), xx[ring].astype(np.int64)).mean() if ring.any() else 0.0
                halo_frac[g] = hf
                area = npix[g]
                if c >= circularity_threshold and hf >= halo_fraction and min_area <= area <= max_area:
                    gtype[g] = "snowball"
                    # merge later-frame groups inside the halo's reach (the expanding halo)
                    reach = rmax[g] + 3
                    # (a later group with a saturated core of its own is another snowball, not this one's halo)
                    near = np.nonzero(
                        (gframe > f0) & (gframe <= f0 + 2)
                        & (np.hypot(cy - ccy, cx - ccx) <= reach)
                        & (core_r < min_radius)
                    )[0]
                    merged_into[near] = g
                    if len(near):
                        sel_n = np.isin(labels, near)
                        r_next = np.max(np.hypot(y[sel_n] - ccy, x[sel_n] - ccx))
                        expansion[g] = float(r_next - rmax[g])
                    else:
                        expansion[g] = 0.0
                    cy[g], cx[g] = ccy, ccx

    # collapse merged groups
    final = merged_into
    keep = final == np.arange(G)
    new_id = np.cumsum(keep) - 1
    rec_event = new_id[final[labels]] if N else np.zeros(0, np.int64)
    E = int(keep.sum())
    if E:
        # a pixel that jumped in two merged groups counts once
        pix_key = (y.astype(np.int64) * nx + x)
        uniq = np.unique(np.stack([rec_event, pix_key]), axis=1)
        extent = np.bincount(uniq[0], minlength=E)
        mean_f = np.bincount(rec_event, amp, minlength=E) / np.maximum(
            np.bincount(rec_event, measured.astype(np.int64), minlength=E), 1)
        max_f = np.full(E, -np.inf)
        np.maximum.at(max_f, rec_event, amp)
        zf = np.full(E, -np.inf)
        np.maximum.at(zf, rec_event, zrec)
        rmax_f = np.zeros(E)
        cyk, cxk = cy[keep], cx[keep]
        np.maximum.at(rmax_f, rec_event, np.hypot(y - cyk[rec_event], x - cxk[rec_event]))
    else:
        extent = mean_f = max_f = zf = rmax_f = np.zeros(0)
        cyk = cxk = np.zeros(0)
    events = {
        "type": gtype[keep],
        "centroid_x": cxk,
        "centroid_y": cyk,
        "first_frame": gframe[keep],
        "mean_intensity": mean_f,
        "max_intensity": max_f,
        "spatial_extent": extent.astype(np.int64),
        "radius": rmax_f + 0.5,
        "step_amplitude": max_f,
        "snr": zf,
        "fit_quality": fq[keep],
        "circularity": circ[keep],
        "core_radius": core_r[keep],
        "n_saturated": n_sat[keep],
        "halo_fraction": halo_frac[keep],
        "halo_expansion": expansion[keep],
    }
    return events, rec_event
