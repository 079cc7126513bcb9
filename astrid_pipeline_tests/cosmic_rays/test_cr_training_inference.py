"""Training lowers the loss, is reproducible; tiled inference has no seams; checkpoints load safely."""

import numpy as np
import pytest
import torch

from astrid_pipeline.errors import BadShapeError, EmptyDataError
from astrid_pipeline.ml.checkpoint import load_checkpoint, save_checkpoint
from astrid_pipeline.ml.errors import CheckpointError
from astrid_pipeline.ml.inference import predict_normalized, predict_whole
from astrid_pipeline.ml.models import ModelSpec, build_model


def test_short_training_lowers_the_loss_and_writes_products(tiny_model):
    out, s = tiny_model
    h = s["history"]
    assert len(h) == 2 and h[-1]["train_loss"] < h[0]["train_loss"]
    assert (out / "model.pt").exists() and (out / "history.json").exists()
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert s["best_epoch"] in (1, 2) and s["parameters"] > 0


def test_same_seed_same_weights(tiny_set, tmp_path):
    from astrid_pipeline.ml.train import TrainConfig, train_model

    spec = ModelSpec("cosmicconn", hidden=4, depth=1, attention=True)
    cfg = TrainConfig(epochs=1, batch_size=8, seed=11, max_train_patches=8)
    a = train_model(spec, cfg, tiny_set[0], tmp_path / "a")
    b = train_model(spec, cfg, tiny_set[0], tmp_path / "b")
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["history"] == b["history"]


def test_tiled_inference_equals_whole_image():
    torch.manual_seed(0)
    model = build_model(ModelSpec("deepcr", hidden=4, depth=2)).eval()
    x = np.random.default_rng(0).normal(size=(203, 150)).astype(np.float32)
    whole = predict_whole(model, np.pad(x, ((0, 1), (0, 2)), mode="reflect"))[:203, :150]
    tiled = predict_normalized(model, x, tile=96, overlap=32)
    assert tiled.shape == x.shape
    assert np.max(np.abs(tiled - whole)) < 1e-5  # no seams anywhere


def test_image_smaller_than_a_tile_nan_regions_and_saturation(tiny_model):
    from astrid_pipeline.science.cosmic_rays.masks import detect_cosmic_rays

    ck = tiny_model[0] / "model.pt"
    rng = np.random.default_rng(2)
    img = rng.normal(100, 5, (21, 33))
    img[:5, :5] = np.nan
    img[10, 10] = 60000
    res = detect_cosmic_rays(img, checkpoint=ck, saturation=50000)
    assert res.method == "model" and res.mask.shape == (21, 33)
    assert not res.mask[:5, :5].any() and not res.mask[10, 10]
    assert np.isfinite(res.probability).all()
    la = detect_cosmic_rays(img, method="lacosmic", saturation=50000, gain=1.0, read_noise=5.0)
    assert la.method == "lacosmic" and not la.mask[:5, :5].any() and not la.mask[10, 10]


def test_bad_input_named_errors(tiny_model, tmp_path):
    from astrid_pipeline.science.cosmic_rays.masks import detect_cosmic_rays

    ck = tiny_model[0] / "model.pt"
    with pytest.raises(BadShapeError):
        detect_cosmic_rays(np.zeros((2, 8, 8)), checkpoint=ck)
    with pytest.raises(BadShapeError):
        detect_cosmic_rays(np.zeros(8), method="lacosmic")
    with pytest.raises(EmptyDataError):
        detect_cosmic_rays(np.full((8, 8), np.nan), checkpoint=ck)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError):
        detect_cosmic_rays(np.zeros((8, 8)), method="model", checkpoint=tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(garbage)
    # a checkpoint whose weights do not fit its spec
    model = build_model(ModelSpec("deepcr", hidden=4))
    bad = save_checkpoint(tmp_path / "bad.pt", model, ModelSpec("deepcr", hidden=8))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(bad)
    # a plain state dict (not our format)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an AstrID"):
        load_checkpoint(tmp_path / "plain.pt")
    # auto falls back to L.A.Cosmic when the checkpoint does not exist
    res = detect_cosmic_rays(np.random.default_rng(0).normal(100, 5, (32, 32)), checkpoint=tmp_path / "missing.pt")
    assert res.method == "lacosmic"


def test_evaluation_on_test_split(tiny_set, tiny_model, tmp_path):
    from astrid_pipeline.science.cosmic_rays.evaluate import evaluate_test_split

    res = evaluate_test_split(tiny_set[0], {"tiny": tiny_model[0] / "model.pt"}, sigclips=(3.0, 4.5, 10.0),
                              plot_dir=tmp_path)
    rows = {(r["method"], r["protocol"]): r for r in res["rows"]}
    assert set(rows) == {("tiny", "pixel"), ("tiny", "dilated"), ("lacosmic", "pixel"), ("lacosmic", "dilated")}
    for r in rows.values():
        assert 0 <= r["tpr_at_1e-4"] <= r["tpr_at_1e-3"] <= 1
        assert 0 <= r["f1"] <= 1 and 0 <= r["iou"] <= r["f1"]
    # L.A.Cosmic finds CRs in the simulated test field at its default sigclip
    assert rows[("lacosmic", "pixel")]["tpr_op"] > 0.1
    assert (tmp_path / "roc_pr_dilated.png").exists()
