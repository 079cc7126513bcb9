"""Backfill benchmark: an asset backfill of many simulated sky regions, run by the Dagster daemon.

    .venv/bin/python benchmarks/backfill.py [--regions 100] [--image-size 1024] [--peer-regions 10]

Two launches, each on a fresh Dagster instance and data root in a temporary folder: ``DAGSTER_HOME`` made
by :func:`astrid_pipeline.instance.ensure_home` (its run queue allows ``max_concurrent_runs`` runs at once:
the *workers*; its pool limits), a region catalog of the regions (also registered as ``sky_regions``
partitions, so the catalog sensor has nothing to add), a ``workspace.yaml`` naming the definitions module,
and ``dagster-daemon run`` started and healthy. Then an asset backfill of the sky job's selection
(``observation_inventory`` and every sky product) is created with the Python API behind the UI's and
GraphQL's ``launchPartitionBackfill``, and the daemon plans, queues and launches its runs:

- ours: ``--regions`` regions with the assets' backfill policy (``multi_run``, ``$ASTRID_SKY_BATCH_SIZE``
  regions per run, 25 by default): ceil(regions / 25) runs;
- peer: the first ``--peer-regions`` of the same regions, one run per region (``ASTRID_SKY_BATCH_SIZE=1``:
  what an asset backfill launches without the policy).

Figures come from the instance: ``wall_s`` from the launch to the backfill's completion as the daemon
recorded it; ``science_s`` the sum of the ``science_s`` metadata of the backfill's materializations (once
per step and region on the step's first asset, and per region on ``observation_inventory``);
``overhead_share = 1 - science_s / (wall_s * workers)``; ``pairs_expected`` = assets x regions and
``pairs_complete`` the (asset, partition) pairs with a materialization and every check of the asset
evaluated for that partition. The physical floor is ``science_s / workers`` (no overhead at all). The
overhead is then split, in worker-seconds, into: backfill-daemon pickup (launch until its first runs are
queued), queue and slot idle time (waiting for the run queue, unequal batches), run start-up (process,
imports, definitions, resources: until the first step starts), run bookkeeping (between steps, run end),
step overhead (step time outside ``science_s``: events, metadata, thumbnails, locks), and the
daemon's completion latency (last run done until the backfill is marked complete).

The runs take one thread each (``OMP_NUM_THREADS=1``, ``ASTRID_FFT_WORKERS=1``): the workers are the
parallelism. Everything started is stopped and the temporary folders are removed at the end, also on
failure or Ctrl-C (``--keep`` keeps the folder). Timings taken while other work shares the machine are
noisy; the ratio of the two launches is measured in the same run. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from astrid_pipeline_tests.orchestration import processes  # noqa: E402  (start/stop process groups, PostgreSQL)
TERMINAL = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "ASTRID_FFT_WORKERS": "1"}


def log(msg: str) -> None:
    print(f"[backfill] {msg}", file=sys.stderr, flush=True)


def region_positions(n: int) -> list[tuple[float, float]]:
    """``n`` positions spread over the sky (golden-angle spiral in RA, even steps in Dec), away from the poles."""
    return [((i * 137.508) % 360.0, -60.0 + 120.0 * (i + 0.5) / n) for i in range(n)]


# --------------------------------------------------------------------------- one launch
@dataclass
class Launch:
    name: str
    keys: list[str]
    positions: list[tuple[float, float]]
    batch_size: int | None  # None = the definitions' default ($ASTRID_SKY_BATCH_SIZE or 25)
    image_size: int
    work: Path
    timeout_s: float
    phase: float = 0.5
    storage: str = "sqlite"  # or "postgres": a PostgreSQL server of its own, with its default durability
    home_dir: Path | None = None  # where DAGSTER_HOME goes (default: beside the data, in ``work``)


def _env(launch: Launch, home: Path, data: Path, catalog: Path) -> dict:
    env = {**os.environ, **THREAD_ENV, "DAGSTER_HOME": str(home), "ASTRID_DATA_ROOT": str(data),
           "ASTRID_REGION_CATALOG": str(catalog), "DAGSTER_DISABLE_TELEMETRY": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH", "")) if p)
    if launch.batch_size is not None:
        env["ASTRID_SKY_BATCH_SIZE"] = str(launch.batch_size)
    return env


def _start_daemon(folder: Path, env: dict, module: str) -> subprocess.Popen:
    (folder / "workspace.yaml").write_text(f"load_from:\n  - python_module: {module}\n")
    return processes.start([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
                            str(folder / "workspace.yaml")], folder / "daemon.log", cwd=str(PROJECT), env=env)


def _wait_healthy(instance, daemon: subprocess.Popen, folder: Path, timeout_s: float = 600.0) -> float:
    """Wait until the backfill and run-queue daemons have sent a heartbeat; returns the backfill daemon's first
    heartbeat time (written just before its first iteration)."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}:\n"
                               f"{(folder / 'daemon.log').read_text(errors='replace')[-3000:]}")
        beats = instance.get_daemon_heartbeats()
        if {"BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(beats):
            return beats["BACKFILL"].timestamp
        time.sleep(0.5)
    raise RuntimeError(f"dagster-daemon not healthy after {timeout_s:.0f} s; see {folder / 'daemon.log'}")


def run_launch(launch: Launch, module: str) -> dict:
    import yaml
    # dagster 1.13's backfill daemon runs one iteration every 30 s; dagster.yaml cannot change that
    from dagster._daemon.controller import DEFAULT_DAEMON_INTERVAL_SECONDS as BACKFILL_LOOP_S

    from astrid_pipeline.instance import ensure_home

    folder = launch.work / launch.name
    data, catalog = folder / "data", folder / "regions.yaml"
    home = (Path(tempfile.mkdtemp(prefix=f"astrid-home-{launch.name}-", dir=launch.home_dir)) if launch.home_dir
            else folder / "dagster_home")
    data.mkdir(parents=True)
    catalog.write_text(yaml.safe_dump({"regions": [{"name": k, "ra": round(ra, 6), "dec": round(dec, 6)}
                                                   for k, (ra, dec) in zip(launch.keys, launch.positions)]}))
    env = _env(launch, home, data, catalog)
    saved = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "ASTRID_DATA_ROOT", "ASTRID_REGION_CATALOG")}
    os.environ.update({k: env[k] for k in saved})
    services, pg_folder = processes.Services(folder), None
    instance = ensure_home(home, sqlite_event_log=launch.storage == "sqlite")
    daemon = None
    try:
        if launch.storage == "postgres":  # the deployment setting: run and event storage in PostgreSQL
            from dagster import DagsterInstance

            from astrid_pipeline.instance import set_pool_limits

            pg_folder = Path(tempfile.mkdtemp(prefix="astrid-pg-"))
            url = processes.start_postgres(services, pg_folder)
            with open(home / "dagster.yaml", "a") as f:  # ensure_home's file is there to be edited
                f.write(f"storage:\n  postgres:\n    postgres_url: {processes.dagster_postgres_url(url)}\n")
            instance.dispose()
            instance = DagsterInstance.get()
            set_pool_limits(instance)
        # the run queue's limit, as the daemon reads it (concurrency: runs: max_concurrent_runs)
        workers = int(instance.get_concurrency_config().run_queue_config.max_concurrent_runs)
        instance.add_dynamic_partitions("sky_regions", launch.keys)
        graph, selection = _target(module)
        daemon = _start_daemon(folder, env, module)
        first_beat = _wait_healthy(instance, daemon, folder)
        # the backfill daemon looks for new backfills every BACKFILL_LOOP_S, starting right after its first
        # heartbeat: launch at the chosen phase of that loop (0.5 = the expected wait of a launch at a random time)
        wait = first_beat + launch.phase * BACKFILL_LOOP_S - time.time()
        log(f"{launch.name}: daemon healthy; launching an asset backfill of {len(launch.keys)} regions at "
            f"{launch.image_size}² in {max(0.0, wait):.1f} s (phase {launch.phase} of the backfill daemon's "
            f"{BACKFILL_LOOP_S:.0f} s loop), {workers} concurrent runs, dequeue every "
            f"{instance.run_coordinator.dequeue_interval_seconds} s")
        if wait > 0:
            time.sleep(wait)
        backfill_id, t_launch = _launch_backfill(instance, launch, graph, selection)
        t_done, status = _wait_backfill(instance, backfill_id, launch, daemon, t_launch)
        log(f"{launch.name}: backfill {backfill_id} {status} after {t_done - t_launch:.1f} s")
        result = measure(instance, backfill_id, launch, workers, t_launch, t_done, graph, selection)
        result["status"] = status
        other = [r.run_id for r in instance.get_runs() if r.tags.get("dagster/backfill") != backfill_id]
        result["other_runs"] = len(other)  # runs a sensor or schedule started meanwhile (should be 0)
        return result
    finally:
        if daemon is not None:  # the daemon, its code server and any run worker still there
            processes.stop(daemon, grace_s=20.0)
        instance.dispose()
        services.stop()
        for extra in (pg_folder, home if launch.home_dir else None):
            if extra is not None:
                shutil.rmtree(extra, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _target(module: str):
    """The asset graph of the definitions and the sky job's selection (what a user selects in the UI)."""
    from astrid_pipeline.defs.sky.jobs import SKY_SELECTION

    graph = importlib.import_module(module).defs.resolve_asset_graph()
    return graph, sorted(SKY_SELECTION.resolve(graph), key=lambda k: k.to_user_string())


def _launch_backfill(instance, launch: Launch, graph, selection) -> tuple[str, float]:
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    backfill_id = make_new_backfill_id()
    t_launch = time.time()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=graph, partition_names=launch.keys, asset_selection=selection,
        backfill_timestamp=t_launch, tags={"astrid/benchmark": launch.name}, dynamic_partitions_store=instance,
        all_partitions=False, title=f"benchmark {launch.name}", description="benchmarks/backfill.py",
        run_config={"resources": {"archive": {"config": {"image_size": launch.image_size}}}})
    instance.add_backfill(backfill)
    return backfill_id, t_launch


