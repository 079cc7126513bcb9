"""Binning, crosses, the monotone spline, its extension, constancy outside the knots, simulations."""

import numpy as np
import pytest

from astrid_pipeline.science.mmcosmic import boundary as B
from astrid_pipeline.science.mmcosmic.diagram import median_of_stack, minimum_signal


def _crosses():
    x = np.array([50, 80, 100, 120, 200, 500, 1000, 3000, 10000, 30000], dtype=float)
    sig = np.sqrt(x + 3.4**2)
    rng = np.random.default_rng(0)
    y = 5.0 * sig * (1 + 0.05 * rng.standard_normal(x.size))
    return x, y


def test_quantile_edges_hold_equal_counts():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(100, 10, 9000), rng.uniform(1000, 30000, 1000)])
    edges = B.x_bin_edges(x, 10, "quantile")
    counts, _ = np.histogram(x, bins=edges)
    assert counts.sum() == x.size
    assert counts.min() >= 990 and counts.max() <= 1010
    lin = B.x_bin_edges(x, 10, "linear")
    lin_counts, _ = np.histogram(x, bins=lin)
    assert lin_counts[0] >= 9000  # linear bins put every sky pixel in the first bin


def test_red_cross_is_the_level_exceeded_once_per_image():
    # one bin, 5 simulations, 1000 pixels per simulation; z values 0.005, 0.015, ... by construction:
    # counts in the last bins: 7 pixels at z in [3.00,3.01), 3 at [3.10,3.11), 2 at [3.20,3.21)
    z_edges = np.arange(B.Z_MIN, B.Z_MAX + B.Z_STEP / 2, B.Z_STEP)
    hist = np.zeros((1, z_edges.size - 1), dtype=np.int64)
    j0 = int(round((0.0 - B.Z_MIN) / B.Z_STEP))
    hist[0, j0] = 4988
    j = lambda z: int(round((z - B.Z_MIN) / B.Z_STEP))  # noqa: E731
    hist[0, j(3.0)] = 7
    hist[0, j(3.1)] = 3
    hist[0, j(3.2)] = 2
    sim = B.SimulatedDiagram(hist, np.array([-np.inf, np.inf]), np.array([0.0]), z_edges, 5, 1.0, 1.0)
    x, y, n = B.red_crosses(sim)
    # 5 pixels above per 5 simulations: above z=3.1 bin there are 5 (3 + 2) -> the level is the
    # lower edge of the 3.10 bin, interpolated: above[j(3.0)] = 12, above[j(3.1)] = 5 -> inside the 3.0 bin,
    # fraction (12 - 5) / (12 - 5) = 1 -> z = 3.0 + 0.01
    assert n[0] == pytest.approx(1000.0)
    assert y[0] == pytest.approx(3.01 * 1.0, abs=1e-9)  # sigma(x=0) = rnoise = 1


def test_spline_is_monotonic_and_constant_beyond_its_knots():
    x, y = _crosses()
    bnd = B.fit_spline_boundary(x, y, n_knots=5, niter_extension=5, weight_extension=2.0, scale=3.4**2)
    grid = np.concatenate([np.linspace(-500, 1000, 3000), np.linspace(1000, 60000, 3000)])
    vals = bnd(grid)
    assert np.all(np.diff(vals[np.argsort(grid)]) >= -1e-9)
    assert bnd(np.array(-500.0)) == pytest.approx(float(bnd(np.array(x.min()))))
    assert bnd(np.array(1e6)) == pytest.approx(float(bnd(np.array(x.max()))))
    assert bnd(np.array(45000.0)) == pytest.approx(float(bnd(np.array(30000.0))))


def test_boundary_extension_lifts_the_fit_above_the_crosses():
    x, y = _crosses()
    flat = B.fit_spline_boundary(x, y, n_knots=5, niter_extension=0, scale=3.4**2)
    ext = B.fit_spline_boundary(x, y, n_knots=5, niter_extension=5, weight_extension=2.0, scale=3.4**2)
    above_flat = np.sum(y > flat(x))
    above_ext = np.sum(y > ext(x))
    assert above_ext < above_flat
    assert np.all(ext(x) >= flat(x) - 1e-6 * np.abs(flat(x)).max() - 1.0)
    assert np.mean(ext(x) - flat(x)) > 0


