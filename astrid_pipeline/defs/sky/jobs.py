"""Jobs of the sky branch (the partitions come from the assets: sky_regions)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

#: the archive step and every sky product; runs hand the step up to SKY_BATCH_SIZE regions
SKY_SELECTION = AssetSelection.groups("sky_acquisition", "sky_cosmic_rays", "sky_alignment", "sky_differencing",
                                      "sky_candidates")

sky_branch_job = define_asset_job(
    "sky_branch_job",
    selection=SKY_SELECTION,
    executor_def=in_process_executor,
    description="Inventory and fetch, mask cosmic rays, align, difference, extract candidates and cut triplets for "
                "a batch of sky regions (one run per batch; the two steps run in one process).",
    tags={"astrid/branch": "sky"},
)
