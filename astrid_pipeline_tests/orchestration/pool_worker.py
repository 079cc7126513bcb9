"""One process of the pool test: materializes ``observation_inventory`` for one region on the shared instance.

``python -m astrid_pipeline_tests.orchestration.pool_worker REGION RUN_CONFIG_JSON READY_FILE GO_FILE``

Loads the definitions, touches ``READY_FILE``, waits for ``GO_FILE`` (so that several processes start
their runs together), then runs the asset job's ``observation_inventory`` for partition ``REGION`` on
``DagsterInstance.get()`` (``$DAGSTER_HOME``, shared by the processes) with the in-process executor, the
one the default Definitions use. Exits 0 when the run succeeded.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    region, run_config, ready, go = argv
    from dagster import AssetKey, DagsterInstance

    from astrid_pipeline.defs.sky.distributed import DEFINITIONS_MODULE

    defs = importlib.import_module(DEFINITIONS_MODULE).defs
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("observation_inventory")})
    Path(ready).touch()
    give_up = time.monotonic() + 120
    while not Path(go).exists():
        if time.monotonic() > give_up:
            return 2
        time.sleep(0.01)
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, partition_key=region, run_config=json.loads(run_config),
                                        raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
