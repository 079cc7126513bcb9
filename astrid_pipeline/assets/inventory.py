"""Observation inventory: what each archive holds for a region, what was fetched, skipped or failed.

One Parquet partition per sky region (``catalogs/observation_inventory/region=<key>/part-0.parquet``).
The asset queries the region's archives (per-epoch selection as in
``science_image``/``reference_image``) and downloads into the shared cache,
so a later ``science_image`` materialization makes no request at all.
Failures become rows with ``failed=True`` and the reason, so one dead
service does not hide what the other epoch found.
"""


import pandas as pd
import pyarrow as pa
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from astrid_pipeline.assets._meta import table_markdown, to_metadata
from astrid_pipeline.io.parquet_io import Column, make_schema, write_partitioned
from astrid_pipeline.partitions import sky_region_partitions
from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource

INVENTORY_SCHEMA = make_schema([
    Column("region", pa.string(), "", "sky region (partition key)"),
    Column("epoch", pa.string(), "", "science or reference"),
    Column("archive", pa.string(), "", "simulated, local, skyview, ps1 or mast"),
    Column("obs_id", pa.string(), "", "archive observation id (MAST obs_id, PS1 sky cell, SkyView survey@position)"),
    Column("ra", pa.float64(), "deg", "ICRS right ascension of the image centre (MAST: of the observation)"),
    Column("dec", pa.float64(), "deg", "ICRS declination"),
    Column("obs_mjd", pa.float64(), "d", "observation start (MJD); NaN where the archive does not say"),
    Column("survey", pa.string(), "", "survey or mission (DSS2 Red, PS1 3pi stack, HST, ...)"),
    Column("instrument", pa.string(), "", "instrument"),
    Column("filter", pa.string(), "", "filter or band"),
    Column("exptime_s", pa.float64(), "s", "exposure time"),
    Column("url", pa.string(), "", "URL (or local path) the file came from"),
    Column("file_path", pa.string(), "", "local file (the download cache or the local folder)"),
    Column("product", pa.string(), "", "product file name at the archive"),
    Column("shape", pa.string(), "pix", "image shape, rows x columns"),
    Column("pixscale_arcsec", pa.float64(), "arcsec", "mean pixel scale from the WCS"),
    Column("status", pa.string(), "", "downloaded, cached, skipped, failed, simulated or local"),
    Column("downloaded", pa.bool_(), "", "fetched from the service in this run"),
    Column("cached", pa.bool_(), "", "reused from the download cache (no request)"),
    Column("skipped", pa.bool_(), "", "listed but not used (see reason)"),
    Column("failed", pa.bool_(), "", "could not be fetched (see reason)"),
    Column("reason", pa.string(), "", "why skipped or failed"),
    Column("query", pa.string(), "", "the archive query that found it"),
])


def inventory_frame(records) -> pd.DataFrame:
    rows = [r.to_row() for r in records]
    cols = [f.name for f in INVENTORY_SCHEMA]
    return pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame({c: [] for c in cols})


@asset(
    partitions_def=sky_region_partitions,
    group_name="sky_acquisition",
    kinds={"parquet"},
    owners=["team:sky"],
    description="Observation inventory per region: archive, ids, position, time, filter, exposure, file, shape, "
                "pixel scale, and downloaded/cached/skipped/failed with reasons.",
)
def observation_inventory(context: AssetExecutionContext, storage: StorageResource, archive: SkyArchiveResource,
                          regions: RegionCatalogResource) -> MaterializeResult:
    region = regions.region(context.partition_key)
    router = archive.router(cache_root=str(storage.layout.root / "archive_cache"))
    df = inventory_frame(router.inventory(region))
    path = write_partitioned(df, storage.layout.root, "observation_inventory", {"region": region.name},
                             INVENTORY_SCHEMA)
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    for r in df[df["failed"]].itertuples():
        context.log.warning(f"{region.name} {r.epoch} from {r.archive} failed: {r.reason}")
    shown = df[["epoch", "archive", "obs_id", "filter", "status", "reason"]].head(20)
    return MaterializeResult(metadata={
        **to_metadata({"path": path, "region": region.name, **{f"n_{k}": int(v) for k, v in counts.items()}}),
        "dagster/row_count": MetadataValue.int(len(df)),
        "preview": table_markdown(shown) if len(shown) else MetadataValue.md("(empty)"),
    })


inventory_assets = [observation_inventory]
