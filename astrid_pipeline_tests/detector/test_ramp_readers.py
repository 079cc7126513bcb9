"""Ramp readers on real JWST and HST files, plain cubes, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.errors import BadShapeError, ConfigError, EmptyDataError, NotFITSError
from astrid_pipeline.science.ramps.config import DetectionConfig, SimulationConfig
from astrid_pipeline.science.ramps.detect import detect_ramp
from astrid_pipeline.science.ramps.errors import (
    AllSaturatedError,
    NonFiniteRampError,
    TooFewGroupsError,
    UnknownRampFormatError,
)
from astrid_pipeline.science.ramps.readers import ArrayRampSource, open_ramp


def test_jwst_uncal_layout(realdata):
    path = realdata / "ramps" / "jwst_fgs_acq1_uncal.fits"
    raw = fits.getdata(path, "SCI")
    with open_ramp(path) as src:
        assert src.layout == "jwst-uncal"
        assert src.shape == (6, 2, 128, 128)  # integrations x groups x y x x
        assert src.unit == "DN" and src.saturation == 65535.0
        # a 128x128 subarray at SUBSTRT (887, 1022) touches no reference-pixel border
        assert src.refpix == (0, 0, 0, 0)
        np.testing.assert_allclose(src.group_times, [0.364, 0.728])
        block = src.read_rows(60, 62, integration=3)
        assert block.shape == (2, 2, 128) and block.dtype == np.float32
        assert np.array_equal(block, raw[3, :, 60:62, :].astype(np.float32))
        assert src.read_rows(60, 61, 0)[:, 0, 60].tolist() == [12250.0, 12256.0]  # group order kept
        with pytest.raises(BadShapeError, match="integration 6 does not exist"):
            src.read_rows(0, 1, integration=6)
        # two groups are too few for jumps: a clear error, not an empty result
        with pytest.raises(TooFewGroupsError, match="2 groups; jumps detection needs at least 4"):
            detect_ramp(src)


def test_hst_wfc3ir_ima_layout(realdata):
    path = realdata / "ramps" / "hst_wfc3ir_ima.fits"
    with fits.open(path) as h:
        last_rate = h["SCI", 1].data.astype(np.float64)  # stored last read first
        last_time = h["SCI", 1].header["SAMPTIME"]
        mid_rate = h["SCI", 3].data.astype(np.float64)
        mid_time = h["SCI", 3].header["SAMPTIME"]
    with open_ramp(path) as src:
        assert src.layout == "hst-wfc3ir-ima"
        assert src.shape == (1, 4, 266, 266)
        assert src.unit == "electron" and src.gain == 1.0
        assert np.all(np.diff(src.group_times) > 0) and src.group_times[0] == 0.0
        assert src.refpix == (5, 5, 5, 5) and src.refpix_corrected
        cube = src.read_rows(0, 266)
        assert np.all(cube[0] == 0)  # the zeroth read, first in time order
        np.testing.assert_allclose(cube[-1], last_rate * last_time, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(cube[1], mid_rate * mid_time, rtol=1e-5, atol=1e-3)
        assert src.saturated_rows(0, 10).shape == (4, 10, 266)
        # by default RTN (which needs 8 reads) is skipped by name and jumps and snowballs run
        res = detect_ramp(src)
        assert res.skipped == {"rtn": "TooFewGroupsError: ramp has 4 groups; rtn detection needs at least 8"}
        assert res.meta["methods"] == ["jumps", "snowballs"]
        with pytest.raises(TooFewGroupsError, match="rtn detection needs at least 8"):
            detect_ramp(src, DetectionConfig(skip_unrunnable=False))
        assert res.mask.shape == (266, 266)
        assert 5 < res.read_noise < 40  # e- per read, WFC3/IR is ~15-20 e- CDS
        assert res.mask[:5].max() == 0  # the reference border is never flagged


def test_plain_fits_cube_and_hdf5_roundtrip(tmp_path, make_flat_cube):
    cube = make_flat_cube(n=8, ny=20, nx=24)
    p = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube, header=fits.Header([("BUNIT", "DN"), ("GAIN", 2.5)])).writeto(p)
    with open_ramp(p) as src:
        assert src.layout == "fits-cube" and src.shape == (1, 8, 20, 24)
        assert src.gain == 2.5
        assert np.array_equal(src.read_rows(3, 9), cube[:, 3:9])
    import h5py

    h = tmp_path / "other.h5"
    with h5py.File(h, "w") as f:
        f.create_dataset("data/exposure", data=cube[None])
    with open_ramp(h) as src:
        assert src.shape == (1, 8, 20, 24)
        assert np.array_equal(src.read_rows(0, 20), cube)


def test_bad_files_raise_named_errors(tmp_path):
    p2d = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(p2d)
    with pytest.raises(BadShapeError, match="2 dimensions"):
        open_ramp(p2d)
    p5d = tmp_path / "five.fits"
    fits.PrimaryHDU(np.zeros((2, 2, 3, 4, 4), np.float32)).writeto(p5d)
    with pytest.raises(BadShapeError, match="5 dimensions"):
        open_ramp(p5d)
    txt = tmp_path / "notes.txt"
    txt.write_text("not a ramp\n")
    with pytest.raises(UnknownRampFormatError):
        open_ramp(txt)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDataError):
        open_ramp(empty)
    fake = tmp_path / "fake.fits"
    fake.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    with pytest.raises(NotFITSError) as err:  # a SIMPLE card and nothing else
        open_ramp(fake)
    assert "fake.fits" in str(err.value)


def test_nan_and_all_saturated_ramps_are_errors(make_flat_cube):
    cube = make_flat_cube(n=10, ny=16, nx=16)
    cube[4, 3, 5] = np.nan
    with pytest.raises(NonFiniteRampError, match="NaN or infinite"):
        detect_ramp(ArrayRampSource(cube, saturation=65535.0))
    sat = np.full((10, 16, 16), 65535.0, np.float32)
    with pytest.raises(AllSaturatedError, match="saturated from the first group"):
        detect_ramp(ArrayRampSource(sat, saturation=65535.0), DetectionConfig(read_noise_dn=10.0))


def test_detection_config_is_validated():
    with pytest.raises(ConfigError, match="methods"):
        DetectionConfig(methods=("jumps", "ghosts"))
    with pytest.raises(ConfigError, match="needs 'jumps'"):
        DetectionConfig(methods=("snowballs",))
    with pytest.raises(ConfigError, match="rtn_amplitude_range: min 10 is greater than max 1"):
        DetectionConfig(rtn_amplitude_range=(10, 1))
    with pytest.raises(ConfigError, match="snowball radius"):
        from astrid_pipeline.science.ramps.simulate import plan_exposure

        cfg = SimulationConfig(image_shape=(24, 24), patch_size=(8, 8), overlap=2, snowball_radius_range=(30, 40),
                               num_exposure_events=1)
        plan_exposure(cfg, cfg.detectors[0], 0)
