"""Alert packets: ZTF v4.02 Avro written and read back with a stock fastavro reader, stamps with WCS."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from astrid_pipeline.alerts import ids
from astrid_pipeline.alerts.errors import AlertInputError
from astrid_pipeline.alerts.packets import AlertImages, alert_images_from_files, filter_id, write_alerts
from astrid_pipeline.alerts.photometry import exposure_start_jd, zero_point
from astrid_pipeline.alerts.schema import record_fields
from astrid_pipeline.alerts.stamps import read_stamp


@pytest.fixture(scope="module")
def region_alerts(processed_region, tmp_path_factory):
    from astrid_pipeline.io.parquet_io import read_partitioned

    layout, region = processed_region
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    images = alert_images_from_files(layout.normalized_image(region, "science"),
                                     layout.normalized_image(region, "reference"), layout.difference(region, "zogy"),
                                     layout.raw_image(region, "reference"))
    out = tmp_path_factory.mktemp("alerts") / f"{region}.avro"
    meta = write_alerts(cands, images, out, region=region)
    truth = read_partitioned(layout.root, "transient_truth", {"region": region})
    return out, meta, cands, images, truth


def _stock_read(path):
    import fastavro

    with open(path, "rb") as fh:
        r = fastavro.reader(fh)
        return list(r), r.writer_schema


def test_every_schema_field_survives_a_stock_fastavro_reader(region_alerts):
    path, meta, cands, _, _ = region_alerts
    recs, writer_schema = _stock_read(path)
    assert len(recs) == len(cands) == meta["n_alerts"] > 5
    alert_f = {f["name"] for f in record_fields("alert")}
    cand_f = {f["name"] for f in record_fields("candidate")}
    assert writer_schema["name"] == "ztf.alert" and writer_schema.get("version") == "4.02"
    for r in recs:
        assert set(r) == alert_f
        assert set(r["candidate"]) == cand_f
        for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            assert r[k]["stampData"][:2] == b"\x1f\x8b"  # gzipped FITS
        c = r["candidate"]
        assert c["fid"] == 2 and c["isdiffpos"] in ("t", "f") and np.isfinite(c["magpsf"])
        assert c["jd"] == pytest.approx(61000.25 + 2400000.5)  # MJD-OBS of the simulated science epoch, UTC
        assert c["nframesref"] == 5 and c["jdstartref"] == pytest.approx(60400.10 + 2400000.5)
    assert len({r["candid"] for r in recs}) == len(recs)


def test_magnitudes_agree_with_the_injected_ones(region_alerts):
    """MAGZP of the science image turns the PSF flux of the change into the truth table's magnitude."""
    path, meta, cands, _, truth = region_alerts
    recs, _ = _stock_read(path)
    by_number = {r["candidate"]["tblid"]: r["candidate"] for r in recs}
    matched = cands[cands["truth_id"] != ""].merge(truth[["transient_id", "mag", "expected_snr"]],
                                                    left_on="truth_id", right_on="transient_id")
    bright = matched[matched["expected_snr"] > 20]
    assert len(bright) >= 3
    for _, row in bright.iterrows():
        c = by_number[int(row["candidate_id"])]
        assert c["magpsf"] == pytest.approx(row["mag"], abs=0.15)
        assert 0 < c["sigmapsf"] < 0.1 and c["magzpsci"] == pytest.approx(30.0)
    assert meta["photometry"] == "calibrated"


def test_cutouts_open_with_a_valid_wcs_at_the_candidate(region_alerts):
    path, _, _, _, _ = region_alerts
    recs, _ = _stock_read(path)
    for r in recs[:5]:
        c = r["candidate"]
        for k in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            with read_stamp(r[k]["stampData"]) as h:
                assert h[0].data.shape == (63, 63)
                w = WCS(h[0].header)
                assert w.has_celestial
                x, y = w.world_to_pixel_values(c["ra"], c["dec"])
                assert abs(x - 31) <= 0.6 and abs(y - 31) <= 0.6  # the candidate sits on the central pixel
                assert h[0].header["CANDID"] == r["candid"]


