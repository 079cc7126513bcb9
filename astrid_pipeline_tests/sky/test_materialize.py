"""End to end in Dagster: the sky branch materializes per region; bad input fails one partition only."""

import pytest
from astropy.io import fits
from dagster import DagsterInstance

from astrid_pipeline.errors import BadHeaderError, InputFileError, NoCelestialWCSError, NoOverlapError, NotFITSError
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.science.skysim import SurveyConfig, simulate_pair, tan_wcs
from astrid_pipeline_tests.dagster_helpers import check_error, check_results, materialization, materialized, run_sky


def test_simulated_region_materializes_with_passing_checks(tmp_path):
    with DagsterInstance.ephemeral() as instance:
        result = run_sky(instance, ["COSMOS"], image_size=512, storage_root=tmp_path / "data")
    assert result.success
    checks = {c: ok for (a, c, p), ok in check_results(result).items()}
    assert all(checks.values()), checks
    assert {"alignment_residual", "scorr_unit_variance", "injected_transient_recovery", "psf_from_stars"} <= set(checks)
    layout = DataLayout(tmp_path / "data")
    for p in (layout.raw_image("COSMOS", "science"), layout.aligned_reference("COSMOS"),
              layout.difference("COSMOS", "zogy"), layout.difference("COSMOS", "classic"),
              layout.catalog("candidates", {"region": "COSMOS"}), layout.triplets("COSMOS")):
        assert p.exists(), p
    with fits.open(layout.difference("COSMOS", "zogy")) as h:
        assert {"SCORR", "S", "PSF_D", "FLUX", "FLUXERR"} <= {x.name for x in h}
        assert abs(h[0].header["NOISESC"] - 1) < 0.1 and h[0].header["ASTRSTEP"] == "zogy_difference"
    assert materialization(result, "candidate_catalog", "COSMOS").metadata["dagster/row_count"].value > 0


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
    archive = {"kind": "local", "local_root": str(root)}
    data = tmp_path / "data"
    with DagsterInstance.ephemeral() as instance:
        failed = run_sky(instance, [name], catalog=catalog, archive=archive, storage_root=data)
        assert not failed.success
        message = check_error(failed, name)
        assert message.startswith(err.__name__), message
        assert str(path) in message  # the message names the offending file
        # nothing half-written for this partition, no temporary files anywhere
        layout = DataLayout(data)
        produced = [p for p in layout.root.rglob("*") if p.is_file() and name in str(p)
                    and "observation_inventory" not in str(p) and ".locks" not in str(p)]
        assert produced == []
        assert not [p for p in layout.root.rglob(".*tmp-*")]
        assert not any(a in materialized(failed) for a in ("science_image", "candidate_catalog"))
        # another partition is unaffected
        ok = run_sky(instance, ["good"], catalog=catalog, archive=archive, storage_root=data)
        assert ok.success and layout.catalog("candidates", {"region": "good"}).exists()
    assert issubclass(err, InputFileError)
