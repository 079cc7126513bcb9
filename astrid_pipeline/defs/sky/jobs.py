"""Jobs of the sky branch (the partitions come from the assets: sky_regions)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from astrid_pipeline.sky.table import SKY_STEPS

#: the archive step (group sky_acquisition) and every product of the step table, by their groups; runs hand
#: the step up to SKY_BATCH_SIZE regions
SKY_SELECTION = AssetSelection.groups(*dict.fromkeys(p.group for s in SKY_STEPS for p in s.products))

sky_branch_job = define_asset_job(
    "sky_branch_job",
    selection=SKY_SELECTION,
    executor_def=in_process_executor,
    description="Inventory and fetch, mask cosmic rays, align, difference, extract candidates, cut triplets, score "
                "them and write alert packets for a batch of sky regions (one run per batch; the two steps run in "
                "one process).",
    tags={"astrid/branch": "sky"},
)
