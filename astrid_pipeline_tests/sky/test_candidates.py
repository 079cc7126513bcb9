"""Candidates and triplets on a simulated region and on the real DECam pair."""

import h5py
import numpy as np
import pandas as pd
import pytest

from astrid_pipeline.io.parquet_io import field_units, read_partitioned


def test_injected_transients_found_at_their_true_positions(processed_region):
    layout, region = processed_region
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    truth = read_partitioned(layout.root, "transient_truth", {"region": region})
    bright = truth[truth["expected_snr"] >= 8]
    assert len(bright) >= 8
    for _, t in bright.iterrows():
        same_sign = cands[np.sign(cands["snr"]) == t["sign"]]
        d = np.hypot(same_sign["x"] - t["x"], same_sign["y"] - t["y"])
        assert d.min() < 1.5, f"{t['type']} at ({t['x']:.1f},{t['y']:.1f}) not found"
        best = same_sign.loc[d.idxmin()]
        assert best["clean"], f"{t['type']} found but flagged {best['flags']}"
        if t["type"] != "asteroid_trailed":  # PSF photometry of a trail measures only part of its flux
            assert abs(best["flux"] - t["delta_flux"]) < max(5 * best["flux_err"], 0.2 * abs(t["delta_flux"]))


def test_cosmic_rays_do_not_become_clean_candidates(processed_region):
    layout, region = processed_region
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    crs = cands[cands["label"] == "cosmic_ray"]
    assert len(crs) > 0
    assert (~crs["clean"]).mean() > 0.8
    false_clean = cands[cands["clean"] & (cands["truth_id"] == "")]
    assert len(false_clean) <= 1  # at most one clean false candidate on 0.26 Mpx


def test_catalog_has_units_and_reads_with_duckdb(processed_region):
    import duckdb

    layout, region = processed_region
    path = layout.catalog("candidates", {"region": region})
    units = field_units(path)
    assert units["ra"] == "deg" and units["flux"] == "adu" and units["x"] == "pix"
    glob = str(layout.catalog_root("candidates") / "*" / "*.parquet")
    n = duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true) where region='{region}'").fetchall()[0][0]
    assert n == len(pd.read_parquet(path))


def test_triplets_are_centred_cutouts(processed_region):
    layout, region = processed_region
    with h5py.File(layout.triplets(region), "r") as f:
        trip = f["triplets"][()]
        meta = {k: f["metadata"][k][()] for k in f["metadata"]}
        assert f["triplets"].chunks == (1, 3, 63, 63)
        assert f.attrs["step"] == "cutout_triplets"
    assert trip.shape[1:] == (3, 63, 63) and trip.shape[0] == len(meta["candidate_id"])
    i = int(np.argmax(meta["snr"]))
    diff = trip[i, 2]
    yy, xx = np.unravel_index(np.nanargmax(diff), diff.shape)
    assert abs(yy - 31) <= 2 and abs(xx - 31) <= 2
    # candidates near the border are NaN-padded and flagged
    for k in np.nonzero(meta["edge_padded"])[0]:
        assert np.isnan(trip[k]).any()


def test_decam_brightening_detected_and_bright_star_flagged(realdata, tmp_path):
    from astrid_pipeline.archives.local import LocalFolderArchive
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.regions import Region
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky
    from astrid_pipeline_tests.conftest import assert_decam_result, copy_pair, run_sky_steps

    d = realdata / "differencing"
    arch = copy_pair(tmp_path / "archive", "decam", d / "decam_science_obs04a.fits", d / "decam_reference_obs18a.fits")
    layout = DataLayout(tmp_path / "data")
    sky.acquire(layout, "decam", LocalFolderArchive(arch).fetch_pair(Region("decam", 318.108, -66.016)))
    run_sky_steps(layout, "decam", until="candidates")
    assert_decam_result(layout)
