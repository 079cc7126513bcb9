"""Archive selection per region/epoch, the resource's defaults, the local folder (manifest, headers), inventory rows."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.archives.errors import ArchiveConfigError
from astrid_pipeline.archives.local import LocalFolderArchive
from astrid_pipeline.archives.select import epoch_kinds
from astrid_pipeline.archives.inventory import INVENTORY_SCHEMA, inventory_frame
from astrid_pipeline.errors import ConfigError, InputFileError
from astrid_pipeline.io.parquet_io import to_arrow
from astrid_pipeline.regions import Region
from astrid_pipeline.defs.resources import SkyArchiveResource
from astrid_pipeline_tests.archives.conftest import Answer
from astrid_pipeline_tests.archives.services import install_ps1, ps1_body


def test_default_resource_is_still_the_simulated_survey():
    from astrid_pipeline.archives.simulated import SimulatedSurvey

    res = SkyArchiveResource()
    assert res.kind == "simulated" and isinstance(res.client(), SimulatedSurvey)
    pair = SkyArchiveResource(image_size=256).fetch_pair(Region("COSMOS", 150.1192, 2.2058))
    assert pair.provenance["archive"] == "simulated" and pair.truth is not None
    assert pair.science[0].data.shape == (256, 256)


def test_unknown_kinds_are_config_errors():
    with pytest.raises(ConfigError, match="unknown archive kind 'ftp'"):
        SkyArchiveResource(kind="ftp").fetch_pair(Region("x", 1.0, 1.0))
    with pytest.raises(ConfigError, match="needs local_root"):
        SkyArchiveResource(kind="local").client()
    with pytest.raises(ArchiveConfigError, match="reference_archive='dss'"):
        epoch_kinds(Region("x", 1.0, 1.0, options={"reference_archive": "dss"}), "simulated")


def test_region_options_override_the_global_kind():
    r = Region("x", 1.0, 1.0, options={"science_archive": "SkyView"})
    assert epoch_kinds(r, "ps1") == {"science": "skyview", "reference": "ps1"}
    assert epoch_kinds(Region("y", 1.0, 1.0), "mast") == {"science": "mast", "reference": "mast"}
    # a CSV catalog gives blank cells for regions that do not override: they mean "the global kind"
    blank = Region("z", 1.0, 1.0, options={"science_archive": "", "reference_archive": " ps1 "})
    assert epoch_kinds(blank, "local") == {"science": "local", "reference": "ps1"}


def _write(path, data, **keys):
    path.parent.mkdir(parents=True, exist_ok=True)
    from astrid_pipeline.science.skysim import tan_wcs

    h = tan_wcs(150.1192, 2.2058, data.shape, 0.26).to_header()
    h["EXPTIME"] = 60.0
    for k, v in keys.items():
        h[k] = v
    fits.PrimaryHDU(data, h).writeto(path)


def test_local_folder_manifest_and_headers(tmp_path):
    rng = np.random.default_rng(1)
    img = lambda: rng.normal(100, 5, (64, 64)).astype(np.float32)  # noqa: E731
    _write(tmp_path / "nights" / "a.fits", img())
    _write(tmp_path / "nights" / "b.fits", img())
    (tmp_path / "manifest.yaml").write_text(
        "images:\n  - {region: F1, epoch: science, file: nights/b.fits}\n"
        "  - {region: F1, epoch: reference, file: nights/a.fits}\n"
        "  - {region: F2, epoch: science, file: nights/missing.fits}\n")
    _write(tmp_path / "F3" / "x.fits", img(), ASTREPCH="science")
    _write(tmp_path / "F3" / "y.fits", img(), ASTREPCH="reference")
    arch = LocalFolderArchive(tmp_path)
    assert arch.path_for("F1", "science") == tmp_path / "nights" / "b.fits"
    pair = arch.fetch_pair(Region("F1", 150.1192, 2.2058))
    assert pair.reference_source.endswith("a.fits")
    with pytest.raises(InputFileError, match="missing.fits: listed in the local archive's manifest"):
        arch.path_for("F2", "science")
    assert arch.path_for("F3", "reference").name == "y.fits"
    im = arch.fetch_epoch(Region("F3", 150.1192, 2.2058), "science")
    assert im.record.status == "local" and im.record.shape == "64x64" and im.record.exptime_s == 60.0
    with pytest.raises(InputFileError, match="no reference image for region 'F4'"):
        arch.path_for("F4", "reference")
    (tmp_path / "manifest.yaml").write_text("images:\n  - {region: F1, epoch: template, file: a.fits}\n")
    with pytest.raises(InputFileError, match="epoch 'template' is not science or reference"):
        LocalFolderArchive(tmp_path).path_for("F1", "science")


def test_inventory_records_failures_and_mixed_epochs(realdata, loopback, tmp_path):
    """Science from the local folder, reference from PS1 that fails: the inventory says which and why."""
    d = realdata / "differencing"
    (tmp_path / "arch" / "decam").mkdir(parents=True)
    (tmp_path / "arch" / "decam" / "science.fits").write_bytes((d / "decam_science_obs04a.fits").read_bytes())
    url = install_ps1(loopback, ps1_body(d / "decam_reference_obs18a.fits", 0.0, 20.0))
    loopback.routes["/cgi-bin/fitscut.cgi"] = [Answer(500, b"Internal Server Error")]
    res = SkyArchiveResource(kind="local", local_root=str(tmp_path / "arch"), ps1_url=url,
                             cache_root=str(tmp_path / "cache"),
                             policy={"backoff_base_s": 0.001, "max_retries": 2, "min_interval_s": 0.0})
    region = Region("decam", 318.108, -66.016, options={"reference_archive": "ps1"})
    rows = res.router().inventory(region)
    assert [(r.epoch, r.archive, r.status) for r in rows] == [("science", "local", "local"),
                                                              ("reference", "ps1", "failed")]
    assert "gave up after 3 attempts" in rows[1].reason and "fitscut.cgi" in rows[1].reason
    assert loopback.count("/cgi-bin/fitscut.cgi") == 3
    df = inventory_frame(rows)
    table = to_arrow(df, INVENTORY_SCHEMA)  # the frame fits the declared schema
    assert table.num_rows == 2 and df["failed"].tolist() == [False, True]
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_simulated_inventory_row(tmp_path):
    router = SkyArchiveResource(image_size=256, cache_root=str(tmp_path)).router()
    rows = router.inventory(Region("M101", 210.774, 54.2737))
    assert [(r.epoch, r.status, r.shape) for r in rows] == [("science", "simulated", "256x256"),
                                                            ("reference", "simulated", "256x256")]
