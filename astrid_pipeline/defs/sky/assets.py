"""The sky branch's assets, built from the step table (:data:`astrid_pipeline.sky.table.SKY_STEPS`).

One multi-asset, ``sky_branch``, materializes every sky product. It is partitioned by sky region with a
multi-run backfill policy, so a backfill, the catalog sensor or the nightly schedule hands it up to
``SKY_BATCH_SIZE`` regions per run; it loops over ``context.partition_keys`` and, for each region,
runs the selected steps through :func:`astrid_pipeline.sky.runner.run_region`, recording a
materialization and the check results *per partition*. Dagster cannot fail one partition of a
multi-partition step, so this is done in the step: a region that fails writes no product, gets a failed
check naming the error, and the others carry on; in a single-region run a failed blocking check fails
the run. The archive step (``observation_inventory``, pooled) runs first and fills the download cache.
"""

import logging
import os

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    AutomationCondition,
    Failure,
    FreshnessPolicy,
    MetadataValue,
    SpecificPartitionsPartitionMapping,
    multi_asset,
)

from astrid_pipeline.defs._config import config_class
from astrid_pipeline.defs.resources import RegionCatalogResource, SkyArchiveResource, StorageResource
from astrid_pipeline.defs.sky.partitions import sky_backfill_policy, sky_region_partitions
from astrid_pipeline.sky.settings import SkySettings
from astrid_pipeline.sky.table import SKY_STEPS, code_version, steps_for_assets

OWNERS = ["team:sky"]
SkyBranchConfig = config_class(SkySettings, name="SkyBranchConfig",
                               doc="Settings of every sky step (one section per step) and the check bounds.")

#: re-materialize when a region is new, an upstream product changed, or the step's code changed
SKY_AUTOMATION = AutomationCondition.eager() | (AutomationCondition.code_version_changed()
                                                & ~AutomationCondition.in_progress())


#: the deployment's choice of cosmic-ray model (read when the definitions load): ``shipped`` (default: the packaged
#: weights, whose checksum is in cosmic_ray_mask's code version) or ``trained`` (the cr_model asset's checkpoint
#: named by ASTRID_CR_TRAINED_MODEL, which cosmic_ray_mask then depends on, so retraining re-runs the regions)
CR_MODEL_SOURCE = os.environ.get("ASTRID_CR_MODEL_SOURCE", "shipped").strip().lower() or "shipped"
CR_TRAINED_MODEL = os.environ.get("ASTRID_CR_TRAINED_MODEL", "deepcr").strip() or "deepcr"
if CR_MODEL_SOURCE not in ("shipped", "trained"):
    raise ValueError(f"ASTRID_CR_MODEL_SOURCE={CR_MODEL_SOURCE!r}: use shipped or trained")


def _deps(step) -> list:
    deps = list(step.reads)
    if step.name == "cosmic_ray_mask" and CR_MODEL_SOURCE == "trained":
        deps.append(AssetDep("cr_model", partition_mapping=SpecificPartitionsPartitionMapping([CR_TRAINED_MODEL])))
    return deps


def _spec(step, product) -> AssetSpec:
    from datetime import timedelta

    return AssetSpec(
        product.key, deps=_deps(step), description=product.description, group_name=product.group,
        kinds=set(product.kinds), owners=OWNERS, code_version=code_version(step, CR_MODEL_SOURCE, CR_TRAINED_MODEL),
        partitions_def=sky_region_partitions,
        automation_condition=SKY_AUTOMATION,
        freshness_policy=(FreshnessPolicy.time_window(fail_window=timedelta(hours=48), warn_window=timedelta(hours=26))
                          if product.key == "candidate_catalog" else None),
        metadata={"astrid/step": step.name},
    )


def _specs() -> list[AssetSpec]:
    return [_spec(s, p) for s in SKY_STEPS for p in s.products]


def _check_specs() -> list[AssetCheckSpec]:
    return [AssetCheckSpec(c.name, asset=c.asset, description=c.description, blocking=c.blocking,
                           partitions_def=sky_region_partitions) for s in SKY_STEPS for c in s.checks]


