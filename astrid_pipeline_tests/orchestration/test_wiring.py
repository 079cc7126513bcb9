"""The orchestration pieces resolve inside one Definitions, and importing them stays light."""

import subprocess
import sys

from dagster import Definitions

import astrid_pipeline.definitions as project
from astrid_pipeline.orchestration import ORCHESTRATION_JOBS, ORCHESTRATION_SCHEDULES, ORCHESTRATION_SENSORS


def test_orchestration_resolves_with_the_project_definitions():
    defs = Definitions(assets=project.defs.assets, asset_checks=project.defs.asset_checks,
                       jobs=[*project.defs.jobs, *ORCHESTRATION_JOBS], sensors=ORCHESTRATION_SENSORS,
                       schedules=ORCHESTRATION_SCHEDULES, resources=project.defs.resources)
    job = defs.resolve_job_def("sky_batch_job")
    assert {n.name for n in job.nodes} == {"plan_sky_batch", "process_sky_chunk", "summarize_sky_batch"}
    assert defs.resolve_sensor_def("region_catalog_sensor").job_name == "sky_batch_job"
    sched = defs.resolve_schedule_def("nightly_sky_schedule")
    assert sched.cron_schedule == "0 2 * * *" and sched.job_name == "sky_batch_job"


def test_importing_orchestration_does_not_import_dask_or_heavy_science():
    code = ("import sys, astrid_pipeline.orchestration, astrid_pipeline.sky_batch; "
            "print(sorted(m for m in ('dask', 'distributed', 'dagster_dask', 'torch', 'reproject', 'sep') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
