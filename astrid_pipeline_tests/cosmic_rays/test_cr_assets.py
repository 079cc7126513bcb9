"""Dagster: training set -> model -> evaluation assets, and the per-region cosmic_ray_mask asset."""

import json

from dagster import DagsterInstance, materialize

from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline.defs.training.assets import cr_model, cr_model_evaluation, cr_training_set, evaluation_dir
from astrid_pipeline.layout import DataLayout

TINY_SET = {"image_size": 128, "n_train": 3, "n_val": 1, "n_test": 1}
TINY_MODEL = {"epochs": 2, "batch_size": 8, "seed": 1}


def test_training_assets_materialize(tmp_path):
    storage = StorageResource(root=str(tmp_path / "data"))
    r = materialize([cr_training_set], resources={"storage": storage},
                    run_config={"ops": {"cr_training_set": {"config": TINY_SET}}})
    assert r.success
    r = materialize([cr_training_set, cr_model], selection=[cr_model], partition_key="att_cosmicconn",
                    resources={"storage": storage}, run_config={"ops": {"cr_model": {"config": TINY_MODEL}}})
    assert r.success
    meta = r.asset_materializations_for_node("cr_model")[0].metadata
    assert meta["parameters"].value > 0 and meta["loss"].value == "median_weighted_bce"
    assert "training_curves" in meta
    layout = DataLayout(tmp_path / "data")
    assert (layout.model_dir("cr2d_att_cosmicconn") / "model.pt").exists()
    r = materialize([cr_model, cr_training_set, cr_model_evaluation], selection=[cr_model_evaluation],
                    resources={"storage": storage},
                    run_config={"ops": {"cr_model_evaluation": {"config": {"sigclips": [3.0, 4.5, 10.0],
                                                                           "include_shipped": False}}}})
    assert r.success
    ev = json.loads((evaluation_dir(layout) / "evaluation.json").read_text())
    assert {row["method"] for row in ev["rows"]} == {"att_cosmicconn", "lacosmic"}
    meta = r.asset_materializations_for_node("cr_model_evaluation")[0].metadata
    assert any("tpr_at_1e-4" in r.data for r in meta["metrics"].records)


def test_cosmic_ray_mask_uses_lacosmic_when_configured(tmp_path):
    from dagster import AssetKey

    from astrid_pipeline_tests.dagster_helpers import materialization, run_sky

    with DagsterInstance.ephemeral() as instance:
        r = run_sky(instance, ["COSMOS"], storage_root=tmp_path / "data",
                    selection=[AssetKey(k) for k in ("science_image", "reference_image", "transient_truth",
                                                     "cosmic_ray_mask")],
                    settings={"cosmic_rays": {"method": "lacosmic"}})
    assert r.success
    meta = materialization(r, "cosmic_ray_mask", "COSMOS").metadata
    assert meta["method"].value == "lacosmic" and meta["n_cr_pixels"].value > 0
    assert (tmp_path / "data" / "sky" / "crmask" / "COSMOS.fits").exists()
