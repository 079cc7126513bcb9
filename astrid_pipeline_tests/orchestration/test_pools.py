"""The ``sky_archives`` pool holds across processes: several processes sharing one SQLite DAGSTER_HOME never
run more ``observation_inventory`` steps at once than the pool allows, as seen by the archive itself.

The archive is the PS1 image service on loopback (real DECam pixels, asinh-scaled as PS1 serves them), each
answer held back a little so a step keeps a request in flight while it fetches; the server counts the
requests in flight at once. The rate limit is off (``policy.min_interval_s: 0``), so only the pool can
keep the processes apart.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import pytest

from astrid_pipeline_tests.archives.loopback import Loopback
from astrid_pipeline_tests.archives.services import install_ps1, ps1_body
from astrid_pipeline_tests.orchestration import processes

PROCESSES = 3
ANSWER_DELAY_S = 0.25


@pytest.fixture
def ps1_service(realdata):
    loop = Loopback()
    try:
        url = install_ps1(loop, ps1_body(realdata / "differencing" / "decam_reference_obs18a.fits",
                                         boffset=200.0, bsoften=35.0))
        for path, route in list(loop.routes.items()):  # every answer held back: requests overlap in time
            loop.routes[path] = lambda q, r=route: dataclasses.replace(r(q), delay_s=ANSWER_DELAY_S)
        yield loop, url
    finally:
        loop.close()


def _run_processes(tmp_path, keys, run_config) -> list[tuple[int, str]]:
    """Start one pool_worker per key (own process groups), release them together, wait; (returncode, output)."""
    go = tmp_path / "go"
    procs, ready = [], []
    try:
        for i, key in enumerate(keys):
            ready.append(tmp_path / f"ready-{i}")
            procs.append(processes.start([sys.executable, "-m", "astrid_pipeline_tests.orchestration.pool_worker", key,
                                          json.dumps(run_config), str(ready[-1]), str(go)],
                                         tmp_path / f"worker-{i}.log"))
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready):
            assert time.monotonic() < deadline, "the worker processes did not load the definitions in 120 s"
            assert all(p.poll() is None for p in procs), "a worker process died while loading"
            time.sleep(0.05)
        go.touch()
        for p in procs:
            p.wait(timeout=120)
    finally:
        for p in procs:  # also what a worker left behind
            processes.stop(p, grace_s=5.0)
    return [(p.returncode, (tmp_path / f"worker-{i}.log").read_text(errors="replace")[-2000:])
            for i, p in enumerate(procs)]


@pytest.mark.parametrize("limit", [1, 2])
def test_pool_limits_concurrent_archive_steps_across_processes(limit, ps1_service, tmp_path, monkeypatch):
    from dagster import AssetKey, DagsterEventType, DagsterInstance

    from astrid_pipeline.instance import ensure_home
    from astrid_pipeline.regions import adhoc_key

    loop, url = ps1_service
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ensure_home(home, pools={"sky_archives": limit}).dispose()
    keys = [adhoc_key(318.1 + 0.01 * i, -66.0) for i in range(PROCESSES)]
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("sky_regions", keys)
    run_config = {"resources": {
        "storage": {"config": {"root": str(tmp_path / "data")}},
        "archive": {"config": {"kind": "ps1", "ps1_url": url,
                               "policy": {"min_interval_s": 0.0, "max_retries": 0, "timeout_s": 30.0}}}}}

    outcomes = _run_processes(tmp_path, keys, run_config)
    assert [rc for rc, _ in outcomes] == [0] * PROCESSES, outcomes

    # every region's inventory went to the archive (nothing cached), never more at once than the pool allows
    cutouts = loop.count("/cgi-bin/fitscut.cgi")
    assert cutouts >= PROCESSES and loop.count("/cgi-bin/ps1filenames.py") >= PROCESSES
    assert loop.max_in_flight == limit  # <= by the pool; == because the processes did run together
    with DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(AssetKey("observation_inventory")) == set(keys)
        runs = instance.get_runs()
        assert len(runs) == PROCESSES
        blocked = [e for r in runs for e in instance.all_logs(r.run_id, of_type=DagsterEventType.ENGINE_EVENT)
                   if "blocked by limit for pool sky_archives" in (e.message or "")]
    # the processes that found the pool full waited for a slot (the pool, not luck, kept them apart)
    assert len(blocked) >= PROCESSES - limit
