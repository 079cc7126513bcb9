"""Jobs: one per branch (the partitions come from the assets: sky_regions)."""

from dagster import AssetSelection, define_asset_job

sky_branch_job = define_asset_job(
    "sky_branch_job",
    selection=AssetSelection.groups("sky_acquisition", "sky_cosmic_rays", "sky_alignment", "sky_differencing",
                                    "sky_candidates"),
    description="Fetch, mask cosmic rays, align, difference and extract candidates for one sky region.",
)
