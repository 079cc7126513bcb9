"""The M.M.Cosmic asset materialized in process, partitioned by stack."""

import os

import numpy as np
import pytest
import yaml
from astropy.io import fits
from dagster import DagsterInstance, materialize

from astrid_pipeline.defs.mmcosmic.assets import STACKS, mmcosmic_crmasks, register_stacks
from astrid_pipeline.defs.resources import StorageResource

mmcosmic_assets = [mmcosmic_crmasks]


@pytest.fixture()
def instance():
    with DagsterInstance.ephemeral() as inst:
        inst.add_dynamic_partitions(STACKS, ["sim-a", "sim-b"])
        yield inst


def test_stacks_of_the_configuration_become_partitions(tmp_path):
    with DagsterInstance.ephemeral() as inst:
        assert register_stacks(inst) == ["sim-a", "sim-b"]
        assert register_stacks(inst) == []  # registered once
        assert inst.get_dynamic_partitions(STACKS) == ["sim-a", "sim-b"]
        other = tmp_path / "stacks.yaml"
        other.write_text(yaml.safe_dump({"stacks": {"night-7": {"simulate": {"seed": 7}}}}))
        assert register_stacks(inst, other) == ["night-7"]  # a file loaded at run time adds its own stacks


def test_materialize_a_simulated_stack(tmp_path, instance):
    res = materialize(
        mmcosmic_assets, partition_key="sim-a", resources={"storage": StorageResource(root=str(tmp_path))},
        instance=instance,
    )
    assert res.success
    folder = tmp_path / "mmcosmic" / "sim-a"
    files = sorted(os.listdir(folder))
    for name in ("crmasks.fits", "combined_mediancr.fits", "combined_meancr2.fits", "diagnostic_histogram2d.png",
                 "mediancr_identified_only2.csv"):
        assert name in files
    with fits.open(folder / "crmasks.fits") as h:
        assert h["MEDIANCR"].data.shape == (256, 256)
        n_masked = int(h["MEDIANCR"].data.sum())
    meta = res.asset_materializations_for_node("mmcosmic_crmasks")[0].metadata
    assert meta["mediancr_pixels"].value == n_masked > 0
    assert meta["recall_significant"].value >= 0.9
    assert meta["significant_coincident_pixels"].value > 0
    assert "diagnostic_diagram" in meta
    # a second run replaces the folder as a whole and leaves no temporary folder beside it
    res2 = materialize(
        mmcosmic_assets, partition_key="sim-a", resources={"storage": StorageResource(root=str(tmp_path))},
        run_config={"ops": {"mmcosmic_crmasks": {"config": {"plots": False}}}}, instance=instance,
    )
    assert res2.success
    assert "diagnostic_histogram2d.png" not in os.listdir(folder)
    assert sorted(os.listdir(tmp_path / "mmcosmic")) == ["sim-a"]


def test_a_stack_of_fits_files_and_a_bad_stack(tmp_path, instance):
    from astrid_pipeline.science.mmcosmic import simulate_stack

    sim = simulate_stack((64, 64), 3, seed=4, n_coincident=4)
    paths = []
    for i, img in enumerate(sim.images):
        p = tmp_path / f"e{i}.fits"
        fits.PrimaryHDU(img).writeto(p)
        paths.append(str(p))
    fits.PrimaryHDU(np.zeros((32, 32), np.float32)).writeto(tmp_path / "small.fits")
    stacks = {
        "defaults": {"gain": 1.0, "rnoise": 3.4, "bias": 0.0, "requirements": {"crmethod": "mmcosmic", "mm_nsimulations": 3}},
        "stacks": {
            "sim-a": {"images": paths},
            "sim-b": {"images": paths[:2] + [str(tmp_path / "small.fits")]},
        },
    }
    sp = tmp_path / "stacks.yaml"
    sp.write_text(yaml.safe_dump(stacks))
    root = tmp_path / "data"
    cfg = {"ops": {"mmcosmic_crmasks": {"config": {"stacks_path": str(sp), "requirements_yaml": "{mm_dilation: 0}"}}}}
    ok = materialize(mmcosmic_assets, partition_key="sim-a", resources={"storage": StorageResource(root=str(root))},
                     run_config=cfg, instance=instance)
    assert ok.success
    assert (root / "mmcosmic" / "sim-a" / "combined_mediancr.fits").exists()
    bad = materialize(
        mmcosmic_assets, partition_key="sim-b", resources={"storage": StorageResource(root=str(root))},
        run_config=cfg, raise_on_error=False, instance=instance,
    )
    assert not bad.success
    assert not (root / "mmcosmic" / "sim-b").exists()
    assert sorted(os.listdir(root / "mmcosmic")) == ["sim-a"]


def test_stacks_file_errors_are_named(tmp_path):
    from astrid_pipeline.science.mmcosmic import ParameterError
    from astrid_pipeline.science.mmcosmic.stacks import parse_stacks

    with pytest.raises(ParameterError, match="stacks"):
        parse_stacks({"stacks": {}})
    with pytest.raises(ParameterError, match="exactly one"):
        parse_stacks({"stacks": {"a": {"images": ["x.fits"] * 3, "simulate": {"seed": 1}}}})
    with pytest.raises(ParameterError, match="safe"):
        parse_stacks({"stacks": {"../up": {"simulate": {"seed": 1}}}})
    with pytest.raises(ParameterError, match="n_exposures"):
        parse_stacks({"stacks": {"a": {"simulate": {"seed": 1, "n_exposures": 2}}}})