def _wait_backfill(instance, backfill_id: str, launch: Launch, daemon, t_launch: float) -> tuple[float, str]:
    from dagster import DagsterRunStatus, RunsFilter

    last_note = time.time()
    while True:
        bf = instance.get_backfill(backfill_id)
        status = bf.status.value
        if status in TERMINAL:
            return (bf.backfill_end_timestamp or time.time()), status
        now = time.time()
        if now - t_launch > launch.timeout_s:
            raise RuntimeError(f"backfill {backfill_id} not complete after {launch.timeout_s:.0f} s (status {status})")
        if daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode} during the backfill")
        if now - last_note >= 30:
            runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
            done = sum(r.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE) for r in runs)
            going = sum(r.status == DagsterRunStatus.STARTED for r in runs)
            log(f"{launch.name}: {now - t_launch:.0f} s: {len(runs)} runs requested, {going} running, {done} done")
            last_note = now
        time.sleep(0.5)


# --------------------------------------------------------------------------- measurement
def measure(instance, backfill_id: str, launch: Launch, workers: int, t_launch: float, t_done: float,
            graph, selection) -> dict:
    from dagster import DagsterEventType as E, RunsFilter

    assets = [k.to_user_string() for k in selection]
    checks_of: dict[str, list[str]] = {}
    for key in graph.asset_check_keys:
        checks_of.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id}))
    science = 0.0
    mats: set[tuple[str, str]] = set()
    checks: set[tuple[str, str, str]] = set()
    failed_checks = 0
    per_run = []
    kinds = {E.RUN_ENQUEUED, E.RUN_DEQUEUED, E.RUN_STARTING, E.RUN_START, E.RUN_SUCCESS, E.RUN_FAILURE,
             E.STEP_START, E.STEP_SUCCESS, E.STEP_FAILURE, E.ASSET_MATERIALIZATION, E.ASSET_CHECK_EVALUATION}
    for run in runs:
        t: dict[str, float] = {}
        steps: dict[str, list[float]] = {}
        run_science = 0.0
        by_asset: dict[str, list[float]] = {}  # science_s of each region, in the order the run did them
        for entry in instance.all_logs(run.run_id, of_type=kinds):
            ev, ts = entry.dagster_event, entry.timestamp
            kind = ev.event_type
            if kind == E.ASSET_MATERIALIZATION:
                m = ev.event_specific_data.materialization
                mats.add((m.asset_key.to_user_string(), m.partition))
                if "science_s" in m.metadata:
                    run_science += float(m.metadata["science_s"].value)
                    by_asset.setdefault(m.asset_key.to_user_string(), []).append(float(m.metadata["science_s"].value))
            elif kind == E.ASSET_CHECK_EVALUATION:
                c = ev.event_specific_data
                checks.add((c.asset_key.to_user_string(), c.check_name, c.partition))
                failed_checks += not c.passed
            elif kind == E.STEP_START:
                steps.setdefault(ev.step_key, [ts, ts])[0] = ts
            elif kind in (E.STEP_SUCCESS, E.STEP_FAILURE):
                steps.setdefault(ev.step_key, [ts, ts])[1] = ts
            else:
                t.setdefault(kind.value, ts)
        science += run_science
        end = t.get(E.RUN_SUCCESS.value) or t.get(E.RUN_FAILURE.value) or t_done
        starting = t.get(E.RUN_STARTING.value) or t.get(E.RUN_START.value) or end
        first_step = min((s for s, _ in steps.values()), default=end)
        per_run.append({"enqueued": t.get(E.RUN_ENQUEUED.value, starting), "starting": starting,
                        "first_step": first_step, "end": end, "steps_s": sum(b - a for a, b in steps.values()),
                        "science_s": run_science, "success": E.RUN_SUCCESS.value in t,
                        "first_use_s": _first_use(by_asset)})
    expected = [(a, k) for a in assets for k in launch.keys]
    complete = sum((a, k) in mats and all((a, c, k) in checks for c in checks_of.get(a, ())) for a, k in expected)
    wall = t_done - t_launch
    return {"regions": len(launch.keys), "runs": len(runs), "wall_s": round(wall, 2),
            "overhead_share": round(1.0 - science / (wall * workers), 4) if wall > 0 else None,
            "pairs_expected": len(expected), "pairs_complete": int(complete), "workers": workers,
            "science_s": round(science, 2), "floor_wall_s": round(science / workers, 2),
            "failed_checks": failed_checks, "runs_failed": sum(not r["success"] for r in per_run),
            "breakdown": breakdown(per_run, workers, t_launch, t_done, science)}


