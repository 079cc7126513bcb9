"""Partition definitions shared by assets, jobs, schedules and sensors."""

from dagster import DynamicPartitionsDefinition

#: Sky regions: dynamic, so adding a region to the catalog needs no code change.
SKY_REGIONS = "sky_regions"
sky_region_partitions = DynamicPartitionsDefinition(name=SKY_REGIONS)
