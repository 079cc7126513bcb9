"""The archive step of the sky branch: what each archive holds for a region, fetched into the cache.

``observation_inventory`` queries the region's archives (per-epoch selection as in the sky branch),
downloads both epochs into the shared download cache and writes one Parquet partition per region with
every observation found, fetched, skipped or failed (with the reason); so the sky branch's acquisition
then reads the cache and makes no request. It is the step that talks to the archives, so it takes the
``sky_archives`` pool (set its limit on the instance: ``astrid run`` does, the README gives the
deployment setting) and a retry policy with exponential backoff; a failed epoch is a row, not a failed
step, so one dead service does not hide what the other epoch found.
"""

import time

from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from astrid_pipeline.defs.resources import RegionCatalogResource, SkyArchiveResource, StorageResource
from astrid_pipeline.defs.sky.partitions import sky_backfill_policy, sky_region_partitions

ARCHIVE_POOL = "sky_archives"


def _transient(exc: BaseException) -> bool:
    """Errors worth a retry with backoff: the network or a service, not our code or the user's input."""
    import requests

    from astrid_pipeline.archives.errors import DeadlineExceededError, RetriesExhaustedError

    return isinstance(exc, (RetriesExhaustedError, DeadlineExceededError, requests.ConnectionError, requests.Timeout,
                            TimeoutError, ConnectionError))


@asset(
    partitions_def=sky_region_partitions,
    backfill_policy=sky_backfill_policy,
    group_name="sky_acquisition",
    kinds={"parquet"},
    owners=["team:sky"],
    pool=ARCHIVE_POOL,
    retry_policy=RetryPolicy(max_retries=3, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS),
    code_version="2",
    automation_condition=AutomationCondition.code_version_changed() & ~AutomationCondition.in_progress(),
    description="Observation inventory per region (archive, ids, position, time, filter, exposure, file, shape, "
                "pixel scale; downloaded/cached/skipped/failed with reasons); fills the download cache.",
)
def observation_inventory(context: AssetExecutionContext, storage: StorageResource, archive: SkyArchiveResource,
                          regions: RegionCatalogResource) -> MaterializeResult:
    from astrid_pipeline.archives.inventory import INVENTORY_SCHEMA, failed_inventory, inventory_frame
    from astrid_pipeline.defs._metadata import column_schema, table_preview
    from astrid_pipeline.io.parquet_io import write_partitioned
    from astrid_pipeline.errors import AstridError
    from astrid_pipeline.regions import resolve_region

    from astrid_pipeline.instance import tag_worker

    tag_worker(context)
    layout = storage.layout
    try:
        catalog = regions.catalog()
        router = archive.router(cache_root=str(layout.root / "archive_cache"))
    except AstridError as exc:  # a configuration mistake: retrying cannot help
        raise Failure(description=str(exc), allow_retries=False) from exc
    total = 0
    for key in context.partition_keys:
        t0 = time.perf_counter()
        try:
            region = resolve_region(key, catalog)
            df = inventory_frame(router.inventory(region))
        except Exception as exc:
            if _transient(exc):
                raise  # the retry policy tries again, with backoff
            # this region cannot be listed (unknown key, bad configuration): a failed row, the others go on
            context.log.error(f"region {key}: {type(exc).__name__}: {exc}")
            df = failed_inventory(key, f"{type(exc).__name__}: {exc}")
        path = write_partitioned(df, layout.root, "observation_inventory", {"region": key}, INVENTORY_SCHEMA)
        total += len(df)
        counts = df["status"].value_counts().to_dict() if len(df) else {}
        for r in df[df["failed"]].itertuples():
            context.log.warning(f"{key} {r.epoch} from {r.archive} failed: {r.reason}")
        context.add_asset_metadata({
            "path": MetadataValue.path(str(path)), "dagster/row_count": MetadataValue.int(len(df)),
            **{f"n_{k}": MetadataValue.int(int(v)) for k, v in counts.items()},
            "preview": table_preview(df, ["epoch", "archive", "obs_id", "filter", "status", "reason"], n=10),
            "science_s": MetadataValue.float(round(time.perf_counter() - t0, 4)),
        }, partition_key=key)
    return MaterializeResult(metadata={"dagster/column_schema": column_schema(INVENTORY_SCHEMA),
                                       "regions": MetadataValue.int(len(context.partition_keys)),
                                       "rows": MetadataValue.int(total)})
