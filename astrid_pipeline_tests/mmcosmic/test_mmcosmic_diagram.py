"""Diagram quantities on hand-computed stacks."""

import numpy as np
import pytest

from astrid_pipeline.science.mmcosmic.diagram import (
    diagram_xy,
    median_of_stack,
    minimum_signal,
    noise_sigma,
    stack_statistics,
)


def test_three_exposures_hand_computed():
    # pixel (0,0): 10, 40, 20 -> median 20, min 10, mean 70/3, max 40
    # pixel (0,1): 5, 5, 500 (one CR) -> median 5, min 5
    # pixel (1,0): 100, 900, 800 (CR in two exposures) -> median 800, min 100
    # pixel (1,1): -3, 7, 1 -> median 1, min -3
    stack = np.array(
        [
            [[10, 5], [100, -3]],
            [[40, 5], [900, 7]],
            [[20, 500], [800, 1]],
        ],
        dtype=np.float32,
    )
    s = stack_statistics(stack, k=2)
    np.testing.assert_array_equal(s.median2d, [[20, 5], [800, 1]])
    np.testing.assert_array_equal(s.min2d, [[10, 5], [100, -3]])
    np.testing.assert_array_equal(s.max2d, [[40, 500], [900, 7]])
    np.testing.assert_allclose(s.mean2d, [[70 / 3, 510 / 3], [600, 5 / 3]], rtol=1e-6)
    np.testing.assert_array_equal(s.x, [[10, 5], [100, -3]])
    np.testing.assert_array_equal(s.y, [[10, 0], [700, 4]])


def test_minimum_signal_drops_the_k_highest():
    # five exposures of one pixel: 1, 9, 3, 7, 5
    stack = np.array([1, 9, 3, 7, 5], dtype=np.float32).reshape(5, 1, 1)
    assert minimum_signal(stack, 2)[0, 0] == pytest.approx((1 + 3 + 5) / 3)
    assert minimum_signal(stack, 3)[0, 0] == pytest.approx((1 + 3) / 2)
    assert minimum_signal(stack, 4)[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        minimum_signal(stack, 5)


def test_four_exposures_diagram_with_mean_target():
    stack = np.array([2, 4, 100, 6], dtype=np.float32).reshape(4, 1, 1)
    x, y = diagram_xy(stack, 2)  # min signal = mean(2, 4) = 3, median = 5
    assert x[0, 0] == pytest.approx(3.0)
    assert y[0, 0] == pytest.approx(2.0)
    x, y = diagram_xy(stack, 2, target=stack.mean(axis=0))  # mean = 28
    assert y[0, 0] == pytest.approx(25.0)


def test_fast_median_matches_numpy():
    rng = np.random.default_rng(3)
    stack = rng.normal(size=(3, 40, 50)).astype(np.float32)
    np.testing.assert_array_equal(median_of_stack(stack), np.median(stack, axis=0))


def test_noise_sigma():
    assert noise_sigma(np.array(100.0), 1.0, 3.4) == pytest.approx(np.sqrt(100 + 3.4**2))
    assert noise_sigma(np.array(100.0), 2.0, 0.0) == pytest.approx(np.sqrt(50.0))
    assert noise_sigma(np.array(-50.0), 1.0, 2.0) == pytest.approx(2.0)  # negative signal: read noise only
