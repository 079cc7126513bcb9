"""Catalog conventions: units survive astropy, VOTable export works, ds9 region files per region."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from astrid_pipeline.io.parquet_io import read_catalog_table, write_votable
from astrid_pipeline.io.regions_ds9 import write_ds9_regions

UNITS = {"x": "pix", "y": "pix", "ra": "deg", "dec": "deg", "flux": "adu", "flux_err": "adu", "theta": "rad",
         "mjd": "d"}


@pytest.fixture(scope="module")
def catalog(processed_region):
    layout, region = processed_region
    return layout, region, layout.catalog("candidates", {"region": region})


def test_units_survive_astropy_read_and_write(catalog, tmp_path):
    _, _, part = catalog
    t = Table.read(part)  # astropy's own Parquet reader, no project code
    for col, unit in UNITS.items():
        assert str(t[col].unit) == unit, col
    assert "S_corr" in t["snr"].description or t["snr"].description
    t.write(tmp_path / "copy.parquet")
    back = Table.read(tmp_path / "copy.parquet")
    assert all(str(back[c].unit) == u for c, u in UNITS.items())
    assert np.allclose(back["flux"], t["flux"]) and list(back["label"]) == list(t["label"])
    t.write(tmp_path / "copy.ecsv")
    assert str(Table.read(tmp_path / "copy.ecsv")["ra"].unit) == "deg"


def test_whole_catalog_reads_with_units_and_partition_column(catalog):
    layout, region, _ = catalog
    t = read_catalog_table(layout.catalog_root("candidates"))
    assert set(t["region"]) == {region} and str(t["dec"].unit) == "deg" and len(t) > 5


def test_votable_export_keeps_units_and_the_sign(catalog, tmp_path):
    _, _, part = catalog
    ref = Table.read(part)
    out = write_votable(part, tmp_path / "candidates.xml")
    v = Table.read(out, format="votable")
    assert len(v) == len(ref)
    assert v["sign"].dtype == np.int16 and list(v["sign"]) == list(ref["sign"])  # int8 has no VOTable type
    assert str(v["x"].unit) == "pix" and str(v["ra"].unit) == "deg"
    assert set(v["clean"]) <= {True, False}


def test_ds9_regions_open_with_astropy_regions(catalog, tmp_path):
    regions = pytest.importorskip("regions", reason="astropy-regions (dev extra) reads ds9 files")
    import pandas as pd

    layout, region, part = catalog
    cands = pd.read_parquet(part)
    sky = write_ds9_regions(cands, tmp_path / "regions" / f"{region}.reg")
    img = write_ds9_regions(cands, tmp_path / "regions" / f"{region}_image.reg", coordinates="image")
    rs = regions.Regions.read(sky, format="ds9")
    assert len(rs) == len(cands)
    for r, (_, c) in zip(rs, cands.iterrows()):
        assert r.center.ra.deg == pytest.approx(c["ra"], abs=1e-6)
        assert r.center.dec.deg == pytest.approx(c["dec"], abs=1e-6)
        assert r.visual["edgecolor"] == ("green" if c["flags"] == 0 else "red")
        assert r.meta["text"].startswith(f"#{int(c['candidate_id'])} S/N=")
    ri = regions.Regions.read(img, format="ds9")
    assert ri[0].center.x == pytest.approx(cands["x"].iloc[0], abs=1e-3)  # ds9's 1-based pixels read back 0-based
    assert not (layout.catalog_root("candidates") / f"{region}.reg").exists()
