"""A seeded simulated stack of N equivalent exposures, with its truth.

Stars (Gaussian PSF) on a flat sky, Poisson photon noise and Gaussian read
noise, random cosmic rays (short tracks with faint tails) in every exposure,
and deliberate *coincident* hits: the same footprint hit in
``n_coincident_exposures`` of the N exposures, which is the case a median
cannot remove and M.M.Cosmic is built for.

Everything is in ADU; ``gain`` is electrons per ADU. The same seed gives the
same stack, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SimulatedStack:
    """Simulated exposures and the truth behind them (all arrays in ADU)."""

    images: np.ndarray  # (N, ny, nx) float32, what a detector would record (bias included)
    model: np.ndarray  # (ny, nx) noise-free sky + stars, bias subtracted (the mean over exposures)
    cosmic_rays: np.ndarray  # (N, ny, nx) float32, CR signal added to each exposure
    coincident: np.ndarray  # (n_hits, 2) int: (row, col) of each deliberate coincident hit core
    coincident_exposures: np.ndarray  # (n_hits, k) int: which exposures each hit is in
    gain: float
    rnoise: float
    bias: float
    seed: int
    meta: dict = field(default_factory=dict)

    @property
    def n_exposures(self) -> int:
        return int(self.images.shape[0])

    def noise_sigma(self) -> np.ndarray:
        """Noise of one exposure at each pixel (ADU), from the noise-free model."""
        return np.sqrt(np.clip(self.model, 0, None) / self.gain + self.rnoise**2)

    def hit_count(self, min_signal: float = 0.0) -> np.ndarray:
        """Number of exposures in which each pixel received more than ``min_signal`` ADU of CR."""
        return (self.cosmic_rays > min_signal).sum(axis=0)


# 8-neighbour offsets used for the faint tails around each track pixel
_NEIGHBOURS = np.array(
    [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.int64
)


def _cr_footprints(rng: np.random.Generator, n: int, shape, max_track: int = 4):
    """Random CR footprints: core positions, track pixels and tail pixels with relative weights.

    Returns (rows, cols, weight, cr_index) for every pixel of every footprint;
    weight 1 is a track pixel, weights below 0.2 are tails.
    """
    ny, nx = shape
    r0 = rng.integers(1, ny - 1, n)
    c0 = rng.integers(1, nx - 1, n)
    length = rng.integers(1, max_track + 1, n)
    direction = _NEIGHBOURS[rng.integers(0, 8, n)]
    rows, cols, wts, idx = [], [], [], []
    for step in range(max_track):
        live = length > step
        rr = r0[live] + step * direction[live, 0]
        cc = c0[live] + step * direction[live, 1]
        along = rng.uniform(0.5, 1.0, live.sum())
        rows.append(rr)
        cols.append(cc)
        wts.append(along)
        idx.append(np.nonzero(live)[0])
        # faint tails: each neighbour of a track pixel with probability 0.4
        for dr, dc in _NEIGHBOURS:
            keep = rng.random(live.sum()) < 0.4
            rows.append(rr[keep] + dr)
            cols.append(cc[keep] + dc)
            wts.append(along[keep] * rng.uniform(0.02, 0.2, keep.sum()))
            idx.append(np.nonzero(live)[0][keep])
    rows = np.concatenate(rows)
    cols = np.concatenate(cols)
    wts = np.concatenate(wts)
    idx = np.concatenate(idx)
    inside = (rows >= 0) & (rows < ny) & (cols >= 0) & (cols < nx)
    return rows[inside], cols[inside], wts[inside], idx[inside], np.stack([r0, c0], axis=1)


def _cr_amplitudes(rng: np.random.Generator, n: int, median_adu: float) -> np.ndarray:
    """Peak CR amplitudes (ADU): log-normal, as deposited energies roughly are."""
    return median_adu * rng.lognormal(mean=0.0, sigma=0.8, size=n)


def simulate_stack(
    shape: tuple[int, int] = (256, 256),
    n_exposures: int = 3,
    *,
    seed: int = 0,
    sky: float = 100.0,
    n_stars: int | None = None,
    star_peak_max: float = 30000.0,
    star_peak_min: float = 50.0,
    fwhm: float | tuple = 2.5,
    gain: float = 1.0,
    rnoise: float = 3.4,
    bias: float = 0.0,
    cr_fraction: float = 0.02,
    cr_median_adu: float = 400.0,
    n_coincident: int = 20,
    n_coincident_exposures: int = 2,
) -> SimulatedStack:
    """Simulate ``n_exposures`` equivalent exposures of one field.

    Parameters
    ----------
    shape : (ny, nx) of each exposure.
    seed : seed of every random draw (same seed -> same output).
    sky : sky level per exposure (ADU).
    n_stars : number of stars (default: one per ~400 pixels).
    star_peak_max, star_peak_min : range of star peak values (ADU), power-law distributed.
    fwhm : Gaussian PSF FWHM (pixels); one value per exposure for a stack whose seeing varies
        (star fluxes are kept; ``star_peak_*`` then refer to the first exposure's seeing).
    gain, rnoise, bias : detector gain (e-/ADU), read noise (ADU) and bias (ADU).
    cr_fraction : fraction of pixels touched by random cosmic rays in each exposure.
    cr_median_adu : median peak amplitude of a cosmic ray (ADU).
    n_coincident : number of deliberate hits that land on the same pixels in
        ``n_coincident_exposures`` different exposures.
    """
    if n_exposures < 1:
        raise ValueError("n_exposures must be >= 1")
    if not 1 <= n_coincident_exposures <= n_exposures:
        raise ValueError("n_coincident_exposures must be between 1 and n_exposures")
    ny, nx = (int(shape[0]), int(shape[1]))
    if ny < 8 or nx < 8:
        raise ValueError("shape must be at least 8x8")
    rng = np.random.default_rng(seed)
    fwhms = np.broadcast_to(np.asarray(fwhm, dtype=np.float64), (n_exposures,)).copy() \
        if np.ndim(fwhm) == 0 or len(fwhm) == n_exposures else None
    if fwhms is None:
        raise ValueError(f"fwhm needs one value or {n_exposures} (one per exposure), got {len(fwhm)}")
    if not (fwhms > 0).all():
        raise ValueError("fwhm must be > 0")

    # --- noise-free model: sky + stars -------------------------------------------------
    if n_stars is None:
        n_stars = max(1, (ny * nx) // 400)
    # power law in peak between min and max (many faint stars, few bright ones)
    u = rng.random(n_stars)
    alpha = 1.5
    lo, hi = star_peak_min ** (1 - alpha), star_peak_max ** (1 - alpha)
    peaks = (lo + u * (hi - lo)) ** (1 / (1 - alpha))
    ys = rng.uniform(0, ny - 1, n_stars)
    xs = rng.uniform(0, nx - 1, n_stars)

    def render(fw: float) -> np.ndarray:
        """Sky + stars at seeing ``fw``; star fluxes fixed by their peaks at the first exposure's seeing."""
        sigma_psf = fw / 2.3548200450309493
        scale = (fwhms[0] / fw) ** 2
        m = np.full((ny, nx), float(sky), dtype=np.float64)
        half = int(np.ceil(5 * sigma_psf))
        dy, dx = np.mgrid[-half : half + 1, -half : half + 1]
        for yc, xc, pk in zip(ys, xs, peaks):
            iy, ix = int(round(yc)), int(round(xc))
            r0, r1 = max(iy - half, 0), min(iy + half + 1, ny)
            c0, c1 = max(ix - half, 0), min(ix + half + 1, nx)
            gy = dy[(r0 - iy + half) : (r1 - iy + half), (c0 - ix + half) : (c1 - ix + half)] + iy - yc
            gx = dx[(r0 - iy + half) : (r1 - iy + half), (c0 - ix + half) : (c1 - ix + half)] + ix - xc
            m[r0:r1, c0:c1] += pk * scale * np.exp(-0.5 * (gy**2 + gx**2) / sigma_psf**2)
        return m

    varying = bool(np.ptp(fwhms) > 0)
    exposure_models = np.stack([render(f) for f in fwhms]) if varying else None
    model = render(float(fwhms[0])) if not varying else exposure_models.mean(axis=0)

    # --- cosmic rays ---------------------------------------------------------------------
    cr = np.zeros((n_exposures, ny, nx), dtype=np.float64)
    # average pixels per CR footprint: track (1..4 -> 2.5) x (1 + 8*0.4 tails)
    mean_footprint = 2.5 * (1 + 8 * 0.4)
    n_cr = int(round(cr_fraction * ny * nx / mean_footprint))
    for i in range(n_exposures):
        rows, cols, wts, idx, _ = _cr_footprints(rng, n_cr, (ny, nx))
        amp = _cr_amplitudes(rng, n_cr, cr_median_adu)
        np.add.at(cr[i], (rows, cols), amp[idx] * wts)

    # deliberate coincident hits: one footprint, present in k exposures with independent energies
    rows, cols, wts, idx, cores = _cr_footprints(rng, n_coincident, (ny, nx))
    which = np.array(
        [rng.choice(n_exposures, size=n_coincident_exposures, replace=False) for _ in range(n_coincident)],
        dtype=np.int64,
    ).reshape(n_coincident, n_coincident_exposures)
    for j in range(n_coincident_exposures):
        amp = _cr_amplitudes(rng, n_coincident, cr_median_adu)
        for i in range(n_exposures):
            sel_hits = which[:, j] == i
            if not sel_hits.any():
                continue
            pix = sel_hits[idx]
            np.add.at(cr[i], (rows[pix], cols[pix]), amp[idx[pix]] * wts[pix])

    # --- noise -----------------------------------------------------------------------------
    images = np.empty((n_exposures, ny, nx), dtype=np.float32)
    electrons_model = np.clip(model, 0, None) * gain
    for i in range(n_exposures):
        lam = electrons_model if exposure_models is None else np.clip(exposure_models[i], 0, None) * gain
        photons = rng.poisson(lam).astype(np.float64) / gain
        images[i] = photons + cr[i] + rng.normal(0.0, rnoise, (ny, nx)) + bias

    return SimulatedStack(
        images=images,
        model=model.astype(np.float32),
        cosmic_rays=cr.astype(np.float32),
        coincident=cores.astype(np.int64),
        coincident_exposures=which,
        gain=float(gain),
        rnoise=float(rnoise),
        bias=float(bias),
        seed=int(seed),
        meta={
            "sky": sky,
            "n_stars": int(n_stars),
            "fwhm": float(fwhms[0]) if not varying else [float(f) for f in fwhms],
            "star_x": xs, "star_y": ys, "star_peak": peaks,
            "cr_fraction": cr_fraction,
            "n_cr_per_exposure": n_cr,
            "n_coincident": int(n_coincident),
        },
    )
