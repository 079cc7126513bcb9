"""Cosmic-ray jumps in up-the-ramp data, and the per-pixel temporal features.

Two tests of the group differences ``d_k = y_{k+1} - y_k`` of a pixel, both
one-sided (a cosmic ray only adds charge) and both flagging group ``k + 1``
(the first group that holds the charge, the JWST convention):

``gls`` (default)
    A generalised-least-squares step test over the whole ramp. With white
    read noise ``sigma`` per read and Poisson noise ``p = slope / gain`` per
    group, the differences have the covariance

        Sigma = sigma^2 T + p I,   T = tridiag(-1, 2, -1)

    (neighbouring differences share a read). Under "no jump" the
    differences are ``mu + noise``; a jump in difference ``j`` adds ``A`` to
    ``d_j`` alone. The GLS estimate of ``A`` with ``mu`` free, divided by its
    standard error, is exactly N(0, 1) under the null for every ``j`` and
    every number of groups, and it uses every read: a jump near either end
    of a read-noise-limited ramp is measured against the many reads on the
    other side, not against one difference. ``T`` is diagonalised by the
    type-I discrete sine transform (``T = Q diag(lambda) Q``, ``lambda_k =
    2 - 2 cos(pi k / m+1)``), so ``Sigma^-1`` of every pixel costs two
    matrix products with ``Q`` and a division. More jumps in a pixel are
    found one at a time: each flagged difference becomes a free parameter
    (a nuisance column of the design), and the test is repeated on the rest.
    This is the optimal (likelihood-ratio) test of a single step in a
    Gaussian ramp; cf. Anderson & Gordon 2011 (PASP 123, 1237) for the
    two-point method it generalises and Brandt 2024 (PASP 136, 045004) for
    GLS ramp fitting of JWST data.

``two_point``
    The JWST pipeline's method (Anderson & Gordon 2011): ``(d_k - c) /
    sigma_d`` with ``c`` the median of the not-yet-flagged differences and
    ``sigma_d^2 = 2 sigma^2 + max(c, 0) / gain``, the largest outlier
    removed one at a time. Pixels that saturate always go through it (their
    differences after saturation say nothing).

The read noise is per column (the value of the column's readout output),
in the data unit. A fast pass over the whole block (trimmed means of the
differences and a line chi2) sends only the pixels that could hold a jump, a
saturation or a two-level signal to the exact passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: pixels per chunk of the vectorised GLS and line-fit passes (their temporaries stay in the CPU cache)
GLS_CHUNK = 8192
#: the GLS re-search of a pixel with jumps stops when no free difference stands this far (in sigma of one
#: difference, at a threshold of 4) above the others: the GLS statistic is at most about twice that
PRESCREEN_SIGMA = 1.8
#: a flagged pixel stays an RTN candidate when one of its group differences falls this many sigma
#: below its median difference (a cosmic ray only adds charge; RTN also drops)
RTN_DOWN_STEP_SIGMA = 2.5


@dataclass
class BlockResult:
    """Jumps (sparse, block-local rows) and per-pixel features of one row block."""

    # jump records
    y: np.ndarray
    x: np.ndarray
    frame: np.ndarray  # first group holding the charge
    amp: np.ndarray  # step above the pixel's usual difference (data unit)
    z: np.ndarray  # significance of the test that flagged it
    snr: np.ndarray  # step / sigma of one group difference
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
    down_z: np.ndarray  # float32: most negative (difference - median) / sigma_d (0 where not computed)


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


# ----------------------------------------------------------------------------
# the GLS step test
# ----------------------------------------------------------------------------

@lru_cache(maxsize=16)
def dst_basis(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Q, lambda, Q @ 1)``: the orthonormal type-I DST matrix that diagonalises tridiag(-1, 2, -1) of size m."""
    k = np.arange(1, m + 1)
    Q = np.sqrt(2.0 / (m + 1)) * np.sin(np.pi * np.outer(k, k) / (m + 1))
    lam = 2.0 - 2.0 * np.cos(np.pi * k / (m + 1))
    return Q, lam, Q.sum(axis=1)


