"""Helpers for tests that run the project's Dagster definitions in process."""

from __future__ import annotations

#: small images keep a region at about a second
IMAGE_SIZE = 256


def run_sky(instance, keys, *, catalog=None, settings=None, image_size=IMAGE_SIZE, selection=None, archive=None,
            storage_root=None):
    """Run ``sky_branch_job`` over ``keys`` (registered if new; one contiguous range); returns the result."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from astrid_pipeline.definitions import defs

    known = set(instance.get_dynamic_partitions("sky_regions"))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions("sky_regions", new)
    resources = {"archive": {"config": {"image_size": image_size, **(archive or {})}}}
    if catalog:
        resources["regions"] = {"config": {"path": str(catalog)}}
    if storage_root:
        resources["storage"] = {"config": {"root": str(storage_root)}}
    run_config = {"resources": resources}
    if settings:
        run_config["ops"] = {"sky_branch": {"config": settings}}
    job = defs.resolve_job_def("sky_branch_job")
    if selection is not None:
        job = job.get_subset(asset_selection=set(selection))
    tags = {ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]}
    return job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)


def materialized(result) -> dict[str, set[str]]:
    """asset key -> partitions materialized in this run."""
    out: dict[str, set[str]] = {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            m = e.event_specific_data.materialization
            out.setdefault(m.asset_key.to_user_string(), set()).add(m.partition)
    return out


def check_results(result) -> dict[tuple[str, str, str], bool]:
    """(asset, check, partition) -> passed, for this run's check evaluations."""
    out = {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.event_specific_data
            out[(d.asset_key.to_user_string(), d.check_name, d.partition)] = d.passed
    return out


def check_error(result, partition: str) -> str:
    """The error text recorded by the first failed check of ``partition`` in this run ('' if none)."""
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.event_specific_data
            if d.partition == partition and not d.passed and "error" in d.metadata:
                return str(d.metadata["error"].value)
    return ""


def materialization(result, asset: str, partition: str | None = None):
    """The first materialization of ``asset`` (and ``partition``) in this run, or None."""
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            m = e.event_specific_data.materialization
            if m.asset_key.to_user_string() == asset and (partition is None or m.partition == partition):
                return m
    return None
