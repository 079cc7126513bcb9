"""The real/bogus training set: simulated regions run through the sky branch, split by region, labelled by cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.ml.realbogus.dataset import BOGUS_TYPES, REAL_TYPES, load_triplet_set
from astrid_pipeline.sky.triplet_set import TripletSetConfig, _Perturbations, label_candidates, perturb_pair


def test_set_holds_labelled_triplets_split_by_region(tiny_triplets):
    path, meta = tiny_triplets
    x, t = load_triplet_set(path)
    assert x.shape == (len(t), 3, 63, 63) and len(t) == meta["n_triplets"] > 20
    assert meta["n_real"] == int((t["label"] == 1).sum()) > 3 and meta["n_bogus"] == int((t["label"] == 0).sum()) > 3
    assert set(t.loc[t["label"] == 1, "type"]) <= set(REAL_TYPES)
    assert set(t.loc[t["label"] == 0, "type"]) <= set(BOGUS_TYPES)
    assert "faint" not in set(t["type"])  # faint is an S/N range (the snr columns), not a type
    assert t.groupby("region")["split"].nunique().max() == 1  # no region feeds two splits
    assert {"train", "val"} <= set(t["split"])
    real = t[t["label"] == 1]
    assert np.isfinite(real["expected_snr"]).all() and (np.abs(real["snr"]) >= 5).all()
    assert sum(meta["splits"][s]["n"] for s in meta["splits"]) == len(t)


def test_real_triplets_are_centred_on_their_change(tiny_triplets):
    from astrid_pipeline.ml.realbogus.normalize import normalize_triplets

    path, _ = tiny_triplets
    x, t = load_triplet_set(path)
    real = (t["label"] == 1).to_numpy() & (np.abs(t["snr"].to_numpy()) > 8)
    z, _ = normalize_triplets(x[real], t.loc[real, "sign"].to_numpy())
    centre = z[:, 2, 29:34, 29:34].mean(axis=(1, 2))
    ring = z[:, 2, 5:15, 5:15].mean(axis=(1, 2))
    assert (centre > ring + 1.0).mean() > 0.9  # the sign-canonical difference peaks in the middle


def test_same_seed_same_set(tmp_path):
    from astrid_pipeline.sky.triplet_set import build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    cfg = TripletSetConfig(n_regions=1, seed=11, val_fraction=0.0, image_size=160)
    a = build_triplet_training_set(cfg, tmp_path / "a.h5", run_sky_chain)
    b = build_triplet_training_set(cfg, tmp_path / "b.h5", run_sky_chain)
    xa, ta = load_triplet_set(tmp_path / "a.h5")
    xb, tb = load_triplet_set(tmp_path / "b.h5")
    pd.testing.assert_frame_equal(ta, tb)
    assert np.array_equal(np.nan_to_num(xa, nan=-1e9), np.nan_to_num(xb, nan=-1e9))
    assert a["n_triplets"] == b["n_triplets"]


def _pair():
    from astrid_pipeline.archives.simulated import SimulatedSurvey
    from astrid_pipeline.regions import Region
    from astrid_pipeline.science.skysim import SurveyConfig

    return SimulatedSurvey(SurveyConfig(shape=(192, 192), seed=3)).fetch_pair(Region("pt", 150.0, 2.0))


def test_perturbations_change_the_inputs_where_they_say():
    from astropy.wcs import WCS

    pair = _pair()
    sci0 = np.array(pair.science[0].data, float)
    w0 = WCS(pair.reference[0].header).celestial
    n_cr0 = len(pair.cosmic_rays)
    ref0 = np.array(pair.reference[0].data, float)
    cfg = TripletSetConfig(p_science_crs=1, p_template_crs=1, p_bad_pixels=1, p_saturation=1, p_psf_variation=0,
                           p_astrometry=1, p_misregistration=1)
    rec = perturb_pair(pair, np.random.default_rng(0), cfg)
    sci = np.array(pair.science[0].data, float)
    assert {"science_crs", "template_crs", "bad_pixels", "saturation", "astrometry", "misregistration"} <= set(rec.applied)
    moved = np.abs(np.array(pair.reference[0].data, float) - ref0) > 1e-3
    assert 0.2 < moved.mean() < 1.0  # part of the template moved (and the template CRs), not all of it
    for x, y in rec.points["hot_pixel"]:
        assert sci[int(y), int(x)] > sci0[int(y), int(x)] + 10 * np.std(sci0[:20, :20]) or \
            sci[int(y), int(x)] >= rec.saturation - 1  # or clipped by the low saturation
    assert sci.max() <= rec.saturation + 1e-3 and rec.points["saturated_star"]
    assert len(pair.cosmic_rays) > n_cr0  # the sky branch's own CR labels know the injected hits
    w1 = WCS(pair.reference[0].header).celestial
    corner = w1.pixel_to_world(0, 0).separation(w0.pixel_to_world(0, 0)).arcsec
    assert 0.02 < corner < 2.0  # a wrong but plausible astrometric solution


def test_labels_follow_the_truth_first_then_the_cause():
    rec = _Perturbations()
    rec.add("hot_pixel", [50.0], [60.0])
    rec.add("cosmic_ray", [100.0], [20.0])
    cands = pd.DataFrame({"x": [50.5, 100.0, 140.0, 30.0], "y": [60.2, 20.0, 140.0, 30.0],
                          "truth_id": ["", "t1", "", ""], "label_chain": ["bogus", "nova", "bogus", "cosmic_ray"]})
    truth = pd.DataFrame({"transient_id": ["t1"], "type": ["nova"], "expected_snr": [12.0]})
    ref = np.random.default_rng(0).normal(0, 1, (192, 192))
    out = label_candidates(cands, truth, rec, ref)
    assert list(out["type"]) == ["hot_pixel", "nova", "residual", "cosmic_ray"]
    assert list(out["label"]) == [0, 1, 0, 0] and out["expected_snr"].iloc[1] == 12.0


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="val_fraction"):
        TripletSetConfig(val_fraction=0.8, test_fraction=0.5).validate()
    with pytest.raises(ConfigError, match="stamp_size"):
        TripletSetConfig(stamp_size=64).validate()


def test_second_detections_beside_a_real_can_be_left_out(tiny_triplets):
    from astrid_pipeline.ml.realbogus.dataset import near_real_distance

    t = pd.DataFrame({"region": ["a"] * 4 + ["b"], "label": [1, 1, 0, 0, 0], "x": [0, 10, 3, 50, 0.0],
                      "y": [0, 0, 4, 0, 0.0]})
    assert near_real_distance(t).tolist() == [10.0, 10.0, 5.0, 40.0, np.inf]
    path, _ = tiny_triplets
    _, full = load_triplet_set(path)
    x, kept = load_triplet_set(path, exclude_near_real_px=8.0)
    d = near_real_distance(full)
    assert len(kept) == len(full) - int(((full["label"] == 0) & (d < 8.0)).sum()) and len(x) == len(kept)
    assert (kept["label"] == 1).sum() == (full["label"] == 1).sum()  # reals are never left out
