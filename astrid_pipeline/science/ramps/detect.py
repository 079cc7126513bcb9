"""Detection of cosmic rays, RTN and snowballs in one integration, block by block.

:func:`detect_ramp` reads the ramp in row blocks (all groups of a strip of
rows), corrects the reference pixels, finds jumps and two-level pixels in
each block, keeps only sparse jump lists and 2-D feature maps, and groups
the jumps into events once all blocks are done. Memory is one block plus a
few 2-D maps, whatever the size of the cube.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from astrid_pipeline.science.ramps.config import CLASS_CODES, DetectionConfig
from astrid_pipeline.science.ramps.errors import AllSaturatedError, NonFiniteRampError
from astrid_pipeline.science.ramps.jumps import estimate_read_noise, find_jumps_block
from astrid_pipeline.science.ramps.readers import RampSource
from astrid_pipeline.science.ramps.refpix import ReferenceCorrector, science_mask
from astrid_pipeline.science.ramps.rtn import classify_rtn, fit_two_level
from astrid_pipeline.science.ramps.snowballs import connected_groups, group_events

FEATURE_UNITS = {
    "first_jump_frame": "group",
    "jump_amplitude": "{unit}",
    "n_jumps": "",
    "persistence": "group",
    "n_transitions": "",
    "rtn_amplitude": "{unit}",
    "slope": "{unit} / group",
    "first_saturated_frame": "group",
    "chi2_line": "",
}

EVENT_COLUMNS = [
    "event_id", "type", "centroid_x", "centroid_y", "first_frame", "mean_intensity", "max_intensity",
    "spatial_extent", "radius", "step_amplitude", "snr", "fit_quality", "n_transitions", "rtn_amplitude",
    "rtn_level_low", "rtn_level_high", "dwell_high", "dwell_low", "circularity", "core_radius",
    "n_saturated", "halo_fraction", "halo_expansion",
]


@dataclass
class DetectionResult:
    mask: np.ndarray  # uint8 class mask (rows, cols)
    events: dict  # column -> array, EVENT_COLUMNS
    features: dict  # name -> 2-D array
    jumps: dict  # sparse jump list: y, x, frame, amp, z, event
    read_noise: float
    gain: float
    unit: str
    n_groups: int
    integration: int
    source_layout: str
    meta: dict = field(default_factory=dict)

    def counts(self) -> dict:
        t = self.events["type"]
        return {k: int(np.sum(t == k)) for k in ("cosmic_ray", "telegraph_noise", "snowball")}


#: an RTN up-switch is charge arriving when a neighbour jumps in the same group by this many times its amplitude
RTN_NEIGHBOUR_RATIO = 3.0
#: pixels this far (px) beyond a snowball's flagged extent belong to its faint halo
SNOWBALL_HALO_MARGIN = 5.0


def _pix_key(y, x, f, ny, nx):
    return (np.asarray(f, np.int64) * ny + np.asarray(y, np.int64)) * nx + np.asarray(x, np.int64)


def _subset_rtn(rtn: dict, keep: np.ndarray) -> dict:
    """Keep some RTN pixels (and their upward switches)."""
    out = {k: v[keep] for k, v in rtn.items() if not k.startswith("up_")}
    kept = np.zeros(0, np.int64) if not keep.any() else _pix_key(out["y"], out["x"], 0, 1 << 20, 1 << 20)
    uk = _pix_key(rtn["up_y"], rtn["up_x"], 0, 1 << 20, 1 << 20)
    sel = np.isin(uk, kept)
    for k in ("up_y", "up_x", "up_frame"):
        out[k] = rtn[k][sel]
    return out


def _flag_neighbours(jumps: dict, min_sigma: float, sci, rtn, first_sat) -> dict:
    """Flag the four neighbours of strong jumps in the same group (inter-pixel capacitance).

    IPC couples a few per cent of a pixel's charge into its four neighbours,
    so a jump of ``min_sigma`` or more implies smaller jumps beside it; the JWST
    pipeline flags them the same way (``flag_4_neighbors``). Added records
    have NaN amplitude and significance (they are implied, not measured).
    """
    ny, nx = sci.shape
    strong = jumps["z"] >= min_sigma
    ys, xs, fs = jumps["y"][strong], jumps["x"][strong], jumps["frame"][strong]
    have = set(_pix_key(jumps["y"], jumps["x"], jumps["frame"], ny, nx).tolist())
    add = []
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        y, x = ys + dy, xs + dx
        ok = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
        y, x, f = y[ok], x[ok], fs[ok]
        ok = sci[y, x] & ~rtn[y, x]
        fsat = first_sat[y, x]
        ok &= (fsat < 0) | (f <= fsat)  # not into a saturated group
        add.append(np.stack([y[ok], x[ok], f[ok]]))
    cand = np.concatenate(add, axis=1) if add else np.zeros((3, 0), np.int64)
    if cand.shape[1] == 0:
        return jumps
    keys = _pix_key(cand[0], cand[1], cand[2], ny, nx)
    keys, first = np.unique(keys, return_index=True)
    cand = cand[:, first]
    new = np.array([k not in have for k in keys.tolist()], dtype=bool)
    cand = cand[:, new]
    k = cand.shape[1]
    if k == 0:
        return jumps
    extra = {
        "y": cand[0].astype(jumps["y"].dtype), "x": cand[1].astype(jumps["x"].dtype),
        "frame": cand[2].astype(jumps["frame"].dtype), "amp": np.full(k, np.nan, np.float32),
        "z": np.full(k, np.nan, np.float32), "to_sat": np.zeros(k, bool),
        "headroom": np.full(k, np.inf, np.float32), "fit_quality": np.full(k, np.nan, np.float32),
    }
    return {key: np.concatenate([jumps[key], extra[key]]) for key in jumps}


def auto_block_rows(n_groups: int, nx: int, target_bytes: int = 16 << 20) -> int:
    """Rows per block: about ``target_bytes`` of float32 (cache-friendly), a multiple of 32 rows
    (the simulation's HDF5 chunk height), at least 32."""
    rows = target_bytes // max(1, n_groups * nx * 4)
    return int(max(32, min(1024, rows // 32 * 32)))


def _blocks(ny: int, rows: int):
    return [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]


def detect_ramp(source: RampSource, cfg: DetectionConfig | None = None, integration: int = 0) -> DetectionResult:
    """Run reference-pixel correction and the requested detectors on one integration."""
    from scipy.special import chdtri  # inverse survival function of chi2 (light import)

    cfg = cfg or DetectionConfig()
    source.check_integration(integration)
    for m in cfg.methods:
        source.require_groups(m)
    n = source.n_groups
    ny, nx = source.frame_shape
    gain = float(cfg.gain or source.gain or 1.0)
    saturation = cfg.saturation_dn if cfg.saturation_dn is not None else source.saturation
    sci = science_mask((ny, nx), source.refpix)
    if not sci.any():
        from astrid_pipeline.errors import BadShapeError

        raise BadShapeError(source.path, "the frame holds only reference pixels")
    refc = ReferenceCorrector(source, integration)
    halo = refc.side_window // 2 if refc.active and refc.use_sides else 0
    rows = cfg.block_rows or auto_block_rows(n, nx)
    blocks = _blocks(ny, rows)

    def load(r0, r1):
        """Reference-corrected float32 block, and its saturating pixels with their raw flags."""
        # read a few rows more on each side so the row-smoothed side correction
        # of every row is the same whatever the blocking
        e0, e1 = max(0, r0 - halo), min(ny, r1 + halo)
        ext = source.read_rows(e0, e1, integration)
        if not ext.flags.writeable or ext.dtype != np.float32:
            ext = np.array(ext, dtype=np.float32)
        cube = ext[:, r0 - e0 : r1 - e0]
        dq = source.saturated_rows(r0, r1, integration)
        anysat = np.zeros(cube.shape[1:], bool)
        if saturation is not None:
            anysat |= cube.max(axis=0) >= np.float32(saturation - 0.5)
        if dq is not None:
            anysat |= dq.any(axis=0)
        s_iy, s_ix = np.nonzero(anysat)
        S = np.zeros((cube.shape[0], len(s_iy)), bool)
        if saturation is not None:
            S |= cube[:, s_iy, s_ix] >= np.float32(saturation - 0.5)
        if dq is not None:
            S |= dq[:, s_iy, s_ix]
        refc.correct(ext, e0)
        return cube, (s_iy, s_ix, S)

    if cfg.read_noise_dn is not None:
        read_noise = float(cfg.read_noise_dn)
    else:
        # the same central rows whatever the blocking, so results do not depend on it
        r0 = max(0, ny // 2 - 32)
        r1 = min(ny, r0 + 64)
        cube, (s_iy, s_ix, _) = load(r0, r1)
        if not np.isfinite(cube).all():
            raise NonFiniteRampError(source.path, f"rows {r0}:{r1} hold NaN or infinite values")
        ok = sci[r0:r1].copy()
        ok[s_iy, s_ix] = False
        if not ok.any():
            ok = sci[r0:r1]
        read_noise = estimate_read_noise(cube, ok, gain)
        del cube
    if not (read_noise > 0 and math.isfinite(read_noise)):
        from astrid_pipeline.errors import EmptyDataError

        raise EmptyDataError(source.path, "cannot estimate a read noise: the ramp has no scatter")

    do_rtn = "rtn" in cfg.methods
    chi2_thr = float(chdtri(max(n - 3, 1), cfg.rtn_candidate_chi2_p) / max(n - 3, 1)) if do_rtn else None

    feats = {
        "first_jump_frame": np.full((ny, nx), -1, np.int16),
        "jump_amplitude": np.zeros((ny, nx), np.float32),
        "n_jumps": np.zeros((ny, nx), np.int16),
        "persistence": np.zeros((ny, nx), np.int16),
        "n_transitions": np.zeros((ny, nx), np.int16),
        "rtn_amplitude": np.zeros((ny, nx), np.float32),
        "slope": np.zeros((ny, nx), np.float32),
        "first_saturated_frame": np.full((ny, nx), -1, np.int16),
        "chi2_line": np.zeros((ny, nx), np.float32),
    }
    jump_parts = []
    rtn_parts = []

    def work(blk):
        r0, r1 = blk
        cube, sat = load(r0, r1)
        try:
            res = find_jumps_block(
                cube, sat, sci[r0:r1], read_noise=read_noise, gain=gain, threshold=cfg.sigma_threshold,
                min_step=cfg.cosmic_ray_min_step, saturation=saturation, rtn_chi2_threshold=chi2_thr,
            )
        except NonFiniteRampError as exc:
            raise NonFiniteRampError(source.path, f"rows {r0}:{r1}: {exc.reason}") from None
        rtn = None
        if do_rtn and res.rtn_candidates.any():
            iy, ix = np.nonzero(res.rtn_candidates)
            fit = fit_two_level(cube[:, iy, ix])
            noise = np.sqrt(read_noise**2 + np.maximum(fit["slope"], 0) / gain * n / 6.0)
            ok, snr, tstat = classify_rtn(
                fit, noise, min_snr=cfg.rtn_min_snr, min_tstat=cfg.rtn_min_tstat,
                min_transitions=cfg.rtn_min_transitions, max_transitions=cfg.rtn_max_transitions,
                fit_quality_threshold=cfg.rtn_fit_quality_threshold, amplitude_range=cfg.rtn_amplitude_range,
            )
            sw = np.diff(fit["states"][:, ok].astype(np.int8), axis=0)
            up_k, up_p = np.nonzero(sw == 1)
            rtn = {
                "y": iy[ok] + r0, "x": ix[ok],
                "up_y": iy[ok][up_p] + r0, "up_x": ix[ok][up_p], "up_frame": up_k + 1,
                **{k: fit[k][ok] for k in ("amplitude", "level_low", "level_high", "n_transitions",
                                           "first_transition", "dwell_high", "dwell_low", "r2")},
                "snr": snr[ok], "tstat": tstat[ok],
            }
        return r0, r1, res, rtn

    workers = max(1, int(cfg.workers))
    if workers == 1:
        results = map(work, blocks)
    else:
        pool = ThreadPoolExecutor(workers)
        results = pool.map(work, blocks)
    n_sat0 = 0
    try:
        for r0, r1, res, rtn in results:
            feats["first_jump_frame"][r0:r1] = res.first_jump
            feats["jump_amplitude"][r0:r1] = res.max_jump
            feats["n_jumps"][r0:r1] = res.n_jumps
            feats["persistence"][r0:r1] = res.persistence
            feats["slope"][r0:r1] = res.slope
            feats["first_saturated_frame"][r0:r1] = res.first_saturated
            feats["chi2_line"][r0:r1] = res.chi2
            n_sat0 += int(((res.first_saturated == 0) & sci[r0:r1]).sum())
            jump_parts.append({
                "y": res.y + r0, "x": res.x, "frame": res.frame, "amp": res.amp, "z": res.z,
                "to_sat": res.to_sat, "headroom": res.headroom, "fit_quality": res.fit_quality,
            })
            if rtn is not None:
                rtn_parts.append(rtn)
    finally:
        if workers > 1:
            pool.shutdown()
    if n_sat0 == int(sci.sum()):
        raise AllSaturatedError(source.path, "every science pixel is saturated from the first group")

    jumps = {k: np.concatenate([p[k] for p in jump_parts]) for k in jump_parts[0]}
    rtn_all = ({k: np.concatenate([p[k] for p in rtn_parts]) for k in rtn_parts[0]} if rtn_parts else None)

    # RTN lives in one pixel's readout, so a pixel whose jump is shared with
    # neighbours in the same group (a cosmic ray, a snowball halo) is not RTN;
    # the upward switches of the remaining RTN pixels are not cosmic rays.
    mask = np.zeros((ny, nx), np.uint8)
    if rtn_all is not None and len(rtn_all["y"]) and len(jumps["y"]):
        labels = connected_groups(jumps["y"], jumps["x"], jumps["frame"], nx, ny)
        size = np.bincount(labels)[labels]
        shared = np.zeros((ny, nx), bool)
        shared[jumps["y"][size > 1], jumps["x"][size > 1]] = True
        # an upward switch that coincides with a jump of a neighbour (in that
        # group or the next: IPC of a cosmic ray, a faint snowball halo) is
        # charge arriving, not a trap switching
        jk_all = _pix_key(jumps["y"], jumps["x"], jumps["frame"], ny, nx)
        order = np.argsort(jk_all)
        jkey, jamp = jk_all[order], jumps["amp"][order]
        uy, ux, uf = rtn_all["up_y"], rtn_all["up_x"], rtn_all["up_frame"]
        amp_of = dict(zip(zip(rtn_all["y"].tolist(), rtn_all["x"].tolist()), rtn_all["amplitude"].tolist()))
        uamp = np.array([amp_of[(a, b)] for a, b in zip(uy.tolist(), ux.tolist())]) if len(uy) else np.zeros(0)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                yy, xx = uy + dy, ux + dx
                inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
                k = _pix_key(np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1), uf, ny, nx)
                pos = np.minimum(np.searchsorted(jkey, k), len(jkey) - 1)
                hit = inside & (jkey[pos] == k) & (jamp[pos] >= RTN_NEIGHBOUR_RATIO * uamp)
                shared[uy[hit], ux[hit]] = True
        keep_rtn = ~shared[rtn_all["y"], rtn_all["x"]]
        rtn_all = _subset_rtn(rtn_all, keep_rtn)
    if rtn_all is not None and len(rtn_all["y"]):
        is_rtn = np.zeros((ny, nx), bool)
        is_rtn[rtn_all["y"], rtn_all["x"]] = True
        keep = ~is_rtn[jumps["y"], jumps["x"]]
        jumps = {k: v[keep] for k, v in jumps.items()}
        feats["n_transitions"][rtn_all["y"], rtn_all["x"]] = rtn_all["n_transitions"]
        feats["rtn_amplitude"][rtn_all["y"], rtn_all["x"]] = rtn_all["amplitude"]
        for k in ("first_jump_frame",):
            feats[k][is_rtn] = -1
        feats["n_jumps"][is_rtn] = 0
        feats["jump_amplitude"][is_rtn] = 0
        feats["persistence"][is_rtn] = 0
        mask[is_rtn] = CLASS_CODES["telegraph_noise"]

    b = source.refpix
    valid = ((b[0], ny - b[1]), (b[2], nx - b[3]))
    if cfg.neighbor_sigma is not None and len(jumps["y"]):
        jumps = _flag_neighbours(jumps, cfg.neighbor_sigma, sci, mask == CLASS_CODES["telegraph_noise"],
                                 feats["first_saturated_frame"])
    if "jumps" in cfg.methods:
        ev, rec_event = group_events(
            jumps, (ny, nx), valid,
            core_fraction=cfg.snowball_core_fraction, min_radius=cfg.snowball_min_radius,
            max_radius=cfg.snowball_max_radius, circularity_threshold=cfg.snowball_circularity_threshold,
            halo_fraction=cfg.snowball_halo_fraction, min_area=cfg.snowball_min_area,
            max_area=cfg.snowball_max_area, find_snowballs="snowballs" in cfg.methods,
        )
        jumps["event"] = rec_event
        etype = ev["type"]
        is_sb = etype[rec_event] == "snowball" if len(rec_event) else np.zeros(0, bool)
        mask[jumps["y"][~is_sb], jumps["x"][~is_sb]] = CLASS_CODES["cosmic_ray"]
        mask[jumps["y"][is_sb], jumps["x"][is_sb]] = CLASS_CODES["snowball"]
        # faint halo pixels of a snowball are not RTN either
        sb = np.nonzero(etype == "snowball")[0]
        if rtn_all is not None and len(rtn_all["y"]) and len(sb):
            inside = np.zeros(len(rtn_all["y"]), bool)
            for g in sb:
                reach = ev["radius"][g] + SNOWBALL_HALO_MARGIN
                inside |= np.hypot(rtn_all["y"] - ev["centroid_y"][g], rtn_all["x"] - ev["centroid_x"][g]) <= reach
            if inside.any():
                mask[rtn_all["y"][inside], rtn_all["x"][inside]] = CLASS_CODES["snowball"]
                feats["n_transitions"][rtn_all["y"][inside], rtn_all["x"][inside]] = 0
                feats["rtn_amplitude"][rtn_all["y"][inside], rtn_all["x"][inside]] = 0
                rtn_all = _subset_rtn(rtn_all, ~inside)
        # the catalog keeps cosmic rays seen in two or more pixels or at event_min_snr;
        # a lone marginal jump stays flagged in the mask and the jump list (event -1)
        etype = ev["type"]
        keep = (etype != "cosmic_ray") | (ev["spatial_extent"] >= 2) | (ev["snr"] >= cfg.event_min_snr)
        if not keep.all():
            new_id = np.where(keep, np.cumsum(keep) - 1, -1)
            jumps["event"] = new_id[rec_event] if len(rec_event) else rec_event
            ev = {k: v[keep] for k, v in ev.items()}
    else:
        ev = {c: np.zeros(0) for c in EVENT_COLUMNS if c not in ("event_id",)}
        ev["type"] = np.zeros(0, dtype=object)
        jumps["event"] = np.zeros(0, np.int64)

    E = len(ev["type"])
    nan = np.full(E, np.nan)
    for c in ("rtn_amplitude", "rtn_level_low", "rtn_level_high", "dwell_high", "dwell_low"):
        ev.setdefault(c, nan.copy())
    ev.setdefault("n_transitions", np.zeros(E, np.int64))
    if rtn_all is not None and len(rtn_all["y"]):
        R = len(rtn_all["y"])
        rtn_ev = {
            "type": np.array(["telegraph_noise"] * R, dtype=object),
            "centroid_x": rtn_all["x"].astype(np.float64),
            "centroid_y": rtn_all["y"].astype(np.float64),
            "first_frame": rtn_all["first_transition"].astype(np.int64),
            "mean_intensity": rtn_all["amplitude"],
            "max_intensity": rtn_all["amplitude"],
            "spatial_extent": np.ones(R, np.int64),
            "radius": np.full(R, 0.5),
            "step_amplitude": rtn_all["amplitude"],
            "snr": rtn_all["snr"],
            "fit_quality": rtn_all["r2"],
            "n_transitions": rtn_all["n_transitions"].astype(np.int64),
            "rtn_amplitude": rtn_all["amplitude"],
            "rtn_level_low": rtn_all["level_low"],
            "rtn_level_high": rtn_all["level_high"],
            "dwell_high": rtn_all["dwell_high"],
            "dwell_low": rtn_all["dwell_low"],
            "circularity": np.full(R, np.nan),
            "core_radius": np.full(R, np.nan),
            "n_saturated": np.zeros(R, np.int64),
            "halo_fraction": np.full(R, np.nan),
            "halo_expansion": np.full(R, np.nan),
        }
        ev = {k: np.concatenate([np.asarray(ev[k]), np.asarray(rtn_ev[k])]) for k in rtn_ev}
    ev["event_id"] = np.arange(len(ev["type"]), dtype=np.int64)
    ev = {c: np.asarray(ev[c]) for c in EVENT_COLUMNS}
    ev["type"] = ev["type"].astype(object)
    return DetectionResult(
        mask=mask, events=ev, features=feats, jumps=jumps, read_noise=read_noise, gain=gain,
        unit=source.unit, n_groups=n, integration=integration, source_layout=source.layout,
        meta={"block_rows": rows, "n_blocks": len(blocks), "saturation": saturation,
              "sigma_threshold": cfg.sigma_threshold, "methods": list(cfg.methods),
              "refpix": list(source.refpix), "refpix_applied": refc.active},
    )
