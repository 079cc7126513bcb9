"""Detection of cosmic rays, RTN and snowballs in one integration, block by block.

:func:`detect_ramp` reads the ramp in row blocks (all groups of a strip of
rows), corrects the reference pixels, finds jumps and two-level pixels in
each block, keeps only sparse jump lists and 2-D feature maps, and groups
the jumps into events once all blocks are done. Memory is one block plus a
few 2-D maps, whatever the size of the cube.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from astrid_pipeline.science.ramps.config import CLASS_CODES, DetectionConfig
from astrid_pipeline.science.ramps.errors import AllSaturatedError, NonFiniteRampError
from astrid_pipeline.science.ramps.jumps import find_jumps_block
from astrid_pipeline.science.ramps.prepare import RampPrep
from astrid_pipeline.science.ramps.readers import MIN_GROUPS, RampSource
from astrid_pipeline.science.ramps.rtn import classify_rtn, fit_two_level, tstat_threshold
from astrid_pipeline.science.ramps.snowballs import connected_groups, group_events

log = logging.getLogger(__name__)

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
    #: switches of the RTN pixels: y, x, frame (first group in the new state), direction (+1 up, -1 down)
    rtn_switches: dict = field(default_factory=lambda: {k: np.zeros(0, np.int64) for k in ("y", "x", "frame", "direction")})

    def counts(self) -> dict:
        t = self.events["type"]
        return {k: int(np.sum(t == k)) for k in ("cosmic_ray", "telegraph_noise", "snowball")}

    @property
    def skipped(self) -> dict:
        """Methods that did not run, with the reason (e.g. too few groups for RTN)."""
        return dict(self.meta.get("skipped", {}))


#: an RTN up-switch is charge arriving when a neighbour jumps in the same group by this many times its amplitude
RTN_NEIGHBOUR_RATIO = 3.0
#: pixels this far (px) beyond a snowball's flagged extent belong to its faint halo
SNOWBALL_HALO_MARGIN = 5.0
#: event index of the jump records that are up-switches of RTN pixels (-1: a lone marginal jump not catalogued)
RTN_SWITCH_EVENT = -2


def _pix_key(y, x, f, ny, nx):
    return (np.asarray(f, np.int64) * ny + np.asarray(y, np.int64)) * nx + np.asarray(x, np.int64)


def _subset_rtn(rtn: dict, keep: np.ndarray) -> dict:
    """Keep some RTN pixels (and their upward and downward switches)."""
    out = {k: v[keep] for k, v in rtn.items() if not k.startswith(("up_", "down_"))}
    kept = np.zeros(0, np.int64) if not keep.any() else _pix_key(out["y"], out["x"], 0, 1 << 20, 1 << 20)
    for d in ("up", "down"):
        sel = np.isin(_pix_key(rtn[f"{d}_y"], rtn[f"{d}_x"], 0, 1 << 20, 1 << 20), kept)
        for k in ("y", "x", "frame"):
            out[f"{d}_{k}"] = rtn[f"{d}_{k}"][sel]
    return out


def _flag_neighbours(jumps: dict, min_sigma: float, sci, first_sat, down_z=None) -> dict:
    """Flag the four neighbours of strong jumps in the same group (inter-pixel capacitance).

    IPC couples a few per cent of a pixel's charge into its four neighbours,
    so a jump of ``min_sigma`` or more (S/N of one group difference) implies
    smaller jumps beside it; the JWST pipeline flags them the same way
    (``flag_4_neighbors``). Jumps of pixels that also step down by at least
    half as much (``down_z``, the most negative difference of the pixel in
    sigma: RTN-like, an up-switch is no charge arriving) flag no neighbour. Added records have NaN amplitude and significance (they are
    implied, not measured).
    """
    ny, nx = sci.shape
    strong = jumps["snr"] >= min_sigma
    if down_z is not None:
        dz = down_z[jumps["y"], jumps["x"]]
        strong &= ~(dz < -np.maximum(4.0, 0.5 * np.nan_to_num(jumps["snr"])))
    ys, xs, fs = jumps["y"][strong], jumps["x"][strong], jumps["frame"][strong]
    have = set(_pix_key(jumps["y"], jumps["x"], jumps["frame"], ny, nx).tolist())
    add = []
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        y, x = ys + dy, xs + dx
        ok = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
        y, x, f = y[ok], x[ok], fs[ok]
        ok = sci[y, x].copy()  # RTN pixels too: a neighbour's cosmic ray reaches them by IPC as well
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
        "z": np.full(k, np.nan, np.float32), "snr": np.full(k, np.nan, np.float32), "to_sat": np.zeros(k, bool),
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


def runnable_methods(source: RampSource, cfg: DetectionConfig) -> tuple[tuple, dict]:
    """The requested methods the ramp has enough groups for, and the others with the reason.

    A method that needs a skipped one (snowballs need jumps) is skipped too.
    With ``cfg.skip_unrunnable`` false, or when nothing can run, the first
    method that cannot run raises :class:`TooFewGroupsError`.
    """
    skipped: dict[str, str] = {}
    for m in cfg.methods:
        if source.n_groups < MIN_GROUPS[m]:
            skipped[m] = (f"TooFewGroupsError: ramp has {source.n_groups} groups; {m} detection needs at least "
                          f"{MIN_GROUPS[m]}")
    if "jumps" in skipped and "snowballs" in cfg.methods and "snowballs" not in skipped:
        skipped["snowballs"] = "skipped because jumps cannot run (snowballs are groups of jumping pixels)"
    run = tuple(m for m in cfg.methods if m not in skipped)
    if skipped and (not cfg.skip_unrunnable or not run):
        first = next(m for m in cfg.methods if m in skipped and skipped[m].startswith("TooFewGroupsError"))
        source.require_groups(first)  # raises the named error with the file's name
    for m, why in skipped.items():
        log.warning("%s: %s skipped: %s", source.path or "<in-memory ramp>", m, why)
    return run, skipped


def detect_ramp(source: RampSource, cfg: DetectionConfig | None = None, integration: int = 0,
                progress: Callable[[int, int], None] | None = None) -> DetectionResult:
    """Run reference-pixel correction and the requested detectors on one integration.

    Methods the ramp has too few groups for are skipped with a named reason
    (``result.skipped``, a logged warning) while the others run; ``progress``
    is called as ``progress(blocks_done, blocks_total)`` after each row block
    (and a log line is written every ``cfg.progress_every`` blocks).
    """
    from scipy.special import chdtri  # inverse survival function of chi2 (light import)

    cfg = cfg or DetectionConfig()
    source.check_integration(integration)
    methods, skipped = runnable_methods(source, cfg)
    if methods != cfg.methods:
        cfg = cfg.replace(methods=methods)
    n = source.n_groups
    ny, nx = source.frame_shape
    prep = RampPrep(source, integration, gain=cfg.gain, saturation=cfg.saturation_dn, read_noise=cfg.read_noise_dn,
                    side_window=cfg.refpix_side_window,
                    calibrate_gls=cfg.jump_test == "gls" and "jumps" in cfg.methods)
    gain, gain_source, saturation, sci = prep.gain, prep.gain_source, prep.saturation, prep.sci
    refc, col_output, load = prep.refc, prep.col_output, prep.load
    read_noise_out, z_scale_out, noise_source = prep.read_noise_out, prep.z_scale_out, prep.noise_source
    rn_col, read_noise = prep.rn_col, prep.read_noise
    rows = cfg.block_rows or auto_block_rows(n, nx)
    blocks = _blocks(ny, rows)

    do_rtn = "rtn" in cfg.methods
    chi2_thr = float(chdtri(max(n - 3, 1), cfg.rtn_candidate_chi2_p) / max(n - 3, 1)) if do_rtn else None
    rtn_t = (tstat_threshold(n, cfg.rtn_false_rate, candidate_chi2=chi2_thr, min_snr=cfg.rtn_min_snr,
                             min_transitions=cfg.rtn_min_transitions, max_transitions=cfg.rtn_max_transitions,
                             fit_quality_threshold=cfg.rtn_fit_quality_threshold, floor=cfg.rtn_min_tstat)
             if do_rtn else None)

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
    down_z = np.zeros((ny, nx), np.float32)

    def work(blk):
        r0, r1 = blk
        cube, sat = load(r0, r1)
        try:
            res = find_jumps_block(
                cube, sat, sci[r0:r1], read_noise=rn_col, gain=gain, threshold=cfg.sigma_threshold,
                min_step=cfg.cosmic_ray_min_step, saturation=saturation, rtn_chi2_threshold=chi2_thr,
                test=cfg.jump_test, z_scale=z_scale_out[col_output],
            )
        except NonFiniteRampError as exc:
            raise NonFiniteRampError(source.path, f"rows {r0}:{r1}: {exc.reason}") from None
        rtn = None
        if do_rtn and res.rtn_candidates.any():
            iy, ix = np.nonzero(res.rtn_candidates)
            fit = fit_two_level(cube[:, iy, ix])
            noise = np.sqrt(rn_col[ix].astype(np.float64) ** 2 + np.maximum(fit["slope"], 0) / gain * n / 6.0)
            ok, snr, tstat = classify_rtn(
                fit, noise, min_snr=cfg.rtn_min_snr, min_tstat=rtn_t,
                min_transitions=cfg.rtn_min_transitions, max_transitions=cfg.rtn_max_transitions,
                fit_quality_threshold=cfg.rtn_fit_quality_threshold, amplitude_range=cfg.rtn_amplitude_range,
            )
            sw = np.diff(fit["states"][:, ok].astype(np.int8), axis=0)
            up_k, up_p = np.nonzero(sw == 1)
            dn_k, dn_p = np.nonzero(sw == -1)
            rtn = {
                "y": iy[ok] + r0, "x": ix[ok],
                "up_y": iy[ok][up_p] + r0, "up_x": ix[ok][up_p], "up_frame": up_k + 1,
                "down_y": iy[ok][dn_p] + r0, "down_x": ix[ok][dn_p], "down_frame": dn_k + 1,
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
    done = 0
    try:
        for r0, r1, res, rtn in results:
            done += 1
            if progress is not None:
                progress(done, len(blocks))
            if cfg.progress_every and (done % cfg.progress_every == 0 or done == len(blocks)):
                log.info("%s: rows %d/%d (%d/%d blocks)", source.path or "<in-memory ramp>", r1, ny, done, len(blocks))
            feats["first_jump_frame"][r0:r1] = res.first_jump
            feats["jump_amplitude"][r0:r1] = res.max_jump
            feats["n_jumps"][r0:r1] = res.n_jumps
            feats["persistence"][r0:r1] = res.persistence
            feats["slope"][r0:r1] = res.slope
            feats["first_saturated_frame"][r0:r1] = res.first_saturated
            feats["chi2_line"][r0:r1] = res.chi2
            down_z[r0:r1] = res.down_z
            n_sat0 += int(((res.first_saturated == 0) & sci[r0:r1]).sum())
            jump_parts.append({
                "y": res.y + r0, "x": res.x, "frame": res.frame, "amp": res.amp, "z": res.z, "snr": res.snr,
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
    rtn_jumps = None
    if rtn_all is not None and len(rtn_all["y"]) and len(jumps["y"]):
        shared = np.zeros((ny, nx), bool)
        # an upward switch at which neighbours jump in the same group (the pixel's jump is part of
        # a multi-pixel group: a cosmic-ray footprint) is charge arriving, not a trap switching; so is
        # one that coincides with a larger jump of a neighbour (in that group or the next: IPC of a
        # cosmic ray, a faint snowball halo). Only the switches the two-level fit found count: the
        # jump test also flags other steps of a two-level pixel, which may meet a neighbour's by chance.
        labels = connected_groups(jumps["y"], jumps["x"], jumps["frame"], nx, ny)
        multi = np.bincount(labels)[labels] > 1
        up_keys = _pix_key(rtn_all["up_y"], rtn_all["up_x"], rtn_all["up_frame"], ny, nx)
        in_multi = np.isin(up_keys, _pix_key(jumps["y"][multi], jumps["x"][multi], jumps["frame"][multi], ny, nx))
        shared[rtn_all["up_y"][in_multi], rtn_all["up_x"][in_multi]] = True
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
        # the up-switches of RTN pixels stay flagged (they are steps of the ramp, and a cosmic ray
        # on an RTN pixel looks like one) but form no event and flag no neighbour: event -2
        rtn_jumps = {k: v[~keep] for k, v in jumps.items()}
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
        jumps = _flag_neighbours(jumps, cfg.neighbor_sigma, sci, feats["first_saturated_frame"], down_z)
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
        # an RTN pixel keeps its class when it holds only IPC charge implied by a neighbour's jump
        implied_on_rtn = ~np.isfinite(jumps["amp"]) & (mask[jumps["y"], jumps["x"]] == CLASS_CODES["telegraph_noise"])
        cr = ~is_sb & ~implied_on_rtn
        mask[jumps["y"][cr], jumps["x"][cr]] = CLASS_CODES["cosmic_ray"]
        mask[jumps["y"][is_sb], jumps["x"][is_sb]] = CLASS_CODES["snowball"]
        # faint halo pixels of a snowball are not RTN either: an "RTN" pixel within the
        # snowball's reach whose first up-switch is the snowball's charge arriving
        # (its group or the next) belongs to the snowball
        sb = np.nonzero(etype == "snowball")[0]
        if rtn_all is not None and len(rtn_all["y"]) and len(sb):
            inside = np.zeros(len(rtn_all["y"]), bool)
            up_key = _pix_key(rtn_all["up_y"], rtn_all["up_x"], rtn_all["up_frame"], ny, nx)
            for g in sb:
                reach = ev["radius"][g] + SNOWBALL_HALO_MARGIN
                near = np.hypot(rtn_all["y"] - ev["centroid_y"][g], rtn_all["x"] - ev["centroid_x"][g]) <= reach
                if not near.any():
                    continue
                f0 = int(ev["first_frame"][g])
                at_f = np.zeros(len(rtn_all["y"]), bool)
                for f in (f0, f0 + 1):
                    k = _pix_key(rtn_all["y"], rtn_all["x"], f, ny, nx)
                    at_f |= np.isin(k, up_key)
                inside |= near & at_f
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

    if rtn_jumps is not None and len(rtn_jumps["y"]):
        rtn_jumps["event"] = np.full(len(rtn_jumps["y"]), RTN_SWITCH_EVENT, np.int64)
        jumps = {k: np.concatenate([np.asarray(jumps[k]), np.asarray(rtn_jumps[k]).astype(np.asarray(jumps[k]).dtype)])
                 for k in jumps}
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
    switches = {k: np.zeros(0, np.int64) for k in ("y", "x", "frame", "direction")}
    if rtn_all is not None and len(rtn_all["y"]):
        switches = {
            "y": np.concatenate([rtn_all["up_y"], rtn_all["down_y"]]).astype(np.int64),
            "x": np.concatenate([rtn_all["up_x"], rtn_all["down_x"]]).astype(np.int64),
            "frame": np.concatenate([rtn_all["up_frame"], rtn_all["down_frame"]]).astype(np.int64),
            "direction": np.concatenate([np.ones(len(rtn_all["up_y"]), np.int64),
                                         -np.ones(len(rtn_all["down_y"]), np.int64)]),
        }
    return DetectionResult(
        rtn_switches=switches,
        mask=mask, events=ev, features=feats, jumps=jumps, read_noise=read_noise, gain=gain,
        unit=source.unit, n_groups=n, integration=integration, source_layout=source.layout,
        meta={"block_rows": rows, "n_blocks": len(blocks), "saturation": saturation,
              "sigma_threshold": cfg.sigma_threshold, "jump_test": cfg.jump_test, "methods": list(cfg.methods),
              "skipped": skipped, "refpix": list(source.refpix), "refpix_applied": refc.active,
              "read_noise_per_output": [round(float(v), 5) for v in read_noise_out],
              "read_noise_source": noise_source, "gain_source": gain_source,
              "gls_z_scale_per_output": [round(float(v), 4) for v in z_scale_out],
              "rtn_tstat_threshold": rtn_t, "rtn_false_rate": cfg.rtn_false_rate if do_rtn else None,
              "num_outputs": int(col_output.max()) + 1, "config": cfg.to_dict()},
    )
