"""Housekeeping of a local deployment: runs whose worker was killed are marked failed, not left STARTED."""

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor


@sensor(minimum_interval_seconds=120, default_status=DefaultSensorStatus.RUNNING,
        description="Marks as failed the runs left STARTED by a run worker that no longer exists on this host "
                    "(kill -9, a crash); the daemon's run monitoring handles start and run-time limits.")
def dead_run_sensor(context: SensorEvaluationContext):
    from astrid_pipeline.instance import fail_dead_runs

    failed = fail_dead_runs(context.instance)
    if failed:
        context.log.warning(f"marked {len(failed)} runs with a dead worker as failed: {', '.join(failed)}")
    return SkipReason(f"{len(failed)} dead runs marked failed" if failed else "no run with a dead worker")
