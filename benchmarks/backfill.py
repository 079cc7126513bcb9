"""Backfill benchmark: the sky branch for many simulated regions as one batched backfill.

    .venv/bin/python benchmarks/backfill.py [--regions 100] [--image-size 1024] [--parallel 1]

Registers ``--regions`` ad-hoc sky regions (spread over the sky) as
``sky_regions`` partitions on a fresh on-disk Dagster instance, then launches
``sky_batch_job`` once for all of them with the multiprocess executor (the
same path a schedule, the sensor or ``dagster job launch`` takes). Each region
records its own materializations. ``science_s`` is the time measured inside
the archive fetch and the sky step functions (``process_region``), summed
over regions; ``overhead_share = 1 - science_s / wall_s`` and is only
meaningful with ``--parallel 1`` (one chunk; the science code itself uses
``$ASTRID_FFT_WORKERS`` threads). The last line printed is one JSON object.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=100)
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--parallel", type=int, default=1, help="chunks run side by side (1: overhead_share is exact)")
    ap.add_argument("--workdir", default="", help="data root and DAGSTER_HOME go here (default: a temporary folder)")
    args = ap.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="astrid-backfill-"))
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ASTRID_FFT_WORKERS", "2")

    from dagster import AssetKey, DagsterInstance, execute_job, reconstructable

    from astrid_pipeline.partitions import SKY_REGIONS
    from astrid_pipeline.regions import adhoc_key
    from astrid_pipeline.sky_batch import build_sky_batch_job, sky_batch_run_config

    # positions spread over the sky (golden-angle spiral), away from the poles
    keys = []
    for i in range(args.regions):
        ra = (i * 137.508) % 360.0
        dec = -60.0 + 120.0 * (i + 0.5) / args.regions
        keys.append(adhoc_key(ra, dec))
    instance = DagsterInstance.get()
    instance.add_dynamic_partitions(SKY_REGIONS, keys)
    run_config = sky_batch_run_config(keys, parallel=args.parallel)
    run_config["resources"] = {"storage": {"config": {"root": str(work / "data")}},
                               "archive": {"config": {"image_size": args.image_size}}}
    run_config["execution"] = {"config": {"multiprocess": {"max_concurrent": max(1, args.parallel)}}}

    t0 = time.perf_counter()
    with execute_job(reconstructable(build_sky_batch_job), instance=instance, run_config=run_config,
                     raise_on_error=False) as result:
        wall = time.perf_counter() - t0
        ok = result.success
        run_id = result.run_id
    done = instance.get_materialized_partitions(AssetKey("candidate_catalog"))
    science = 0.0
    for rec in instance.fetch_materializations(AssetKey("candidate_catalog"), limit=10 * args.regions).records:
        mat = rec.asset_materialization
        if rec.run_id == run_id and "science_s" in mat.metadata:
            science += float(mat.metadata["science_s"].value)
    out = {"regions": len(done), "wall_s": round(wall, 2), "regions_per_min": round(60 * len(done) / wall, 2),
           "science_s": round(science, 2), "overhead_share": round(1 - science / wall, 4),
           "image_size": args.image_size, "parallel": args.parallel, "runs": 1, "success": bool(ok)}
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
