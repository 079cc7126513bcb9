"""Sensors: keep the sky-region partitions in step with the region catalog.

``region_catalog_sensor`` reads the catalog (the ``regions`` resource: an
explicit path, ``$ASTRID_REGION_CATALOG``, ``regions.yaml``/``regions.csv``
in the data root, or the built-in list) whenever its bytes change, registers
every new region as a ``sky_regions`` partition and launches one
``sky_batch_job`` run per batch of new regions. A region removed from the
catalog keeps its partition and its products (nothing is deleted). A
malformed catalog fails the tick with the catalog's error (shown in the UI
under the sensor's ticks) and changes nothing; the cursor is not advanced, so
the fixed catalog is picked up on the next tick.
"""

from dagster import (
    AddDynamicPartitionsRequest,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from astrid_pipeline.partitions import SKY_REGIONS
from astrid_pipeline.resources.archives import RegionCatalogResource
from astrid_pipeline.sky_batch import sky_batch_job, sky_batch_run_config

#: regions per run launched by the sensor and the schedule
BATCH_SIZE = 25


def _catalog_path(regions: RegionCatalogResource) -> str:
    import os

    return regions.path or os.environ.get("ASTRID_REGION_CATALOG") or ""


@sensor(job=sky_batch_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Registers new regions of the region catalog as sky_regions partitions and processes them.")
def region_catalog_sensor(context: SensorEvaluationContext, regions: RegionCatalogResource):
    from astrid_pipeline.regions import catalog_fingerprint, catalog_path, load_region_catalog
    from astrid_pipeline.survey import batches

    path = catalog_path(_catalog_path(regions) or None)
    fingerprint = catalog_fingerprint(path)
    if fingerprint and fingerprint == context.cursor:
        return SkipReason(f"region catalog {path} unchanged")
    catalog = load_region_catalog(path)  # ConfigError with the file and entry: the tick fails, nothing changes
    known = set(context.instance.get_dynamic_partitions(SKY_REGIONS))
    new = [name for name in catalog if name not in known]
    removed = sorted(known - set(catalog))
    if removed:
        context.log.info(f"{len(removed)} registered regions are no longer in {path}; their partitions "
                         f"and products are kept: {', '.join(removed[:20])}")
    if not new:
        return SensorResult(cursor=fingerprint, skip_reason=SkipReason(f"no new regions in {path}"))
    runs = [RunRequest(run_key=f"catalog-{fingerprint[:16]}-{i}",
                       run_config=sky_batch_run_config(batch),
                       tags={"astrid/trigger": "region_catalog_sensor", "astrid/regions": str(len(batch))})
            for i, batch in enumerate(batches(new, BATCH_SIZE))]
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[AddDynamicPartitionsRequest(SKY_REGIONS, new)],
        cursor=fingerprint,
    )


sensors = [region_catalog_sensor]
