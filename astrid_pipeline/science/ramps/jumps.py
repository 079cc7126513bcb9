"""Cosmic-ray jumps in up-the-ramp data, and the per-pixel temporal features.

Method (after the two-point-difference method of Anderson & Gordon 2011,
PASP 123, 1237, used by the JWST pipeline): the differences between
consecutive groups ``d_k`` of a pixel are compared with a noise model

    sigma_d^2 = 2 sigma_read^2 + max(c, 0) / gain      (DN^2)

where ``c`` is the pixel's typical difference (its signal per group). A
cosmic ray adds charge, so the test is one-sided: ``(d_k - c) / sigma_d``
above ``sigma_threshold`` flags group ``k + 1`` (the first group that
holds the charge, the JWST convention). To stay robust to other jumps in the
same pixel, ``c`` is a median over the not-yet-flagged differences and the
largest outlier is removed one at a time until none is left.

A fast pass over the whole block (a trimmed mean: sum minus maximum and
minimum) sends only the pixels that could hold a jump, a saturation or a
two-level signal to the exact iterative pass, so the cost on a clean block is
a few vector passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BlockResult:
    """Jumps (sparse, block-local rows) and per-pixel features of one row block."""

    # jump records
    y: np.ndarray
    x: np.ndarray
    frame: np.ndarray  # first group holding the charge
    amp: np.ndarray  # step above the pixel's usual difference (data unit)
    z: np.ndarray  # step / sigma_d
    to_sat: np.ndarray  # the jump ended in saturation
    headroom: np.ndarray  # room to saturation before the jump (data unit; inf without a level)
    fit_quality: np.ndarray  # fraction of the pixel's difference variance removed by its steps
    # per-pixel features (rows, cols)
    first_jump: np.ndarray  # int16, -1 = none
    max_jump: np.ndarray  # float32
    n_jumps: np.ndarray  # int16
    persistence: np.ndarray  # int16: groups after the first jump that stay above the pre-jump trend
    slope: np.ndarray  # float32: typical difference per group
    first_saturated: np.ndarray  # int16, -1 = never
    chi2: np.ndarray  # float32: reduced chi2 of the reads about a line (RTN candidacy)
    rtn_candidates: np.ndarray  # bool


def _masked_median(D: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Median over axis 0 of the entries where ``use`` (NaN where none); sorts, no masked arrays."""
    X = np.where(use, D, np.inf)
    X.sort(axis=0)
    k = use.sum(axis=0)
    cols = np.arange(D.shape[1])
    lo = X[np.maximum((k - 1) // 2, 0), cols]
    hi = X[np.maximum(k // 2, 0), cols]
    with np.errstate(invalid="ignore"):
        med = 0.5 * (lo + hi)
    med[k == 0] = np.nan
    return med


def _center(D: np.ndarray, use: np.ndarray, fallback: float) -> np.ndarray:
    """Typical difference of each pixel from its usable differences.

    Median of three or more; with two, the smaller (a jump only adds); with
    one or none (a pixel that saturates at once), the block's typical value.
    """
    nuse = use.sum(axis=0)
    c = _masked_median(D, use)
    two = nuse == 2
    if two.any():
        c[two] = np.where(use[:, two], D[:, two], np.inf).min(axis=0)
    c[nuse < 2] = fallback
    return c


def find_jumps_block(
    cube: np.ndarray,
    sat_pixels: tuple,
    science: np.ndarray,
    *,
    read_noise: float,
    gain: float,
    threshold: float,
    min_step: float = 0.0,
    saturation: float | None = None,
    rtn_chi2_threshold: float | None = None,
) -> BlockResult:
    """Find jumps in a reference-corrected block ``cube`` (groups, rows, cols), float32.

    ``sat_pixels`` is ``(iy, ix, S)``: the pixels of the block that saturate
    and their per-group saturation flags ``S`` (groups, pixels); ``science``
    flags the light-sensitive pixels (rows, cols). ``read_noise`` is per read,
    in the unit of the data; ``gain`` converts the data to electrons.
    """
    n, R, nx = cube.shape
    m = n - 1
    if m < 3:
        from astrid_pipeline.science.ramps.errors import TooFewGroupsError

        raise TooFewGroupsError(None, f"jump detection needs at least 4 groups, got {n}")
    rn2 = np.float32(read_noise) ** 2
    inv_g = np.float32(1.0 / gain)
    thr = np.float32(threshold)

    # pass 1, group by group (no full-size temporaries): sum, max, min of the differences
    s = np.zeros((R, nx), np.float32)
    mx = np.full((R, nx), -np.inf, np.float32)
    mn = np.full((R, nx), np.inf, np.float32)
    dk = np.empty((R, nx), np.float32)
    for k in range(m):
        np.subtract(cube[k + 1], cube[k], out=dk)
        s += dk
        np.maximum(mx, dk, out=mx)
        np.minimum(mn, dk, out=mn)
    if not np.isfinite(s).all():
        from astrid_pipeline.science.ramps.errors import NonFiniteRampError

        bad = int((~np.isfinite(s)).sum())
        raise NonFiniteRampError(None, f"{bad} pixel(s) of this block hold NaN or infinite values")
    center = (s - mx - mn) / np.float32(m - 2)  # trimmed mean: robust to one jump up and one down
    var_d = 2 * rn2 + np.maximum(center, 0) * inv_g
    zmax = (mx - center) / np.sqrt(var_d)
    s_iy, s_ix, S_sat = sat_pixels
    anysat = np.zeros((R, nx), bool)
    anysat[s_iy, s_ix] = True

    # pass 2: scatter of the reads about a straight line (sensitive to two-level signals)
    tc = np.arange(1, n, dtype=np.float32)
    tc -= tc.mean()
    S1 = np.zeros((R, nx), np.float32)
    St = np.zeros((R, nx), np.float32)
    S2 = np.zeros((R, nx), np.float32)
    for k in range(m):
        # read k+1 minus read 0 minus the robust trend: small numbers, float32 is enough
        np.subtract(cube[k + 1], cube[0], out=dk)
        dk -= center * np.float32(k + 1)
        S1 += dk
        St += np.float32(tc[k]) * dk
        dk *= dk
        S2 += dk
    sse = S2 - S1 * S1 / np.float32(m) - St * St / np.float32(np.dot(tc, tc))
    var_lvl = rn2 + np.maximum(center, 0) * inv_g * np.float32(n / 6.0)
    chi2 = sse / (var_lvl * np.float32(max(m - 2, 1)))
    del S1, St, S2, sse, dk

    # the exact pass uses a median centre; the trimmed mean here differs from it by
    # about 1.25 / sqrt(m) sigma, so a margin of 3 / sqrt(m) sigma (at least 0.3)
    # sends every pixel the exact pass could flag to it
    margin = np.float32(min(1.0, max(0.3, 3.0 / np.sqrt(m))))
    cand = science & ((zmax > thr - margin) | anysat)
    rtn_cand = np.zeros_like(cand)
    if rtn_chi2_threshold is not None:
        rtn_cand = science & ~anysat & (chi2 > rtn_chi2_threshold)
        cand |= rtn_cand

    first_jump = np.full((R, nx), -1, dtype=np.int16)
    max_jump = np.zeros((R, nx), dtype=np.float32)
    n_jumps = np.zeros((R, nx), dtype=np.int16)
    persistence = np.zeros((R, nx), dtype=np.int16)
    slope = center.astype(np.float32)
    first_sat = np.full((R, nx), -1, dtype=np.int16)
    if len(s_iy):
        first_sat[s_iy, s_ix] = np.argmax(S_sat, axis=0)

    iy, ix = np.nonzero(cand)
    empty_i = np.zeros(0, dtype=np.int32)
    empty_f = np.zeros(0, dtype=np.float32)
    if len(iy) == 0:
        return BlockResult(empty_i, empty_i, empty_i, empty_f, empty_f, np.zeros(0, bool), empty_f, empty_f,
                           first_jump, max_jump, n_jumps, persistence, slope, first_sat, chi2, rtn_cand)

    C = cube[:, iy, ix].astype(np.float64)
    D = np.diff(C, axis=0)  # (m, P)
    S = np.zeros((n, len(iy)), dtype=bool)
    if len(s_iy):
        pos = np.full((R, nx), -1, dtype=np.int64)
        pos[iy, ix] = np.arange(len(iy))
        p = pos[s_iy, s_ix]
        S[:, p[p >= 0]] = S_sat[:, p >= 0]
    valid = ~(S[:-1] & S[1:])  # a difference between two saturated groups says nothing
    to_sat_d = S[1:] & ~S[:-1]
    P = D.shape[1]
    ok_c = science & ~anysat
    c_fb = float(np.median(center[ok_c])) if ok_c.any() else 0.0
    flags = np.zeros((m, P), dtype=bool)
    active = np.arange(P)
    for _ in range(max(m - 2, 1)):
        Da = D[:, active]
        use = valid[:, active] & ~flags[:, active]
        nuse = use.sum(axis=0)
        c = _center(Da, use, c_fb)
        sig = np.sqrt(2 * float(rn2) + np.maximum(c, 0) / gain)
        z = (Da - c) / sig
        z[~use] = -np.inf
        k = np.argmax(z, axis=0)
        zk = z[k, np.arange(len(active))]
        hit = (zk > threshold) & (nuse >= 1)
        if min_step > 0:
            hit &= (Da[k, np.arange(len(active))] - c) >= min_step
        if not hit.any():
            break
        flags[k[hit], active[hit]] = True
        active = active[hit]

    use = valid & ~flags
    c = _center(D, use, c_fb)
    sig = np.sqrt(2 * float(rn2) + np.maximum(c, 0) / gain)
    Z = (D - c) / sig
    with np.errstate(invalid="ignore", divide="ignore"):
        chi_all = np.where(valid, Z * Z, 0).sum(axis=0)
        chi_rest = np.where(use, Z * Z, 0).sum(axis=0)
        fq = np.where(chi_all > 0, 1 - chi_rest / chi_all, 0.0)
    slope[iy, ix] = c
    if rtn_chi2_threshold is not None and flags.any():
        # a pixel whose excess scatter is all in its flagged steps (a cosmic ray)
        # is no RTN candidate: redo its line chi2 with the steps taken out
        hf = np.nonzero(flags.any(axis=0))[0]
        steps = np.where(flags[:, hf], D[:, hf] - c[hf], 0.0)
        Yc = C[:, hf] - np.concatenate([np.zeros((1, len(hf))), np.cumsum(steps, axis=0)])
        tt = np.arange(n, dtype=np.float64)[:, None]
        tt -= tt.mean()
        r = Yc - Yc.mean(axis=0)
        bb = (tt * r).sum(axis=0) / (tt * tt).sum()
        sse_c = ((r - bb * tt) ** 2).sum(axis=0)
        var_c = float(rn2) + np.maximum(c[hf], 0) / gain * (n / 6.0)
        chi_c = sse_c / (var_c * max(n - 2, 1))
        py, px = iy[hf], ix[hf]
        chi2[py, px] = chi_c
        rtn_cand[py, px] = (chi_c > rtn_chi2_threshold) & ~anysat[py, px] & science[py, px]

    jk, jp = np.nonzero(flags)
    amp = (D[jk, jp] - c[jp]).astype(np.float32)
    frame = (jk + 1).astype(np.int32)
    # reads (before the jump) to measure the headroom to saturation
    if saturation is not None:
        level_before = C[jk, jp]
        headroom = (np.float32(saturation) - level_before).astype(np.float32)
    else:
        headroom = np.full(len(jk), np.inf, dtype=np.float32)

    # per-pixel features of the pixels with jumps
    if len(jk):
        order = np.lexsort((jk, jp))
        fj = np.full(P, -1, dtype=np.int32)
        # first flagged difference per pixel: reverse assignment keeps the smallest
        fj[jp[order][::-1]] = jk[order][::-1] + 1
        mj = np.zeros(P, dtype=np.float32)
        np.maximum.at(mj, jp, amp)
        nj = np.bincount(jp, minlength=P).astype(np.int16)
        has = fj > 0
        first_jump[iy[has], ix[has]] = fj[has]
        max_jump[iy[has], ix[has]] = mj[has]
        n_jumps[iy[has], ix[has]] = nj[has]
        # persistence: groups from the first jump on whose level stays above the
        # pre-jump trend by more than half the jump
        hp = np.nonzero(has)[0]
        Y = C[:, hp]
        f = fj[hp]
        base = Y[f - 1, np.arange(len(hp))]
        tt = np.arange(n)[:, None]
        extrap = base + c[hp] * (tt - (f - 1))
        first_amp = np.zeros(P)
        first_amp[jp[order][::-1]] = amp[order][::-1]
        elevated = ((Y - extrap) > 0.5 * first_amp[hp]) & (tt >= f)
        persistence[iy[hp], ix[hp]] = elevated.sum(axis=0).astype(np.int16)

    return BlockResult(
        y=iy[jp].astype(np.int32), x=ix[jp].astype(np.int32), frame=frame, amp=amp,
        z=Z[jk, jp].astype(np.float32), to_sat=to_sat_d[jk, jp], headroom=headroom,
        fit_quality=fq[jp].astype(np.float32),
        first_jump=first_jump, max_jump=max_jump, n_jumps=n_jumps, persistence=persistence,
        slope=slope, first_saturated=first_sat, chi2=chi2, rtn_candidates=rtn_cand,
    )


def estimate_read_noise(cube: np.ndarray, science: np.ndarray, gain: float, max_pixels: int = 20_000) -> float:
    """Per-read white noise (data unit) from second differences of the reads.

    ``dd_k = d_{k+1} - d_k`` cancels the signal; for white read noise sigma
    and Poisson increments of variance ``p`` per group it has variance
    ``6 sigma^2 + 2 p``. The scatter is a pooled MAD over science pixels, so
    jumps and saturated pixels barely move it.
    """
    n = cube.shape[0]
    if n < 3:
        from astrid_pipeline.science.ramps.errors import TooFewGroupsError

        raise TooFewGroupsError(None, f"read-noise estimation needs at least 3 groups, got {n}")
    idx = np.flatnonzero(science.ravel())
    if len(idx) == 0:
        raise ValueError("no science pixels to estimate the read noise from")
    if len(idx) > max_pixels:
        idx = idx[:: int(np.ceil(len(idx) / max_pixels))]
    flat = cube.reshape(n, -1)[:, idx].astype(np.float64)
    d = np.diff(flat, axis=0)
    dd = np.diff(d, axis=0).ravel()
    sig_dd = 1.4826 * np.median(np.abs(dd - np.median(dd)))
    p = max(float(np.median(np.median(d, axis=0))), 0.0) / gain
    return float(np.sqrt(max(sig_dd**2 - 2 * p, 1e-12) / 6.0))
