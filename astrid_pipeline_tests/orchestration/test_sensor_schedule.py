"""A new catalog region becomes a partition and a run (sensor), and the nightly schedule picks up
missing and stale regions in batches; a malformed catalog changes nothing."""

import datetime as dt
import os

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.partitions import SKY_REGIONS
from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource
from astrid_pipeline.schedules import nightly_sky_schedule
from astrid_pipeline.sensors import BATCH_SIZE, region_catalog_sensor
from astrid_pipeline.sky_batch import PLAN_OP, sky_batch_job

CATALOG = """regions:
  - {name: FIELD-A, ra: 210.774, dec: 54.2737}
  - {name: FIELD-B, ra: 150.1192, dec: 2.2058}
"""


def _regions(run_request):
    return run_request.run_config["ops"][PLAN_OP]["config"]["regions"]


def _tick(instance, catalog, cursor=None):
    ctx = build_sensor_context(instance=instance, cursor=cursor,
                               resources={"regions": RegionCatalogResource(path=str(catalog))})
    return region_catalog_sensor(ctx)


def _apply(instance, result: SensorResult):
    """What the sensor daemon does with a result: register the partitions it asks for."""
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


@pytest.fixture
def survey(tmp_path):
    catalog = tmp_path / "regions.yaml"
    catalog.write_text(CATALOG)
    # schedule contexts need a persistent instance
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "home"))
    yield {"instance": instance, "catalog": catalog,
           "storage": StorageResource(root=str(tmp_path / "data")), "layout": DataLayout(tmp_path / "data")}
    instance.dispose()


def test_sensor_registers_new_regions_and_the_schedule_processes_stale_ones(survey):
    instance, catalog, layout = survey["instance"], survey["catalog"], survey["layout"]

    # 1. first tick: both regions become partitions and one run processes both
    res = _tick(instance, catalog)
    assert isinstance(res, SensorResult)
    assert [list(r.partition_keys) for r in res.dynamic_partitions_requests] == [["FIELD-A", "FIELD-B"]]
    assert len(res.run_requests) == 1 and _regions(res.run_requests[0]) == ["FIELD-A", "FIELD-B"]
    _apply(instance, res)
    cursor = res.cursor
    assert set(instance.get_dynamic_partitions(SKY_REGIONS)) == {"FIELD-A", "FIELD-B"}

    # the run it asked for, executed as the daemon would (small images to keep the test quick)
    run = sky_batch_job.execute_in_process(
        run_config=res.run_requests[0].run_config, instance=instance,
        resources={"storage": survey["storage"], "archive": SkyArchiveResource(image_size=256),
                   "regions": RegionCatalogResource(path=str(catalog))})
    assert run.success
    for key in ("FIELD-A", "FIELD-B"):
        assert layout.catalog("candidates", {"region": key}).exists() and layout.triplets(key).exists()
    assert instance.get_materialized_partitions(AssetKey("cutout_triplets")) == {"FIELD-A", "FIELD-B"}

    # 2. unchanged catalog: skipped
    assert isinstance(_tick(instance, catalog, cursor), SkipReason)

    # 3. a malformed catalog: a clear error, partitions untouched
    catalog.write_text(CATALOG + "  - {name: ../escape, ra: 1, dec: 2}\n")
    with pytest.raises(ConfigError, match=r"'\.\./escape' is not a safe name"):
        _tick(instance, catalog, cursor)
    catalog.write_text(CATALOG + "  - {name: FIELD-A, ra: 1, dec: 2}\n")
    with pytest.raises(ConfigError, match="duplicate region name 'FIELD-A'"):
        _tick(instance, catalog, cursor)
    catalog.write_text(CATALOG.replace("ra: 150.1192", "ra: 400"))
    with pytest.raises(ConfigError, match="RA 400.0 outside"):
        _tick(instance, catalog, cursor)
    assert set(instance.get_dynamic_partitions(SKY_REGIONS)) == {"FIELD-A", "FIELD-B"}

    # 4. add a HEALPix tile, drop FIELD-A: only the tile is new; FIELD-A keeps its partition and products
    catalog.write_text("regions:\n  - {name: FIELD-B, ra: 150.1192, dec: 2.2058}\n"
                       "  - {healpix_order: 9, healpix_index: 1000}\n")
    res = _tick(instance, catalog, cursor)
    assert [list(r.partition_keys) for r in res.dynamic_partitions_requests] == [["hpx9_1000"]]
    assert [_regions(r) for r in res.run_requests] == [["hpx9_1000"]]
    assert res.cursor != cursor
    _apply(instance, res)
    assert set(instance.get_dynamic_partitions(SKY_REGIONS)) == {"FIELD-A", "FIELD-B", "hpx9_1000"}
    assert layout.catalog("candidates", {"region": "FIELD-A"}).exists()

    # 5. nightly schedule: the new tile (missing), FIELD-B once its input is newer than its products
    #    (stale); FIELD-A is current. Many missing regions come in batches of BATCH_SIZE per run.
    science_b = layout.raw_image("FIELD-B", "science")
    later = layout.triplets("FIELD-B").stat().st_mtime + 60
    os.utime(science_b, (later, later))
    extra = [f"ra{i:.4f}_dec+10.0000" for i in range(1, 31)]
    instance.add_dynamic_partitions(SKY_REGIONS, extra)
    ctx = build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2026, 11, 21, 2, 0),
                                 resources={"storage": survey["storage"], "archive": SkyArchiveResource()})
    requests = list(nightly_sky_schedule(ctx))
    wanted = sorted(["FIELD-B", "hpx9_1000", *extra])
    assert sorted(k for r in requests for k in _regions(r)) == wanted
    assert [len(_regions(r)) for r in requests] == [BATCH_SIZE, len(wanted) - BATCH_SIZE]
    assert len({r.run_key for r in requests}) == len(requests)


def test_schedule_skips_when_everything_is_current(survey):
    ctx = build_schedule_context(instance=survey["instance"], scheduled_execution_time=dt.datetime(2026, 11, 21, 2),
                                 resources={"storage": survey["storage"], "archive": SkyArchiveResource()})
    assert isinstance(nightly_sky_schedule(ctx), SkipReason)
