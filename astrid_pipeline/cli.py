"""``astrid``: run the pipeline from a terminal.

    astrid run                       # every branch on small defaults (sky: the built-in regions, simulated)
    astrid run --regions M101 ra150.1190_dec+2.2058 --image-size 2048
    astrid run --catalog my_regions.yaml --branches sky --regions F1   # F1: science_archive: local, local_root: ...
    astrid run --local-root ~/fits --branches sky --regions F1         # <root>/F1/{science,reference}.fits
    astrid regions                   # list the region catalog

Runs go through the same Dagster definitions as the UI and are recorded in the instance under
``$DAGSTER_HOME`` (default ``<data root>/.dagster``), so ``dg dev`` shows them afterwards. Sky regions run in
batches of up to ``$ASTRID_SKY_BATCH_SIZE`` (25) per run, like an asset backfill. Failed asset checks are
listed and make the exit status non-zero; the summary shows only what this invocation produced.
Errors caused by input or environment print one line (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

#: the branches ``astrid run`` knows, in the order it runs them
BRANCHES = ("sky", "detector", "mmcosmic", "training")
#: training steps: simulate patches, train the default model, evaluate (job, partition)
TRAINING_STEPS = [("cr_training_set_job", None), ("cr_training_job", "deepcr"), ("cr_evaluation_job", None),
                  ("realbogus_training_job", None)]


@dataclass
class PlannedRun:
    branch: str
    job: str
    label: str
    partition_key: str | None = None
    tags: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)


class _Progress(logging.Handler):
    """Prints the pipeline's progress lines (logger ``astrid.progress``) as they come."""

    def emit(self, record):
        print(f"  {record.getMessage()}", flush=True)


