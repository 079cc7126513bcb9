"""The batch job on the Dask executor against a real dask.distributed LocalCluster with 2 workers."""

import os

import pytest
from dagster import AssetKey, DagsterInstance, execute_job, reconstructable

from astrid_pipeline.layout import DataLayout
from astrid_pipeline.sky_batch import build_sky_batch_dask_job, sky_batch_run_config

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (dev extra)")
pytest.importorskip("dagster_dask", reason="dagster-dask is not installed (dev extra)")


def test_sky_batch_job_runs_on_a_local_dask_cluster(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"  # the Dask executor needs a persistent instance
    home.mkdir()
    # no compute-log capture: its `tail -F` helpers would outlive the test's worker processes
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n  class: NoOpComputeLogManager\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    regions = ["M101", "COSMOS"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", worker_class=distributed.Nanny) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        run_config = sky_batch_run_config(regions, parallel=2)
        run_config["resources"] = {"storage": {"config": {"root": str(tmp_path / "data")}},
                                   "archive": {"config": {"image_size": 256}}}
        run_config["execution"] = {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}}
        with DagsterInstance.get() as instance:
            with execute_job(reconstructable(build_sky_batch_dask_job), instance=instance,
                             run_config=run_config) as result:
                assert result.success
                pids = {r["pid"] for r in result.output_for_node("summarize_sky_batch")["chunks"]}
            assert instance.get_materialized_partitions(AssetKey("candidate_catalog")) == set(regions)
        worker_pids = set(client.run(os.getpid).values())
    # both chunks ran in the cluster's worker processes, not in this one
    assert pids <= worker_pids and os.getpid() not in pids
    layout = DataLayout(tmp_path / "data")
    for key in regions:
        assert layout.catalog("candidates", {"region": key}).exists()
        assert layout.triplets(key).exists()
        assert layout.difference(key, "zogy").exists()
