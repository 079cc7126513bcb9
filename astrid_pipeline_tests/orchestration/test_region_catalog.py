"""The region catalog: named fields and HEALPix tiles, YAML and CSV, and clear errors for malformed files."""

import math

import pytest

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.regions import catalog_fingerprint, default_catalog_path, healpix_tile, load_region_catalog


def _yaml(tmp_path, body, name="regions.yaml"):
    p = tmp_path / name
    p.write_text(body)
    return p


def test_fields_and_healpix_tiles(tmp_path):
    p = _yaml(tmp_path, """
regions:
  - {name: M101, ra: 210.774, dec: 54.2737, science_archive: ps1, reference_archive: skyview}
  - {healpix_order: 0, healpix_index: 4}
  - {name: deep-tile, healpix_order: 10, healpix_index: 123456, note: a tile}
""")
    cat = load_region_catalog(p)
    assert list(cat) == ["M101", "hpx0_4", "deep-tile"]
    assert cat["M101"].options == {"science_archive": "ps1", "reference_archive": "skyview"}
    # order 0: base pixel 4 is centred on (0, 0); base pixel 0 on (45 deg, asin(2/3)) (Gorski et al. 2005)
    assert cat["hpx0_4"].ra == pytest.approx(0.0, abs=1e-9) and cat["hpx0_4"].dec == pytest.approx(0.0, abs=1e-9)
    ra0, dec0, _ = healpix_tile(0, 0)
    assert (ra0, dec0) == (pytest.approx(45.0), pytest.approx(math.degrees(math.asin(2 / 3))))
    assert (cat["hpx0_4"].healpix_order, cat["hpx0_4"].healpix_index) == (0, 4)
    ra, dec, res = healpix_tile(10, 123456)
    assert (cat["deep-tile"].ra, cat["deep-tile"].dec) == (ra, dec)
    assert cat["deep-tile"].size_arcmin == pytest.approx(3.435, rel=1e-3)  # HEALPix order-10 resolution


def test_csv_catalog(tmp_path):
    p = _yaml(tmp_path, "name,ra,dec,healpix_order,healpix_index,note\n"
                        "COSMOS,150.1192,2.2058,,,deep field\n"
                        ",,,4,100,\n", name="regions.csv")
    cat = load_region_catalog(p)
    assert set(cat) == {"COSMOS", "hpx4_100"}
    assert cat["COSMOS"].note == "deep field" and cat["COSMOS"].healpix_order is None


def test_catalog_in_the_data_root_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("ASTRID_REGION_CATALOG", raising=False)
    monkeypatch.setenv("ASTRID_DATA_ROOT", str(tmp_path))
    assert default_catalog_path().name == "regions.yaml" and default_catalog_path().parent.name == "resources"
    p = _yaml(tmp_path, "regions:\n  - {name: A, ra: 1, dec: 2}\n")
    assert default_catalog_path() == p
    assert list(load_region_catalog()) == ["A"]
    monkeypatch.setenv("ASTRID_REGION_CATALOG", str(_yaml(tmp_path, "regions: []\n", name="other.yaml")))
    assert load_region_catalog() == {}


@pytest.mark.parametrize("body,message", [
    ("regions:\n  - {name: A, dec: 2}\n", r"lacks \['ra'\]"),
    ("regions:\n  - {name: A, ra: 360.5, dec: 2}\n", r"RA 360.5 outside \[0, 360\)"),
    ("regions:\n  - {name: A, ra: -1, dec: 2}\n", r"RA -1.0 outside"),
    ("regions:\n  - {name: A, ra: 1, dec: 91}\n", r"Dec 91.0 outside"),
    ("regions:\n  - {name: A, ra: 1, dec: 2}\n  - {name: A, ra: 3, dec: 4}\n", r"duplicate region name 'A'"),
    ("regions:\n  - {name: ../x, ra: 1, dec: 2}\n", r"'\.\./x' is not a safe name"),
    ("regions:\n  - {name: a/b, ra: 1, dec: 2}\n", r"not a safe name"),
    ("regions:\n  - {healpix_order: 2, healpix_index: 192}\n", r"healpix_index 192 outside \[0, 192\)"),
    ("regions:\n  - {healpix_order: 2}\n", r"without healpix_index"),
    ("regions:\n  - {healpix_order: 2, healpix_index: 1, ra: 3, dec: 4}\n", r"not both"),
    ("regions:\n  - {name: A, ra: abc, dec: 2}\n", r"non-numeric ra/dec"),
    ("fields: []\n", r"expected a mapping with a 'regions' list"),
    ("regions: [\n", r"not valid YAML"),
])
def test_malformed_yaml_gives_a_clear_error(tmp_path, body, message):
    p = _yaml(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as info:
        load_region_catalog(p)
    assert str(p) in str(info.value)


def test_malformed_csv(tmp_path):
    p = _yaml(tmp_path, "name,dec\nA,2\n", name="regions.csv")
    with pytest.raises(ConfigError, match=r"lacks columns \['ra'\]"):
        load_region_catalog(p)
    p.write_text("name,ra,dec\nA,1,2,extra\n")
    with pytest.raises(ConfigError, match="line 2 has more values"):
        load_region_catalog(p)
    with pytest.raises(ConfigError, match="not found"):
        load_region_catalog(tmp_path / "nope.yaml")


def test_fingerprint_follows_the_bytes(tmp_path):
    p = _yaml(tmp_path, "regions: []\n")
    a = catalog_fingerprint(p)
    p.write_text("regions: []\n# edited\n")
    assert catalog_fingerprint(p) != a and len(a) == 64
    assert catalog_fingerprint(tmp_path / "missing.yaml") == ""
