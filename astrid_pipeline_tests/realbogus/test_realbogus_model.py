"""The real/bogus CNN: normalisation, training, scoring (our triplets and survey-style stamps), evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from astrid_pipeline.ml.errors import CheckpointError
from astrid_pipeline.ml.realbogus.evaluate import evaluate_realbogus, evaluate_scores, roc_metrics
from astrid_pipeline.ml.realbogus.normalize import normalize_triplets
from astrid_pipeline.ml.realbogus.score import SHIPPED, load_realbogus, score_triplets, triplet_from_alert
from astrid_pipeline.ml.realbogus.dataset import REAL_TYPES, load_triplet_set


def _psf_triplet(rng, amp=200.0, sky=300.0, sign=1):
    yy, xx = np.mgrid[0:63, 0:63]
    g = np.exp(-((xx - 31) ** 2 + (yy - 31) ** 2) / (2 * 1.5**2))
    sci = sky + rng.normal(0, 10, (63, 63)) + (amp * g if sign > 0 else 0)
    ref = sky + rng.normal(0, 5, (63, 63)) + (amp * g if sign < 0 else 0)
    return np.stack([sci, ref, sci - ref])


def test_normalisation_ignores_sky_and_scale_and_mirrors_fadings():
    rng = np.random.default_rng(0)
    t = _psf_triplet(rng)
    a, _ = normalize_triplets(t)
    b, _ = normalize_triplets(7.5 * t + 1234.0)  # other gain, other sky
    assert np.allclose(a, b, atol=1e-4)
    fading = np.stack([t[1], t[0], -t[2]])  # the same change seen as a fading
    c, s = normalize_triplets(fading)
    assert s[0] == -1 and np.allclose(c, a, atol=1e-5)
    cs, _ = normalize_triplets(fading, sign=[-1])
    assert np.allclose(cs, a, atol=1e-5)


def test_nan_edges_and_truncated_survey_stamps_are_handled():
    rng = np.random.default_rng(1)
    t = _psf_triplet(rng)
    t[:, :, :20] = np.nan  # beyond the CCD edge
    x, _ = normalize_triplets(t)
    assert np.isfinite(x).all() and (x[0, :, :, :20] == 0).all()
    short = _psf_triplet(rng)[:, 5:60, :50]  # a ZTF stamp cut at the CCD edge
    y, _ = normalize_triplets(short)
    assert y.shape == (1, 3, 63, 63) and np.isfinite(y).all()
    with pytest.raises(Exception, match="triplets must be"):
        normalize_triplets(np.zeros((2, 63, 63)))


def test_training_is_seeded_and_writes_weights_history_and_plot(tiny_triplets, tiny_rb_model, tmp_path):
    from astrid_pipeline.ml.realbogus.train import RBTrainConfig, train_realbogus

    out, s = tiny_rb_model
    assert (out / "realbogus.pt").exists() and (out / "history.json").exists()
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert len(s["history"]) == 2 and 0 < s["threshold"] < 1 and s["parameters"] < 150_000
    again = train_realbogus(tiny_triplets[0], tmp_path, RBTrainConfig(epochs=2, batch_size=32, seed=3))
    a = torch.load(out / "realbogus.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "realbogus.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a) and again["history"] == s["history"]


def test_scores_and_type_probabilities(tiny_rb_model):
    model, payload = load_realbogus(tiny_rb_model[0] / "realbogus.pt")
    assert payload["types"] == list(REAL_TYPES)
    rng = np.random.default_rng(2)
    rb, tp = score_triplets(model, np.stack([_psf_triplet(rng), _psf_triplet(rng, sign=-1)]))
    assert rb.shape == (2,) and tp.shape == (2, len(REAL_TYPES))
    assert ((rb >= 0) & (rb <= 1)).all() and np.allclose(tp.sum(1), 1, atol=1e-5)
    rb1, _ = score_triplets(model, _psf_triplet(rng))  # one (3, 63, 63) triplet
    assert rb1.shape == (1,)


def test_evaluation_numbers_on_known_scores():
    table = pd.DataFrame({"label": [1] * 50 + [0] * 50, "type": ["nova"] * 25 + ["variable"] * 25 + ["cosmic_ray"] * 50,
                          "snr": np.linspace(5, 60, 100)})
    perfect = np.r_[np.linspace(0.6, 1, 50), np.linspace(0, 0.4, 50)]
    tp = np.zeros((100, len(REAL_TYPES)))
    tp[:25, 2] = 1  # novae called novae
    tp[25:, 0] = 1  # variables called supernovae
    ev = evaluate_scores(perfect, tp, table, REAL_TYPES, threshold=0.5)
    assert ev["auc"] == pytest.approx(1.0) and ev["fpr_at_95tpr"] == 0 and ev["fnr_at_1fpr"] == pytest.approx(0)
    assert ev["per_type_recall"] == {"nova": 1.0, "variable": 1.0} and ev["per_type"]["cosmic_ray"]["rejected"] == 1.0
    m = np.array(ev["type_confusion"]["matrix"])
    assert m[2, 2] == 25 and m[1, 0] == 25 and ev["type_accuracy"] == pytest.approx(0.5)
    rnd = roc_metrics(np.random.default_rng(0).random(4000), np.r_[np.ones(2000, bool), np.zeros(2000, bool)])
    assert abs(rnd["auc"] - 0.5) < 0.05 and rnd["fpr_at_95tpr"] > 0.9


def test_evaluation_of_a_trained_model_on_a_set(tiny_triplets, tiny_rb_model, tmp_path):
    x, t = load_triplet_set(tiny_triplets[0], "val")
    ev = evaluate_realbogus(tiny_rb_model[0] / "realbogus.pt", x, t, plot_dir=tmp_path)
    assert 0 <= ev["auc"] <= 1 and ev["seconds_per_1000"] > 0
    assert (tmp_path / "realbogus_evaluation.png").exists() and len(ev["calibration"]["n"]) == 10


def test_alert_stamps_score_unchanged(tiny_rb_model, processed_region, tmp_path):
    """A survey-style alert (gzipped FITS stamps in counts) goes straight into the scorer."""
    from astrid_pipeline.alerts.packets import alert_images_from_files, read_alerts, write_alerts
    from astrid_pipeline.io.parquet_io import read_partitioned

    layout, region = processed_region
    cands = read_partitioned(layout.root, "candidates", {"region": region}).head(3)
    im = alert_images_from_files(layout.normalized_image(region, "science"), layout.normalized_image(region, "reference"),
                                 layout.difference(region, "zogy"), layout.raw_image(region, "reference"))
    write_alerts(cands, im, tmp_path / "a.avro", region=region)
    recs = read_alerts(tmp_path / "a.avro")
    trip, sign = zip(*(triplet_from_alert(r) for r in recs))
    rb, _ = score_triplets(tiny_rb_model[0] / "realbogus.pt", np.stack(trip), sign=list(sign))
    assert rb.shape == (3,) and np.isfinite(rb).all()
    assert list(sign) == [1 if s > 0 else -1 for s in cands["sign"]]


def test_bad_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such real/bogus checkpoint"):
        load_realbogus(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_realbogus(tmp_path / "bad.pt")


def test_candidate_scores_table_keyed_by_candidate_id(tiny_rb_model, processed_region, tmp_path):
    import h5py

    from astrid_pipeline.alerts.ids import candidate_id
    from astrid_pipeline.io.parquet_io import read_partitioned, write_partitioned
    from astrid_pipeline.ml.realbogus.score import candidate_scores, candidate_scores_schema, score_summary

    layout, region = processed_region
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    with h5py.File(layout.triplets(region), "r") as f:
        trip = f["triplets"][()]
    s = candidate_scores(trip, cands, tiny_rb_model[0] / "realbogus.pt")
    assert list(s["candidate_id"]) == list(cands["candidate_id"]) and s["rb"].between(0, 1).all()
    assert s["candid"].iloc[1] == candidate_id(region, float(cands["mjd"].iloc[0]), int(cands["candidate_id"].iloc[1]))
    assert set(s["rb_type"]) <= set(REAL_TYPES)
    s["region"] = region
    out = write_partitioned(s, tmp_path, "candidate_scores", {"region": region}, candidate_scores_schema())
    back = read_partitioned(tmp_path, "candidate_scores", {"region": region})
    assert np.allclose(back["rb"], s["rb"]) and back["candid"].dtype == np.int64 and out.exists()
    summ = score_summary(s["rb"], 0.5)
    assert summ["n"] == len(s) and summ["n_nan"] == 0 and 0 <= summ["real_fraction"] <= 1
