"""Shared fixtures: real data beside the project, small simulated pairs, temporary data roots."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ASTRID_FFT_WORKERS", "2")

PROJECT = Path(__file__).resolve().parents[1]
REALDATA = PROJECT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} is absent (it lives beside the project as ../shared/realdata)")
    return REALDATA


@pytest.fixture(scope="session")
def small_pair():
    """A 512x512 simulated M101 pair (deterministic), shared by the tests that only read it."""
    from astrid_pipeline.science.skysim import SurveyConfig, simulate_pair

    return simulate_pair(210.774, 54.2737, "M101", SurveyConfig(shape=(512, 512)))


@pytest.fixture(scope="session")
def processed_region(tmp_path_factory, small_pair):
    """The whole sky branch run by its steps (no Dagster) on the small pair; returns (layout, region)."""
    from astrid_pipeline.archives.base import ArchivePair
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.steps import sky

    layout = DataLayout(tmp_path_factory.mktemp("data"))
    region = "M101"
    pair = ArchivePair(small_pair.science, small_pair.reference, "sim:science", "sim:reference",
                       small_pair.truth, small_pair.cosmic_rays, {"archive": "simulated"})
    sky.acquire(layout, region, pair)
    sky.align(layout, region)
    sky.measure_psfs(layout, region)
    sky.normalize(layout, region)
    sky.zogy(layout, region)
    sky.classic(layout, region)
    sky.candidates(layout, region)
    sky.triplets(layout, region)
    return layout, region


def copy_pair(dst_root: Path, region: str, science: Path, reference: Path) -> Path:
    """Lay out two files as a local-folder archive: <root>/<region>/{science,reference}.fits."""
    folder = dst_root / region
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(science, folder / "science.fits")
    shutil.copy(reference, folder / "reference.fits")
    return dst_root