def _quiet_loggers() -> dict:
    return {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _plan_sky(instance, args) -> list[PlannedRun]:
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from astrid_pipeline.defs.resources import RegionCatalogResource
    from astrid_pipeline.defs.sky.partitions import SKY_BATCH_SIZE, SKY_REGIONS, contiguous_runs

    catalog = RegionCatalogResource(path=args.catalog or "")
    regions = list(dict.fromkeys(args.regions or list(catalog.catalog())))
    for key in regions:
        catalog.region(key)  # an unknown key fails here, with the catalog's message, before any run
    known = instance.get_dynamic_partitions(SKY_REGIONS)
    new = [r for r in regions if r not in set(known)]
    if new:
        instance.add_dynamic_partitions(SKY_REGIONS, new)
    archive = {"image_size": args.image_size, "seed": args.seed}
    if args.local_root:  # every region reads this folder unless its catalog entry names its own
        archive.update(kind="local", local_root=str(Path(args.local_root).expanduser().resolve()))
    cfg = {"resources": {"archive": {"config": archive}}, **_quiet_loggers()}
    if args.catalog:
        cfg["resources"]["regions"] = {"config": {"path": str(Path(args.catalog).expanduser().resolve())}}
    runs = []
    for a, b in contiguous_runs(regions, list(known) + new, SKY_BATCH_SIZE):
        label = a if a == b else f"{a} .. {b}"
        runs.append(PlannedRun("sky", "sky_branch_job", f"regions {label}", None,
                               {ASSET_PARTITION_RANGE_START_TAG: a, ASSET_PARTITION_RANGE_END_TAG: b}, cfg))
    return runs


def _plan_detector(instance, args) -> list[PlannedRun]:
    from astrid_pipeline.defs.detector.assets import register_exposures

    keys = register_exposures(instance)
    return [PlannedRun("detector", "detector_job", f"exposure {k}", k, {}, _quiet_loggers()) for k in keys]


def _plan_mmcosmic(instance, args) -> list[PlannedRun]:
    from astrid_pipeline.defs.mmcosmic.assets import STACKS, register_stacks

    register_stacks(instance)
    return [PlannedRun("mmcosmic", "mmcosmic_job", f"stack {k}", k, {}, _quiet_loggers())
            for k in instance.get_dynamic_partitions(STACKS)]


def _plan_training(instance, args) -> list[PlannedRun]:
    return [PlannedRun("training", job, job + (f" ({key})" if key else ""), key, {}, _quiet_loggers())
            for job, key in TRAINING_STEPS]


PLANNERS = {"sky": _plan_sky, "detector": _plan_detector, "mmcosmic": _plan_mmcosmic, "training": _plan_training}


def _failed_checks(result) -> list[str]:
    out = []
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.event_specific_data
            if not d.passed:
                part = f"[{d.partition}]" if d.partition else ""
                why = ""
                md = dict(d.metadata or {})
                if "error" in md:
                    why = f": {md['error'].value}"
                elif d.description:
                    why = f": {d.description}"
                out.append(f"{d.severity.value} {d.asset_key.to_user_string()}:{d.check_name}{part}{why}"[:400])
    return out


def _materialized(result, asset: str) -> set[str]:
    return {e.event_specific_data.materialization.partition for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION"
            and e.event_specific_data.materialization.asset_key.to_user_string() == asset}


def cmd_regions(args) -> int:
    from astrid_pipeline.regions import load_region_catalog

    for r in load_region_catalog(args.catalog or os.environ.get("ASTRID_REGION_CATALOG") or None).values():
        print(f"{r.name:12s} ra={r.ra:9.4f} dec={r.dec:+8.4f}  {r.note}")
    return 0


def cmd_run(args) -> int:
    from astrid_pipeline.instance import ensure_home, fail_dead_runs
    from astrid_pipeline.layout import DataLayout

    branches = [b.strip() for b in args.branches.split(",") if b.strip()]
    unknown = sorted(set(branches) - set(BRANCHES))
    if unknown:
        raise _UsageError(f"unknown branches {unknown}: choose from {', '.join(BRANCHES)}")
    layout = DataLayout.default()
    instance = ensure_home()
    for run_id in fail_dead_runs(instance):
        print(f"note: run {run_id} was left STARTED by a killed process; marked failed")
    print(f"data root: {layout.root}\nDagster home: {os.environ['DAGSTER_HOME']}")
    from astrid_pipeline.definitions import defs

    plan = [run for b in BRANCHES if b in branches for run in PLANNERS[b](instance, args)]
    progress = logging.getLogger("astrid.progress")
    handler = _Progress()
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    failed_runs, failed_checks, done_regions = [], [], set()
    try:
        for i, run in enumerate(plan, 1):
            job = defs.resolve_job_def(run.job)
            print(f"[{i}/{len(plan)}] {run.branch}: {run.job} {run.label}", flush=True)
            t0 = time.perf_counter()
            result = job.execute_in_process(partition_key=run.partition_key, tags=run.tags, instance=instance,
                                            run_config=run.run_config, raise_on_error=False)
            checks = _failed_checks(result)
            failed_checks += [f"{run.branch}: {c}" for c in checks]
            status = "ok" if result.success else "FAILED"
            if not result.success:
                failed_runs.append(f"{run.branch}: {run.job} {run.label} (run {result.run_id})")
            print(f"      {status} in {time.perf_counter() - t0:.1f} s" + (f", {len(checks)} failed checks" if checks else ""))
            if run.branch == "sky":
                done_regions |= _materialized(result, "candidate_catalog")
    finally:
        progress.removeHandler(handler)
    _summary(layout, sorted(done_regions))
    if failed_checks:
        print("\nfailed checks:", file=sys.stderr)
        for c in failed_checks:
            print(f"  {c}", file=sys.stderr)
    if failed_runs:
        print("\nfailed runs (their logs: dg dev -> Runs):", file=sys.stderr)
        for r in failed_runs:
            print(f"  {r}", file=sys.stderr)
    return 1 if failed_runs or any(" ERROR " in f" {c.split(': ', 1)[1]} " for c in failed_checks) else 0


def _summary(layout, regions: list[str]) -> None:
    """Candidate counts of the regions whose catalog this invocation wrote (never an older one)."""
    print("\nproducts:")
    for sub in ("sky/raw", "sky/differences", "sky/triplets", "sky/previews", "catalogs/candidates", "sky/crmask",
                "catalogs/transient_truth", "detector", "catalogs/ramp_events", "mmcosmic", "models"):
        print(f"  {layout.root / sub}")
    if not regions:
        return
    import pandas as pd

    rows = []
    for key in regions:
        p = layout.catalog("candidates", {"region": key})
        if p.exists():
            c = pd.read_parquet(p)
            rows.append({"region": key, "candidates": len(c), "clean": int(c["clean"].sum()),
                         "recovered_injected": int((c["truth_id"] != "").sum())})
    if rows:
        print("\ncandidates written by this run:\n" + pd.DataFrame(rows).to_string(index=False))
        print("\nread the catalog:  python -c \"import pandas as pd; "
              f"print(pd.read_parquet('{layout.catalog_root('candidates')}'))\"")


class _UsageError(Exception):
    pass


def describe_error(exc: BaseException) -> str:
    """One line for a person: what failed (the file, the parameter) and why, with no traceback.

    The pipeline's named errors (:mod:`astrid_pipeline.errors`) already name the file or parameter; an
    :class:`OSError` from the environment (read-only folder, disk full, a file where a folder must be) is
    shown as ``<path>: <reason>``; anything else is an internal error, said as such with the hint to rerun
    with ``--debug``. Quoted text is bounded and stripped of credentials.
    """
    from astrid_pipeline.archives.redact import strip_secrets
    from astrid_pipeline.errors import AstridError
    from astrid_pipeline.io.safe_yaml import clip

    if isinstance(exc, AstridError):
        text = str(exc)
    elif isinstance(exc, OSError):
        paths = [os.fspath(p) for p in (exc.filename, exc.filename2) if p is not None]
        reason = exc.strerror or str(exc) or type(exc).__name__
        text = f"{' -> '.join(paths)}: {reason}" if paths else reason
    elif isinstance(exc, MemoryError):
        text = "out of memory (the input is larger than this machine can hold; see the input limits in the docs)"
    elif isinstance(exc, _UsageError):
        text = str(exc)
    else:
        text = (f"internal error {type(exc).__name__}: {clip(str(exc), 300)} (a bug: rerun with --debug and "
                "report the traceback)")
    return clip(strip_secrets(" ".join(text.split())), 2000)


def run_reporting_errors(prog: str, call, debug: bool, *, exit_codes=None) -> int:
    """``call()`` with every error printed as one line ``<prog>: error: ...`` on stderr (the traceback only
    with ``debug``), returning a non-zero exit status: 2 by default, ``exit_codes[type]`` for the first
    matching class; 130 on Ctrl-C."""
    try:
        return call()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place where every error becomes a message
        if debug:
            raise
        print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        for cls, code in (exit_codes or {}).items():
            if isinstance(exc, cls):
                return code
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astrid", description="AstrID pipeline")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize every branch (sky: regions in the catalog, simulated survey)")
    run.add_argument("--regions", nargs="*", help="partition keys (catalog names or ra<RA>_dec<+DEC>)")
    run.add_argument("--image-size", type=int, default=1024, help="simulated survey image side (pixels)")
    run.add_argument("--seed", type=int, default=0, help="simulated survey base seed")
    run.add_argument("--catalog", default="", help="region catalog YAML or CSV (default: built-in)")
    run.add_argument("--local-root", default="",
                     help="local FITS folder for every region (<region>/science.fits + reference.fits, or a "
                          "manifest.yaml); a catalog entry's own local_root / *_archive still wins")
    run.add_argument("--branches", default=",".join(BRANCHES),
                     help=f"comma-separated branches to run (default: all of {', '.join(BRANCHES)})")
    run.set_defaults(func=cmd_run)
    reg = sub.add_parser("regions", help="list the region catalog")
    reg.add_argument("--catalog", default="")
    reg.set_defaults(func=cmd_regions)
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return run_reporting_errors("astrid", lambda: args.func(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
