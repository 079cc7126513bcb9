"""Tiny CR training set and model shared by the cosmic-ray tests (session scope, a few seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    from astrid_pipeline.science.cosmic_rays.dataset import build_training_set
    from astrid_pipeline.science.cosmic_rays.simulate import CRSimConfig

    cfg = CRSimConfig(image_size=128, patch=64, n_train=4, n_val=1, n_test=1, seed=3)
    path = tmp_path_factory.mktemp("crset") / "set.h5"
    summary = build_training_set(cfg, path)
    return path, summary


@pytest.fixture(scope="session")
def tiny_model(tiny_set, tmp_path_factory):
    from astrid_pipeline.ml.models import ModelSpec
    from astrid_pipeline.ml.train import TrainConfig, train_model

    out = tmp_path_factory.mktemp("crmodel")
    s = train_model(ModelSpec("deepcr", hidden=4, depth=2), TrainConfig(epochs=2, batch_size=8, seed=5, loss="bce"),
                    tiny_set[0], out)
    return out, s
