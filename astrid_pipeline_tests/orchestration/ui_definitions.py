"""Definitions served by the browser test: the project's assets, jobs, sensor and schedule, with
256-pixel simulated images and the in-process executor so a run from the UI takes seconds."""

from dagster import Definitions, in_process_executor

import astrid_pipeline.definitions as project_module
from astrid_pipeline.orchestration import ORCHESTRATION_JOBS, ORCHESTRATION_SCHEDULES, ORCHESTRATION_SENSORS
from astrid_pipeline.resources.archives import SkyArchiveResource

defs = Definitions(
    assets=project_module.defs.assets,
    asset_checks=project_module.defs.asset_checks,
    jobs=[*project_module.defs.jobs, *ORCHESTRATION_JOBS],
    sensors=ORCHESTRATION_SENSORS,
    schedules=ORCHESTRATION_SCHEDULES,
    resources={**project_module.defs.resources, "archive": SkyArchiveResource(image_size=256)},
    executor=in_process_executor,
)
