"""Metrics on hand-made masks with known answers."""

import numpy as np
import pytest

from astrid_pipeline.ml import metrics as M


def test_binary_metrics_known_counts():
    truth = np.zeros((10, 10), bool)
    truth[2, 2:6] = True  # 4 CR pixels
    pred = np.zeros_like(truth)
    pred[2, 3:6] = True  # 3 TP
    pred[8, 8] = True  # 1 FP
    m = M.binary_metrics(pred, truth)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 95)
    assert m["tpr"] == pytest.approx(0.75)
    assert m["fpr"] == pytest.approx(1 / 96)
    assert m["precision"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["iou"] == pytest.approx(3 / 5)
    assert m["fdr"] == pytest.approx(0.25)


def test_valid_pixels_are_left_out():
    truth = np.array([[1, 0, 0, 0]], bool)
    pred = np.array([[1, 1, 0, 0]], bool)
    valid = np.array([[1, 0, 1, 1]], bool)
    m = M.binary_metrics(pred, truth, valid)
    assert (m["tp"], m["fp"], m["tn"]) == (1, 0, 2)


def test_score_curve_perfect_and_known_points():
    truth = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    score = np.array([0.9, 0.5, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    c = M.score_curve(score, truth)
    # thresholds 0.9, 0.8, 0.5, 0.1 -> (fpr, tpr) = (0, .5), (1/8, .5), (1/8, 1), (1, 1)
    assert np.allclose(c.tpr, [0.5, 0.5, 1.0, 1.0])
    assert np.allclose(c.fpr, [0, 1 / 8, 1 / 8, 1])
    assert c.tpr_at_fpr(1e-4) == pytest.approx(0.5)
    assert c.tpr_at_fpr(1 / 8) == pytest.approx(1.0)
    assert c.purity_at_tpr(0.95) == pytest.approx(2 / 3)
    perfect = M.score_curve(truth.astype(float), truth)
    assert perfect.tpr_at_fpr(0.0) == 1.0 and perfect.purity_at_tpr(0.95) == 1.0


def test_mask_curve_interpolates_between_operating_points():
    truth = np.zeros(10000, bool)
    truth[:100] = True
    m1 = truth.copy()
    m1[50:100] = False  # tpr .5, fpr 0
    m2 = truth.copy()
    m2[100:102] = True  # tpr 1, fpr 2/9900
    c = M.mask_curve([m2, m1], truth, [1.0, 5.0])
    assert list(c.thresholds) == [5.0, 1.0]  # sorted by FPR
    assert c.tpr_at_fpr(1e-4) == pytest.approx(0.5 + 0.5 * 1e-4 / (2 / 9900))
    assert c.purity_at_tpr(0.95) == pytest.approx(100 / 102)


def test_dilation_protocol():
    truth = np.zeros((7, 7), bool)
    truth[3, 3] = True
    d = M.dilate(truth)
    assert d.sum() == 9 and d[2:5, 2:5].all()
    score = np.zeros((7, 7))
    score[3, 3] = 0.7
    s, t = M.apply_protocol(score, truth, "dilated")
    assert (s[2:5, 2:5] == 0.7).all() and t.sum() == 9
    # a detection one pixel off the truth counts after dilation, not before
    off = np.zeros((7, 7), bool)
    off[3, 4] = True
    assert M.binary_metrics(off, truth)["tp"] == 0
    assert M.binary_metrics(M.dilate(off), M.dilate(truth))["tp"] == 6
    with pytest.raises(ValueError):
        M.apply_protocol(score, truth, "wrong")
