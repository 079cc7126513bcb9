"""Dagster: training set -> model -> evaluation assets, and the per-region cosmic_ray_mask asset."""

import json

from dagster import DagsterInstance, materialize

from astrid_pipeline.assets.cosmic_rays import cosmic_ray_assets
from astrid_pipeline.assets.training import cr_model_evaluation, cr_model, cr_training_set, evaluation_dir
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.resources.storage import StorageResource

TINY_SET = {"image_size": 128, "n_train": 3, "n_val": 1, "n_test": 1}
TINY_MODEL = {"hidden": 4, "epochs": 2, "batch_size": 8, "seed": 1}


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
    assert "data:image/png;base64" in meta["training_curves"].value
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
    assert "tpr_at_1e-4" in meta["metrics"].value


def test_cosmic_ray_mask_asset_uses_lacosmic_without_a_model(tmp_path):
    from astrid_pipeline.assets.sky import sky_exposures
    from astrid_pipeline.partitions import SKY_REGIONS
    from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SKY_REGIONS, ["COSMOS"])
    r = materialize([sky_exposures, *cosmic_ray_assets], partition_key="COSMOS", instance=instance,
                    resources={"storage": StorageResource(root=str(tmp_path / "data")),
                               "archive": SkyArchiveResource(image_size=256), "regions": RegionCatalogResource()},
                    run_config={"ops": {"cosmic_ray_mask": {"config": {"use_shipped_weights": False}}}})
    assert r.success
    meta = r.asset_materializations_for_node("cosmic_ray_mask")[0].metadata
    assert meta["method"].value == "lacosmic" and meta["n_cr_pixels"].value > 0
    assert (tmp_path / "data" / "sky" / "crmask" / "COSMOS.fits").exists()


def test_definitions_module_imports_without_torch_quickly():
    import subprocess
    import sys

    code = ("import sys, time; t=time.time(); import astrid_pipeline.assets.training, astrid_pipeline.assets.cosmic_rays; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
