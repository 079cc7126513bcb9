"""Random telegraph noise (RTN): a two-level model of the ramp residuals.

A pixel with RTN switches between two output levels (a charge trap near the
source follower fills and empties), so its reads are

    y_k = a + b t_k + A s_k + noise,      s_k in {0, 1}

The fit alternates between the states ``s`` (each read assigned to the
nearer level) and a linear least-squares solution for ``a, b, A``
(vectorised over pixels). A pixel is called RTN when the two-level model is
significant and switches back and forth: amplitude / noise >= ``min_snr``,
the t-statistic of the level difference ``A sqrt(n_hi n_lo / n) / sigma``
>= ``min_tstat``, the data really rise at the up-switches and fall at the
down-switches (on average by at least half the amplitude), at least ``min_transitions`` state changes, and the model
explains at least ``fit_quality_threshold`` of the variance left by a line
(R^2). A cosmic ray (one upward step that stays) has a single transition
and is not RTN; white noise has no significant second level.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _alternate(Y, tc, s, n_iter):
    """Alternate least squares for (a, b, A) given the states and the state assignment."""
    n, P = Y.shape
    a = np.zeros(P)
    b = np.zeros(P)
    A = np.zeros(P)
    tt = float((tc * tc).sum())
    Sy = Y.sum(axis=0)
    Sty = (tc * Y).sum(axis=0)
    for _ in range(n_iter):
        # normal equations of (a, b, A) on the regressors 1, tc, s, solved in closed form
        sf = s.astype(np.float64)
        ns = sf.sum(axis=0)
        sts = (tc * sf).sum(axis=0)
        ssy = (sf * Y).sum(axis=0)
        den = ns * (1 - ns / n) - sts * sts / tt
        num = ssy - ns * Sy / n - sts * Sty / tt
        A = np.where(den > 1e-9, num / np.where(den > 1e-9, den, 1.0), 0.0)  # one state only: A = 0
        a = (Sy - ns * A) / n
        b = (Sty - sts * A) / tt
        flip = A < 0  # keep the "high" state as s = 1
        a = np.where(flip, a + A, a)
        A = np.abs(A)
        s = np.where(flip, ~s, s)
        s_new = (Y - a - b * tc) > 0.5 * A
        if np.array_equal(s_new, s):
            break
        s = s_new
    sse = ((Y - a - b * tc - A * s) ** 2).sum(axis=0)
    return a, b, A, s, sse


def fit_two_level(Y: np.ndarray, n_iter: int = 10) -> dict:
    """Fit ``y = a + b t + A s`` to each column of ``Y`` (groups, pixels); returns arrays per pixel.

    Least squares for ``a, b, A`` and the assignment of each read to the
    nearer level alternate until the states no longer change. The alternation
    starts from three splits of the reads detrended by the median group
    difference (robust to the few differences that hold a switch): half-way
    between the extremes, the median, and the largest gap; each pixel keeps
    the solution with the smallest residual.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n, P = Y.shape
    t = np.arange(n, dtype=np.float64)[:, None]
    tc = t - t.mean()
    ybar = Y.mean(axis=0)
    b1 = (tc * (Y - ybar)).sum(axis=0) / (tc * tc).sum()
    res = Y - ybar - b1 * tc
    sse1 = (res * res).sum(axis=0)
    r = Y - np.median(np.diff(Y, axis=0), axis=0) * tc
    rs = np.sort(r, axis=0)
    gaps = np.diff(rs, axis=0)
    cols = np.arange(P)
    inits = [
        r > 0.5 * (rs[0] + rs[-1]),
        r > 0.5 * (rs[(n - 1) // 2] + rs[n // 2]),  # the median
    ]
    # the three widest gaps between sorted residuals, and splits at fixed quantiles:
    # short high or low states (one or two reads) are found from the gaps
    order = np.argsort(gaps, axis=0)
    for g in range(1, min(3, n - 1) + 1):
        gap = order[-g]
        inits.append(r > 0.5 * (rs[gap, cols] + rs[gap + 1, cols]))
    best = None
    for s0 in inits:
        a_, b_, A_, s_, sse_ = _alternate(Y, tc, s0, n_iter)
        if best is None:
            best = [a_, b_, A_, s_, sse_]
            continue
        better = sse_ < best[4]
        best[0] = np.where(better, a_, best[0])
        best[1] = np.where(better, b_, best[1])
        best[2] = np.where(better, A_, best[2])
        best[3] = np.where(better, s_, best[3])
        best[4] = np.where(better, sse_, best[4])
    a, b, A, s, sse2 = best
    n_hi = s.sum(axis=0)
    n_lo = n - n_hi
    sw = np.diff(s.astype(np.int8), axis=0)
    transitions = np.count_nonzero(sw, axis=0)
    runs_hi = (s[0].astype(int) + (sw == 1).sum(axis=0))
    runs_lo = ((~s[0]).astype(int) + (sw == -1).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(sse1 > 0, 1 - sse2 / sse1, 0.0)
        dwell_hi = np.where(runs_hi > 0, n_hi / np.maximum(runs_hi, 1), np.nan)
        dwell_lo = np.where(runs_lo > 0, n_lo / np.maximum(runs_lo, 1), np.nan)
    first_tr = np.where(transitions > 0, np.argmax(sw != 0, axis=0) + 1, -1)
    # the data must really step up and down where the states switch: a ramp
    # that only rises (cosmic rays, a growing halo) can mimic switching states
    # once the slope absorbs its steps, but its "down" switches do not drop
    dd = np.diff(Y, axis=0) - b
    with np.errstate(invalid="ignore", divide="ignore"):
        up = np.where((sw == 1).any(axis=0), np.where(sw == 1, dd, 0).sum(axis=0) / np.maximum((sw == 1).sum(axis=0), 1), 0.0)
        down = np.where((sw == -1).any(axis=0), -np.where(sw == -1, dd, 0).sum(axis=0) / np.maximum((sw == -1).sum(axis=0), 1), 0.0)
        step_consistency = np.minimum(up, down) / np.where(A > 0, A, np.inf)
    return {
        "amplitude": A,
        "level_low": a,
        "level_high": a + A,
        "slope": b,
        "states": s,
        "n_high": n_hi,
        "n_transitions": transitions,
        "first_transition": first_tr,
        "dwell_high": dwell_hi,
        "dwell_low": dwell_lo,
        "r2": r2,
        "sigma_within": np.sqrt(sse2 / max(n - 3, 1)),
        "step_consistency": step_consistency,
    }


def classify_rtn(
    fit: dict,
    noise: np.ndarray | float,
    *,
    min_snr: float,
    min_tstat: float,
    min_transitions: int,
    max_transitions: int,
    fit_quality_threshold: float,
    amplitude_range: tuple,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean RTN decision per pixel, with the amplitude S/N and t-statistic used."""
    n = fit["states"].shape[0]
    sig = np.maximum(np.asarray(noise, dtype=np.float64), fit["sigma_within"])
    A = fit["amplitude"]
    n_hi = fit["n_high"]
    n_lo = n - n_hi
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = A / sig
        tstat = A * np.sqrt(n_hi * n_lo / n) / sig
    ok = (
        (fit["n_transitions"] >= min_transitions)
        & (fit["n_transitions"] <= max_transitions)
        & (snr >= min_snr)
        & (tstat >= min_tstat)
        & (fit["r2"] >= fit_quality_threshold)
        & (A >= amplitude_range[0])
        & (A <= amplitude_range[1])
        & (n_hi >= 1)
        & (n_lo >= 1)
        & (fit["step_consistency"] >= 0.5)
    )
    return ok, snr, tstat


def line_chi2(Y: np.ndarray, noise) -> np.ndarray:
    """Reduced chi2 of reads 1..n-1 of each column of ``Y`` (groups, pixels) about a straight line.

    The same statistic the jump pass computes block by block to pick RTN
    candidates (read 0 and any linear trend drop out of a line fit).
    """
    Yr = np.asarray(Y)[1:]
    m = Yr.shape[0]
    t = np.arange(m, dtype=Yr.dtype)
    t -= t.mean()
    r = Yr - Yr.mean(axis=0)
    st = t @ r
    sse = (r * r).sum(axis=0) - st * st / float(t @ t)
    return sse / (np.asarray(noise, dtype=np.float64) ** 2 * max(m - 2, 1))


@lru_cache(maxsize=64)
def tstat_threshold(n_reads: int, false_rate: float, *, candidate_chi2: float | None, min_snr: float,
                    min_transitions: int, max_transitions: int, fit_quality_threshold: float,
                    floor: float, seed: int = 0) -> float:
    """Two-level significance threshold that white noise passes at ``false_rate`` per pixel.

    Simulates pure white-noise ramps of ``n_reads`` reads (unit noise) and
    runs them through the same RTN candidacy (line chi2 above
    ``candidate_chi2``) and two-level classification as real pixels, all
    criteria but the t-statistic; the threshold is the t-statistic that at
    most ``false_rate`` of them exceed (never below ``floor``). The number of
    simulated ramps is 30 / ``false_rate`` (at least 200 000), so the
    threshold is set by tens of exceedances; the simulation stops early
    when none of the first 3 / ``false_rate`` ramps passes even without the
    t-statistic (the rate is then below ``false_rate`` at 95 % confidence, and
    ``floor`` is returned). The draws are seeded: the same inputs give the
    same threshold. Short ramps need a higher
    threshold (fewer reads, more ways for noise to look like two levels);
    this is what makes the RTN rule hold on ramps of any length.
    """
    rng = np.random.default_rng([seed, n_reads])
    total = int(max(200_000, 30.0 / false_rate))
    chunk = max(1, min(total, 4_000_000 // max(n_reads, 1)))
    tvals = []
    done = 0
    while done < total:
        if done >= 3.0 / false_rate and not any(len(v) for v in tvals):
            return float(floor)
        k = min(chunk, total - done)
        Y = rng.standard_normal((n_reads, k), dtype=np.float32)
        done += k
        if candidate_chi2 is not None:
            Y = Y[:, line_chi2(Y, 1.0) > candidate_chi2]
        if Y.shape[1] == 0:
            continue
        fit = fit_two_level(Y)
        ok, _snr, tstat = classify_rtn(fit, 1.0, min_snr=min_snr, min_tstat=-np.inf, min_transitions=min_transitions,
                                       max_transitions=max_transitions, fit_quality_threshold=fit_quality_threshold,
                                       amplitude_range=(0.0, np.inf))
        tvals.append(tstat[ok])
    t = np.sort(np.concatenate(tvals)) if tvals else np.zeros(0)
    allowed = int(np.floor(false_rate * total))
    if len(t) <= allowed:
        return float(floor)
    # the smallest threshold with at most `allowed` exceedances
    thr = float(t[len(t) - allowed - 1]) + 1e-9
    return float(max(floor, thr))