def gls_step_z(D: np.ndarray, r: np.ndarray, sigma: np.ndarray, flagged: np.ndarray | None = None):
    """GLS significance of a jump in each difference, with ``mu`` (and already flagged jumps) free.

    ``D`` (m, P) differences, ``r`` (P,) Poisson over read variance per
    difference, ``sigma`` (P,) read noise per read. ``flagged`` (f, P) indices
    of differences already taken as jumps (their amplitudes are free
    parameters), or None. Returns ``(z (m, P), amplitudes (f, P))``; ``z`` is
    -inf at flagged differences.
    """
    m, P = D.shape
    Q, lam, q1 = dst_basis(m)
    Q = Q.astype(D.dtype)
    Lr = lam.astype(D.dtype)[:, None] + r.astype(D.dtype)[None, :]
    inv = 1.0 / Lr
    u = Q @ ((Q @ D) * inv)  # Sigma^-1 d (unit read noise)
    a = Q @ (q1.astype(D.dtype)[:, None] * inv)  # Sigma^-1 1
    W = (Q * Q) @ inv  # diag(Sigma^-1)
    b = (q1.astype(D.dtype)[:, None] ** 2 * inv).sum(axis=0)  # 1' Sigma^-1 1
    s = u.sum(axis=0)  # 1' Sigma^-1 d
    cols = np.arange(P)
    if flagged is None or len(flagged) == 0:
        num = b * u - a * s
        with np.errstate(invalid="ignore", divide="ignore"):
            z = num / np.sqrt(np.maximum(b * (b * W - a * a), 1e-30)) / sigma
        return z, np.zeros((0, P), D.dtype)
    f = flagged.shape[0]
    # columns of Sigma^-1 at the flagged differences: the nuisance design is [1, e_F]
    S = np.stack([Q @ (Q[flagged[t], :].T * inv) for t in range(f)])  # (f, m, P)
    X = np.concatenate([a[None], S], axis=0)  # (1 + f, m, P): Sigma^-1 Z
    G = np.empty((P, 1 + f, 1 + f), D.dtype)
    G[:, 0, 0] = b
    for t in range(f):
        G[:, 0, 1 + t] = G[:, 1 + t, 0] = a[flagged[t], cols]
        for t2 in range(f):
            G[:, 1 + t, 1 + t2] = S[t][flagged[t2], cols]
    rhs = np.concatenate([s[:, None], u[flagged, cols].T], axis=1)  # (P, 1 + f)
    G64 = G.astype(np.float64)
    G64 += 1e-9 * np.trace(G64, axis1=1, axis2=2)[:, None, None] * np.eye(1 + f)  # ridge: never singular
    H = np.linalg.inv(G64).astype(D.dtype)
    beta = np.einsum("pij,pj->pi", H, rhs)  # (mu, A_F)
    Pd = u - np.einsum("imp,pi->mp", X, beta)
    diagP = W - np.einsum("imp,pij,jmp->mp", X, H, X)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = Pd / np.sqrt(np.maximum(diagP, 1e-30)) / sigma
    z[flagged, cols[None, :]] = -np.inf
    z[diagP <= 1e-6 * np.maximum(W, 1e-30)] = -np.inf  # no information left (e.g. all but one flagged)
    return z, beta[:, 1:].T


#: below this fraction of the smallest eigenvalue of T, the Poisson term enters the GLS statistic linearly
#: (error of the first-order expansion < 0.01 in z)
R_LINEAR = 0.3


def _gls_matrix(m: int, r: float) -> np.ndarray:
    """``M`` with ``z = M @ d`` the GLS jump statistic of every difference (one jump, mu free, unit read
    noise) for a Poisson / read variance ratio ``r``."""
    Q, lam, _ = dst_basis(m)
    Sinv = (Q * (1.0 / (lam + r))[None, :]) @ Q  # Sigma^-1 for unit read noise
    a = Sinv.sum(axis=1)
    b = float(a.sum())
    gamma = 1.0 / np.sqrt(np.maximum(np.diag(Sinv) - a * a / b, 1e-30))
    # z = gamma * (u - a s / b), u = Sinv d, s = 1' u = a' d
    return gamma[:, None] * (Sinv - np.outer(a / b, a))


