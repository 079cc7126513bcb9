"""The region-catalog sensor and the nightly schedule request batched runs of the sky assets, as a backfill
would; a malformed catalog changes nothing and is not parsed again until it changes; declarative automation
re-runs a region only when its code or inputs change."""

import datetime as dt

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG as END
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_START_TAG as START

from astrid_pipeline.defs.resources import RegionCatalogResource
from astrid_pipeline.defs.sky.automation import nightly_sky_schedule, region_catalog_sensor
from astrid_pipeline.defs.sky.partitions import SKY_BATCH_SIZE, SKY_REGIONS, contiguous_runs
from astrid_pipeline.layout import DataLayout
from astrid_pipeline_tests.dagster_helpers import run_sky

CATALOG = """regions:
  - {name: FIELD-A, ra: 210.774, dec: 54.2737}
  - {name: FIELD-B, ra: 150.1192, dec: 2.2058}
"""


def _tick(instance, catalog, cursor=None):
    ctx = build_sensor_context(instance=instance, cursor=cursor,
                               resources={"regions": RegionCatalogResource(path=str(catalog))})
    return region_catalog_sensor(ctx)


def _apply(instance, result: SensorResult):
    """What the sensor daemon does with a result: register the partitions it asks for."""
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


def _ranges(requests):
    return [(r.tags[START], r.tags[END]) for r in requests]


@pytest.fixture
def survey(tmp_path, monkeypatch):
    catalog = tmp_path / "regions.yaml"
    catalog.write_text(CATALOG)
    monkeypatch.setenv("ASTRID_DATA_ROOT", str(tmp_path / "data"))
    (tmp_path / "home").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "home"))  # schedule contexts need a persistent one
    yield {"instance": instance, "catalog": catalog, "layout": DataLayout(tmp_path / "data")}
    instance.dispose()


def test_contiguous_runs_cover_exactly_the_keys_in_batches():
    order = [f"r{i}" for i in range(10)]
    assert contiguous_runs(["r1", "r2", "r3", "r7"], order, 2) == [("r1", "r2"), ("r3", "r3"), ("r7", "r7")]
    assert contiguous_runs(order, order, 25) == [("r0", "r9")]
    assert contiguous_runs([], order, 25) == []


def test_sensor_registers_new_regions_and_requests_batched_runs(survey):
    instance, catalog, layout = survey["instance"], survey["catalog"], survey["layout"]

    # 1. first tick: both regions become partitions and one ranged run processes both
    res = _tick(instance, catalog)
    assert isinstance(res, SensorResult)
    assert [list(r.partition_keys) for r in res.dynamic_partitions_requests] == [["FIELD-A", "FIELD-B"]]
    assert _ranges(res.run_requests) == [("FIELD-A", "FIELD-B")]
    _apply(instance, res)
    cursor = res.cursor
    # the run it asked for, executed as the daemon would (small images to keep the test quick)
    run = run_sky(instance, ["FIELD-A", "FIELD-B"], catalog=catalog)
    assert run.success
    assert instance.get_materialized_partitions(AssetKey("cutout_triplets")) == {"FIELD-A", "FIELD-B"}

    # 2. unchanged catalog: skipped without parsing
    assert isinstance(_tick(instance, catalog, cursor), SkipReason)

    # 3. a malformed catalog: nothing registered, the reason named, and not parsed again until it changes
    catalog.write_text(CATALOG + "  - {name: ../escape, ra: 1, dec: 2}\n")
    bad = _tick(instance, catalog, cursor)
    assert isinstance(bad, SensorResult) and not bad.run_requests and not bad.dynamic_partitions_requests
    assert "'../escape' is not a safe name" in bad.skip_reason.skip_message
    again = _tick(instance, catalog, bad.cursor)
    assert isinstance(again, SkipReason) and "still the malformed file" in again.skip_message
    catalog.write_text(CATALOG + "  - {name: FIELD-A, ra: 1, dec: 2}\n")
    assert "duplicate region name 'FIELD-A'" in _tick(instance, catalog, bad.cursor).skip_reason.skip_message
    assert set(instance.get_dynamic_partitions(SKY_REGIONS)) == {"FIELD-A", "FIELD-B"}

    # 4. add a HEALPix tile, drop FIELD-A: only the tile is new; FIELD-A keeps its partition and products
    catalog.write_text("regions:\n  - {name: FIELD-B, ra: 150.1192, dec: 2.2058}\n"
                       "  - {healpix_order: 9, healpix_index: 1000}\n")
    res = _tick(instance, catalog, cursor)
    assert [list(r.partition_keys) for r in res.dynamic_partitions_requests] == [["hpx9_1000"]]
    assert _ranges(res.run_requests) == [("hpx9_1000", "hpx9_1000")]
    _apply(instance, res)
    assert layout.catalog("candidates", {"region": "FIELD-A"}).exists()


def test_nightly_schedule_requests_regions_without_a_catalog_in_batches(survey):
    instance = survey["instance"]
    keys = ["FIELD-A", "FIELD-B", *[f"ra{i:.4f}_dec+10.0000" for i in range(1, 31)]]
    instance.add_dynamic_partitions(SKY_REGIONS, keys)
    assert run_sky(instance, ["FIELD-A"], catalog=survey["catalog"]).success
    ctx = build_schedule_context(instance=instance, scheduled_execution_time=dt.datetime(2026, 11, 21, 2, 0))
    requests = list(nightly_sky_schedule(ctx))
    # FIELD-A has its catalog; the other 31 come in ranges of at most SKY_BATCH_SIZE
    assert _ranges(requests) == contiguous_runs(keys[1:], keys, SKY_BATCH_SIZE)
    assert len({r.run_key for r in requests}) == len(requests)


def test_schedule_skips_when_every_region_has_a_catalog(survey):
    ctx = build_schedule_context(instance=survey["instance"], scheduled_execution_time=dt.datetime(2026, 11, 21, 2))
    assert isinstance(nightly_sky_schedule(ctx), SkipReason)