def _first_use(by_asset: dict[str, list[float]]) -> float | None:
    """Seconds of the run's first region beyond the median of its other regions, summed over the steps: the
    first use of torch, matplotlib, h5py, the model weights... inside ``science_s``; None with one region."""
    import statistics

    if not by_asset or min(len(v) for v in by_asset.values()) < 2:
        return None
    return sum(max(0.0, v[0] - statistics.median(v[1:])) for v in by_asset.values())


def breakdown(per_run: list[dict], workers: int, t_launch: float, t_done: float, science: float) -> dict:
    """Where ``workers * wall - science`` went, in worker-seconds (the parts add up to the total)."""
    if not per_run:
        return {}
    wall = t_done - t_launch
    busy = sum(r["end"] - r["starting"] for r in per_run)
    pickup = workers * max(0.0, min(r["enqueued"] for r in per_run) - t_launch)
    completion = workers * max(0.0, t_done - max(r["end"] for r in per_run))
    parts = {
        "backfill_daemon_pickup": pickup,
        "queue_and_idle_slots": workers * wall - busy - pickup - completion,
        "run_startup": sum(r["first_step"] - r["starting"] for r in per_run),
        "run_bookkeeping": sum(r["end"] - r["first_step"] - r["steps_s"] for r in per_run),
        "step_overhead": sum(r["steps_s"] - r["science_s"] for r in per_run),
        "backfill_daemon_completion": completion,
    }
    total = workers * wall - science
    out = {k: {"worker_s": round(v, 1), "share_of_wall_x_workers": round(v / (workers * wall), 4)}
           for k, v in parts.items()}
    out["total_overhead_worker_s"] = round(total, 1)
    out["per_run_startup_s"] = round(parts["run_startup"] / len(per_run), 2)
    first = [r["first_use_s"] for r in per_run if r["first_use_s"] is not None]
    out["first_use_in_science_s_per_run"] = round(sum(first) / len(first), 2) if first else None
    return out


