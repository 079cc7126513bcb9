"""The one Definitions object of the AstrID pipeline (``dagster dev`` loads this module)."""

from dagster import Definitions

from astrid_pipeline.assets.cosmic_rays import cosmic_ray_assets
from astrid_pipeline.assets.detector import detector_assets, detector_job
from astrid_pipeline.assets.inventory import inventory_assets
from astrid_pipeline.assets.mmcosmic import mmcosmic_assets, mmcosmic_job
from astrid_pipeline.assets.sky import sky_assets
from astrid_pipeline.assets.training import cr_evaluation_job, cr_training_job, cr_training_set_job, training_assets
from astrid_pipeline.jobs import sky_branch_job
from astrid_pipeline.orchestration import ORCHESTRATION_JOBS, ORCHESTRATION_SCHEDULES, ORCHESTRATION_SENSORS
from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource

defs = Definitions(
    assets=[*sky_assets, *cosmic_ray_assets, *inventory_assets, *detector_assets, *mmcosmic_assets, *training_assets],
    jobs=[sky_branch_job, detector_job, mmcosmic_job, cr_training_set_job, cr_training_job, cr_evaluation_job,
          *ORCHESTRATION_JOBS],
    sensors=ORCHESTRATION_SENSORS,
    schedules=ORCHESTRATION_SCHEDULES,
    resources={
        "storage": StorageResource(),
        "archive": SkyArchiveResource(),
        "regions": RegionCatalogResource(),
    },
)
