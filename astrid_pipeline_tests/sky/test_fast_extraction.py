"""The per-candidate reference photometry of the bright-neighbour flag equals the whole-image FFT form."""

from __future__ import annotations

import numpy as np

from astrid_pipeline.science.extraction import _nearby_reference_flux, _nearby_reference_flux_fft


def test_nearby_reference_flux_matches_fft_form_also_at_edges():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (300, 280))
    ref[5, 5] += 1e4  # a bright star in a corner: its fits near the edge see zeros beyond it
    ref[150, 140] += 800
    ref[100, 2] = np.nan
    yy, xx = np.mgrid[-7:8, -7:8]
    psf = np.exp(-(xx**2 + yy**2) / 4.5)
    xs = np.r_[rng.uniform(0, 280, 30), 0, 279, 2, 140, 6]
    ys = np.r_[rng.uniform(0, 300, 30), 0, 299, 100, 150, 4]
    fast = _nearby_reference_flux(ref, psf, xs, ys, 4.5)
    slow = _nearby_reference_flux_fft(ref, psf, xs, ys, 4.5)
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)
    assert fast[-1] > 5e3 and fast[-2] > 500  # the bright neighbours are seen