@lru_cache(maxsize=64)
def _gls_linear(m: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(M0, M1, r_max)``: ``M(r) = M0 + r M1`` to first order, valid for ``r <= r_max``."""
    lam1 = float(dst_basis(m)[1][0])
    h = 1e-4 * lam1
    M0 = _gls_matrix(m, 0.0)
    M1 = (_gls_matrix(m, h) - M0) / h
    return M0.astype(np.float32), M1.astype(np.float32), R_LINEAR * lam1


def gls_max_z(D: np.ndarray, r: np.ndarray, sigma: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Largest GLS jump statistic of each pixel (one jump, mu free), and where it is for those above ``threshold``.

    Returns ``(z_max (P,), k (P,))`` with ``k`` = -1 at or below the threshold.
    Pixels whose Poisson ratio ``r`` is small (dark, read-noise limited: most
    of a frame) take the first-order expansion ``z = (M0 + r M1) d``, two
    matrix products; the others the exact DST solution (:func:`gls_step_z`).
    """
    m, P = D.shape
    M0, M1, r_max = _gls_linear(m)
    M01 = np.concatenate([M0, M1]).astype(D.dtype, copy=False)
    zmax = np.empty(P, np.float32)
    kmax = np.full(P, -1, np.intp)
    lin = r <= r_max
    for sel in (np.flatnonzero(lin), np.flatnonzero(~lin)):
        if len(sel) == 0:
            continue
        Ds = D if len(sel) == P else D[:, sel]
        if lin[sel[0]]:
            Z = M01 @ Ds  # one product for both terms
            z = Z[:m]
            z += Z[m:] * r[sel].astype(D.dtype)[None, :]
            z /= sigma[sel].astype(D.dtype)[None, :]
        else:
            z, _ = gls_step_z(Ds, r[sel], sigma[sel])
        zm = z.max(axis=0)
        hit = np.flatnonzero(zm > threshold)
        zmax[sel] = zm
        kmax[sel[hit]] = np.argmax(z[:, hit], axis=0)
    return zmax, kmax


def gls_flags(D: np.ndarray, r: np.ndarray, sigma: np.ndarray, threshold: float, *, min_step: float = 0.0,
              pixels: np.ndarray | None = None, chunk: int = GLS_CHUNK,
              inv_gain: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterative GLS jump search on differences ``D`` (m, P).

    ``pixels`` (indices into the P columns) limits the search to some
    pixels; ``r`` and ``sigma`` are per column of ``D``. Pass 1 tests those
    pixels in chunks of ``chunk``; pixels with a jump are searched again with
    each flagged difference as a free parameter until no difference passes
    ``threshold`` (at most :func:`max_jumps_per_pixel`). With ``inv_gain``
    (1 / gain), the Poisson ratio of those pixels is re-measured from their
    not-yet-flagged differences at every round (a jump inflates any slope
    estimate that includes it). Returns ``(flagged pixel indices (K,),
    flags (m, K) bool, z at flagging (m, K))``.
    """
    m, P = D.shape
    pix = np.arange(P) if pixels is None else np.asarray(pixels)
    hit_pix, hit_k, hit_z = [], [], []
    # most pixels are tested: run on contiguous column chunks (views, no copy) and keep the wanted ones
    dense = len(pix) > P // 2
    wanted = None
    if dense:
        wanted = np.zeros(P, bool)
        wanted[pix] = True
    for c0 in range(0, P if dense else len(pix), chunk):
        idx = np.arange(c0, min(P, c0 + chunk)) if dense else pix[c0:c0 + chunk]
        Dc = D[:, c0:c0 + len(idx)] if dense else D[:, idx]
        zk, k = gls_max_z(Dc, r[idx], sigma[idx], threshold)
        hit = k >= 0
        if dense:
            hit &= wanted[idx]
        if min_step > 0:
            hit &= _step_size(Dc, k) >= min_step
        hit_pix.append(idx[hit])
        hit_k.append(k[hit])
        hit_z.append(zk[hit])
    active = np.concatenate(hit_pix) if hit_pix else np.zeros(0, np.intp)
    first = np.concatenate(hit_k) if hit_k else np.zeros(0, np.intp)
    zfirst = np.concatenate(hit_z) if hit_z else np.zeros(0, np.float32)
    return gls_refine(D, r, sigma, threshold, active, first, zfirst, min_step=min_step, inv_gain=inv_gain)


def gls_refine(D: np.ndarray, r: np.ndarray, sigma: np.ndarray, threshold: float, active: np.ndarray,
               first: np.ndarray, zfirst: np.ndarray, *, min_step: float = 0.0, inv_gain: float | None = None):
    """The rounds after pass 1 of :func:`gls_flags`: ``active`` pixels (columns of ``D``) with their first
    jump at difference ``first`` (significance ``zfirst``) are searched for more. Same returns."""
    m = D.shape[0]
    K = len(active)
    flags = np.zeros((m, K), bool)
    zflag = np.zeros((m, K), np.float32)
    flags[first, np.arange(K)] = True
    zflag[first, np.arange(K)] = zfirst
    sub = np.arange(K)  # position in the output of each still-active pixel
    fl = [first]
    # more jumps than this in one pixel is no cosmic-ray history (RTN, a noisy pixel): stop there
    for _ in range(max(min(m - 3, max_jumps_per_pixel(m) - 1), 0)):
        if len(sub) == 0:
            break
        cols = active[sub]
        Da = D[:, cols]
        ra = r[cols]
        if inv_gain is not None:
            free = ~flags[:, sub]
            c = (np.where(free, Da, 0).sum(axis=0) / np.maximum(free.sum(axis=0), 1)).astype(Da.dtype)
            ra = np.maximum(c, 0) * np.float32(inv_gain) / np.maximum(sigma[cols] ** 2, 1e-12)
            # a pixel none of whose free differences stands PRESCREEN_SIGMA above the rest cannot reach the
            # threshold with the GLS statistic either (it gains at most ~2x over one difference): done
            sd = np.sqrt(2 * sigma[cols] ** 2 + np.maximum(c, 0) * np.float32(inv_gain))
            zz = np.where(free, (Da - c) / sd, -np.inf).max(axis=0)
            go = zz > PRESCREEN_SIGMA * threshold / 4.0
            if not go.all():
                sub, cols, Da, ra = sub[go], cols[go], Da[:, go], ra[go]
                fl = [f_[go] for f_ in fl]
                if len(sub) == 0:
                    break
        F = np.stack(fl)  # (f, active)
        z, _ = gls_step_z(Da, ra, sigma[cols], F)
        k = np.argmax(z, axis=0)
        zk = z[k, np.arange(len(sub))]
        hit = zk > threshold
        if min_step > 0:
            hit &= _step_size(D[:, cols], k) >= min_step
        if not hit.any():
            break
        sub, k, zk = sub[hit], k[hit], zk[hit]
        flags[k, sub] = True
        zflag[k, sub] = zk
        fl = [f_[hit] for f_ in fl] + [k]
    return active, flags, zflag


def trimmed_center(D: np.ndarray) -> np.ndarray:
    """Mean over axis 0 without the largest and smallest value (robust to one jump up and one down; cheap).

    Falls back to the plain mean with fewer than three values.
    """
    m = D.shape[0]
    if m < 3:
        return D.mean(axis=0)
    return (D.sum(axis=0) - D.max(axis=0) - D.min(axis=0)) / (m - 2)


def max_jumps_per_pixel(m: int) -> int:
    """Most jumps the GLS search takes in one pixel of ``m`` differences (at least 4, a third of them)."""
    return max(4, m // 3)


def _step_size(D: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Difference ``k`` of each pixel above the pixel's median difference."""
    return D[k, np.arange(D.shape[1])] - np.median(D, axis=0)


# ----------------------------------------------------------------------------
# one block
# ----------------------------------------------------------------------------

def find_jumps_block(
    cube: np.ndarray,
    sat_pixels: tuple,
    science: np.ndarray,
    *,
    read_noise,
    gain: float,
    threshold: float,
    min_step: float = 0.0,
    saturation: float | None = None,
    rtn_chi2_threshold: float | None = None,
    test: str = "gls",
    z_scale=1.0,
) -> BlockResult:
    """Find jumps in a reference-corrected block ``cube`` (groups, rows, cols), float32.

    ``sat_pixels`` is ``(iy, ix, S)``: the pixels of the block that saturate
    and their per-group saturation flags ``S`` (groups, pixels); ``science``
    flags the light-sensitive pixels (rows, cols). ``read_noise`` is the white
    noise per read in the unit of the data: a number, or one value per
    column (its readout output's); ``gain`` converts the data to electrons.
    ``z_scale`` (a number or one per column) is the measured scatter of the
    GLS statistic on clean pixels (:func:`gls_scale`): the GLS threshold is
    ``threshold x z_scale``.
    """
    n, R, nx = cube.shape
    m = n - 1
    if m < 3:
        from astrid_pipeline.science.ramps.errors import TooFewGroupsError

        raise TooFewGroupsError(None, f"jump detection needs at least 4 groups, got {n}")
    rn_col = np.broadcast_to(np.asarray(read_noise, dtype=np.float32), (nx,)).astype(np.float32)
    rn2 = (rn_col**2)[None, :]  # (1, nx)
    inv_g = np.float32(1.0 / gain)
    thr = np.float32(threshold)

    # pass 1: sum, max, min of the group differences (one array of differences, reused by the GLS pass)
    Dall = np.diff(cube, axis=0)  # (m, R, nx) float32
    s = cube[-1] - cube[0]  # the sum of the differences
    mx = Dall.max(axis=0)
    mn = Dall.min(axis=0)
    dk = np.empty((R, nx), np.float32)
    finite = np.isfinite(s) & np.isfinite(mx) & np.isfinite(mn)  # a NaN anywhere in a ramp reaches its max
    if not finite.all():
        from astrid_pipeline.science.ramps.errors import NonFiniteRampError

        bad = int((~finite).sum())
        raise NonFiniteRampError(None, f"{bad} pixel(s) of this block hold NaN or infinite values")
    center = (s - mx - mn) / np.float32(m - 2)  # trimmed mean: robust to one jump up and one down
    s_iy, s_ix, S_sat = sat_pixels
    anysat = np.zeros((R, nx), bool)
    anysat[s_iy, s_ix] = True

    # pass 2, in chunks of pixels that stay in the CPU cache: (a) the scatter of the reads about a
    # straight line (sensitive to two-level signals): the reads minus read 0 minus the robust trend are
    # cumulative sums of (d - centre), one product with a lower-triangular matrix of ones (small numbers,
    # float32 is enough); (b) with the GLS test, the first GLS jump search of every pixel, its Poisson
    # term from that line fit's slope (far less noisy than a mean of differences)
    tc = np.arange(1, n, dtype=np.float32)
    tc -= tc.mean()
    ttc = np.float32(np.dot(tc, tc))
    L = np.tril(np.ones((m, m), np.float32))
    gls = test == "gls"
    if gls:
        # the GLS matrices annihilate a constant (mu is free): one product of [L; M0; M1] with (d - centre)
        M0, M1, r_max = _gls_linear(m)
        LM = np.concatenate([L, M0, M1]).astype(np.float32)
    S1 = np.empty(R * nx, np.float32)
    St = np.empty(R * nx, np.float32)
    S2 = np.empty(R * nx, np.float32)
    Dflat = Dall.reshape(m, R * nx)
    cflat = center.ravel()
    if gls:
        wanted = (science & ~anysat).ravel()
        sig_all = np.ascontiguousarray(np.broadcast_to(
            (rn_col * np.broadcast_to(np.asarray(z_scale, np.float32), (nx,)))[None, :], (R, nx))).ravel()
        r_all = np.empty(R * nx, np.float32)
        rn2_flat = np.ascontiguousarray(np.broadcast_to(rn2, (R, nx))).ravel()
        hit_pix, hit_k, hit_z = [], [], []
    for c0 in range(0, R * nx, GLS_CHUNK):
        c1 = min(R * nx, c0 + GLS_CHUNK)
        Dc = Dflat[:, c0:c1]
        Dcc = Dc - cflat[None, c0:c1]
        if gls:
            big = LM @ Dcc
            Y = big[:m]
        else:
            Y = L @ Dcc
        S1[c0:c1] = Y.sum(axis=0)
        St[c0:c1] = tc @ Y
        S2[c0:c1] = np.einsum("ij,ij->j", Y, Y)
        if gls:
            slope_fit = cflat[c0:c1] + St[c0:c1] / ttc
            rc = np.maximum(slope_fit, 0) * inv_g / np.maximum(rn2_flat[c0:c1], 1e-12)
            r_all[c0:c1] = rc
            z = big[m:2 * m]
            z += big[2 * m:] * rc[None, :]
            sg = sig_all[c0:c1]
            zk = z.max(axis=0) / sg
            k = np.full(c1 - c0, -1, np.intp)
            hit = np.flatnonzero(zk > thr)
            k[hit] = np.argmax(z[:, hit], axis=0)
            nonlin = np.flatnonzero(rc > r_max)  # Poisson-dominated pixels: the exact statistic
            if len(nonlin):
                zx, kx = gls_max_z(Dc[:, nonlin], rc[nonlin], sg[nonlin], float(thr))
                zk[nonlin], k[nonlin] = zx, kx
            hit = (k >= 0) & wanted[c0:c1]
            if min_step > 0:
                hit &= _step_size(Dc, k) >= min_step
            idx = np.flatnonzero(hit)
            hit_pix.append(c0 + idx)
            hit_k.append(k[idx])
            hit_z.append(zk[idx])
    S1, St, S2 = S1.reshape(R, nx), St.reshape(R, nx), S2.reshape(R, nx)
    sse = S2 - S1 * S1 / np.float32(m) - St * St / ttc
    var_lvl = rn2 + np.maximum(center, 0) * inv_g * np.float32(n / 6.0)
    chi2 = sse / (var_lvl * np.float32(max(m - 2, 1)))
    del S1, S2, St, sse, dk

    gls_flagged = np.zeros((R, nx), bool)
    g_flags = g_z = None
    g_iy = g_ix = np.zeros(0, np.intp)
    if gls:
        active = np.concatenate(hit_pix)
        pix, g_flags, g_z = gls_refine(Dflat, r_all, sig_all, float(thr), active, np.concatenate(hit_k),
                                       np.concatenate(hit_z), min_step=min_step, inv_gain=float(inv_g))
        g_iy, g_ix = np.divmod(pix, nx)
        gls_flagged[g_iy, g_ix] = True
        cand = gls_flagged | (science & anysat)
        del Dall, Dflat
    else:
        # the exact pass uses a median centre; the trimmed mean here differs from it by
        # about 1.25 / sqrt(m) sigma, so a margin of 3 / sqrt(m) sigma (at least 0.3)
        # sends every pixel the exact pass could flag to it
        var_d = 2 * rn2 + np.maximum(center, 0) * inv_g
        zmax = (mx - center) / np.sqrt(var_d)
        margin = np.float32(min(1.0, max(0.3, 3.0 / np.sqrt(m))))
        cand = science & ((zmax > thr - margin) | anysat)
        del Dall, Dflat
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
        return BlockResult(empty_i, empty_i, empty_i, empty_f, empty_f, empty_f, np.zeros(0, bool), empty_f, empty_f,
                           first_jump, max_jump, n_jumps, persistence, slope, first_sat, chi2, rtn_cand,
                           np.zeros((R, nx), np.float32))

    C = cube[:, iy, ix].astype(np.float64)
    D = np.diff(C, axis=0)  # (m, P)
    P = D.shape[1]
    rn2_p = (rn_col[ix].astype(np.float64)) ** 2
    S = np.zeros((n, P), dtype=bool)
    if len(s_iy):
        pos = np.full((R, nx), -1, dtype=np.int64)
        pos[iy, ix] = np.arange(P)
        p = pos[s_iy, s_ix]
        S[:, p[p >= 0]] = S_sat[:, p >= 0]
    valid = ~(S[:-1] & S[1:])  # a difference between two saturated groups says nothing
    to_sat_d = S[1:] & ~S[:-1]
    # the block's typical difference, for pixels with almost no usable difference (saturating at once)
    ok_c = science & ~anysat
    c_fb = float(np.median(center[ok_c][::16])) if (len(s_iy) and ok_c.any()) else 0.0
    flags = np.zeros((m, P), dtype=bool)
    zsig = np.zeros((m, P), dtype=np.float64)
    # the GLS flags of the candidates, where the GLS pass ran
    two_point = np.ones(P, bool)
    if test == "gls":
        pos = np.full((R, nx), -1, dtype=np.int64)
        pos[iy, ix] = np.arange(P)
        pg = pos[g_iy, g_ix]
        flags[:, pg] = g_flags
        zsig[:, pg] = g_z
        two_point = anysat[iy, ix]  # saturating pixels: the two-point test
    active = np.nonzero(two_point)[0]
    for _ in range(max(m - 2, 1)):
        if len(active) == 0:
            break
        Da = D[:, active]
        use = valid[:, active] & ~flags[:, active]
        nuse = use.sum(axis=0)
        c = _center(Da, use, c_fb)
        sig = np.sqrt(2 * rn2_p[active] + np.maximum(c, 0) / gain)
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
        zsig[k[hit], active[hit]] = zk[hit]
        active = active[hit]

    use = valid & ~flags
    c = _center(D, use, c_fb)
    sig = np.sqrt(2 * rn2_p + np.maximum(c, 0) / gain)
    Z = (D - c) / sig
    with np.errstate(invalid="ignore", divide="ignore"):
        chi_all = np.where(valid, Z * Z, 0).sum(axis=0)
        chi_rest = np.where(use, Z * Z, 0).sum(axis=0)
        fq = np.where(chi_all > 0, 1 - chi_rest / chi_all, 0.0)
    slope[iy, ix] = c
    # a pixel that steps DOWN (RTN's signature: a cosmic ray only adds charge)
    zdown = Z
    zmin_down = np.where(valid, zdown, np.inf).min(axis=0)
    zmin_down[~np.isfinite(zmin_down)] = 0.0
    steps_down = zmin_down < -RTN_DOWN_STEP_SIGMA
    down_map = np.zeros((R, nx), np.float32)
    down_map[iy, ix] = zmin_down
    if rtn_chi2_threshold is not None and flags.any():
        # a pixel whose excess scatter is all in its flagged steps (a cosmic ray)
        # is no RTN candidate: redo its line chi2 with the steps taken out. A pixel
        # that also steps down stays one, however many of its up-steps the jump test took.
        hf = np.nonzero(flags.any(axis=0) & ~steps_down)[0]
        steps = np.where(flags[:, hf], D[:, hf] - c[hf], 0.0)
        Yc = C[:, hf] - np.concatenate([np.zeros((1, len(hf))), np.cumsum(steps, axis=0)])
        tt = np.arange(n, dtype=np.float64)[:, None]
        tt -= tt.mean()
        rr = Yc - Yc.mean(axis=0)
        bb = (tt * rr).sum(axis=0) / (tt * tt).sum()
        sse_c = ((rr - bb * tt) ** 2).sum(axis=0)
        var_c = rn2_p[hf] + np.maximum(c[hf], 0) / gain * (n / 6.0)
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
        z=zsig[jk, jp].astype(np.float32), snr=(amp / sig[jp]).astype(np.float32),
        to_sat=to_sat_d[jk, jp], headroom=headroom, fit_quality=fq[jp].astype(np.float32),
        first_jump=first_jump, max_jump=max_jump, n_jumps=n_jumps, persistence=persistence,
        slope=slope, first_saturated=first_sat, chi2=chi2, rtn_candidates=rtn_cand, down_z=down_map,
    )


def estimate_read_noise(cube: np.ndarray, science: np.ndarray, gain: float, max_pixels: int = 8_000,
                        col_output: np.ndarray | None = None):
    """White noise per read (data unit) from second differences of the reads.

    ``dd_k = d_{k+1} - d_k`` cancels the signal; for white read noise sigma
    and Poisson increments of variance ``p`` per group it has variance
    ``6 sigma^2 + 2 p``. The scatter is a pooled MAD over science pixels, so
    jumps and saturated pixels barely move it. With ``col_output`` (the
    readout output of each column), one value per output is measured and an
    array (outputs,) is returned; outputs without science pixels get the
    pooled value.
    """
    n = cube.shape[0]
    if n < 3:
        from astrid_pipeline.science.ramps.errors import TooFewGroupsError

        raise TooFewGroupsError(None, f"read-noise estimation needs at least 3 groups, got {n}")

    def one(mask2d) -> float:
        idx = np.flatnonzero(mask2d.ravel())
        if len(idx) == 0:
            raise ValueError("no science pixels to estimate the read noise from")
        if len(idx) > max_pixels:
            idx = idx[:: int(np.ceil(len(idx) / max_pixels))]
        flat = cube.reshape(n, -1)[:, idx].astype(np.float64)
        d = np.diff(flat, axis=0)
        dd = np.diff(d, axis=0).ravel()
        sig_dd = 1.4826 * np.median(np.abs(dd - np.median(dd)))
        p = max(float(np.median(trimmed_center(d))), 0.0) / gain
        return float(np.sqrt(max(sig_dd**2 - 2 * p, 1e-12) / 6.0))

    if col_output is None:
        return one(science)
    n_out = int(col_output.max()) + 1
    out = np.full(n_out, np.nan)
    for o in range(n_out):
        m = science & (col_output == o)[None, :]
        if m.sum() >= 200:
            out[o] = one(m)
    if np.isnan(out).any():
        out[np.isnan(out)] = one(science)
    return out


def gls_scale(cube: np.ndarray, science: np.ndarray, read_noise_col: np.ndarray, gain: float,
              col_output: np.ndarray, max_pixels: int = 8_000) -> np.ndarray:
    """Measured scatter of the GLS jump statistic, per readout output (1.0 when the noise model is right).

    On the clean pixels of ``cube`` (groups, rows, cols; reference-corrected),
    those ``science`` flags (no group difference beyond 5 sigma of the median:
    no jump, no RTN switch, not saturated), the GLS statistic of every
    difference is N(0, 1) if the read noise and the Poisson term are right.
    Its robust standard deviation (1.4826 x MAD) per output is returned, so
    the threshold follows the data when the noise is not what the model says
    (noise correlated in time, a wrong gain). Outputs with fewer than 200
    clean pixels get the pooled value.
    """
    n, R, nx = cube.shape
    m = n - 1
    D = np.diff(cube, axis=0).reshape(m, R * nx)
    med = trimmed_center(D)
    sig_col = np.broadcast_to(np.asarray(read_noise_col, np.float32), (nx,))
    sig = np.broadcast_to(sig_col[None, :], (R, nx)).ravel()
    p = np.maximum(med, 0) / gain
    clean = science.ravel()
    out_of = np.broadcast_to(col_output[None, :], (R, nx)).ravel()

    def one(sel) -> float:
        idx = np.flatnonzero(sel)
        if len(idx) > max_pixels:
            idx = idx[:: int(np.ceil(len(idx) / max_pixels))]
        z, _ = gls_step_z(D[:, idx], p[idx] / np.maximum(sig[idx] ** 2, 1e-12), sig[idx])
        z = z.ravel()
        return float(1.4826 * np.median(np.abs(z - np.median(z))))

    if clean.sum() < 200:
        return np.ones(int(col_output.max()) + 1)
    pooled = one(clean)
    scale = np.full(int(col_output.max()) + 1, pooled)
    for o in range(len(scale)):
        sel = clean & (out_of == o)
        if sel.sum() >= 200:
            scale[o] = one(sel)
    return scale
