"""Automation of the sky branch: the region-catalog sensor, the nightly schedule, declarative automation.

All three request the same thing as an asset backfill: runs of the sky assets over contiguous ranges
of at most ``SKY_BATCH_SIZE`` regions (:func:`~astrid_pipeline.defs.sky.partitions.contiguous_runs`).

- ``region_catalog_sensor`` (every 60 s) registers the catalog's new regions as ``sky_regions``
  partitions and requests runs for them. A region removed from the catalog keeps its partition and its
  products. A malformed catalog changes nothing: the tick says why (its skip reason, and an error in the
  tick's log) and the same bad file is not parsed again (its fingerprint is remembered) until it changes.
- ``nightly_sky_schedule`` (02:00 UTC) requests the registered regions that Dagster has no materialized
  candidate catalog for (never processed, or failed since), judged from the instance, not file times.
- the sky assets' automation conditions re-materialize a region when its upstream products were updated
  or a step's code version changed (``sky_automation_sensor``).
"""

import json

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from astrid_pipeline.defs.resources import RegionCatalogResource
from astrid_pipeline.defs.sky.jobs import SKY_SELECTION, sky_branch_job
from astrid_pipeline.defs.sky.partitions import SKY_BATCH_SIZE, SKY_REGIONS, contiguous_runs


def range_run_requests(keys, ordered, run_key_prefix: str, trigger: str) -> list[RunRequest]:
    """One RunRequest of ``sky_branch_job`` per contiguous range of at most SKY_BATCH_SIZE regions."""
    return [RunRequest(run_key=f"{run_key_prefix}-{i}",
                       tags={ASSET_PARTITION_RANGE_START_TAG: a, ASSET_PARTITION_RANGE_END_TAG: b,
                             "astrid/trigger": trigger})
            for i, (a, b) in enumerate(contiguous_runs(keys, ordered, SKY_BATCH_SIZE))]


def _cursor(context) -> dict:
    try:
        return json.loads(context.cursor) if context.cursor else {}
    except (TypeError, ValueError):
        return {"good": context.cursor or ""}


@sensor(job=sky_branch_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Registers new regions of the region catalog as sky_regions partitions and processes them "
                    "in batches.")
def region_catalog_sensor(context: SensorEvaluationContext, regions: RegionCatalogResource):
    import os

    from astrid_pipeline.errors import AstridError
    from astrid_pipeline.regions import catalog_fingerprint, catalog_path, load_region_catalog

    path = catalog_path(regions.path or os.environ.get("ASTRID_REGION_CATALOG") or None)
    fingerprint = catalog_fingerprint(path)
    cur = _cursor(context)
    if fingerprint and fingerprint == cur.get("good"):
        return SkipReason(f"region catalog {path} unchanged")
    if fingerprint and fingerprint == cur.get("bad"):
        return SkipReason(f"region catalog {path} is still the malformed file seen before: {cur.get('error', '')}"[:900])
    try:
        catalog = load_region_catalog(path)
    except AstridError as exc:
        # nothing changes; remember the bad file's fingerprint so it is not parsed again until it changes
        context.log.error(f"region catalog {path} is malformed, nothing registered: {exc}")
        return SensorResult(cursor=json.dumps({**cur, "bad": fingerprint, "error": str(exc)[:500]}),
                            skip_reason=SkipReason(f"MALFORMED region catalog, nothing changed: {exc}"[:1000]))
    known = context.instance.get_dynamic_partitions(SKY_REGIONS)
    new = [name for name in catalog if name not in set(known)]
    removed = sorted(set(known) - set(catalog))
    if removed:
        context.log.info(f"{len(removed)} registered regions are no longer in {path}; their partitions "
                         f"and products are kept: {', '.join(removed[:20])}")
    new_cursor = json.dumps({"good": fingerprint})
    if not new:
        return SensorResult(cursor=new_cursor, skip_reason=SkipReason(f"no new regions in {path}"))
    ordered = list(known) + new
    return SensorResult(
        run_requests=range_run_requests(new, ordered, f"catalog-{(fingerprint or 'x')[:16]}", "region_catalog_sensor"),
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(SKY_REGIONS, new)],
        cursor=new_cursor,
    )


@schedule(job=sky_branch_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Nightly: process the registered sky regions that have no materialized candidate catalog "
                      "(new, or failed since), in batches.")
def nightly_sky_schedule(context: ScheduleEvaluationContext):
    keys = context.instance.get_dynamic_partitions(SKY_REGIONS)
    done = context.instance.get_materialized_partitions(AssetKey("candidate_catalog"))
    todo = [k for k in keys if k not in done]
    if not todo:
        return SkipReason(f"all {len(keys)} registered regions have a candidate catalog")
    stamp = (context.scheduled_execution_time.strftime("%Y%m%dT%H%M")
             if context.scheduled_execution_time else "manual")
    context.log.info(f"{len(todo)} regions to process: {', '.join(todo[:50])}")
    return range_run_requests(todo, keys, f"nightly-{stamp}", "nightly_sky_schedule")


sky_automation_sensor = AutomationConditionSensorDefinition(
    "sky_automation_sensor", target=SKY_SELECTION, default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-materializes sky regions whose upstream products were updated or whose step code changed.")
