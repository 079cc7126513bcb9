"""The sky assets on the Dask executor, against a real dask.distributed LocalCluster with 2 worker processes."""

import os

import pytest

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (dev extra)")
pytest.importorskip("dagster_dask", reason="dagster-dask is not installed (dev or distributed extra)")

IMAGE_SIZE = 256


def _home(tmp_path, monkeypatch):
    """A persistent DAGSTER_HOME (the Dask executor cannot run on an ephemeral instance)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # no compute-log capture: its `tail -F` helpers would outlive the cluster's worker processes
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n  class: NoOpComputeLogManager\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.mark.dask
def test_sky_assets_run_on_a_local_dask_cluster(tmp_path, monkeypatch):
    from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job, reconstructable
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from astrid_pipeline.defs.sky.distributed import dask_job_def
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.regions import adhoc_key
    from astrid_pipeline.sky.table import SKY_ASSET_KEYS, SKY_STEPS

    _home(tmp_path, monkeypatch)
    keys = [adhoc_key(150.1, 2.2), adhoc_key(189.2, 62.2)]
    data = tmp_path / "data"
    run_config = {"resources": {"storage": {"config": {"root": str(data)}},
                                "archive": {"config": {"image_size": IMAGE_SIZE}}}}
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", worker_class=distributed.Nanny) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        run_config["execution"] = {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}}
        with DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("sky_regions", keys)
            with execute_job(reconstructable(dask_job_def), instance=instance, run_config=run_config,
                             tags=tags) as result:
                assert result.success
                run_id = result.run_id
            events = instance.all_logs(run_id)
            for asset in (*SKY_ASSET_KEYS, "observation_inventory"):  # one materialization per region
                assert instance.get_materialized_partitions(AssetKey(asset)) == set(keys), asset
        worker_pids = set(client.run(os.getpid).values())
    # both steps (one run, two regions each) ran in the cluster's worker processes, not in this one
    step_pids = {e.dagster_event.pid for e in events
                 if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START}
    assert len(step_pids) >= 1 and step_pids <= worker_pids and os.getpid() not in step_pids
    steps = {e.dagster_event.step_key for e in events
             if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS}
    assert steps == {"observation_inventory", "sky_branch"}
    # every check of every region was evaluated, per partition
    checks = {(e.dagster_event.event_specific_data.asset_key.to_user_string(),
               e.dagster_event.event_specific_data.check_name, e.dagster_event.event_specific_data.partition)
              for e in events if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION}
    assert checks == {(c.asset, c.name, k) for s in SKY_STEPS for c in s.checks for k in keys}
    layout = DataLayout(data)
    for key in keys:
        assert layout.catalog("candidates", {"region": key}).exists()
        assert layout.triplets(key).exists()
        assert layout.difference(key, "zogy").exists()
