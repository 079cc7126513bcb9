"""The detection boundary of the MM diagnostic diagram, from simulated stacks.

Steps (numina-crmasks, Cardiel et al. 2026, with the changes listed below):

1. Simulate ``mm_nsimulations`` stacks from a cleaned model of the signal
   (Poisson or negative-binomial photon noise in electrons, Gaussian read
   noise in ADU) and accumulate their MM diagrams.
2. Cut the x axis (minimum signal) into bins. In every bin, the "red cross"
   is the ``y`` above which only one pixel of a real image is expected:
   with ``C`` simulated pixels in the bin from ``n`` simulations, the value
   exceeded by ``n`` simulated pixels.
3. Fit a spline with non-negative slope through the crosses, then extend it
   upward ``mm_niter_boundary_extension`` times by weighting the crosses
   above the previous fit by ``mm_weight_boundary_extension ** iteration``
   (fixed points, if given, enter the fit with their weights). Or, with
   ``mm_boundary_fit: piecewise``, join the fixed points with straight lines.

Differences from numina-crmasks 0.40.0, each tested:

* **Binning.** numina cuts x into 100 *linear* bins between the extremes of
  the diagram; bright stars stretch that range, so a bin at sky level also
  holds faint star wings (whose noise is larger) and nearly every sky pixel
  falls in the first bins, and the fitted boundary ends far above the sky
  noise. Here the bins are quantiles of the data's x by default (``asinh``
  and ``linear`` also available), so every bin holds the same number of
  pixels and the crosses follow the noise where most pixels are. Each bin
  gives crosses at the 2/25/50/75/98 % quantiles of its pixels' x (and the
  top bin more, evenly in asinh(x) up to the largest x), all at the bin's
  level in ``z``: a wide bin then still yields a boundary that grows with
  the noise across it. (Binning stays on the measured x, as in numina: a
  narrow x bin holds the pixels whose minimum came out low, whose y is
  high, and that conditional level is what detection compares with; the
  non-decreasing spline and its extension keep the envelope of it.)
* **Resolution in y.** The crosses are measured on a histogram of
  ``z = y / sigma(x)`` (sigma from gain and read noise), 0.01 sigma wide,
  instead of 100 linear y bins spanning the whole diagram.
* **Outside the knots** the boundary is held constant (numina evaluates the
  spline polynomial beyond its knots during detection).
* The spline is fitted in ``u = asinh(x / s)``, ``s = gain * rnoise**2``
  (photon noise equals read noise at ``x = s``), with knots evenly spaced in
  ``u``; its coefficients are constrained non-decreasing (non-negative least
  squares), which makes the curve non-decreasing everywhere.
* The simulations run in threads, each with its own seed derived from
  ``mm_seed``, so the result does not depend on the number of threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.interpolate import BSpline
from scipy.optimize import nnls

from .diagram import median_of_stack, minimum_signal, noise_sigma

Z_MIN, Z_MAX, Z_STEP = -4.0, 40.0, 0.01


# ------------------------------------------------------------------------------------------
# binning of the x axis
# ------------------------------------------------------------------------------------------
def x_bin_edges(x: np.ndarray, nbins: int, scheme: str = "quantile", *, scale: float = 1.0) -> np.ndarray:
    """Edges of ``nbins`` bins covering all of ``x``.

    ``quantile``: equal numbers of pixels per bin; ``asinh``: equal steps in
    ``asinh(x / scale)``; ``linear``: equal steps in x (numina's choice).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("no pixels to bin")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        hi = lo + 1.0
    if scheme == "linear":
        edges = np.linspace(lo, hi, nbins + 1)
    elif scheme == "asinh":
        s = max(scale, 1e-6)
        edges = np.sinh(np.linspace(np.arcsinh(lo / s), np.arcsinh(hi / s), nbins + 1)) * s
    elif scheme == "quantile":
        # a regular subsample is plenty for bin edges (every bin keeps >> 1000 pixels)
        sample = x if x.size <= 300_000 else x[:: -(-x.size // 262_144)]
        edges = np.quantile(sample, np.linspace(0.0, 1.0, nbins + 1))
        edges = np.unique(edges)
        if edges.size < 2:
            edges = np.array([lo, hi])
    else:
        raise ValueError(f"unknown binning scheme {scheme!r}")
    edges = edges.astype(np.float64)
    edges[0] = -np.inf  # every simulated pixel falls in some bin
    edges[-1] = np.inf
    return edges


# ------------------------------------------------------------------------------------------
# simulated diagrams
# ------------------------------------------------------------------------------------------
@dataclass
class SimulatedDiagram:
    """Accumulated simulated MM diagram on (x bin, z = y/sigma bin)."""

    hist: np.ndarray  # (n_xbins, n_zbins) counts over all simulations
    x_edges: np.ndarray  # with -inf/+inf at the ends
    x_rep: np.ndarray  # representative x of each bin (median of the simulated x)
    z_edges: np.ndarray
    nsimulations: int
    gain: float
    rnoise: float
    scale: float = 1.0  # asinh scale of x (gain * rnoise**2)

    @property
    def counts(self) -> np.ndarray:
        return self.hist.sum(axis=1)


#: below this expected signal (electrons) Poisson counts are drawn exactly; above it a
#: skewness-corrected normal (Cornish-Fisher) with the same mean, variance and skewness
#: as Poisson + read noise is used (its diagram quantiles agree with exact draws to
#: ~0.5 % at lambda = 20..1000 e-, and it is ~4x faster).
POISSON_EXACT_BELOW = 20.0


def _noise_terms(lam_e: np.ndarray, gain: float, rnoise: float):
    """(mu - c, sigma, c) of Poisson + read noise in ADU, c = skewness * sigma / 6 (Cornish-Fisher)."""
    mu = lam_e / gain
    var = lam_e / gain**2 + rnoise**2
    s = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma = np.where(var > 0, (lam_e / gain**3) / np.maximum(var, 1e-30) ** 1.5, 0.0)
    c = gamma * s / 6.0
    return (mu - c).astype(np.float32), s.astype(np.float32), c.astype(np.float32)


def _bin_of(xs: np.ndarray, x_edges: np.ndarray) -> np.ndarray:
    """Bin index of each x (edges[0] = -inf, edges[-1] = +inf); comparisons when there are few bins."""
    inner = x_edges[1:-1]
    if inner.size <= 32:
        xi = np.zeros(xs.shape, dtype=np.int64)
        for e in inner.astype(xs.dtype):
            xi += xs >= e
        return xi
    xi = np.searchsorted(x_edges, xs, side="right") - 1
    return np.clip(xi, 0, x_edges.size - 2)


def _simulate_one(
    lam_e: np.ndarray,
    seed_seq: np.random.SeedSequence,
    *,
    gain: float,
    rnoise: float,
    k: int,
    distribution: str,
    nbinom_shape: float,
    keep: np.ndarray | None,
    x_edges: np.ndarray,
    z_edges: np.ndarray,
    terms=None,
    exact_below: float = POISSON_EXACT_BELOW,
):
    rng = np.random.default_rng(seed_seq)
    n = lam_e.shape[0]
    sim = np.empty(lam_e.shape, dtype=np.float32)
    for i in range(n):
        if distribution == "poisson" and terms is not None:
            d, s, c = terms[i]
            z = rng.standard_normal(lam_e.shape[1:], dtype=np.float32)
            # mu + s z + c (z^2 - 1) = (c z + s) z + (mu - c), in place
            out = sim[i]
            np.multiply(c, z, out=out)
            out += s
            out *= z
            out += d
            low = lam_e[i] < exact_below
            if low.any():
                lam_low = lam_e[i][low]
                vals = rng.poisson(lam_low).astype(np.float32) / np.float32(gain)
                if rnoise > 0:
                    vals += rng.standard_normal(lam_low.shape, dtype=np.float32) * np.float32(rnoise)
                out[low] = vals
            continue
        if distribution == "poisson":
            counts = rng.poisson(lam_e[i])
        else:
            p = nbinom_shape / (nbinom_shape + lam_e[i])
            counts = rng.negative_binomial(nbinom_shape, p)
        sim[i] = counts
        sim[i] /= gain
        if rnoise > 0:
            sim[i] += rng.standard_normal(lam_e.shape[1:], dtype=np.float32) * np.float32(rnoise)
    xs = minimum_signal(sim, k)
    ys = median_of_stack(sim) - xs
    if keep is not None:
        xs = xs[keep]
        ys = ys[keep]
    xs = xs.ravel()
    ys = ys.ravel()
    # z = y / sigma(x), in float32 and in place
    sig = np.maximum(xs, np.float32(0.0))
    sig *= np.float32(1.0 / gain)
    sig += np.float32(rnoise**2)
    np.sqrt(sig, out=sig)
    sig[sig <= 0] = 1.0
    z = ys / sig
    nz = z_edges.size - 1
    z -= np.float32(z_edges[0])
    z *= np.float32(1.0 / (z_edges[1] - z_edges[0]))
    np.clip(z, 0, nz - 1, out=z)
    zi = z.astype(np.int64)
    xi = _bin_of(xs, x_edges)
    hist = np.bincount(xi * nz + zi, minlength=(x_edges.size - 1) * nz).reshape(x_edges.size - 1, nz)
    # per-bin sums to get a representative x (mean of simulated x in the bin)
    xsum = np.bincount(xi, weights=xs, minlength=x_edges.size - 1)
    return hist, xsum


def simulate_diagram(
    lam_adu: np.ndarray,
    *,
    gain: float,
    rnoise: float,
    k: int,
    x_edges: np.ndarray,
    nsimulations: int = 10,
    seed: int | None = 123456,
    distribution: str = "poisson",
    nbinom_shape: float = 10.0,
    keep: np.ndarray | None = None,
    threads: int = 0,
    exact_poisson: bool = False,
) -> SimulatedDiagram:
    """Simulate ``nsimulations`` stacks of expected signal ``lam_adu`` (N, ny, nx) and histogram their diagrams.

    ``keep`` (ny, nx) bool selects the pixels that enter the histogram (numina
    leaves out pixels already flagged by the auxiliary method). With
    ``exact_poisson`` every Poisson count is drawn exactly; otherwise only
    below ``POISSON_EXACT_BELOW`` electrons (see there).
    """
    lam_adu = np.asarray(lam_adu, dtype=np.float64)
    if lam_adu.ndim != 3:
        raise ValueError("lam_adu must be (N, ny, nx)")
    lam_e = np.clip(np.nan_to_num(lam_adu, nan=0.0), 0, None) * gain
    z_edges = np.arange(Z_MIN, Z_MAX + Z_STEP / 2, Z_STEP)
    children = np.random.SeedSequence(seed).spawn(nsimulations)
    if threads <= 0:  # the cores free now (a thread pool on a loaded machine waits more than it computes)
        from astrid_pipeline.science.threads import free_cores

        threads = min(2, free_cores())
    terms = None
    if distribution == "poisson" and not exact_poisson:
        terms = [_noise_terms(lam_e[i], gain, rnoise) for i in range(lam_e.shape[0])]
    kwargs = dict(
        gain=gain, rnoise=rnoise, k=k, distribution=distribution, nbinom_shape=nbinom_shape,
        keep=keep, x_edges=x_edges, z_edges=z_edges, terms=terms,
    )
    hist = np.zeros((x_edges.size - 1, z_edges.size - 1), dtype=np.int64)
    xsum = np.zeros(x_edges.size - 1)
    if threads == 1 or nsimulations == 1:
        results = [_simulate_one(lam_e, c, **kwargs) for c in children]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(lambda c: _simulate_one(lam_e, c, **kwargs), children))
    for h, xs in results:  # summed in simulation order: identical for any thread count
        hist += h
        xsum += xs
    counts = hist.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_rep = np.where(counts > 0, xsum / np.maximum(counts, 1), np.nan)
    return SimulatedDiagram(hist, x_edges, x_rep, z_edges, nsimulations, gain, rnoise,
                            scale=max(gain * rnoise**2, 1.0))


def remove_isolated_bins(hist: np.ndarray, min_neighbors: int) -> np.ndarray:
    """Zero the non-empty bins with fewer than ``min_neighbors`` non-empty 8-neighbours (numina's option)."""
    if min_neighbors <= 0:
        return hist
    kernel = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])
    occupied = (hist > 0).astype(np.int32)
    neighbours = ndimage.convolve(occupied, kernel, mode="constant", cval=0)
    out = hist.copy()
    out[(hist > 0) & (neighbours < min_neighbors)] = 0
    return out


