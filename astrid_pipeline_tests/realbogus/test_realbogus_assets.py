"""Dagster: triplet set -> real/bogus model -> evaluation on an unseen seed, with the metrics a user reads."""

import json

from dagster import materialize

from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline.defs.training.assets import (
    realbogus_dir,
    realbogus_evaluation,
    realbogus_model,
    triplet_training_set,
)


def test_realbogus_assets_train_and_evaluate_on_an_unseen_seed(tmp_path):
    storage = StorageResource(root=str(tmp_path / "data"))
    assets = [triplet_training_set, realbogus_model, realbogus_evaluation]
    r = materialize(assets, resources={"storage": storage}, run_config={"ops": {
        "triplet_training_set": {"config": {"n_regions": 3, "seed": 7, "val_fraction": 0.34}},
        "realbogus_model": {"config": {"epochs": 1, "batch_size": 32}},
        "realbogus_evaluation": {"config": {"test_set": {"n_regions": 2, "seed": 70}}},
    }})
    assert r.success
    set_meta = r.asset_materializations_for_node("triplet_training_set")[0].metadata
    assert set_meta["n_real"].value > 0 and set_meta["n_bogus"].value > 0
    assert {row.data["split"] for row in set_meta["splits"].records} == {"train", "val"}
    model_meta = r.asset_materializations_for_node("realbogus_model")[0].metadata
    assert 0.0 < model_meta["threshold"].value < 1.0 and "training_curves" in model_meta
    assert (realbogus_dir(storage.layout) / "realbogus.pt").exists()
    ev_meta = r.asset_materializations_for_node("realbogus_evaluation")[0].metadata
    rows = {row.data["model"]: row.data for row in ev_meta["metrics"].records}
    assert set(rows) == {"trained", "shipped"}
    # the shipped weights separate real from bogus on regions they never saw
    assert rows["shipped"]["auc"] > 0.9
    ev = json.loads((tmp_path / "data" / "training" / "realbogus" / "evaluation.json").read_text())
    assert ev["n"] == ev_meta["n_test_triplets"].value


def test_evaluation_refuses_the_training_seed(tmp_path):
    storage = StorageResource(root=str(tmp_path / "data"))
    r = materialize([triplet_training_set], resources={"storage": storage}, run_config={"ops": {
        "triplet_training_set": {"config": {"n_regions": 2, "seed": 5, "val_fraction": 0.5}}}})
    assert r.success
    r = materialize([triplet_training_set, realbogus_model, realbogus_evaluation], selection=[realbogus_evaluation],
                    resources={"storage": storage}, raise_on_error=False,
                    run_config={"ops": {"realbogus_evaluation": {"config": {"test_set": {"n_regions": 1, "seed": 5}}}}})
    assert not r.success
    failure = [e for e in r.all_events if e.is_step_failure][0]
    assert "unseen seed" in str(failure.event_specific_data.error.message)
