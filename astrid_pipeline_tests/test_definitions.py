"""The Definitions load from the defs folder, light and complete: every asset has a group, kinds, an owner,
a description and a code version; the sky assets batch by a backfill policy and have partitioned checks;
the archive step is pooled and retried; automation re-runs nothing after a complete run."""

import subprocess
import sys

from dagster import AssetKey

from astrid_pipeline.definitions import defs
from astrid_pipeline.sky.table import SKY_ASSET_KEYS, SKY_STEPS


def test_every_asset_is_described_and_versioned():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.description, key
        assert node.kinds, key
        assert node.owners, key
        assert node.code_version, key


def test_sky_assets_are_one_batched_step_built_from_the_step_table():
    graph = defs.resolve_asset_graph()
    job = defs.resolve_job_def("sky_branch_job")
    assert {n.name for n in job.nodes} == {"observation_inventory", "sky_branch"}
    for key in SKY_ASSET_KEYS:
        node = graph.get(AssetKey(key))
        assert node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run >= 1, key
        assert node.automation_condition is not None, key
    declared = {(c.asset, c.name) for s in SKY_STEPS for c in s.checks}
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert declared <= checks
    assert {"alignment_residual", "scorr_unit_variance", "injected_transient_recovery", "psf_from_stars"} <= {
        n for _, n in checks}
    blocking = {c.name for s in SKY_STEPS for c in s.checks if c.blocking}
    assert {"alignment_residual", "scorr_unit_variance"} <= blocking
    inv = defs.resolve_assets_def("observation_inventory")
    assert inv.op.pool == "sky_archives" and inv.op.retry_policy is not None
    cr = graph.get(AssetKey("cosmic_ray_mask"))
    assert "weights-" in cr.code_version  # the shipped weights' checksum: new weights re-run it
    assert graph.get(AssetKey("candidate_catalog")).freshness_policy is not None


def test_jobs_sensors_and_schedules_resolve():
    for job in ("sky_branch_job", "detector_job", "mmcosmic_job", "ramp_training_job", "cr_training_job"):
        assert defs.resolve_job_def(job)
    sensors = {s.name for s in defs.sensors}
    assert {"region_catalog_sensor", "sky_automation_sensor", "dead_run_sensor", "detector_config_sensor",
            "mmcosmic_stacks_sensor"} <= sensors
    assert defs.resolve_schedule_def("nightly_sky_schedule").cron_schedule == "0 2 * * *"


def test_loading_the_definitions_imports_no_heavy_library():
    code = ("import sys, time; t = time.perf_counter(); import astrid_pipeline.definitions; "
            "print(sorted(m for m in ('torch', 'dask', 'distributed', 'dagster_dask', 'dagster_celery', 'reproject', "
            "'sep', 'h5py', 'matplotlib', 'scipy', 'astroscrappy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_dg_checks_the_definitions():
    from pathlib import Path

    dg = Path(sys.executable).with_name("dg")
    res = subprocess.run([str(dg), "check", "defs"], capture_output=True, text=True, cwd=Path(__file__).parents[1],
                         timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "loaded successfully" in res.stdout + res.stderr


def test_automation_requests_nothing_after_a_complete_run(tmp_path, monkeypatch):
    import dagster as dg

    from astrid_pipeline_tests.dagster_helpers import run_sky

    monkeypatch.setenv("ASTRID_DATA_ROOT", str(tmp_path / "data"))
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_sky(instance, ["COSMOS"]).success
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert first.total_requested == 0 and again.total_requested == 0
