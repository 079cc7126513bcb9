"""Jobs: one per branch."""

from dagster import AssetSelection, define_asset_job

from astrid_pipeline.partitions import sky_region_partitions

sky_branch_job = define_asset_job(
    "sky_branch_job",
    selection=AssetSelection.groups("sky_acquisition", "sky_alignment", "sky_differencing", "sky_candidates"),
    partitions_def=sky_region_partitions,
    description="Fetch, align, difference and extract candidates for one sky region.",
)
