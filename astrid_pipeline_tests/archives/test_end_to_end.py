"""End to end: science via SkyView, reference via PS1 (both loopback, real DECam pixels), through the sky branch."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from dagster import DagsterInstance

from astrid_pipeline.io.parquet_io import field_units, read_partitioned
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.regions import Region
from astrid_pipeline.defs.resources import SkyArchiveResource
from astrid_pipeline_tests.archives.services import install_ps1, install_skyview, ps1_body
from astrid_pipeline_tests.conftest import assert_decam_result, run_sky_steps

DECAM = {"name": "decam", "ra": 318.108, "dec": -66.016, "science_archive": "skyview", "reference_archive": "ps1",
         "skyview_survey": "DSS2 Red", "ps1_filter": "i"}


@pytest.fixture
def services(realdata, loopback):
    d = realdata / "differencing"
    sv = install_skyview(loopback, (d / "decam_science_obs04a.fits").read_bytes())
    ps1 = install_ps1(loopback, ps1_body(d / "decam_reference_obs18a.fits", boffset=200.0, bsoften=35.0))
    return loopback, sv, ps1


def _resource(sv, ps1, cache, **kw):
    return SkyArchiveResource(**_archive_config(sv, ps1, cache, **kw))


def _archive_config(sv, ps1, cache, **kw) -> dict:
    return dict(skyview_url=sv, ps1_url=ps1, cache_root=str(cache),
                policy={"backoff_base_s": 0.01, "min_interval_s": 0.0}, **kw)


def test_skyview_science_and_ps1_reference_run_through_the_sky_branch(services, tmp_path):
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    loop, sv, ps1 = services
    archive = _resource(sv, ps1, tmp_path / "cache")  # global kind stays 'simulated'; the region overrides it
    region = Region("decam", 318.108, -66.016, options={k: v for k, v in DECAM.items()
                                                         if k not in ("name", "ra", "dec")})
    pair = archive.fetch_pair(region)
    assert pair.provenance["archive"] == "skyview+ps1"
    assert pair.science[0].header["ARCHSRC"] == "skyview" and pair.reference[0].header["PS1LIN"]
    layout = DataLayout(tmp_path / "data")
    res = sky.acquire(layout, "decam", pair)
    assert res.metadata["overlap_fraction"] > 0.9
    run_sky_steps(layout, "decam", until="candidates")
    assert_decam_result(layout)


@pytest.mark.slow
def test_materialize_inventory_and_sky_branch_for_a_mixed_region(services, tmp_path):
    from astrid_pipeline_tests.dagster_helpers import run_sky

    loop, sv, ps1 = services
    catalog = tmp_path / "regions.yaml"
    catalog.write_text(yaml.safe_dump({"regions": [DECAM, {"name": "COSMOS", "ra": 150.1192, "dec": 2.2058}]}))
    data = tmp_path / "data"
    with DagsterInstance.ephemeral() as instance:
        result = run_sky(instance, ["decam"], catalog=catalog, storage_root=data,
                         archive=_archive_config(sv, ps1, data / "archive_cache"))
    assert result.success
    inv = read_partitioned(data, "observation_inventory", {"region": "decam"})
    by_epoch = inv.set_index("epoch")
    assert by_epoch.loc["science", "archive"] == "skyview" and by_epoch.loc["reference", "archive"] == "ps1"
    assert by_epoch.loc["reference", "filter"] == "i" and by_epoch.loc["science", "shape"] == "256x256"
    assert inv["pixscale_arcsec"].between(0.2, 0.3).all() and not inv["failed"].any()
    assert field_units(DataLayout(data).catalog("observation_inventory", {"region": "decam"}))["ra"] == "deg"
    # the inventory downloaded; the acquisition step reused the cache (each image was fetched once)
    assert loop.count("/cgi-bin/fitscut.cgi") == 1 and loop.count("/tempspace/fits/skv6724208473423_1.fits") == 1
    from astropy.io import fits

    layout = DataLayout(data)
    sci = fits.getheader(layout.raw_image("decam", "science"))
    ref = fits.getheader(layout.raw_image("decam", "reference"))
    assert sci["ARCHSRC"] == "skyview" and ref["ARCHSRC"] == "ps1" and ref["PS1LIN"] and "RETRIEVD" in sci
    c = read_partitioned(data, "candidates", {"region": "decam"})
    assert (np.hypot(c["x"] - 129, c["y"] - 128) < 3).sum() == 1
