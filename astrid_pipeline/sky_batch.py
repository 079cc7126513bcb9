"""One run, many regions: the sky branch over a batch of regions (schedules, sensors, large backfills).

``sky_batch_job`` takes a list of region keys, splits them into ``parallel``
chunks (one step each, so the multiprocess or Dask executor runs chunks side
by side) and runs the sky steps (:mod:`astrid_pipeline.steps.sky`, the same
functions the sky assets call) region after region inside each chunk. For
every region it records materializations of the eleven sky assets for that
partition, so the asset graph, partition status and staleness in the UI are
the same as after ``sky_branch_job``. A region that fails is reported and the
others carry on; the run fails at the end naming the failed regions.

Why not a backfill policy on the sky assets: a ranged run hands each asset
several partition keys, which the sky assets (and their partitioned asset
checks, a preview feature in Dagster 1.13) do not handle; a batch of
per-region step calls gives the same amortisation of run start-up.

The Dask executor plans every step before it runs and does not expand
dynamic outputs, so ``build_sky_batch_dask_job`` uses the same ops with a
fixed fan-out (:func:`sky_batch_fixed_graph`); the run config is the same.
"""

import time

from dagster import (
    AssetMaterialization,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    graph,
    op,
)
from pydantic import Field

from astrid_pipeline.partitions import SKY_REGIONS
from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource

PLAN_OP = "plan_sky_batch"
#: sky asset keys and the step result paths they point at
_ASSETS = ("science_image", "reference_image", "transient_truth", "aligned_reference", "psf_models",
           "normalized_images", "zogy_difference", "classic_difference", "candidate_catalog", "cutout_triplets")


class SkyBatchConfig(Config):
    regions: list[str] = Field(description="sky region keys (catalog names or ra<RA>_dec<+DEC>)")
    parallel: int = Field(default=2, description="chunks run side by side (executor permitting)")


def sky_batch_run_config(regions: list[str], parallel: int = 2) -> dict:
    """Run config for :data:`sky_batch_job` (schedules, sensors, the benchmark and the CLI use it)."""
    return {"ops": {PLAN_OP: {"config": {"regions": list(regions), "parallel": int(parallel)}}}}


def process_region(layout, key: str, archive: SkyArchiveResource, catalog) -> tuple[dict, float]:
    """All sky steps for one region; returns (per-asset metadata, seconds spent inside the steps)."""
    from astrid_pipeline.regions import resolve_region
    from astrid_pipeline.steps import sky as steps

    region = resolve_region(key, catalog)
    science = 0.0

    def timed(fn, *args, **kw):
        nonlocal science
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            science += time.perf_counter() - t0

    pair = timed(archive.fetch_pair, region, cache_root=str(layout.root / "archive_cache"))
    r = steps.run_region(layout, key, pair, call=timed)
    acq, aln, psf, nrm, zog, cla, cand, trip = (r[k] for k in ("acquire", "align", "psf", "normalize", "zogy",
                                                                  "classic", "candidates", "triplets"))
    meta = {
        "science_image": {"path": str(acq.paths["science"])},
        "cosmic_ray_mask": {"path": str(r["cosmic_ray_mask"].paths["cosmic_ray_mask"]),
                            "n_cr_pixels": int(r["cosmic_ray_mask"].metadata.get("n_cr_pixels", 0))},
        "reference_image": {"path": str(acq.paths["reference"])},
        "transient_truth": {"n_injected": int(acq.metadata.get("n_injected", 0))},
        "aligned_reference": {"path": str(aln.paths["aligned_reference"]),
                              "n_matched": int(aln.metadata.get("n_matched", 0))},
        "psf_models": {"path": str(psf.paths["psf_models"])},
        "normalized_images": {"path": str(nrm.paths["science"])},
        "zogy_difference": {"path": str(zog.paths["zogy_difference"]),
                            "noise_S_corr": float(zog.metadata.get("noise_S_corr", float("nan")))},
        "classic_difference": {"path": str(cla.paths["classic_difference"])},
        "candidate_catalog": {"path": str(cand.paths["candidates"]),
                              "dagster/row_count": int(cand.metadata.get("n_candidates", 0)),
                              "n_clean": int(cand.metadata.get("n_clean", 0))},
        "cutout_triplets": {"path": str(trip.paths["triplets"])},
    }
    return meta, science


def _md(v):
    if isinstance(v, bool):
        return MetadataValue.bool(v)
    if isinstance(v, int):
        return MetadataValue.int(v)
    if isinstance(v, float):
        return MetadataValue.float(v) if v == v else MetadataValue.text("nan")
    if isinstance(v, str) and v.startswith("/"):
        return MetadataValue.path(v)
    return MetadataValue.text(str(v))


def _plan_keys(context: OpExecutionContext, config: SkyBatchConfig, regions: RegionCatalogResource) -> list[str]:
    """Check every key against the catalog and register unknown ones as partitions."""
    from astrid_pipeline.regions import resolve_region

    catalog = regions.catalog()
    keys = list(dict.fromkeys(config.regions))
    for k in keys:
        resolve_region(k, catalog)  # a clear error for an unknown key, before any work
    known = set(context.instance.get_dynamic_partitions(SKY_REGIONS))
    new = [k for k in keys if k not in known]
    if new:
        context.instance.add_dynamic_partitions(SKY_REGIONS, new)
    return keys