def _events(context, ev, selected_assets, selected_checks, single: bool, code_versions, skipped: list):
    """Dagster events for one runner event (only for what this run selected)."""
    from astrid_pipeline.defs.sky.presentation import materialization_metadata

    step = ev.step
    if ev.kind == "materialized":
        for product in step.products:
            if product.key not in selected_assets:
                continue
            md = materialization_metadata(product.key, ev)
            if product is step.products[0]:  # the step's time, once per step and region
                md["science_s"] = MetadataValue.float(round(ev.seconds, 4))
            yield AssetMaterialization(asset_key=product.key, partition=ev.region, metadata=md,
                                       tags={"dagster/code_version": code_versions[product.key]})
    elif ev.kind == "check":
        c = ev.check
        if (c.asset, c.name) not in selected_checks:
            return
        from astrid_pipeline.defs._metadata import to_metadata

        yield AssetCheckEvaluation(
            asset_key=AssetKey(c.asset), check_name=c.name, passed=bool(ev.outcome.passed),
            metadata=to_metadata(ev.outcome.metadata), partition=ev.region,
            severity=AssetCheckSeverity.ERROR if c.blocking else AssetCheckSeverity.WARN,
            blocking=bool(c.blocking and single), description=ev.outcome.description or None,
        )
        if not ev.outcome.passed:
            context.log.warning(f"region {ev.region}: check {c.asset}:{c.name} failed "
                                f"{ev.outcome.description or ''} {dict(ev.outcome.metadata)}")
    elif ev.kind == "check_skipped":
        skipped.append(f"{ev.region}: {ev.check.asset}:{ev.check.name}")
    elif ev.kind == "failed":
        context.log.error(f"region {ev.region}: step {step.name} failed; nothing written for it: {ev.message}")
    elif ev.kind == "skipped":
        context.log.warning(f"region {ev.region}: step {step.name} not run: {ev.message}")


@multi_asset(
    name="sky_branch",
    specs=_specs(),
    check_specs=_check_specs(),
    partitions_def=sky_region_partitions,
    backfill_policy=sky_backfill_policy,
    can_subset=True,
    description="Every sky step for a batch of regions, in the order of the step table.",
)
def sky_branch(context: AssetExecutionContext, config: SkyBranchConfig, storage: StorageResource,
               archive: SkyArchiveResource, regions: RegionCatalogResource):
    from astrid_pipeline.errors import AstridError
    from astrid_pipeline.regions import resolve_region
    from astrid_pipeline.sky.runner import RegionSummary, run_region

    from astrid_pipeline.instance import tag_worker

    tag_worker(context)
    settings = config.to_settings()
    layout = storage.layout
    keys = list(context.partition_keys)
    single = len(keys) == 1
    selected_assets = {k.to_user_string() for k in context.selected_asset_keys}
    selected_checks = {(ck.asset_key.to_user_string(), ck.name) for ck in context.selected_asset_check_keys}
    steps = steps_for_assets(selected_assets)
    code_versions = {p.key: code_version(s, CR_MODEL_SOURCE, CR_TRAINED_MODEL) for s in SKY_STEPS for p in s.products}
    cr = settings.cosmic_rays
    if CR_MODEL_SOURCE == "trained" and cr.model_source == "shipped" and not cr.checkpoint:
        cr.model_source, cr.trained_model = "trained", CR_TRAINED_MODEL  # the deployment's choice is the default
    catalog = regions.catalog()
    router = archive.router(cache_root=str(layout.root / "archive_cache"))
    summaries, skipped = [], []
    progress = logging.getLogger("astrid.progress")  # the CLI prints these; not written to the event log
    for i, key in enumerate(keys, 1):
        summary = RegionSummary(key)
        summaries.append(summary)
        try:
            region = resolve_region(key, catalog)
        except AstridError as exc:
            summary.failed_step, summary.error = "region", str(exc)
            context.log.error(f"region {key}: {exc}")
            continue
        try:
            for ev in run_region(layout, region, settings, steps, fetch_pair=lambda r=region: router.fetch_pair(r),
                                 owner=f"run {context.run.run_id}", summary=summary):
                yield from _events(context, ev, selected_assets, selected_checks, single, code_versions, skipped)
        except AstridError as exc:  # the region lock is held by another run
            summary.failed_step, summary.error = "lock", str(exc)
            context.log.error(f"region {key}: {exc}")
        progress.info(f"[{i}/{len(keys)}] {key}: {'FAILED at ' + summary.failed_step if summary.failed_step else 'ok'}"
                      f" in {summary.science_s:.1f} s" + (f", failed checks: {', '.join(summary.failed_checks)}"
                                                           if summary.failed_checks else ""))
    # one line for the batch (each event-log line costs a database write per region otherwise)
    science = sum(s.science_s for s in summaries)
    context.log.info(f"{len(summaries)} regions, {sum(1 for s in summaries if not s.failed_step)} completed, "
                     f"{science:.1f} s in the science steps"
                     + (f"; checks skipped (not applicable): {'; '.join(skipped[:20])}" if skipped else ""))
    failed = [s for s in summaries if s.failed_step]
    if failed and (single or len(failed) == len(summaries)):
        raise Failure(description="; ".join(f"{s.region}: {s.failed_step}: {s.error}" for s in failed)[:4000],
                      allow_retries=False)
    if failed:
        context.log.error(f"{len(failed)} of {len(summaries)} regions failed in this batch and wrote nothing after "
                          f"the failing step: {', '.join(s.region for s in failed)} — a backfill of just these "
                          "regions retries them")

