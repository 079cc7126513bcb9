"""The stellar sequence: a lone pair of compact junk below a rich sequence does not take its place."""

import numpy as np
import pytest

from astrid_pipeline.science.stars import stellar_locus


def test_two_compact_outliers_below_a_rich_sequence_are_passed_over():
    rng = np.random.default_rng(0)
    stars = 1.8 * 10 ** rng.normal(0, 0.01, 150)
    galaxies = 10 ** rng.uniform(np.log10(2.5), np.log10(6.0), 60)
    junk = np.array([0.74, 0.76])  # two unmasked cosmic-ray spots, above the 0.65 px pixel limit
    centre, _, members = stellar_locus(np.r_[junk, stars, galaxies])
    assert centre == pytest.approx(1.8, rel=0.05)
    assert not members[:2].any() and members[2:152].mean() > 0.95


def test_a_sparse_sequence_under_many_compact_galaxies_still_anchors_the_locus():
    rng = np.random.default_rng(1)
    stars = 1.25 * 10 ** rng.normal(0, 0.01, 6)
    galaxies = 10 ** rng.uniform(np.log10(1.8), np.log10(4.0), 400)
    centre, _, members = stellar_locus(np.r_[stars, galaxies])
    assert 1.2 < centre < 1.8  # the band starts at the stars, below every galaxy
    assert members[:6].all() and members[6:].mean() < 0.2


def test_the_goods_n_simulated_science_psf_is_measured_from_its_stars():
    """The built-in GOODS-N region (1024^2, 3.55 px seeing): before, two unmasked compact spots anchored the
    locus and the PSF came from them (FWHM 1.46 px), which made 607 clean false candidates."""
    from astrid_pipeline.archives.simulated import SimulatedSurvey
    from astrid_pipeline.regions import Region
    from astrid_pipeline.science.psf import image_psf

    pair = SimulatedSurvey().fetch_pair(Region("GOODS-N", 189.2283, 62.2383))
    h = pair.science
    model, _ = image_psf(h[0].data.astype(float), h["MASK"].data != 0, h[0].header)
    assert model.n_stars >= 10
    assert model.fwhm == pytest.approx(h[0].header["SIMFWHM"], rel=0.05)
