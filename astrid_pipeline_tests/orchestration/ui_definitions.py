"""Definitions served by the browser test: the project's own, with 256-pixel simulated images so a run from
the UI takes seconds."""

from dagster import Definitions

import astrid_pipeline.definitions as _project
from astrid_pipeline.defs.resources import SkyArchiveResource


def _with_small_images() -> Definitions:
    p = _project.defs
    return Definitions(assets=p.assets, asset_checks=p.asset_checks, jobs=p.jobs, sensors=p.sensors,
                       schedules=p.schedules, executor=p.executor,
                       resources={**p.resources, "archive": SkyArchiveResource(image_size=256)})


defs = _with_small_images()
