"""The kept-open SQLite event log reads and writes the same files as Dagster's, from several instances."""

import dagster as dg

from astrid_pipeline import instance_storage
from astrid_pipeline.instance import ensure_home


def _materialize(inst, key, partition):
    inst.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(key), partition=partition,
                                                            metadata={"n": 1}))


def test_two_instances_on_one_home_see_each_others_events(tmp_path):
    home = tmp_path / "home"
    a = ensure_home(home)
    assert isinstance(a.event_log_storage, instance_storage.PooledSqliteEventLogStorage)
    b = dg.DagsterInstance.from_ref(dg._core.instance.ref.InstanceRef.from_dir(str(home)))
    try:
        _materialize(a, "x", "p1")
        _materialize(b, "x", "p2")
        _materialize(a, "x", "p3")
        for inst in (a, b):
            parts = inst.get_materialized_partitions(dg.AssetKey("x"))
            assert parts == {"p1", "p2", "p3"}
    finally:
        a.dispose()
        b.dispose()


def test_open_engines_stay_bounded_and_files_stay_dagsters(tmp_path, monkeypatch):
    monkeypatch.setattr(instance_storage, "MAX_ENGINES", 3)
    home = tmp_path / "home"
    inst = ensure_home(home)
    try:
        @dg.asset
        def thing():
            return 1

        for _ in range(5):
            assert dg.materialize([thing], instance=inst).success
        storage = inst.event_log_storage
        assert len(storage._engines) <= 3
        runs = inst.get_runs()
        assert len(runs) == 5
        for run in runs:  # every run's own shard is where Dagster puts it, and readable
            assert (home / "history" / "runs" / f"{run.run_id}.db").exists()
            assert any(e.is_dagster_event and e.dagster_event.is_step_success
                       for e in inst.all_logs(run.run_id))
    finally:
        inst.dispose()
    # Dagster's own SQLite event log reads the same files
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    plain = SqliteEventLogStorage(str(home / "history" / "runs"))
    try:
        latest = plain.get_latest_materialization_events([dg.AssetKey("thing")])
        assert latest[dg.AssetKey("thing")] is not None
    finally:
        plain.dispose()


def test_a_pool_slot_is_taken_once_across_instances(tmp_path):
    from dagster._utils.concurrency import ConcurrencySlotStatus

    home = tmp_path / "home"
    a = ensure_home(home, pools={"one_slot": 1})
    b = dg.DagsterInstance.from_ref(dg._core.instance.ref.InstanceRef.from_dir(str(home)))
    try:
        ea, eb = a.event_log_storage, b.event_log_storage
        assert ea._claim_concurrency_slot("one_slot", "run-a", "step") == ConcurrencySlotStatus.CLAIMED
        assert eb._claim_concurrency_slot("one_slot", "run-b", "step") == ConcurrencySlotStatus.BLOCKED
        ea.free_concurrency_slots_for_run("run-a")
        assert eb._claim_concurrency_slot("one_slot", "run-b", "step") == ConcurrencySlotStatus.CLAIMED
    finally:
        a.dispose()
        b.dispose()