def red_crosses(
    sim: SimulatedDiagram,
    min_neighbors: int = 0,
    *,
    x_data: np.ndarray | None = None,
    quantiles=(0.02, 0.25, 0.5, 0.75, 0.98),
    expected_per_bin: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crosses: per x bin, the y exceeded by one pixel per real image on average.

    The level is measured in ``z = y / sigma(x)``. Without ``x_data`` (numina's
    way) each bin gives one cross at its mean simulated x. With ``x_data``
    (the real diagram's x values) each bin gives crosses at the given
    quantiles of its real x values (and the top bin more, up to the largest
    x), all at the bin's z level: a bin that spans a wide range of signal
    then still yields a boundary that grows with the noise across it.
    ``expected_per_bin`` is the number of pixels of one real image expected
    above a cross (numina: 1); the level is read where ``nsimulations *
    expected_per_bin`` simulated pixels lie above (at least one).
    Returns (x, y, n_expected) for bins holding more than one pixel per image.
    """
    hist = remove_isolated_bins(sim.hist, min_neighbors)
    nsim = sim.nsimulations
    n_above = max(float(nsim) * float(expected_per_bin), 1.0)
    xs, ys, ns = [], [], []
    dz = sim.z_edges[1] - sim.z_edges[0]
    xd = None
    if x_data is not None:
        xv = np.asarray(x_data, dtype=np.float64).ravel()
        x_max = float(xv.max())
        # quantile positions inside the bins: a regular subsample keeps them to well under a percent
        xd = np.sort(xv if xv.size <= 300_000 else xv[:: -(-xv.size // 262_144)])
        xd[-1] = max(xd[-1], x_max)
        bounds = np.searchsorted(xd, sim.x_edges, side="left")
    nb = hist.shape[0]
    for b in range(nb):
        h = hist[b]
        total = h.sum()
        if total <= nsim or not np.isfinite(sim.x_rep[b]):
            continue
        above = np.cumsum(h[::-1])[::-1]  # above[j] = count with z in bin j or higher
        j = int(np.searchsorted(-above, -n_above, side="left")) - 1  # last j with above[j] > n_above
        j = max(j, 0)
        a_hi = above[j]
        a_lo = above[j + 1] if j + 1 < above.size else 0
        frac = (a_hi - n_above) / max(a_hi - a_lo, 1)
        z = sim.z_edges[j] + np.clip(frac, 0.0, 1.0) * dz
        if xd is not None and bounds[b + 1] > bounds[b]:
            seg = xd[bounds[b] : bounds[b + 1]]
            px = list(np.quantile(seg, quantiles))
            if b == nb - 1 or not np.any(hist[b + 1 :].sum(axis=1) > nsim):
                # the top bin can span decades of signal: sample it evenly in asinh(x)
                top_lo, top_hi = np.arcsinh(np.array([px[-1], seg[-1]]) / sim.scale)
                px.extend((np.sinh(np.linspace(top_lo, top_hi, 6)) * sim.scale).tolist())
            if b == 0:
                px.insert(0, float(seg[0]))
            px = np.unique(np.asarray(px))
        else:
            px = np.array([sim.x_rep[b]])
        sigma = noise_sigma(px, sim.gain, sim.rnoise)
        xs.extend(px.tolist())
        ys.extend((z * sigma).tolist())
        ns.extend([total / nsim] * px.size)
    return np.asarray(xs), np.asarray(ys), np.asarray(ns)


# ------------------------------------------------------------------------------------------
# boundary functions
# ------------------------------------------------------------------------------------------
@dataclass
class Boundary:
    """y = f(x), non-decreasing, constant outside [x_lo, x_hi]."""

    kind: str  # "spline" or "piecewise"
    x_lo: float
    x_hi: float
    # spline in u = asinh(x / scale)
    knots: np.ndarray | None = None
    coefs: np.ndarray | None = None
    scale: float = 1.0
    # piecewise
    xp: np.ndarray | None = None
    yp: np.ndarray | None = None
    crosses: tuple = field(default_factory=tuple)  # (x, y) used for the fit
    history: list = field(default_factory=list)  # coefs of each extension iteration

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        xc = np.clip(x, self.x_lo, self.x_hi)
        if self.kind == "piecewise":
            return np.interp(xc, self.xp, self.yp)
        u = np.arcsinh(xc / self.scale)
        spl = BSpline(self.knots, self.coefs, 3, extrapolate=False)
        out = spl(u)
        return np.nan_to_num(out, nan=float(self.coefs[-1]))

    def knot_x(self) -> np.ndarray:
        """The knots (interior and ends) in x."""
        if self.kind == "piecewise":
            return np.asarray(self.xp)
        return np.unique(np.sinh(self.knots) * self.scale)


def _monotone_spline_coefs(u, y, w, t) -> np.ndarray:
    """Weighted least squares cubic B-spline with non-decreasing coefficients."""
    B = BSpline.design_matrix(u, t, 3).toarray()
    ncoef = B.shape[1]
    # c = c0 + cumsum(d), d >= 0  -> columns: +1, -1 for c0 (free sign), then the increments
    L = np.tril(np.ones((ncoef, ncoef)))
    BL = B @ L
    sw = np.sqrt(w)[:, None]
    A = np.hstack([BL[:, :1], -BL[:, :1], BL[:, 1:]]) * sw
    sol, _ = nnls(A, y * sw[:, 0], maxiter=50 * A.shape[1])
    d = np.concatenate([[sol[0] - sol[1]], sol[2:]])
    return L @ d


def fit_spline_boundary(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_knots: int = 5,
    niter_extension: int = 5,
    weight_extension: float = 2.0,
    fixed_points=(),
    scale: float = 1.0,
) -> Boundary:
    """Fit the non-decreasing spline through the crosses and extend it upward.

    ``n_knots`` is numina's ``mm_knots_splfit``: the total number of knots,
    ends included. ``fixed_points`` are (x, y, weight) triples; their weight
    is multiplied by the largest cross weight of each iteration, as numina does.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fp = np.asarray(fixed_points, dtype=np.float64).reshape(-1, 3) if len(fixed_points) else np.zeros((0, 3))
    if x.size + fp.shape[0] < 2:
        raise ValueError("at least two points are needed to fit a boundary")
    scale = max(float(scale), 1e-6)
    xall = np.concatenate([x, fp[:, 0]])
    lo, hi = float(xall.min()), float(xall.max())
    if hi <= lo:
        hi = lo + 1.0
    u_lo, u_hi = np.arcsinh(lo / scale), np.arcsinh(hi / scale)
    n_interior = max(n_knots - 2, 0)
    # keep the problem determined: no more coefficients than points
    n_interior = min(n_interior, max(xall.size - 4, 0))
    interior = np.linspace(u_lo, u_hi, n_interior + 2)[1:-1]
    t = np.concatenate([[u_lo] * 4, interior, [u_hi] * 4])

    def fit(w):
        u = np.arcsinh(np.concatenate([x, fp[:, 0]]) / scale)
        yy = np.concatenate([y, fp[:, 1]])
        ww = np.concatenate([w, fp[:, 2] * (w.max() if w.size else 1.0)])
        u = np.clip(u, u_lo, u_hi)
        return _monotone_spline_coefs(u, yy, ww, t)

    w = np.ones_like(x)
    coefs = fit(w)
    bnd = Boundary("spline", lo, hi, knots=t, coefs=coefs, scale=scale, crosses=(x, y))
    bnd.history.append(coefs.copy())
    for it in range(1, niter_extension + 1):
        w = np.ones_like(x)
        w[y > bnd(x)] = weight_extension**it
        bnd.coefs = fit(w)
        bnd.history.append(bnd.coefs.copy())
    return bnd


def piecewise_boundary(fixed_points) -> Boundary:
    """Straight lines through the fixed points (x, y[, w]); constant beyond the first and last."""
    fp = np.asarray([p[:2] for p in fixed_points], dtype=np.float64)
    if fp.shape[0] < 2:
        raise ValueError("a piecewise boundary needs at least two fixed points")
    order = np.argsort(fp[:, 0], kind="stable")
    xp, yp = fp[order, 0], fp[order, 1]
    return Boundary("piecewise", float(xp[0]), float(xp[-1]), xp=xp, yp=yp, crosses=(xp, yp))
