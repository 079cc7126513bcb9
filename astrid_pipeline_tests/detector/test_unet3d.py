"""The ramp 3D U-Net: temporal patches, training (loss falls, IoU selection), checkpoints, tiled inference, hybrid."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from astrid_pipeline.ml.errors import CheckpointError  # noqa: E402
from astrid_pipeline.ml.ramps.features import difference_features  # noqa: E402
from astrid_pipeline.ml.ramps.hybrid import HybridConfig, merge_hybrid  # noqa: E402
from astrid_pipeline.ml.ramps.infer import UNetPrediction, load_unet, predict_ramp  # noqa: E402
from astrid_pipeline.ml.ramps.patches import build_training_set, patch_origins  # noqa: E402
from astrid_pipeline.ml.ramps.train import UNetTrainConfig, train_unet  # noqa: E402
from astrid_pipeline.presets import load_preset  # noqa: E402
from astrid_pipeline.science.ramps.config import DetectionConfig  # noqa: E402
from astrid_pipeline.science.ramps.detect import detect_ramp  # noqa: E402
from astrid_pipeline.science.ramps.prepare import RampPrep  # noqa: E402
from astrid_pipeline.science.ramps.readers import ArrayRampSource  # noqa: E402
from astrid_pipeline.science.ramps.simulate import simulate_exposure  # noqa: E402


def tiny(**kw):
    base = dict(image_shape=[64, 64], num_frames=8, exp_time=80.0, patch_size=[32, 32], overlap=8,
                num_exposure_events=2, num_baseline_exposures=0, gain_library={"T1": 2.0},
                cosmic_ray_per_exp_range=[30, 30], rtn_per_exp_range=[12, 12], snowballs_per_exp_range=[0, 1],
                snowball_radius_range=[3.0, 4.0], snowball_halo_decay_scale_range=[2.0, 3.0], seed=3)
    base.update(kw)
    return load_preset("nircam", **base)


@pytest.fixture(scope="module")
def patches(tmp_path_factory):
    out = tmp_path_factory.mktemp("patches")
    res = build_training_set(tiny(), 0, 1, out)
    return out, res


def test_features_are_noise_normalised_differences_and_saturation_flags(make_flat_cube):
    cube = make_flat_cube(n=12, ny=40, nx=40, read_noise=6.0, slope=3.0, seed=2)
    cube[5:, 7, 7] += 600.0
    src = ArrayRampSource(cube, gain=1.0, saturation=65535.0)
    prep = RampPrep(src)
    c, sat = prep.load(0, 40)
    x = difference_features(c, sat, prep.rn_col, prep.gain, t_max=32)
    assert x.shape == (2, 11, 40, 40)
    z = np.sinh(x[0]) * 3.0
    quiet = np.ones((40, 40), bool)
    quiet[7, 7] = False
    assert abs(z[:, quiet].std() - 1) < 0.1  # noise in units of its sigma
    assert z[4, 7, 7] > 50 and x[1].max() == 0
    xb = difference_features(c, sat, prep.rn_col, prep.gain, t_max=4)  # long ramps are binned in time
    assert xb.shape == (2, 4, 40, 40) and np.sinh(xb[0, 1, 7, 7]) * 3 > 25


def test_training_set_has_ohanas_patches_one_file_per_index_reproducibly(patches, tmp_path):
    import h5py

    out, res = patches
    assert [p.name for p in res.paths] == ["training_00000.h5", "training_00001.h5"]
    assert patch_origins(64, 32, 8) == [0, 24, 32]
    with h5py.File(res.paths[1], "r") as f:
        x, y = f["x"][()], f["y"][()]
        assert x.shape == (2 * 9, 2, 7, 32, 32) and y.shape == (18, 32, 32)  # 3 x 3 patches x 2 exposures
        assert f.attrs["index"] == 1 and set(np.unique(y)) <= {0, 1, 2, 3} and (y == 1).any()
    # an index alone (a job-array task) gives the same file as inside a range
    alone = build_training_set(tiny(), 1, 1, tmp_path)
    with h5py.File(alone.paths[0], "r") as f:
        assert np.array_equal(f["x"][()], x) and np.array_equal(f["y"][()], y)
    with pytest.raises(Exception, match="start_index"):
        build_training_set(tiny(), 2, 1, tmp_path)


def test_unet_trains_its_loss_falls_and_the_checkpoint_loads_weights_only(patches, tmp_path):
    out, _ = patches
    cfg = UNetTrainConfig(epochs=4, batch_size=4, lr=5e-3, crop=0, steps_per_epoch=4, val_fraction=0.25, hidden=4,
                          seed=1, threads=1, device="cpu")
    res = train_unet(cfg, out, tmp_path / "model")
    hist = json.loads(res.history_path.read_text())
    losses = [h["train_loss"] for h in hist["history"]]
    assert losses[-1] < losses[0]
    assert hist["selection"].startswith("mean IoU") and 1 <= hist["best_epoch"] <= 4
    assert res.plot_path is not None and res.plot_path.stat().st_size > 1000
    assert res.model_path.name == "best_model_unet3d.pth"
    model, spec, payload = load_unet(res.model_path)
    assert spec.hidden == 4 and payload["best_epoch"] == hist["best_epoch"]
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_unet(bad)
    with pytest.raises(CheckpointError, match="no such"):
        load_unet(tmp_path / "missing.pth")


def test_tiled_inference_matches_one_big_tile_and_needs_no_more_than_a_tile(tmp_path):
    from astrid_pipeline.ml.ramps import SHIPPED_WEIGHTS

    model, _, _ = load_unet(SHIPPED_WEIGHTS)
    cfg = tiny(image_shape=[96, 96], num_exposure_events=1)
    cube, plan = simulate_exposure(cfg, "T1", 0)
    prep = RampPrep(ArrayRampSource(cube, gain=2.0, saturation=65535.0, refpix=(4,) * 4))
    small = predict_ramp(prep, model, tile=32, halo=24)
    big = predict_ramp(prep, model, tile=96, halo=0)
    assert small.prob.shape == (4, 96, 96) and small.mask.dtype == np.uint8
    assert (small.mask == big.mask).mean() > 0.995
    assert np.abs(small.prob.astype(np.float32) - big.prob.astype(np.float32)).max() < 0.05
    assert small.mask[:4].max() == 0  # reference pixels are background


def test_shipped_weights_find_cosmic_rays_and_the_hybrid_only_extends_the_rules():
    from astrid_pipeline.ml.ramps import SHIPPED_WEIGHTS
    from astrid_pipeline.science.ramps import metrics
    from astrid_pipeline.science.ramps.refpix import science_mask

    model, _, payload = load_unet(SHIPPED_WEIGHTS)
    assert payload["val_iou"]["cosmic_ray"] > 0.3
    cfg = load_preset("nircam", image_shape=[160, 160], patch_size=[64, 64], num_exposure_events=1,
                      num_baseline_exposures=0, cosmic_ray_per_exp_range=[85, 85], rtn_per_exp_range=[50, 50],
                      snowballs_per_exp_range=[1, 1], seed=123457)  # a seed the shipped training never saw
    cube, plan = simulate_exposure(cfg, cfg.detectors[0], 0)
    src = ArrayRampSource(cube, gain=plan.gain, saturation=65535.0, refpix=(4,) * 4, num_outputs=4)
    rules = detect_ramp(src, DetectionConfig())
    pred = predict_ramp(RampPrep(src), model)
    hyb = merge_hybrid(rules, pred, HybridConfig())
    sci = science_mask(cfg.image_shape, (4,) * 4)
    u = metrics.class_scores(pred.mask, plan.class_mask, sci)
    r = metrics.class_scores(rules.mask, plan.class_mask, sci)
    h = metrics.class_scores(hyb.mask, plan.class_mask, sci)
    assert u["cosmic_ray"]["recall"] > 0.5
    # the hybrid keeps every rules decision and only adds next to it
    assert ((rules.mask > 0) <= (hyb.mask > 0)).all()
    assert (hyb.mask == 2).sum() == (rules.mask == 2).sum()  # RTN stays the rules'
    assert h["cosmic_ray"]["recall"] >= r["cosmic_ray"]["recall"]
    assert len(hyb.events["type"]) == len(rules.events["type"])


def test_hybrid_rule_on_a_constructed_case():
    rules_mask = np.zeros((20, 20), np.uint8)
    rules_mask[5, 5] = 1  # a rules cosmic ray
    rules_mask[15, 15] = 2  # a rules RTN pixel
    prob = np.zeros((4, 20, 20), np.float16)
    prob[0] = 1
    for y, x in ((5, 6), (5, 7), (12, 2), (15, 16)):  # next to the ray / far from anything / next to the RTN
        prob[:, y, x] = (0.1, 0.9, 0, 0)
    prob[:, 10, 10] = (0.1, 0, 0.9, 0)  # a U-Net-only RTN pixel
    umask = prob.astype(np.float32).argmax(axis=0).astype(np.uint8)

    # a DetectionResult with no events: merge_hybrid needs only these fields
    import dataclasses

    rules = dataclasses.make_dataclass("Rules", ["mask", "events", "jumps", "meta", "n_groups"])(
        rules_mask, {"type": np.array([], dtype=object), "snr": np.zeros(0), "centroid_x": np.zeros(0),
                     "centroid_y": np.zeros(0)},
        {"y": np.zeros(0, int), "x": np.zeros(0, int), "frame": np.zeros(0, int), "event": np.zeros(0, int)}, {}, 10)
    out = merge_hybrid(rules, UNetPrediction(prob=prob, mask=umask))
    assert out.mask[5, 6] == 1 and out.mask[5, 7] == 1  # grown from the rules' ray
    assert out.mask[12, 2] == 0  # a U-Net ray alone starts nothing
    assert out.mask[15, 16] == 0  # touching an RTN pixel is not touching a ray
    assert out.mask[10, 10] == 0  # RTN only from the rules
    assert out.meta["hybrid"]["pixels_added"] == {"cosmic_ray": 2, "snowball": 0}
    with pytest.raises(Exception, match="RTN stays the rules"):
        HybridConfig(extend_classes=("telegraph_noise",))


def test_evaluation_scores_rules_unet_hybrid_and_stcal_per_class(tmp_path):
    from astrid_pipeline.cli_ramps import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", "shipped", "--presets", "nircam", "--output", str(out), "--size", "96",
                 "--snowballs", "1", "--seed", "7"]) == 0
    res = json.loads((out / "evaluation_unet3d.json").read_text())["presets"]["nircam"]
    assert res["seed"] == 7 and res["shape"] == [10, 96, 96]
    for method in ("rules", "unet", "hybrid"):
        for cls in ("cosmic_ray", "telegraph_noise", "snowball"):
            assert {"recall", "precision", "iou", "recall_by_snr"} <= set(res[method][cls])
    assert set(res["hybrid_minus_rules"]) == {"cosmic_ray", "telegraph_noise", "snowball"}
    assert res["hybrid_minus_rules"]["telegraph_noise"]["recall"] == 0  # RTN stays the rules'
    if "stcal" in res and "cosmic_ray" in res["stcal"]:
        assert res["jumps"]["stcal"]["false_flag_rate"] >= 0
