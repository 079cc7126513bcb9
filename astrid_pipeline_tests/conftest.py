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


def sim_archive_pair(sim):
    """A simulated pair as an archive would hand it over."""
    from astrid_pipeline.archives.base import ArchivePair

    return ArchivePair(sim.science, sim.reference, "sim:science", "sim:reference", sim.truth, sim.cosmic_rays,
                       {"archive": "simulated"})


def run_sky_steps(layout, region, until="triplets"):
    """The sky steps after acquisition and the CR mask, in the step table's order, up to ``until``."""
    from astrid_pipeline.regions import Region
    from astrid_pipeline.sky.runner import StepFailedError, run_region
    from astrid_pipeline.sky.settings import SkySettings
    from astrid_pipeline.sky.table import SKY_STEPS

    names = [s.name for s in SKY_STEPS]
    steps = SKY_STEPS[names.index("align"): names.index(until) + 1]
    for ev in run_region(layout, Region(region, float("nan"), float("nan")), SkySettings(), steps):
        if ev.kind == "failed":
            raise StepFailedError(f"{ev.step.name}: {ev.message}") from ev.error


def assert_decam_result(layout, region="decam"):
    """The real DECam pair: the brightening at (129, 128) clean and > 7 sigma; the bright star not clean."""
    import numpy as np

    from astrid_pipeline.io.parquet_io import read_partitioned

    c = read_partitioned(layout.root, "candidates", {"region": region})
    near = c[np.hypot(c["x"] - 129, c["y"] - 128) < 3]
    assert len(near) == 1 and near["snr"].iloc[0] > 7 and near["clean"].iloc[0]
    star = c[np.hypot(c["x"] - 60, c["y"] - 181) < 10]
    assert not star["clean"].any()  # the PSF-change residual is an artifact, not a clean transient


@pytest.fixture(scope="session")
def processed_region(tmp_path_factory, small_pair):
    """The whole sky branch run by its steps (no Dagster) on the small pair; returns (layout, region)."""
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky import steps as sky

    layout = DataLayout(tmp_path_factory.mktemp("data"))
    region = "M101"
    sky.acquire(layout, region, sim_archive_pair(small_pair))
    run_sky_steps(layout, region)
    return layout, region


def copy_pair(dst_root: Path, region: str, science: Path, reference: Path) -> Path:
    """Lay out two files as a local-folder archive: <root>/<region>/{science,reference}.fits."""
    folder = dst_root / region
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(science, folder / "science.fits")
    shutil.copy(reference, folder / "reference.fits")
    return dst_root