def import_costs(module: str) -> dict:
    """Seconds a fresh process takes to import the definitions, and torch (paid once per run process)."""
    out = {}
    for name, code in (("definitions_import_s", f"import {module}"), ("torch_import_s", "import torch")):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code], cwd=str(PROJECT), env={**os.environ, **THREAD_ENV},
                           capture_output=True, timeout=300)
        out[name] = round(time.perf_counter() - t0, 2) if r.returncode == 0 else None
    return out


# --------------------------------------------------------------------------- main
def _interrupted(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=100, help="regions of our backfill (at least 1)")
    ap.add_argument("--image-size", type=int, default=1024, help="side of the simulated images (pixels)")
    ap.add_argument("--peer-regions", type=int, default=10, help="regions of the one-run-per-region launch (0: skip)")
    ap.add_argument("--launch-phase", type=float, default=0.5,
                    help="launch this far into the backfill daemon's 30 s loop (0: just after an iteration, the "
                         "longest wait; 0.5: the expected wait of a launch at a random moment)")
    ap.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite",
                    help="run and event storage: sqlite (ensure_home's default) or a PostgreSQL server started "
                         "for the launch (the deployment setting; needs scripts/setup_services.sh)")
    ap.add_argument("--home-dir", default="",
                    help="put the temporary DAGSTER_HOME here (e.g. /dev/shm to take the disk's fsync latency out "
                         "of the event log); default: beside the data")
    ap.add_argument("--timeout", type=float, default=4 * 3600.0, help="give up on a backfill after this many seconds")
    ap.add_argument("--workdir", default="", help="folder for the instances and data (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the folder afterwards")
    args = ap.parse_args(argv)
    if args.regions < 1 or args.image_size < 64 or args.peer_regions < 0 or not 0 <= args.launch_phase <= 1:
        ap.error("need --regions >= 1, --image-size >= 64, --peer-regions >= 0 and 0 <= --launch-phase <= 1")
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    if args.storage == "postgres" and processes.missing_services():
        ap.error(f"--storage postgres needs {', '.join(processes.missing_services())}: bash scripts/setup_services.sh")

    from astrid_pipeline.defs.sky.distributed import DEFINITIONS_MODULE
    from astrid_pipeline.regions import adhoc_key

    positions = region_positions(args.regions)
    keys = [adhoc_key(ra, dec) for ra, dec in positions]
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="astrid-backfill-"))
    home_dir = Path(args.home_dir) if args.home_dir else None
    work.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _interrupted)  # so `kill` also cleans up
    try:
        costs = import_costs(DEFINITIONS_MODULE)
        peer = None
        n_peer = min(args.peer_regions, args.regions)
        if n_peer:
            peer = run_launch(Launch("peer", keys[:n_peer], positions[:n_peer], 1, args.image_size, work,
                                     args.timeout, args.launch_phase, args.storage, home_dir), DEFINITIONS_MODULE)
        ours = run_launch(Launch("ours", keys, positions, None, args.image_size, work, args.timeout,
                                 args.launch_phase, args.storage, home_dir), DEFINITIONS_MODULE)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")

    report(ours, peer, costs, args)
    core = {k: ours[k] for k in ("regions", "runs", "wall_s", "overhead_share", "pairs_expected", "pairs_complete")}
    extra = {"workers": ours["workers"], "image_size": args.image_size, "storage": args.storage,
             "dagster_home_on": str(home_dir or work),
             "science_s": ours["science_s"],
             "floor_wall_s": ours["floor_wall_s"], "runs_failed": ours["runs_failed"], "other_runs": ours["other_runs"],
             **costs}
    first_use = ours["breakdown"].get("first_use_in_science_s_per_run")
    if first_use is not None:  # the same figure with the first use of the libraries counted as overhead
        extra["first_use_in_science_s_per_run"] = first_use
        extra["overhead_share_first_use_as_overhead"] = _share_without_first_use(ours, first_use)
    if peer:
        extra["peer"] = {k: peer[k] for k in ("regions", "runs", "wall_s", "overhead_share", "pairs_expected",
                                              "pairs_complete")}
        if first_use is not None:
            extra["peer"]["overhead_share_first_use_as_overhead"] = _share_without_first_use(peer, first_use)
        extra["wall_per_region_peer_over_ours"] = round((peer["wall_s"] / peer["regions"])
                                                        / (ours["wall_s"] / ours["regions"]), 2)
        extra["science_per_region_s"] = round(ours["science_s"] / ours["regions"], 2)
    print(json.dumps({**core, **extra}))
    ok = ours["pairs_complete"] == ours["pairs_expected"] and ours["status"] == "COMPLETED_SUCCESS"
    return 0 if ok else 1


