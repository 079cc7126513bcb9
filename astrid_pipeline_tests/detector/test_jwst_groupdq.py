"""Jump flags as a JWST GROUPDQ that stcal's ramp fitting takes, through the file and back."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.errors import BadShapeError, InputFileError
from astrid_pipeline.science.ramps.config import DetectionConfig
from astrid_pipeline.science.ramps.detect import detect_ramp
from astrid_pipeline.science.ramps.jwst_dq import JWST_DQ, groupdq_from_detection, read_dq_fits, write_dq_fits
from astrid_pipeline.science.ramps.readers import ArrayRampSource

SLOPE = 5.0  # DN per group (group time 1 s)


@pytest.fixture
def ramp(make_flat_cube):
    cube = make_flat_cube(n=20, ny=32, nx=32, read_noise=10.0, slope=SLOPE, seed=21)
    cube[8:, 10, 10] += 500.0  # a cosmic ray arriving in group 8
    cube[12:, 20, 5] = 65535.0  # a pixel saturating at group 12
    states = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0], np.float32)
    cube[:, 25, 25] += 120.0 * states  # an RTN pixel
    res = detect_ramp(ArrayRampSource(cube, gain=1.0, saturation=65535.0), DetectionConfig(read_noise_dn=10.0))
    return cube, res


def test_groupdq_has_jwst_bits_where_the_detection_put_them(ramp):
    cube, res = ramp
    gdq, pdq = groupdq_from_detection(res)
    assert gdq.shape == (1, 20, 32, 32) and gdq.dtype == np.uint8 and pdq.dtype == np.uint32
    assert gdq[0, 8, 10, 10] & JWST_DQ["JUMP_DET"]  # the group that first holds the charge
    assert not (gdq[0, :8, 10, 10] & JWST_DQ["JUMP_DET"]).any()
    assert (gdq[0, 12:, 20, 5] & JWST_DQ["SATURATED"]).all() and not (gdq[0, :12, 20, 5] & JWST_DQ["SATURATED"]).any()
    # every switch of the RTN pixel, up and down, so each stretch is fitted in one state
    assert np.flatnonzero(gdq[0, :, 25, 25] & JWST_DQ["JUMP_DET"]).tolist() == [4, 9, 14, 17]
    assert pdq[25, 25] & JWST_DQ["TELEGRAPH"]
    assert (gdq & JWST_DQ["JUMP_DET"]).sum() / JWST_DQ["JUMP_DET"] < 0.01 * gdq.size  # little else
    with pytest.raises(BadShapeError, match="does not match"):
        groupdq_from_detection(res, shape=(19, 32, 32))


def test_stcal_ramp_fitting_takes_the_export_and_the_flags_fix_the_slopes(ramp):
    pytest.importorskip("stcal")
    from astrid_pipeline.science.ramps.peer_stcal import stcal_ramp_fit

    cube, res = ramp
    gdq, pdq = groupdq_from_detection(res)
    cds = np.sqrt(2) * 10.0
    with_flags = stcal_ramp_fit(cube, gdq, cds, 1.0, group_time=1.0, pixeldq=pdq)["slope"]
    without = stcal_ramp_fit(cube, np.zeros_like(gdq), cds, 1.0, group_time=1.0)["slope"]
    assert with_flags.shape == (32, 32)
    clean = np.ones((32, 32), bool)
    clean[[10, 20, 25], [10, 5, 25]] = False
    assert abs(np.median(with_flags[clean]) - SLOPE) < 0.2
    # the cosmic ray biases the unflagged fit by ~500 / 19 DN/s; the flagged fit is back to the true slope
    assert without[10, 10] > SLOPE + 15
    assert abs(with_flags[10, 10] - SLOPE) < 3.0
    # the saturated pixel is fitted on its groups before saturation; the RTN pixel on its stretches
    assert abs(with_flags[20, 5] - SLOPE) < 3.0
    assert abs(with_flags[25, 25] - SLOPE) < abs(without[25, 25] - SLOPE) + 1.0


def test_groupdq_round_trips_through_the_file_and_bad_arrays_are_refused(ramp, tmp_path):
    _, res = ramp
    gdq, pdq = groupdq_from_detection(res, n_integrations=2)
    path = write_dq_fits(tmp_path / "groupdq.fits", gdq, pdq, {"INTEGRAT": 0})
    with fits.open(path) as h:
        assert [x.name for x in h] == ["PRIMARY", "GROUPDQ", "PIXELDQ"]
        assert h["GROUPDQ"].data.dtype == np.uint8 and h["GROUPDQ"].header["JUMP_DET"] == 4
    g2, p2 = read_dq_fits(path)
    assert np.array_equal(g2, gdq) and np.array_equal(p2, pdq)
    assert not (g2[1] != 0).any()  # the other integration stays clean
    with pytest.raises(BadShapeError, match="GROUPDQ must be uint8"):
        write_dq_fits(tmp_path / "bad.fits", gdq.astype(np.int32), pdq)
    assert not (tmp_path / "bad.fits").exists()
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(tmp_path / "nodq.fits")
    with pytest.raises(InputFileError, match="no GROUPDQ"):
        read_dq_fits(tmp_path / "nodq.fits")
