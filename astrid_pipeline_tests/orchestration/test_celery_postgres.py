"""The multi-machine configuration, run: Postgres run and event storage, Dagster's Celery executor, a Redis broker.

The test starts PostgreSQL (as the ``postgres`` user when it runs as root: ``initdb`` refuses root) and
Redis on free loopback ports in temporary folders, and a Celery worker with ``dagster-celery worker start``;
it runs ``sky_branch_celery_job`` over two small simulated regions in one ranged run and reads back from
Postgres that every region got its materializations and check results, and that the steps ran in the
worker. Every process it starts is in its own process group and is stopped, even on failure. The services
are installed by ``scripts/setup_services.sh``; without them the test skips and names what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from astrid_pipeline_tests.orchestration import processes

pytest.importorskip("dagster_celery", reason="dagster-celery is not installed (distributed extra)")
pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed (distributed extra)")
psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed (distributed extra)")
pytest.importorskip("redis", reason="the redis client is not installed (distributed extra)")

IMAGE_SIZE = 256


@pytest.fixture()
def deployment(tmp_path, monkeypatch):
    """Postgres + Redis + a Celery worker; yields (postgres_url, executor_config, worker process, services)."""
    missing = processes.missing_services()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: run `bash scripts/setup_services.sh`")
    pg_folder = Path(tempfile.mkdtemp(prefix="astrid-pg-"))  # not under tmp_path: the postgres user must reach it
    services = processes.Services(tmp_path)
    try:
        url = processes.start_postgres(services, pg_folder, durable=False)
        broker = processes.start_redis(services, tmp_path)
        executor = {"broker": f"{broker}/0", "backend": f"{broker}/1"}
        home = tmp_path / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(
            "telemetry:\n  enabled: false\n"
            f"storage:\n  postgres:\n    postgres_url: {processes.dagster_postgres_url(url)}\n"
            "concurrency:\n  pools:\n    granularity: op\n"
            # no compute-log capture: its `tail -F` helpers would outlive the worker
            "compute_logs:\n  module: dagster._core.storage.noop_compute_log_manager\n  class: NoOpComputeLogManager\n")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        celery_yaml = tmp_path / "celery.yaml"
        celery_yaml.write_text(json.dumps({"execution": {"config": executor}}))
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        worker = services.start("celery", [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start",
                                           "-A", "dagster_celery.app", "-y", str(celery_yaml), "-n",
                                           "astrid-test@%h", "-l", "WARNING", "--", "--concurrency=1"], env=env)
        from celery import Celery

        app = Celery(broker=executor["broker"], backend=executor["backend"])
        services.wait_ready("celery", worker, lambda: bool(app.control.ping(timeout=1.0)))
        yield url, executor, worker, services
    finally:
        services.stop()
        shutil.rmtree(pg_folder, ignore_errors=True)


@pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")  # inside dagster-celery
def test_sky_job_on_celery_with_postgres_storage_records_every_partition(deployment, tmp_path):
    from dagster import AssetKey, DagsterEventType, DagsterInstance, execute_job, reconstructable
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
    from dagster._serdes import deserialize_value
    from dagster_postgres import PostgresEventLogStorage

    from astrid_pipeline.defs.sky.distributed import celery_job_def
    from astrid_pipeline.instance import set_pool_limits
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.regions import adhoc_key
    from astrid_pipeline.sky.table import SKY_ASSET_KEYS, SKY_STEPS

    url, executor, worker, services = deployment
    keys = [adhoc_key(150.1, 2.2), adhoc_key(189.2, 62.2)]
    data = tmp_path / "data"
    run_config = {"execution": {"config": executor},
                  "resources": {"storage": {"config": {"root": str(data)}},
                                "archive": {"config": {"image_size": IMAGE_SIZE}}}}
    with DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        set_pool_limits(instance)  # the deployment's pool limits, as `astrid run` sets them
        instance.add_dynamic_partitions("sky_regions", keys)
        with execute_job(reconstructable(celery_job_def), instance=instance, run_config=run_config,
                         tags={ASSET_PARTITION_RANGE_START_TAG: keys[0],
                               ASSET_PARTITION_RANGE_END_TAG: keys[-1]}) as result:
            assert result.success, services.log("celery")
            run_id = result.run_id
        for asset in (*SKY_ASSET_KEYS, "observation_inventory"):
            assert instance.get_materialized_partitions(AssetKey(asset)) == set(keys), asset
    worker_pids = {worker.pid, *processes.descendants(worker.pid)}

    # read it back from Postgres itself: one materialization per (asset, region), every check per region
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT asset_key, partition FROM event_logs WHERE run_id = %s "
                        "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
            mats = {("/".join(json.loads(a)), p) for a, p in cur.fetchall()}
            cur.execute("SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type IN "
                        "('ASSET_CHECK_EVALUATION', 'STEP_START', 'ENGINE_EVENT')", (run_id,))
            entries = [deserialize_value(e) for (e,) in cur.fetchall()]
    finally:
        conn.close()
    assert mats == {(a, k) for a in (*SKY_ASSET_KEYS, "observation_inventory") for k in keys}
    events = [e.dagster_event for e in entries if e.dagster_event]
    checks = {(e.event_specific_data.asset_key.to_user_string(), e.event_specific_data.check_name,
               e.event_specific_data.partition) for e in events
              if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION}
    assert checks == {(c.asset, c.name, k) for s in SKY_STEPS for c in s.checks for k in keys}
    # both steps ran in the Celery worker's processes, not in this one
    starts = {e.step_key: e.pid for e in events if e.event_type == DagsterEventType.STEP_START}
    assert set(starts) == {"observation_inventory", "sky_branch"}
    assert set(starts.values()) <= worker_pids and os.getpid() not in starts.values()
    assert sum("in celery worker" in (e.message or "") for e in events) == 2
    layout = DataLayout(data)
    for key in keys:
        assert layout.catalog("candidates", {"region": key}).exists()
        assert layout.triplets(key).exists()