def test_edge_candidate_stamp_is_nan_padded(region_alerts, tmp_path):
    _, _, cands, images, _ = region_alerts
    edge = cands.head(1).copy()
    edge["x"], edge["y"] = 3.0, 10.0
    edge["ra"], edge["dec"] = images.wcs.pixel_to_world_values(3.0, 10.0)
    write_alerts(edge, images, tmp_path / "edge.avro", region="M101")
    rec = _stock_read(tmp_path / "edge.avro")[0][0]
    with read_stamp(rec["cutoutScience"]["stampData"]) as h:
        d = h[0].data
        assert np.isnan(d[:, :28]).all() and np.isnan(d[:21]).all()  # beyond x < 0 and y < 0
        assert np.isfinite(d[25:, 40:]).mean() > 0.95
    assert rec["candidate"]["mindtoedge"] == pytest.approx(3.0)


def test_without_zero_point_magnitudes_are_instrumental_and_flagged(region_alerts, tmp_path, caplog):
    _, _, cands, images, _ = region_alerts
    hdr = images.science_header.copy()
    del hdr["MAGZP"]
    im = AlertImages(images.science, images.reference, images.difference, images.wcs, hdr, images.reference_header,
                     images.difference_header)
    with caplog.at_level(logging.WARNING):
        meta = write_alerts(cands.head(3), im, tmp_path / "instr.avro", region="M101")
    assert meta["photometry"] == "instrumental" and "instrumental" in caplog.text
    recs, _ = _stock_read(tmp_path / "instr.avro")
    for r, (_, row) in zip(recs, cands.head(3).iterrows()):
        assert r["candidate"]["magzpsci"] is None
        assert r["candidate"]["magpsf"] == pytest.approx(-2.5 * np.log10(abs(row["flux"])), abs=1e-4)


def test_rb_scores_reach_the_packets(region_alerts, tmp_path):
    _, _, cands, images, _ = region_alerts
    c = cands.head(4).copy()
    c["rb"] = [0.9, 0.1, 0.5, 0.99]
    write_alerts(c, images, tmp_path / "rb.avro", region="M101", rb_version="astrid-rb-test")
    recs, _ = _stock_read(tmp_path / "rb.avro")
    assert [round(r["candidate"]["rb"], 4) for r in recs] == [0.9, 0.1, 0.5, 0.99]
    assert all(r["candidate"]["drbversion"] == "astrid-rb-test" for r in recs)


def test_candidate_ids_are_unique_across_regions_and_epochs():
    all_ids = []
    for region in ("M101", "COSMOS", "hpx10_1234"):
        for mjd in (61000.25, 61000.2505, 61001.25):
            c = ids.candidate_ids(region, mjd, np.arange(2000))
            assert (c > 0).all()
            all_ids.append(c)
    a = np.concatenate(all_ids)
    assert len(np.unique(a)) == a.size
    pid, n = ids.decode_candidate_id(int(a[2001]))
    assert n == 1 and pid == ids.processing_id("M101", 61000.2505)
    with pytest.raises(AlertInputError, match="candidate number 70000"):
        ids.candidate_id("M101", 61000.25, 70000)
    with pytest.raises(AlertInputError, match="MJD"):
        ids.candidate_id("M101", float("nan"), 1)


def test_object_id_is_an_iau_style_name():
    # SN 2011fe in M101: 14:03:05.81 +54:16:25.4 (digits truncated, not rounded)
    assert ids.object_id(210.774208, 54.273722) == "ASTJ140305.80+541625.3"
    assert ids.object_id(0.0, -0.5).startswith("ASTJ000000.00-003000.0")