def _share_without_first_use(r: dict, first_use_per_run: float) -> float:
    science = max(0.0, r["science_s"] - first_use_per_run * r["runs"])
    return round(1.0 - science / (r["wall_s"] * r["workers"]), 4)


def report(ours: dict, peer: dict | None, costs: dict, args) -> None:
    def line(name, r):
        per = r["wall_s"] / r["regions"]
        print(f"{name:>5}: {r['regions']:4d} regions in {r['runs']:3d} runs, wall {r['wall_s']:8.1f} s "
              f"({per:5.2f} s/region), science {r['science_s']:8.1f} s over {r['workers']} workers "
              f"(floor {r['floor_wall_s']:.1f} s), overhead_share {r['overhead_share']:.3f}, "
              f"pairs {r['pairs_complete']}/{r['pairs_expected']}, {r['failed_checks']} failed checks, "
              f"{r['runs_failed']} failed runs, {r['other_runs']} runs from sensors/schedules")

    print(f"asset backfill through dagster-daemon, simulated regions at {args.image_size}², {args.storage} "
          f"storage; a fresh process "
          f"imports the definitions in {costs.get('definitions_import_s')} s and torch in {costs.get('torch_import_s')} s")
    if peer:
        line("peer", peer)
    line("ours", ours)
    if peer:
        ratio = (peer["wall_s"] / peer["regions"]) / (ours["wall_s"] / ours["regions"])
        print(f"wall per region: one run per region / batched = {ratio:.2f}x; overhead share "
              f"{peer['overhead_share']:.3f} -> {ours['overhead_share']:.3f}")
    for name, r in (("peer", peer), ("ours", ours)):
        if not r:
            continue
        b = r["breakdown"]
        parts = ", ".join(f"{k} {v['worker_s']:.0f} ws ({100 * v['share_of_wall_x_workers']:.1f}%)"
                          for k, v in b.items() if isinstance(v, dict))
        first = b.get("first_use_in_science_s_per_run")
        print(f"{name} overhead {b['total_overhead_worker_s']:.0f} worker-s: {parts}; "
              f"{b['per_run_startup_s']:.1f} s start-up per run"
              + (f"; science_s holds {first:.1f} s per run of first use (imports, model load)" if first else ""))
    if ours["runs"] and math.ceil(ours["regions"] / max(1, ours["runs"])) < 2:
        print("note: fewer than 2 regions per run: is the backfill policy in force?")


if __name__ == "__main__":
    sys.exit(main())
