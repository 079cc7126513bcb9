"""Per-epoch image options: region-catalog keys and local manifest columns reach ``ArchivePair.image_options``."""

from __future__ import annotations

import shutil

import pytest

from astrid_pipeline.archives.base import normalize_image_options
from astrid_pipeline.archives.select import ArchiveRouter, ArchiveSettings
from astrid_pipeline.errors import ConfigError, InputFileError
from astrid_pipeline.regions import Region, load_region_catalog


@pytest.fixture()
def decam_folder(tmp_path, realdata):
    """The real DECam pair in a folder with a manifest giving options for the science epoch."""
    root = tmp_path / "arch"
    root.mkdir()
    shutil.copy(realdata / "differencing" / "decam_science_obs04a.fits", root / "sci.fits")
    shutil.copy(realdata / "differencing" / "decam_reference_obs18a.fits", root / "ref.fits")
    (root / "psfs").mkdir()
    (root / "manifest.csv").write_text(
        "region,epoch,file,hdu,gain,psf,cosmic_rays,note\n"
        "decam,science,sci.fits,0,3.98,psfs/sci_psf.fits,skip,resampled\n"
        "decam,reference,ref.fits,,,,,\n")
    return root


def test_local_manifest_columns_become_options(decam_folder):
    router = ArchiveRouter(ArchiveSettings(kind="local", local_root=str(decam_folder)))
    pair = router.fetch_pair(Region("decam", 318.108, -66.016))
    sci = pair.image_options["science"]
    assert sci == {"hdu": 0, "gain": 3.98, "psf": str((decam_folder / "psfs" / "sci_psf.fits").resolve()),
                   "cosmic_rays": "skip"}
    assert "reference" not in pair.image_options  # blank cells are "not given"
    assert pair.science[0].data.shape == (256, 256)


def test_catalog_keys_override_manifest_and_resolve_paths(tmp_path, decam_folder):
    cat = tmp_path / "cats" / "regions.yaml"
    cat.parent.mkdir()
    cat.write_text("regions:\n"
                   "  - {name: decam, ra: 318.108, dec: -66.016, science_archive: local, reference_archive: local,\n"
                   "     local_root: ../arch, science_gain: 4.1, reference_band: 2, reference_psf: p/ref.fits,\n"
                   "     science_error_ext: ERR}\n")
    region = load_region_catalog(cat)["decam"]
    assert region.options["local_root"] == str(decam_folder.resolve())
    pair = ArchiveRouter(ArchiveSettings()).fetch_pair(region)  # global kind simulated; the region says local
    assert pair.image_options["science"]["gain"] == 4.1  # the catalog wins over the manifest's 3.98
    assert pair.image_options["science"]["error_ext"] == "ERR"
    assert pair.image_options["science"]["cosmic_rays"] == "skip"  # manifest value kept where not overridden
    assert pair.image_options["reference"] == {"band": 2, "psf": str((cat.parent / "p" / "ref.fits").resolve())}
    assert pair.provenance["root"] == str(decam_folder.resolve())


def test_simulated_survey_has_no_options():
    region = Region("COSMOS", 150.1192, 2.2058, options={"science_gain": 2.0})
    pair = ArchiveRouter(ArchiveSettings(image_size=256)).fetch_pair(region)
    assert pair.image_options == {}


@pytest.mark.parametrize("raw, match", [({"gain": "-1"}, "gain"), ({"gain": "lots"}, "gain"),
                                        ({"band": "0"}, "band"), ({"cosmic_rays": "maybe"}, "cosmic_rays"),
                                        ({"hdus": 1}, "unknown image option")])
def test_bad_option_is_named(raw, match):
    with pytest.raises(ConfigError, match=match):
        normalize_image_options(raw, base_dir=None, where="region 'x'")


def test_bad_manifest_option_names_the_manifest(decam_folder):
    (decam_folder / "manifest.csv").write_text("region,epoch,file,gain\ndecam,science,sci.fits,zero\n")
    router = ArchiveRouter(ArchiveSettings(kind="local", local_root=str(decam_folder)))
    with pytest.raises(InputFileError, match=r"manifest\.csv.*row 1.*gain"):
        router.fetch_pair(Region("decam", 318.108, -66.016))


def test_missing_region_local_root_is_named(tmp_path):
    region = Region("decam", 318.108, -66.016, options={"science_archive": "local", "reference_archive": "local",
                                                        "local_root": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="local_root"):
        ArchiveRouter(ArchiveSettings()).fetch_pair(region)