def test_fixed_points_pull_the_spline():
    x, y = _crosses()
    bnd = B.fit_spline_boundary(x, y, n_knots=5, niter_extension=0, fixed_points=[(200.0, 150.0, 10000.0)], scale=3.4**2)
    assert bnd(np.array(200.0)) == pytest.approx(150.0, rel=0.02)


def test_piecewise_goes_through_points_and_is_flat_outside():
    bnd = B.piecewise_boundary([(0, 30, 1), (50, 60, 1), (150, 80, 1)])
    assert bnd(np.array(25.0)) == pytest.approx(45.0)
    assert bnd(np.array(100.0)) == pytest.approx(70.0)
    assert bnd(np.array(-10.0)) == pytest.approx(30.0)
    assert bnd(np.array(1e5)) == pytest.approx(80.0)
    with pytest.raises(ValueError):
        B.piecewise_boundary([(0, 1)])


def _flat_lambda(shape=(3, 120, 120), sky=100.0, bright=False):
    lam = np.full(shape, sky)
    if bright:  # a few bright stars stretch the x axis
        lam[:, 10:14, 10:14] = 20000.0
        lam[:, 60:62, 90:92] = 8000.0
    return lam


def test_simulations_are_seeded_and_thread_independent():
    lam = _flat_lambda()
    edges = B.x_bin_edges(lam[0], 4, "linear")
    a = B.simulate_diagram(lam, gain=1.0, rnoise=3.4, k=2, x_edges=edges, nsimulations=4, seed=7, threads=1)
    b = B.simulate_diagram(lam, gain=1.0, rnoise=3.4, k=2, x_edges=edges, nsimulations=4, seed=7, threads=2)
    c = B.simulate_diagram(lam, gain=1.0, rnoise=3.4, k=2, x_edges=edges, nsimulations=4, seed=8, threads=1)
    np.testing.assert_array_equal(a.hist, b.hist)
    assert not np.array_equal(a.hist, c.hist)
    assert a.hist.sum() == 4 * 120 * 120


def test_fast_poisson_matches_exact_poisson_quantiles():
    lam = np.full((3, 300, 300), 100.0)
    edges = np.array([-np.inf, np.inf])
    kw = dict(gain=1.0, rnoise=3.4, k=2, x_edges=edges, nsimulations=6, seed=11, threads=1)
    fast = B.simulate_diagram(lam, **kw)
    exact = B.simulate_diagram(lam, exact_poisson=True, **kw)
    zc = 0.5 * (fast.z_edges[1:] + fast.z_edges[:-1])

    def q(h, p):
        c = np.cumsum(h[0]) / h[0].sum()
        return zc[np.searchsorted(c, p)]

    for p in (0.5, 0.9, 0.99, 0.999):
        assert q(fast.hist, p) == pytest.approx(q(exact.hist, p), rel=0.04, abs=0.03)


def test_quantile_binning_keeps_the_sky_boundary_tight():
    """With bright stars in the field, numina's linear bins lift the sky-level boundary; quantile bins do not."""
    lam = _flat_lambda(shape=(3, 200, 200), bright=True)
    rng = np.random.default_rng(5)
    data = rng.poisson(lam).astype(np.float32) + rng.normal(0, 3.4, lam.shape).astype(np.float32)
    x = minimum_signal(data, 2)
    sky_sigma = np.sqrt(100 + 3.4**2)
    levels = {}
    for scheme, nb in (("quantile", 8), ("linear", 100)):
        edges = B.x_bin_edges(x, nb, scheme, scale=3.4**2)
        sim = B.simulate_diagram(lam, gain=1.0, rnoise=3.4, k=2, x_edges=edges, nsimulations=10, seed=3, threads=1)
        cx, cy, _ = B.red_crosses(sim, x_data=x if scheme == "quantile" else None)
        bnd = B.fit_spline_boundary(cx, cy, n_knots=5, niter_extension=5, weight_extension=2.0, scale=3.4**2)
        levels[scheme] = float(bnd(np.array(100.0))) / sky_sigma
    # noise alone puts 1 pixel in ~1e5 above ~5 sigma for median - min of 3 exposures
    assert 3.5 < levels["quantile"] < 6.5
    assert levels["linear"] > levels["quantile"] + 0.5
    # and the data: median - min of the real stack rarely exceeds the quantile boundary at sky level
    y = median_of_stack(data) - x
    sky = (lam[0] == 100.0)
    assert np.mean(y[sky] > levels["quantile"] * sky_sigma) < 1e-3