@op(name=PLAN_OP, out=DynamicOut(list))
def plan_sky_batch(context: OpExecutionContext, config: SkyBatchConfig, regions: RegionCatalogResource):
    """Check the keys, register new partitions, split into ``parallel`` chunks (dynamic fan-out)."""
    keys = _plan_keys(context, config, regions)
    n = max(1, min(config.parallel, len(keys)))
    for i in range(n):
        chunk = keys[i::n]
        if chunk:
            yield DynamicOutput(chunk, mapping_key=f"chunk_{i}")


@op
def process_sky_chunk(context: OpExecutionContext, chunk: list, storage: StorageResource,
                      archive: SkyArchiveResource, regions: RegionCatalogResource) -> dict:
    """The sky steps for each region of the chunk; one materialization per asset and region."""
    layout = storage.layout
    catalog = regions.catalog()
    done, failed, science_s = [], {}, 0.0
    for key in chunk:
        try:
            meta, sec = process_region(layout, key, archive, catalog)
        except Exception as exc:  # one bad region must not stop the batch
            failed[key] = f"{type(exc).__name__}: {exc}"
            context.log.error(f"region {key} failed: {failed[key]}")
            continue
        science_s += sec
        done.append(key)
        for asset in _ASSETS:
            md = {k: _md(v) for k, v in meta[asset].items()}
            md["science_s"] = MetadataValue.float(sec)
            md["batch_run"] = MetadataValue.text(context.run_id)
            context.log_event(AssetMaterialization(asset_key=asset, partition=key, metadata=md))
        context.log.info(f"region {key}: {sec:.1f} s in the science steps")
    import os

    return {"done": done, "failed": failed, "science_s": science_s, "pid": os.getpid()}


@op
def summarize_sky_batch(context: OpExecutionContext, results: list) -> dict:
    done = [k for r in results for k in r["done"]]
    failed = {k: v for r in results for k, v in r["failed"].items()}
    science_s = sum(r["science_s"] for r in results)
    context.add_output_metadata({"regions_done": len(done), "regions_failed": len(failed),
                                 "science_s": science_s})
    if failed:
        raise Failure(description=f"{len(failed)} of {len(done) + len(failed)} regions failed: "
                                  + "; ".join(f"{k}: {v}" for k, v in failed.items()),
                      metadata={"failed": MetadataValue.json(failed)})
    return {"done": done, "science_s": science_s,
            "chunks": [{"regions": r["done"], "pid": r.get("pid"), "science_s": r["science_s"]} for r in results]}


@graph(description="The sky branch for a batch of regions in one run (schedules, sensors, large backfills).")
def sky_batch():
    summarize_sky_batch(plan_sky_batch().map(process_sky_chunk).collect())


def default_resources() -> dict:
    """The resources the batch ops use, with their defaults (override any of them in run config)."""
    return {"storage": StorageResource(), "archive": SkyArchiveResource(), "regions": RegionCatalogResource()}


def build_sky_batch_job():
    """The batch job with default resources bound (``reconstructable(build_sky_batch_job)`` for execute_job)."""
    return sky_batch.to_job(name="sky_batch_job", resource_defs=default_resources(), tags={"astrid/branch": "sky"})


#: chunks of the fixed fan-out graph (executors that plan every step up front, such as Dask)
FIXED_CHUNKS = 2


def sky_batch_fixed_graph(chunks: int = FIXED_CHUNKS):
    """The batch graph with a fixed fan-out of ``chunks`` steps (same ops, same run config).

    The Dask executor submits the execution plan level by level before it runs
    and does not expand dynamic outputs (it reports success without running the
    mapped steps), so jobs for it use this static form.
    """

    @op(name="plan_sky_batch_fixed", out={f"chunk_{i}": Out(list) for i in range(chunks)})
    def plan_fixed(context: OpExecutionContext, config: SkyBatchConfig, regions: RegionCatalogResource):
        keys = _plan_keys(context, config, regions)
        n = max(1, min(config.parallel, chunks))
        return tuple(keys[i::n] if i < n else [] for i in range(chunks))

    @graph(name="sky_batch_fixed", description=sky_batch.description)
    def fixed():
        parts = plan_fixed.alias(PLAN_OP)()
        results = [process_sky_chunk.alias(f"process_sky_chunk_{i}")(parts[i]) for i in range(chunks)]
        summarize_sky_batch(results)

    return fixed


def build_sky_batch_dask_job():
    """The batch job on the Dask executor (``dagster-dask``); the cluster is chosen in run config
    (``execution: {config: {cluster: {existing: {address: tcp://scheduler:8786}}}}``)."""
    from dagster_dask import dask_executor

    return sky_batch_fixed_graph().to_job(name="sky_batch_dask_job", resource_defs=default_resources(),
                                          executor_def=dask_executor, tags={"astrid/branch": "sky"})


sky_batch_job = build_sky_batch_job()
