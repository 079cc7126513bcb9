"""CR training with a CPU-time budget, a step cap that reproduces it, and resume after an interruption."""

from __future__ import annotations

import torch

from astrid_pipeline.ml.models import ModelSpec


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_resume_continues_to_the_same_weights(tiny_set, tmp_path):
    from astrid_pipeline.ml.train import TrainConfig, train_model

    spec = ModelSpec("deepcr", hidden=4, depth=1)
    full = train_model(spec, TrainConfig(epochs=3, batch_size=8, seed=2), tiny_set[0], tmp_path / "full")
    train_model(spec, TrainConfig(epochs=2, batch_size=8, seed=2, resume=True), tiny_set[0], tmp_path / "cut")
    assert (tmp_path / "cut" / "resume.pt").exists()  # what an interrupted run leaves
    resumed = train_model(spec, TrainConfig(epochs=3, batch_size=8, seed=2, resume=True), tiny_set[0], tmp_path / "cut")
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "cut" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["history"] == full["history"] and resumed["epochs_done"] == 3


def test_budget_stops_and_max_steps_reproduces(tiny_set, tmp_path):
    from astrid_pipeline.ml.train import TrainConfig, train_model

    spec = ModelSpec("cosmicconn", hidden=4, depth=1)
    b = train_model(spec, TrainConfig(epochs=10_000, batch_size=8, seed=4, cpu_budget_s=1.5), tiny_set[0],
                    tmp_path / "budget")
    assert b["stop_reason"] == "cpu_budget" and b["cpu_s"] >= 1.5 and b["epochs_done"] < 10_000
    r = train_model(spec, TrainConfig(epochs=10_000, batch_size=8, seed=4, max_steps=b["steps_done"]), tiny_set[0],
                    tmp_path / "steps")
    assert r["stop_reason"] == "max_steps" and r["steps_done"] == b["steps_done"]
    wa, wb = _weights(tmp_path / "budget" / "model.pt"), _weights(tmp_path / "steps" / "model.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_family_configs_match_the_asset_partitions():
    from astrid_pipeline.science.cosmic_rays.family import FAMILY, FAMILY_TRAIN

    assert set(FAMILY) == {"deepcr", "att_deepcr", "cosmicconn", "att_cosmicconn", "transunet"}
    assert FAMILY["att_cosmicconn"].attention and FAMILY["cosmicconn"].architecture == "cosmicconn"
    assert FAMILY_TRAIN.cpu_budget_s > 0 and FAMILY_TRAIN.threads == 1 and FAMILY_TRAIN.resume
