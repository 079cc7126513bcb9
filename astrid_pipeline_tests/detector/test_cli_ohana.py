"""ohana's commands and flags (create-training, train, predict and their ohana-* names), detections.json,
every detection threshold as a flag, and the real ramps through the CLI."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import yaml

from astrid_pipeline.cli_ramps import main, ohana_create_training, ohana_predict, ohana_train
from astrid_pipeline.presets import simulation_config_path
from astrid_pipeline.science.ramps.config import DetectionConfig

OHANA_DETECTION_KEYS = {"type", "centroid", "center_pixel", "pixel_coords", "first_frame", "mean_intensity",
                        "max_intensity", "spatial_extent", "confidence", "step_fit_quality"}


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture
def creator_config(tmp_path):
    """ohana's creator config (its keys, a tiny frame), output_dir inside tmp_path."""
    raw = yaml.safe_load(simulation_config_path("nircam").read_text())
    raw.update({"output_dir": str(tmp_path / "processed"), "image_shape": [64, 64], "num_frames": 8,
                "exp_time": 80.0, "patch_size": [32, 32], "overlap": 8, "num_exposure_events": 2,
                "num_baseline_exposures": 0, "gain_library": {"18220_SCA": 1.062},
                "cosmic_ray_per_exp_range": [25, 25], "rtn_per_exp_range": [10, 10],
                "snowballs_per_exp_range": [0, 0]})
    p = tmp_path / "creator_config.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_ohana_workflow_create_training_train_predict(creator_config, tmp_path, capsys):
    # 1. create-training with ohana's flags (a job array would run one index per task)
    assert ohana_create_training(["--config", str(creator_config), "--start_index", "0", "--end_index", "1"]) == 0
    made = _last_json(capsys)
    assert made["patches"] == 2 * 2 * 9 and sorted(p.name for p in (tmp_path / "processed").iterdir()) == [
        "training_00000.h5", "training_00001.h5"]
    # 2. train with ohana's flags; the patches come from the config's output_dir
    models = tmp_path / "trained_models"
    assert ohana_train(["--config", str(creator_config), "--epochs", "1", "--batch_size", "2", "--output_dir",
                        str(models), "--hidden", "4", "--steps_per_epoch", "2", "--val_fraction", "0.3"]) == 0
    trained = _last_json(capsys)
    assert trained["best_epoch"] == 1
    assert (models / "best_model_unet3d.pth").is_file() and (models / "training_history_unet3d.json").is_file()
    # 3. predict with ohana's flags on a simulated ramp
    ramp = tmp_path / "exposure.h5"
    assert main(["simulate", "-o", str(ramp), "--config", str(creator_config)]) == 0
    capsys.readouterr()
    out = tmp_path / "prediction_outputs"
    assert ohana_predict(["--model", str(models / "best_model_unet3d.pth"), "--input", str(ramp), "--output", str(out),
                          "--no-preview"]) == 0
    printed = _last_json(capsys)
    assert "unet" in printed and printed["unet"]["model"].endswith("best_model_unet3d.pth")
    mask = np.load(out / "prediction_mask.npy")
    with h5py.File(out / "mask.h5", "r") as f:
        assert np.array_equal(mask, f["class_mask"][()])  # prediction_mask.npy beside mask.h5
    dets = json.loads((out / "detections.json").read_text())
    assert dets and all(OHANA_DETECTION_KEYS <= set(d) for d in dets)
    cr = next(d for d in dets if d["type"] == "cosmic_ray")
    assert 0 <= cr["confidence"] <= 1 and cr["center_pixel"] in cr["pixel_coords"]
    assert all(mask[y, x] > 0 for y, x in cr["pixel_coords"])


def test_every_detection_setting_is_a_flag_and_reaches_the_detector(tmp_path, capsys):
    from astrid_pipeline.cli_ramps import _parser

    detect = _parser()._subparsers._group_actions[0].choices["detect"]  # noqa: SLF001 - argparse introspection
    flags = {s for a in detect._actions for s in a.option_strings}  # noqa: SLF001
    for f in dataclasses.fields(DetectionConfig):
        assert f"--{f.name}" in flags, f.name
    ramp = tmp_path / "sim.h5"
    # the packaged nircam preset is full frame: a small config file with its physics
    raw = yaml.safe_load(simulation_config_path("nircam").read_text())
    raw.update({"image_shape": [96, 96], "patch_size": [32, 32], "cosmic_ray_per_exp_range": [30, 30],
                "rtn_per_exp_range": [20, 20], "snowballs_per_exp_range": [0, 0]})
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump(raw))
    assert main(["simulate", "-o", str(ramp), "--config", str(small)]) == 0
    capsys.readouterr()
    det_yaml = tmp_path / "det.yaml"
    det_yaml.write_text("snowball_min_area: 60\nrtn_min_transitions: 2\n")
    out = tmp_path / "root"
    assert main(["detect", str(ramp), "-o", str(out), "--config", str(det_yaml), "--rtn_min_transitions", "3",
                 "--snowball-max-area", "5000", "--sigma", "4.5", "--methods", "jumps,rtn", "--groupdq",
                 "--no-preview"]) == 0
    printed = _last_json(capsys)
    d = out / "detector" / "sim" / "000"
    with h5py.File(d / "mask.h5", "r") as f:
        used = json.loads(f.attrs["config"])
    assert used["rtn_min_transitions"] == 3 and used["snowball_min_area"] == 60  # flag over file over default
    assert used["snowball_max_area"] == 5000 and used["sigma_threshold"] == 4.5
    assert used["methods"] == ["jumps", "rtn"] and printed["methods"] == ["jumps", "rtn"]
    assert (d / "groupdq.fits").is_file() and (d / "prediction_mask.npy").is_file()
    det_yaml.write_text("rtn_min_transitons: 2\n")  # a typo is an error, not ignored
    assert main(["detect", str(ramp), "-o", str(tmp_path / "x"), "--config", str(det_yaml)]) == 2
    assert "unknown detection config keys: rtn_min_transitons" in capsys.readouterr().err


def test_real_hst_ima_runs_by_default_with_rtn_skipped_by_name(tmp_path, realdata, capsys):
    out = tmp_path / "hst"
    assert main(["detect", str(realdata / "ramps" / "hst_wfc3ir_ima.fits"), "-o", str(out), "--no-preview"]) == 0
    printed = _last_json(capsys)
    assert printed["skipped"] == {"rtn": "TooFewGroupsError: ramp has 4 groups; rtn detection needs at least 8"}
    assert printed["methods"] == ["jumps", "snowballs"] and printed["layout"] == "hst-wfc3ir-ima"
    assert (out / "detector" / "hst_wfc3ir_ima" / "000" / "detections.json").is_file()


def test_real_two_group_jwst_file_is_a_named_error(tmp_path, realdata, capsys):
    bad = tmp_path / "bad"
    assert main(["predict", "--input", str(realdata / "ramps" / "jwst_fgs_acq1_uncal.fits"), "--output", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "jwst_fgs_acq1_uncal.fits" in err and "jumps detection needs at least 4" in err
    assert not bad.exists() or not any(p.is_file() for p in bad.rglob("*"))


def test_presets_command_lists_the_presets(capsys):
    assert main(["presets"]) == 0
    assert {"h2rg", "nircam", "roman"} <= set(_last_json(capsys))
