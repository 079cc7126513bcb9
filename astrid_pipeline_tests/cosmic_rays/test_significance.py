"""The CR gate's significance computed at the seeds only equals the whole-image map there."""

import numpy as np

from astrid_pipeline.science.cosmic_rays.calibration import significance_map


def test_significance_at_the_seeds_equals_the_full_map_including_edges_and_nan():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, (300, 257))
    img[3, 3] = np.nan
    img[0, 7] += 500  # a hit on the border: the median window is reflected
    img[299, 256] += 300
    noise = rng.uniform(4, 6, img.shape)
    full = significance_map(img, noise)
    seeds = rng.random(img.shape) < 0.02
    seeds[0, 7] = seeds[299, 256] = seeds[3, 3] = True
    part = significance_map(img, noise, at=seeds)
    np.testing.assert_array_equal(part[seeds], full[seeds])
    assert not part[~seeds].any() and part[3, 3] == 0.0
    assert part[0, 7] > 50 and part[299, 256] > 30
