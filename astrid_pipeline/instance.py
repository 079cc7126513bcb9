"""The Dagster instance of a local deployment: ``dagster.yaml``, pool limits, and runs whose worker died.

``astrid run``, ``dg dev`` (through ``$DAGSTER_HOME``), the tests and the benchmarks share this:

- :func:`ensure_home` writes ``<DAGSTER_HOME>/dagster.yaml`` once (telemetry off, run monitoring on, a
  run queue of ``max_concurrent_runs`` runs, pools at op granularity, the SQLite event log with kept-open
  connections of :mod:`astrid_pipeline.instance_storage`) and sets the pool limits;
- :func:`set_pool_limits` gives each pool its limit (``sky_archives``: concurrent archive steps);
- :func:`fail_dead_runs` marks as failed the runs left STARTED by a worker that was killed (``kill -9``,
  a reboot): each step tags its run with its host and pid (:func:`tag_worker`), so a run whose worker is
  gone on this host is not left looking alive. The daemon's run monitoring covers start and run timeouts;
  the default run launcher cannot check worker health itself, hence this.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: default pool limits; a deployment sets its own with `dagster instance concurrency set POOL N`
POOL_LIMITS = {"sky_archives": 2}
MAX_CONCURRENT_RUNS = 2

DAGSTER_YAML = """\
# written by astrid-pipeline (astrid_pipeline/instance.py); edit freely, it is not overwritten
telemetry:
  enabled: false
python_logs:
  managed_python_loggers: [astrid_pipeline]
  python_log_level: INFO
run_monitoring:
  enabled: true
  start_timeout_seconds: 300
  cancel_timeout_seconds: 180
  max_runtime_seconds: {max_runtime}
  poll_interval_seconds: 60
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: {max_runs}
  pools:
    granularity: op
    default_limit: {default_pool}
"""

#: the event log of a SQLite instance: Dagster's files and schema, with kept-open connections
#: (astrid_pipeline/instance_storage.py); a PostgreSQL deployment replaces it with ``storage: postgres``
SQLITE_EVENT_LOG_YAML = """\
event_log_storage:
  module: astrid_pipeline.instance_storage
  class: PooledSqliteEventLogStorage
  config:
    base_dir: {event_dir}
"""


def ensure_home(home: str | os.PathLike | None = None, *, max_concurrent_runs: int = MAX_CONCURRENT_RUNS,
                pools: dict | None = None, max_runtime_s: int = 24 * 3600, sqlite_event_log: bool = True):
    """Create ``DAGSTER_HOME`` (default: ``$DAGSTER_HOME``, else ``<data root>/.dagster``) and return the instance.

    ``sqlite_event_log=False`` leaves the event log out of the new ``dagster.yaml`` (for a caller that
    adds ``storage: postgres``)."""
    from dagster import DagsterInstance

    from astrid_pipeline.layout import default_data_root

    home = Path(home or os.environ.get("DAGSTER_HOME") or default_data_root() / ".dagster").expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        from astrid_pipeline.io.atomic import atomic_write_text

        limits = {**POOL_LIMITS, **(pools or {})}
        text = DAGSTER_YAML.format(max_runs=int(max_concurrent_runs), max_runtime=int(max_runtime_s),
                                   default_pool=max(limits.values()))
        if sqlite_event_log:
            text += SQLITE_EVENT_LOG_YAML.format(event_dir=home / "history" / "runs")
        atomic_write_text(cfg, text)
    instance = DagsterInstance.get()
    set_pool_limits(instance, pools)
    return instance


def set_pool_limits(instance, pools: dict | None = None) -> dict:
    """Give each pool its limit on ``instance`` (the defaults of :data:`POOL_LIMITS`, overridden by ``pools``)."""
    limits = {**POOL_LIMITS, **(pools or {})}
    for pool, n in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, int(n))
    return limits


def tag_worker(context) -> None:
    """Tag the current run with this worker's host and pid (so :func:`fail_dead_runs` can tell it died)."""
    try:
        context.instance.add_run_tags(context.run.run_id, {"astrid/host": socket.gethostname(),
                                                       "astrid/pid": str(os.getpid())})
    except Exception:  # tagging is bookkeeping; never fail a step for it
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_runs(instance) -> list[str]:
    """Mark STARTED runs whose worker (on this host) no longer exists as failed; returns their run ids."""
    from dagster import DagsterRunStatus, RunsFilter

    host = socket.gethostname()
    failed = []
    for run in instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        tags = run.tags
        if tags.get("astrid/host") != host or not tags.get("astrid/pid", "").isdigit():
            continue
        pid = int(tags["astrid/pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        instance.report_run_failed(run, f"run worker (pid {pid} on {host}) is gone: marked failed by astrid-pipeline")
        failed.append(run.run_id)
    return failed
