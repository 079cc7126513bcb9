"""Survey automation, ready to add to the one Definitions object.

    from astrid_pipeline.orchestration import ORCHESTRATION_JOBS, ORCHESTRATION_SCHEDULES, ORCHESTRATION_SENSORS
    defs = Definitions(..., jobs=[..., *ORCHESTRATION_JOBS], schedules=ORCHESTRATION_SCHEDULES,
                       sensors=ORCHESTRATION_SENSORS)
"""

from astrid_pipeline.schedules import nightly_sky_schedule
from astrid_pipeline.sensors import region_catalog_sensor
from astrid_pipeline.sky_batch import sky_batch_job

ORCHESTRATION_JOBS = [sky_batch_job]
ORCHESTRATION_SENSORS = [region_catalog_sensor]
ORCHESTRATION_SCHEDULES = [nightly_sky_schedule]
