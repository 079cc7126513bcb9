"""``astrid``: run the pipeline from a terminal.

    astrid run                       # every branch on small defaults (sky: the built-in regions, simulated)
    astrid run --regions M101 ra150.1190_dec+2.2058 --image-size 2048
    astrid regions                   # list the region catalog

Runs are recorded in the Dagster instance under ``$DAGSTER_HOME`` (default:
``<data root>/.dagster``), so ``dagster dev`` shows them afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from astrid_pipeline.layout import DataLayout


#: branch name -> job that materializes it (``astrid run --branches``)
BRANCH_JOBS = {"sky": "sky_branch_job", "detector": "detector_job", "mmcosmic": "mmcosmic_job",
               "training": "cr_training_job"}
#: the training branch: simulate patches, train the default model, evaluate (job, partition) in order
TRAINING_STEPS = [("cr_training_set_job", None), ("cr_training_job", "deepcr"), ("cr_evaluation_job", None)]


def _instance(layout: DataLayout):
    from dagster import DagsterInstance

    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(layout.dagster_home())
        os.environ["DAGSTER_HOME"] = home
    Path(home).mkdir(parents=True, exist_ok=True)
    cfg = Path(home) / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()


def cmd_regions(args) -> int:
    from astrid_pipeline.resources.archives import RegionCatalogResource

    for r in RegionCatalogResource(path=args.catalog or "").catalog().values():
        print(f"{r.name:12s} ra={r.ra:9.4f} dec={r.dec:+8.4f}  {r.note}")
    return 0


def cmd_run(args) -> int:
    import pandas as pd

    from astrid_pipeline.definitions import defs
    from astrid_pipeline.partitions import SKY_REGIONS
    from astrid_pipeline.resources.archives import RegionCatalogResource

    layout = DataLayout.default()
    catalog = RegionCatalogResource(path=args.catalog or "")
    regions = args.regions or list(catalog.catalog())
    for key in regions:
        catalog.region(key)  # fail early, with the catalog's message, on an unknown key
    instance = _instance(layout)
    known = set(instance.get_dynamic_partitions(SKY_REGIONS))
    new = [r for r in regions if r not in known]
    if new:
        instance.add_dynamic_partitions(SKY_REGIONS, new)
    run_config = {"resources": {"archive": {"config": {"image_size": args.image_size, "seed": args.seed}}}}
    if args.catalog:
        run_config["resources"]["regions"] = {"config": {"path": args.catalog}}
    failed = []
    print(f"data root: {layout.root}\nDagster home: {os.environ['DAGSTER_HOME']}")
    branches = [b.strip() for b in args.branches.split(",") if b.strip()]
    unknown = set(branches) - set(BRANCH_JOBS)
    if unknown:
        print(f"unknown branches {sorted(unknown)}: choose from {', '.join(BRANCH_JOBS)}", file=sys.stderr)
        return 2
    plan = []  # (branch, job name, partition key or None, run config)
    for branch in branches:
        if branch == "training":
            plan += [(branch, name, key, {}) for name, key in TRAINING_STEPS]
            continue
        job = defs.resolve_job_def(BRANCH_JOBS[branch])
        keys = regions if branch == "sky" else job.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
        plan += [(branch, job.name, key, run_config if branch == "sky" else {}) for key in keys]
    for branch, name, key, cfg in plan:
        job = defs.resolve_job_def(name)
        t0 = time.perf_counter()
        result = job.execute_in_process(partition_key=key, instance=instance, run_config=cfg, raise_on_error=False)
        status = "ok" if result.success else "FAILED"
        if not result.success:
            failed.append(f"{branch}:{name}:{key}")
        print(f"[{status}] {name}" + (f" partition={key}" if key else "") + f" ({time.perf_counter() - t0:.1f} s)")
    rows = []
    for key in regions:
        p = layout.catalog("candidates", {"region": key})
        if p.exists():
            c = pd.read_parquet(p)
            rows.append({"region": key, "candidates": len(c), "clean": int(c["clean"].sum()),
                         "recovered_injected": int((c["truth_id"] != "").sum())})
    if rows:
        print("\n" + pd.DataFrame(rows).to_string(index=False))
    print("\nproducts:")
    for sub in ("sky/raw", "sky/differences", "sky/triplets", "sky/previews", "catalogs/candidates",
                "sky/crmask", "catalogs/transient_truth", "detector", "catalogs/ramp_events", "mmcosmic", "models"):
        print(f"  {layout.root / sub}")
    print("\nread the catalog:  python -c \"import pandas as pd; "
          f"print(pd.read_parquet('{layout.catalog_root('candidates')}'))\"")
    if failed:
        print(f"\nfailed partitions: {', '.join(failed)} (see the run logs in dagster dev)", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="astrid", description="AstrID pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every branch (sky: regions in the catalog, simulated survey)")
    run.add_argument("--regions", nargs="*", help="partition keys (catalog names or ra<RA>_dec<+DEC>)")
    run.add_argument("--image-size", type=int, default=1024, help="simulated survey image side (pixels)")
    run.add_argument("--seed", type=int, default=0, help="simulated survey base seed")
    run.add_argument("--catalog", default="", help="region catalog YAML (default: built-in)")
    run.add_argument("--branches", default=",".join(BRANCH_JOBS),
                     help=f"comma-separated branches to run (default: all of {', '.join(BRANCH_JOBS)})")
    run.set_defaults(func=cmd_run)
    reg = sub.add_parser("regions", help="list the region catalog")
    reg.add_argument("--catalog", default="")
    reg.set_defaults(func=cmd_regions)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
