"""End to end in Dagster: the sky branch materializes per region; bad input fails one partition only."""

import numpy as np
import pytest
from astropy.io import fits
from dagster import DagsterInstance, materialize

from astrid_pipeline.assets.sky import sky_assets
from astrid_pipeline.errors import BadHeaderError, InputFileError, NoCelestialWCSError, NoOverlapError, NotFITSError
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.partitions import SKY_REGIONS
from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource
from astrid_pipeline.science.skysim import SurveyConfig, simulate_pair, tan_wcs


def _run(tmp_path, keys, archive, key):
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SKY_REGIONS, keys)
    return materialize(sky_assets, partition_key=key, instance=instance, raise_on_error=False,
                       resources={"storage": StorageResource(root=str(tmp_path / "data")), "archive": archive,
                                  "regions": RegionCatalogResource()})


def test_simulated_region_materializes_with_passing_checks(tmp_path):
    result = _run(tmp_path, ["COSMOS"], SkyArchiveResource(image_size=512), "COSMOS")
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"alignment_residual": True, "scorr_unit_variance": True, "injected_transient_recovery": True}
    layout = DataLayout(tmp_path / "data")
    for p in (layout.raw_image("COSMOS", "science"), layout.aligned_reference("COSMOS"),
              layout.difference("COSMOS", "zogy"), layout.difference("COSMOS", "classic"),
              layout.catalog("candidates", {"region": "COSMOS"}), layout.triplets("COSMOS")):
        assert p.exists(), p
    with fits.open(layout.difference("COSMOS", "zogy")) as h:
        assert {"SCORR", "S", "PSF_D", "FLUX", "FLUXERR"} <= {x.name for x in h}
        assert abs(h[0].header["NOISESC"] - 1) < 0.1 and h[0].header["ASTRSTEP"] == "zogy_difference"
    mats = result.asset_materializations_for_node("candidate_catalog")
    assert mats[0].metadata["dagster/row_count"].value > 0


def _write(path, data, header=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)


@pytest.fixture(scope="module")
def local_archive(tmp_path_factory):
    """A local archive with one good region and one region per kind of bad input."""
    root = tmp_path_factory.mktemp("archive")
    pair = simulate_pair(150.1192, 2.2058, "good", SurveyConfig(shape=(256, 256), n_supernova=1, n_variable=1,
                                                                 n_nova=1, n_asteroid=0, n_asteroid_trailed=0, n_faint=0))
    sci, ref = pair.science, pair.reference
    (root / "good").mkdir()
    sci.writeto(root / "good" / "science.fits")
    ref.writeto(root / "good" / "reference.fits")
    bad = {}
    bad["notfits"] = (root / "notfits" / "science.fits", NotFITSError)
    bad["notfits"][0].parent.mkdir()
    bad["notfits"][0].write_bytes(b"<html>Service Unavailable</html>")
    hdr = sci[0].header.copy()
    for k in [k for k in hdr if k.startswith(("CTYPE", "CRVAL", "CRPIX", "CD", "PC", "CDELT", "CUNIT"))]:
        del hdr[k]
    bad["nowcs"] = (root / "nowcs" / "science.fits", NoCelestialWCSError)
    _write(bad["nowcs"][0], sci[0].data, hdr)
    h0 = sci[0].header.copy()
    h0["EXPTIME"] = 0.0
    bad["zeroexp"] = (root / "zeroexp" / "science.fits", BadHeaderError)
    _write(bad["zeroexp"][0], sci[0].data, h0)
    far = tan_wcs(30.0, -40.0, (256, 256), 0.26).to_header()
    h1 = ref[0].header.copy()
    h1.update(far)
    bad["nooverlap"] = (root / "nooverlap" / "reference.fits", NoOverlapError)
    _write(bad["nooverlap"][0], ref[0].data, h1)
    for name, (path, _) in bad.items():
        other = "reference.fits" if path.name == "science.fits" else "science.fits"
        (path.parent / other).write_bytes((root / "good" / other).read_bytes())
    return root, bad


@pytest.mark.parametrize("name", ["notfits", "nowcs", "zeroexp", "nooverlap"])
def test_bad_input_fails_its_partition_cleanly(tmp_path, local_archive, name):
    root, bad = local_archive
    path, err = bad[name]
    catalog = tmp_path / "regions.yaml"
    catalog.write_text("regions:\n" + "".join(
        f"  - {{name: {n}, ra: 150.1192, dec: 2.2058}}\n" for n in ["good", *bad]))
    archive = SkyArchiveResource(kind="local", local_root=str(root))
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(SKY_REGIONS, ["good", *bad])
    res = {"storage": StorageResource(root=str(tmp_path / "data")), "archive": archive,
           "regions": RegionCatalogResource(path=str(catalog))}
    failed = materialize(sky_assets, partition_key=name, instance=instance, raise_on_error=False, resources=res)
    assert not failed.success
    failure = [e for e in failed.all_events if e.is_step_failure][0]
    info = failure.step_failure_data.error
    while info.cause is not None and err.__name__ not in info.cls_name:
        info = info.cause
    assert info.cls_name == err.__name__, info.message
    assert str(path) in info.message  # the message names the offending file
    # nothing half-written for this partition, no temporary files anywhere
    layout = DataLayout(tmp_path / "data")
    produced = [p for p in layout.root.rglob("*") if p.is_file() and name in str(p)]
    assert produced == []
    assert not [p for p in layout.root.rglob(".*tmp-*")]
    # another partition is unaffected
    ok = materialize(sky_assets, partition_key="good", instance=instance, resources=res)
    assert ok.success and layout.catalog("candidates", {"region": "good"}).exists()
    assert issubclass(err, InputFileError)
