"""Survey bookkeeping as plain Python (no Dagster): which regions need processing, and in what batches.

A region's *products* are its candidate catalog and its triplet dataset; its
*inputs* are the raw science/reference images under the data root and, for a
local archive, the files the archive serves. A region is stale when a
product is missing or older than the newest input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from astrid_pipeline.layout import DataLayout


def product_paths(layout: DataLayout, region: str) -> list[Path]:
    return [layout.catalog("candidates", {"region": region}), layout.triplets(region)]


def input_paths(layout: DataLayout, region: str, local_root: str | os.PathLike | None = None) -> list[Path]:
    paths = [layout.raw_image(region, "science"), layout.raw_image(region, "reference")]
    if local_root:
        paths += [Path(local_root) / region / "science.fits", Path(local_root) / region / "reference.fits"]
    return paths


@dataclass(frozen=True)
class RegionState:
    region: str
    status: str  # "missing", "stale" or "current"
    reason: str


def region_state(layout: DataLayout, region: str, local_root: str | os.PathLike | None = None) -> RegionState:
    products = product_paths(layout, region)
    absent = [p for p in products if not p.exists()]
    if absent:
        return RegionState(region, "missing", f"no {absent[0].relative_to(layout.root)}")
    oldest_product = min(p.stat().st_mtime for p in products)
    inputs = [p for p in input_paths(layout, region, local_root) if p.exists()]
    newer = [p for p in inputs if p.stat().st_mtime > oldest_product]
    if newer:
        return RegionState(region, "stale", f"{newer[0]} is newer than the products")
    return RegionState(region, "current", "")


def regions_to_process(layout: DataLayout, regions: Iterable[str],
                       local_root: str | os.PathLike | None = None) -> list[RegionState]:
    """The regions (in the given order) whose products are missing or older than their inputs."""
    return [s for s in (region_state(layout, r, local_root) for r in regions) if s.status != "current"]


def batches(keys: Sequence[str], size: int) -> list[list[str]]:
    """Consecutive batches of at most ``size`` keys."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [list(keys[i:i + size]) for i in range(0, len(keys), size)]
