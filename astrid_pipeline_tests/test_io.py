"""Writers are atomic and keep units/provenance; readers name the file and the reason."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits

from astrid_pipeline.errors import EmptyDataError, NotFITSError, TruncatedFileError
from astrid_pipeline.io.atomic import atomic_path
from astrid_pipeline.io.fits_io import read_sky_image, write_fits
from astrid_pipeline.io.hdf5_io import open_atomic_hdf5, read_table_group, write_dataset, write_table_group
from astrid_pipeline.io.parquet_io import Column, field_units, make_schema, read_partitioned, write_partitioned
from astrid_pipeline.science.skysim import tan_wcs


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.fits"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_fits_roundtrip_keeps_wcs_and_provenance(tmp_path):
    w = tan_wcs(150.1, 2.2, (64, 64), 0.26)
    data = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    p = write_fits(tmp_path / "img.fits", data, wcs=w, step="test", inputs=["a.fits"],
                   keywords={"EXPTIME": 30.0}, extensions=[("MASK", np.zeros((64, 64), np.uint8), None)])
    img = read_sky_image(p)
    assert np.array_equal(img.data, data) and img.header["ASTRSTEP"] == "test"
    assert any("a.fits" in h for h in img.header["HISTORY"])
    assert img.wcs.pixel_to_world(10, 20).separation(w.pixel_to_world(10, 20)).arcsec < 1e-6


def test_parquet_partition_layout_and_units(tmp_path):
    schema = make_schema([Column("ra", pa.float64(), "deg", "right ascension"), Column("name", pa.string())])
    import pandas as pd

    out = write_partitioned(pd.DataFrame({"ra": [1.0, 2.0], "name": ["a", "b"]}), tmp_path, "cat", {"region": "R1"}, schema)
    assert out == tmp_path / "catalogs" / "cat" / "region=R1" / "part-0.parquet"
    assert field_units(out) == {"ra": "deg"}
    whole = read_partitioned(tmp_path, "cat")
    assert list(whole["region"].astype(str)) == ["R1", "R1"]
    assert pq.read_schema(out).field("ra").metadata[b"description"] == b"right ascension"


def test_hdf5_atomic_with_attributes(tmp_path):
    p = tmp_path / "d.h5"
    with open_atomic_hdf5(p, step="unit") as f:
        write_dataset(f, "x", np.ones((4, 8, 8), np.float32), chunks=(1, 8, 8), unit="adu")
        write_table_group(f, "meta", {"id": np.arange(4), "label": np.array(["a", "b", "c", "d"])}, {"id": ""})
    import h5py

    with h5py.File(p) as f:
        assert f["x"].attrs["unit"] == "adu" and f["x"].chunks == (1, 8, 8) and f.attrs["step"] == "unit"
    assert list(read_table_group(p, "meta")["label"]) == ["a", "b", "c", "d"]
    with pytest.raises(ValueError):
        with open_atomic_hdf5(tmp_path / "e.h5") as f:
            raise ValueError("boom")
    assert not (tmp_path / "e.h5").exists() and len(list(tmp_path.iterdir())) == 1


def test_bad_files_get_named_errors(tmp_path):
    html = tmp_path / "page.fits"
    html.write_bytes(b"<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(NotFITSError, match="page.fits.*not a FITS file"):
        read_sky_image(html)
    good = tmp_path / "good.fits"
    w = tan_wcs(10, 10, (100, 100), 1.0)
    fits.PrimaryHDU(np.ones((100, 100), np.float32), w.to_header()).writeto(good)
    trunc = tmp_path / "trunc.fits"
    trunc.write_bytes(good.read_bytes()[:15000])
    with pytest.raises(TruncatedFileError, match="trunc.fits"):
        read_sky_image(trunc)
    nan = tmp_path / "nan.fits"
    fits.PrimaryHDU(np.full((100, 100), np.nan, np.float32), w.to_header()).writeto(nan)
    with pytest.raises(EmptyDataError, match="nan.fits.*NaN"):
        read_sky_image(nan)
