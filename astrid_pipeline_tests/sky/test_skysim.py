"""The simulated survey: determinism, geometry, truth."""

import numpy as np
import pytest
from astropy.wcs import WCS

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.science.skysim import SurveyConfig, simulate_pair


def test_same_seed_same_files_and_other_seed_differs(small_pair):
    again = simulate_pair(210.774, 54.2737, "M101", SurveyConfig(shape=(512, 512)))
    assert np.array_equal(small_pair.science[0].data, again.science[0].data)
    other = simulate_pair(210.774, 54.2737, "M101", SurveyConfig(shape=(512, 512), seed=1))
    assert not np.array_equal(small_pair.science[0].data, other.science[0].data)


def test_epochs_differ_as_a_survey_would(small_pair):
    hs, hr = small_pair.science[0].header, small_pair.reference[0].header
    assert hr["SIMFWHM"] < hs["SIMFWHM"]  # the reference is sharper
    assert hr["EXPTIME"] > hs["EXPTIME"]  # and deeper
    ws, wr = WCS(hs), WCS(hr)
    # the science pointing is offset by a few pixels and rotated by a fraction of a degree
    x, y = wr.world_to_pixel(ws.pixel_to_world(255.5, 255.5))
    assert 1.0 < np.hypot(x - 255.5, y - 255.5) < 8.0
    m = ws.pixel_scale_matrix
    rot = np.degrees(np.arctan2(m[1, 0], m[1, 1]))
    assert 0.05 < abs(rot) < 0.6
    assert (small_pair.science["MASK"].data & 1).any()  # bad columns are flagged


def test_truth_transients_are_in_the_image_with_expected_snr(small_pair):
    t = small_pair.truth
    assert {"supernova", "variable", "nova", "asteroid", "asteroid_trailed", "faint"} <= set(t["type"])
    assert (t["x"].between(0, 511) & t["y"].between(0, 511)).all()
    assert (t["expected_snr"] > 0).all()
    assert ((t["type"] == "asteroid") & (t["sign"] < 0)).any()  # the reference-epoch position
    assert t.loc[t["type"] == "faint", "expected_snr"].max() < 10
    sn = t[t["type"] == "supernova"]
    assert (np.hypot(sn["x"] - sn["host_x"], sn["y"] - sn["host_y"]) > 0.3).all()
    assert len(small_pair.cosmic_rays) > 0


def test_bad_config_is_named():
    with pytest.raises(ConfigError, match="fwhm_science"):
        simulate_pair(10, 10, "x", SurveyConfig(fwhm_science=(4.0, 3.0)))
    with pytest.raises(ConfigError, match="too small"):
        simulate_pair(10, 10, "x", SurveyConfig(shape=(64, 64)))
    with pytest.raises(ConfigError, match="Dec"):
        simulate_pair(10, 95, "x", SurveyConfig(shape=(256, 256)))
