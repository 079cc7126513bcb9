"""A tiny real/bogus triplet set and model shared by the real/bogus tests (session scope, seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_triplets(tmp_path_factory):
    from astrid_pipeline.sky.triplet_set import TripletSetConfig, build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    path = tmp_path_factory.mktemp("rbset") / "set.h5"
    cfg = TripletSetConfig(n_regions=3, seed=5, val_fraction=0.34, image_size=192)
    meta = build_triplet_training_set(cfg, path, run_sky_chain)
    return path, meta


@pytest.fixture(scope="session")
def tiny_rb_model(tiny_triplets, tmp_path_factory):
    from astrid_pipeline.ml.realbogus.train import RBTrainConfig, train_realbogus

    out = tmp_path_factory.mktemp("rbmodel")
    s = train_realbogus(tiny_triplets[0], out, RBTrainConfig(epochs=2, batch_size=32, seed=3))
    return out, s
