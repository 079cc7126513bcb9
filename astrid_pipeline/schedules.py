"""Schedules: keep the survey processed.

``nightly_sky_schedule`` (02:00 UTC) looks at every registered sky region,
finds those whose products are missing or older than their inputs
(:mod:`astrid_pipeline.survey`) and launches ``sky_batch_job`` runs of up to
``BATCH_SIZE`` regions each, so hundreds of regions cost a few run start-ups,
not hundreds. Regions already current are left alone.
"""

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule

from astrid_pipeline.partitions import SKY_REGIONS
from astrid_pipeline.resources.archives import SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource
from astrid_pipeline.sensors import BATCH_SIZE
from astrid_pipeline.sky_batch import sky_batch_job, sky_batch_run_config


@schedule(job=sky_batch_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Nightly: process sky regions whose products are missing or older than their inputs, in batches.")
def nightly_sky_schedule(context: ScheduleEvaluationContext, storage: StorageResource, archive: SkyArchiveResource):
    from astrid_pipeline.survey import batches, regions_to_process

    keys = sorted(context.instance.get_dynamic_partitions(SKY_REGIONS))
    local_root = archive.local_root if archive.kind == "local" else None
    todo = regions_to_process(storage.layout, keys, local_root)
    if not todo:
        return SkipReason(f"all {len(keys)} registered regions are current")
    stamp = (context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
             if context.scheduled_execution_time else "manual")
    todo_keys = [s.region for s in todo]
    context.log.info("to process: " + ", ".join(f"{s.region} ({s.status})" for s in todo[:50]))
    return [RunRequest(run_key=f"nightly-{stamp}-{i}", run_config=sky_batch_run_config(batch),
                       tags={"astrid/trigger": "nightly_sky_schedule", "astrid/regions": str(len(batch))})
            for i, batch in enumerate(batches(todo_keys, BATCH_SIZE))]


schedules = [nightly_sky_schedule]
