"""``astrid run --catalog CAT --branches sky --regions NAME`` on a local folder: the real DECam pair end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.regions import load_region_catalog

PROJECT = Path(__file__).resolve().parents[2]


def _astrid(args, data_root: Path, cwd: Path):
    env = {**os.environ, "ASTRID_DATA_ROOT": str(data_root), "DAGSTER_HOME": str(data_root.parent / "dagster_home"),
           "DAGSTER_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT)}
    env.pop("ASTRID_REGION_CATALOG", None)
    return subprocess.run([sys.executable, "-m", "astrid_pipeline.cli", "run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _assert_products(data_root: Path, region: str):
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline_tests.conftest import assert_decam_result

    layout = DataLayout(data_root)
    cat = data_root / "catalogs" / "candidates" / f"region={region}" / "part-0.parquet"
    assert cat.exists(), sorted(str(p.relative_to(data_root)) for p in data_root.rglob("*.parquet"))
    assert_decam_result(layout, region)  # the real brightening at (129, 128), clean; the bright star not clean
    with fits.open(layout.difference(region, "zogy")) as h:
        assert "SCORR" in h and np.isfinite(h["SCORR"].data).any()


@pytest.fixture(scope="module")
def decam_catalog(tmp_path_factory, realdata):
    """A catalog beside a folder holding the DECam pair; local_root relative to the catalog file."""
    top = tmp_path_factory.mktemp("survey")
    folder = top / "fits" / "decam"
    folder.mkdir(parents=True)
    d = realdata / "differencing"
    shutil.copy(d / "decam_science_obs04a.fits", folder / "science.fits")
    shutil.copy(d / "decam_reference_obs18a.fits", folder / "reference.fits")
    cat = top / "catalogs" / "regions.yaml"
    cat.parent.mkdir()
    cat.write_text("regions:\n"
                   "  - {name: decam, ra: 318.108, dec: -66.016, science_archive: local, reference_archive: local,\n"
                   "     local_root: ../fits}\n")
    return top, cat


def test_catalog_local_root_is_relative_to_the_catalog_file(decam_catalog):
    top, cat = decam_catalog
    region = load_region_catalog(cat)["decam"]
    assert region.options["local_root"] == str((top / "fits").resolve())


def test_astrid_run_on_a_local_folder_finds_the_real_transient(decam_catalog, tmp_path):
    top, cat = decam_catalog
    data_root = tmp_path / "data"
    # run from somewhere else: the catalog's relative local_root must not depend on the working directory
    r = _astrid(["--catalog", str(cat), "--branches", "sky", "--regions", "decam"], data_root, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "sky: sky_branch_job regions decam" in r.stdout and "ok in" in r.stdout and "FAILED" not in r.stdout
    _assert_products(data_root, "decam")
    with fits.open(data_root / "sky" / "crmask" / "decam.fits") as h:  # a single exposure: masking ran
        assert h[0].header["CRSKIP"] is False and h[0].header["CRMDSHA"] != "none"


def test_local_root_flag_sets_the_folder_for_every_region(decam_catalog, tmp_path):
    top, _ = decam_catalog
    cat = tmp_path / "plain.yaml"  # no archive keys at all: --local-root makes the folder the archive
    cat.write_text("regions:\n  - {name: decam, ra: 318.108, dec: -66.016}\n")
    data_root = tmp_path / "data"
    r = _astrid(["--catalog", str(cat), "--branches", "sky", "--regions", "decam", "--local-root",
                 str(top / "fits")], data_root, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _assert_products(data_root, "decam")
