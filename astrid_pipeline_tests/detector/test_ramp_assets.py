"""Dagster assets of the detector branch, in process, and the astrid-ramps CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, MultiPartitionKey, materialize

from astrid_pipeline.cli_ramps import main
from astrid_pipeline.defs.detector.assets import (DETECTORS, EXPOSURES, detector_partitions, ramp_detections,
                                                  register_exposures, simulated_ramp)
from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline.io.parquet_io import field_units
from astrid_pipeline.presets import load_preset

detector_assets = [simulated_ramp, ramp_detections]


@pytest.fixture()
def instance():
    with DagsterInstance.ephemeral() as inst:
        register_exposures(inst)
        yield inst


def test_partitions_come_from_the_configuration_files(tmp_path, monkeypatch):
    cfg = load_preset()
    with DagsterInstance.ephemeral() as inst:
        keys = register_exposures(inst)
        assert inst.get_dynamic_partitions(DETECTORS) == cfg.detectors
        assert inst.get_dynamic_partitions(EXPOSURES) == cfg.exposure_keys
        assert keys[0] == f"{cfg.detectors[0]}|{cfg.exposure_keys[0]}"
        # a configuration named at run time brings its own detectors, with no code change
        other = tmp_path / "other.yaml"
        other.write_text((load_preset.__globals__["simulation_config_path"]("nircam")).read_text())
        monkeypatch.setenv("ASTRID_RAMP_CONFIG", str(other))
        register_exposures(inst)
        assert set(load_preset(other).detectors) <= set(inst.get_dynamic_partitions(DETECTORS))
    assert {d.name for d in detector_partitions.partitions_defs} == {"detector", "exposure"}


def test_materialize_one_partition_writes_mask_events_and_detections(tmp_path, instance):
    key = MultiPartitionKey({"detector": "18248_SCA", "exposure": "001"})
    res = materialize(detector_assets, partition_key=key, resources={"storage": StorageResource(root=str(tmp_path))},
                      instance=instance)
    assert res.success
    d = tmp_path / "detector" / "18248_SCA" / "001"
    with h5py.File(d / "ramp.h5", "r") as f:
        truth = f["truth/class_mask"][()]
        n_frames = f["ramp"].shape[0]
    with h5py.File(d / "mask.h5", "r") as f:
        mask = f["class_mask"][()]
        assert mask.shape == truth.shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2, 3}
        assert f["features/first_jump_frame"].shape == mask.shape
        assert f["features/first_jump_frame"][()].max() < n_frames
        assert f.attrs["step"] == "ramp_detection"
    # the injected snowball is found where it is
    assert ((mask == 3) & (truth == 3)).sum() > 0.5 * (truth == 3).sum()
    part = tmp_path / "catalogs" / "ramp_events" / "detector=18248_SCA" / "exposure=001" / "part-0.parquet"
    events = pq.read_table(part).to_pandas()
    assert {"type", "centroid_x", "centroid_y", "first_frame", "mean_intensity", "max_intensity",
            "spatial_extent", "step_amplitude", "fit_quality", "n_transitions"} <= set(events.columns)
    assert field_units(part)["centroid_x"] == "pix" and field_units(part)["max_intensity"] == "DN"
    # the whole catalog reads with the hive partition keys as columns, without project code
    whole = pq.read_table(tmp_path / "catalogs" / "ramp_events", partitioning="hive").to_pandas()
    assert set(whole["detector"].astype(str)) == {"18248_SCA"}
    dets = json.loads((d / "detections.json").read_text())
    assert len(dets) == len(events)
    assert {e["type"] for e in dets} <= {"cosmic_ray", "telegraph_noise", "snowball"}
    assert "snowball" in {e["type"] for e in dets}
    first = dets[0]
    assert {"type", "centroid", "first_frame", "mean_intensity", "max_intensity", "spatial_extent"} <= set(first)
    # counts in the metadata agree with the files
    mats = {e.asset_key.to_user_string(): e.materialization.metadata for e in res.get_asset_materialization_events()}
    counts = mats["ramp_anomaly_mask"]["counts"].value
    assert counts == events["type"].value_counts().reindex(
        ["cosmic_ray", "telegraph_noise", "snowball"], fill_value=0).astype(int).to_dict()
    assert "preview" in mats["ramp_anomaly_mask"]
    assert mats["simulated_ramp"]["injected"].value["snowball"] >= 1


def test_cli_detects_on_hdf5_and_refuses_bad_input(tmp_path, realdata, capsys):
    ramp = tmp_path / "sim.h5"
    assert main(["simulate", "-o", str(ramp), "--detector", "18220_SCA", "--exposure", "0"]) == 0
    out = tmp_path / "out"
    assert main(["detect", str(ramp), "-o", str(out), "--detector", "18220_SCA", "--no-preview"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["counts"]["snowball"] >= 1
    assert (out / "detector" / "18220_SCA" / "000" / "mask.h5").exists()
    assert (out / "catalogs" / "ramp_events" / "detector=18220_SCA" / "exposure=000" / "part-0.parquet").exists()
    # a 2-group JWST ramp: clear error, exit status 2, nothing written
    bad_out = tmp_path / "bad"
    assert main(["detect", str(realdata / "ramps" / "jwst_fgs_acq1_uncal.fits"), "-o", str(bad_out)]) == 2
    assert "jumps detection needs at least 4" in capsys.readouterr().err
    assert not bad_out.exists() or not any(p.is_file() for p in bad_out.rglob("*"))
    # NaNs in a cube: named error, nothing written
    from astropy.io import fits

    cube = np.full((10, 16, 16), 1000.0, np.float32) + np.random.default_rng(0).normal(0, 5, (10, 16, 16)).astype(np.float32)
    cube[5, 2, 2] = np.nan
    p = tmp_path / "nan.fits"
    fits.PrimaryHDU(cube).writeto(p)
    nan_out = tmp_path / "nan_out"
    assert main(["detect", str(p), "-o", str(nan_out), "--methods", "jumps"]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not nan_out.exists() or not any(p.is_file() for p in nan_out.rglob("*"))


def test_cli_detects_on_real_hst_ima(tmp_path, realdata, capsys):
    out = tmp_path / "hst"
    rc = main(["detect", str(realdata / "ramps" / "hst_wfc3ir_ima.fits"), "-o", str(out), "--methods", "jumps,snowballs",
               "--no-preview"])
    assert rc == 0
    with h5py.File(out / "detector" / "hst_wfc3ir_ima" / "000" / "mask.h5", "r") as f:
        assert f["class_mask"].shape == (266, 266)
        assert f.attrs["source_layout"] == "hst-wfc3ir-ima"
        assert f.attrs["unit"] == "electron"