def test_jd_is_utc_whatever_the_header_time_scale():
    jd_utc, _ = exposure_start_jd(fits.Header({"MJD-OBS": 60000.0}))
    assert jd_utc == pytest.approx(2460000.5)
    jd_tt, src = exposure_start_jd(fits.Header({"MJD-OBS": 60000.0, "TIMESYS": "TT"}))
    assert (jd_utc - jd_tt) * 86400 == pytest.approx(69.184, abs=1e-3)  # TT - UTC in 2023
    assert "TT" in src
    jd_d, _ = exposure_start_jd(fits.Header({"DATE-OBS": "2023-02-25T00:00:00"}))
    assert jd_d == pytest.approx(2460000.5)
    with pytest.raises(AlertInputError, match="no exposure time"):
        exposure_start_jd(fits.Header({"EXPTIME": 30.0}))


def test_zero_point_keywords():
    assert zero_point(fits.Header({"MAGZP": 26.3, "MAGZPUNC": 0.01})).uncertainty == pytest.approx(0.01)
    hst = zero_point(fits.Header({"PHOTFLAM": 7.0e-20, "PHOTPLAM": 8000.0}))
    assert hst.calibrated and hst.value == pytest.approx(-2.5 * np.log10(7e-20) - 5 * np.log10(8000) - 2.408)
    assert filter_id("ZTF_g") == 1 and filter_id("i DECam SDSS c0003 7835.0 1470.0") == 3 and filter_id("Halpha") == 0


def test_bad_inputs_give_named_errors(region_alerts, tmp_path):
    _, _, cands, images, _ = region_alerts
    with pytest.raises(AlertInputError, match="lacks columns.*flux_err"):
        write_alerts(cands.drop(columns=["flux_err"]), images, tmp_path / "a.avro", region="M101")
    im = AlertImages(images.science, images.reference[:-1], images.difference, images.wcs, images.science_header)
    with pytest.raises(AlertInputError, match="reference image has shape"):
        write_alerts(cands, im, tmp_path / "b.avro", region="M101")
    assert not (tmp_path / "b.avro").exists()


def test_real_decam_pair_alert(realdata, tmp_path):
    """The DECam brightening at (129, 128): an alert whose stamps sit on it; no zero point -> instrumental."""
    d = realdata / "differencing"
    sci, sh = fits.getdata(d / "decam_science_obs04a.fits", header=True)
    ref, rh = fits.getdata(d / "decam_reference_obs18a.fits", header=True)
    diff = fits.getdata(d / "decam_sfft_final_difference.fits")
    wcs = WCS(sh).celestial
    ra, dec = wcs.pixel_to_world_values(129.0, 128.0)
    cands = pd.DataFrame({"candidate_id": [0], "x": [129.0], "y": [128.0], "ra": [float(ra)], "dec": [float(dec)],
                          "flux": [1600.0], "flux_err": [60.0], "snr": [20.0], "sign": [1], "mjd": [sh["MJD-OBS"]]})
    meta = write_alerts(cands, AlertImages(sci, ref, diff, wcs, sh, rh), tmp_path / "decam.avro", region="decam")
    assert meta["photometry"] == "instrumental" and meta["fid"] == 3
    rec = _stock_read(tmp_path / "decam.avro")[0][0]
    with read_stamp(rec["cutoutDifference"]["stampData"]) as h:
        st = h[0].data
        assert np.nanargmax(st[26:37, 26:37]) == 5 * 11 + 5 or st[31, 31] > 5 * np.nanstd(st[:10, :10])
        x, y = WCS(h[0].header).world_to_pixel_values(ra, dec)
        assert abs(x - 31) < 0.6 and abs(y - 31) < 0.6
    assert rec["candidate"]["jd"] == pytest.approx(sh["MJD-OBS"] + 2400000.5)


def test_no_candidates_gives_an_empty_but_valid_file(region_alerts, tmp_path):
    _, _, cands, images, _ = region_alerts
    meta = write_alerts(cands.head(0), images, tmp_path / "none.avro", region="M101")
    recs, schema = _stock_read(tmp_path / "none.avro")
    assert recs == [] and meta["n_alerts"] == 0 and schema["name"] == "ztf.alert"
