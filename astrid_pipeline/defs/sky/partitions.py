"""Sky-region partitions and the batch size of sky runs."""

import os

from dagster import BackfillPolicy, DynamicPartitionsDefinition

#: Sky regions: dynamic, so adding a region to the catalog needs no code change.
SKY_REGIONS = "sky_regions"
sky_region_partitions = DynamicPartitionsDefinition(name=SKY_REGIONS)

#: regions per run for backfills, the catalog sensor, the nightly schedule and ``astrid run``
#: (``$ASTRID_SKY_BATCH_SIZE``, read when the definitions load; 25 by default)
SKY_BATCH_SIZE = max(1, int(os.environ.get("ASTRID_SKY_BATCH_SIZE", "25") or 25))
sky_backfill_policy = BackfillPolicy.multi_run(max_partitions_per_run=SKY_BATCH_SIZE)


def contiguous_runs(keys, ordered_partitions, size: int = SKY_BATCH_SIZE) -> list[tuple[str, str]]:
    """(first, last) partition ranges of at most ``size`` keys covering exactly ``keys``.

    A Dagster run covers a contiguous range of the dynamic partitions (in the order they were added),
    so keys that are not neighbours there go into separate runs — the same grouping as an asset backfill
    with :data:`sky_backfill_policy`.
    """
    wanted = set(keys)
    runs, current = [], []
    for k in ordered_partitions:
        if k in wanted:
            current.append(k)
            if len(current) == size:
                runs.append((current[0], current[-1]))
                current = []
        elif current:
            runs.append((current[0], current[-1]))
            current = []
    if current:
        runs.append((current[0], current[-1]))
    return runs
