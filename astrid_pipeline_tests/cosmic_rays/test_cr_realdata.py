"""Real data: the GMOS-S spectrum cutout with exactly two cosmic rays (see ../shared/realdata/README.md)."""

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.ml.checkpoint import SHIPPED
from astrid_pipeline.science.cosmic_rays.masks import detect_cosmic_rays

GAIN, READ_NOISE_E = 1.933, 4.24
BOXES = [(slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43))]


@pytest.fixture(scope="module")
def gmos(realdata):
    with fits.open(realdata / "cosmic_rays" / "gmos_spectrum_two_crs.fits") as h:
        return np.array(h["SCI"].data, dtype=np.float64)


def _score(mask):
    inside = np.zeros(mask.shape, bool)
    for b in BOXES:
        inside[b] = True
    return [int(mask[b].sum()) for b in BOXES], int((mask & ~inside).sum())


def test_lacosmic_finds_both_crs_and_little_else(gmos):
    res = detect_cosmic_rays(gmos, method="lacosmic", gain=GAIN, read_noise=READ_NOISE_E / GAIN)
    per_cr, outside = _score(res.mask)
    assert min(per_cr) >= 20, per_cr
    assert outside <= 10, outside


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped weights")
def test_shipped_model_finds_both_crs_and_little_else(gmos):
    res = detect_cosmic_rays(gmos, checkpoint=SHIPPED)
    assert res.method == "model"
    per_cr, outside = _score(res.mask)
    assert min(per_cr) >= 50, per_cr  # both long tracks, most of their pixels
    # a spectrum is outside the imaging training set: thin sky-line segments pick up a few pixels at p >= 0.5
    # (75 with the shipped weights), almost none at p >= 0.9 (9)
    assert outside <= 120, outside
    per_cr_09, outside_09 = _score(res.probability >= 0.9)
    assert min(per_cr_09) >= 50 and outside_09 <= 15, (per_cr_09, outside_09)
