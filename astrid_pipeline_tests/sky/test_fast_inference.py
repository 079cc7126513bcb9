"""The prepared cosmic-ray network (BatchNorm folded, channels-last, large tiles) gives the probabilities of the
network as trained; the thread count is restored; a model trained further is prepared again."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from astrid_pipeline.ml.inference import is_local, predict_normalized, predict_whole, prepared_model  # noqa: E402
from astrid_pipeline.ml.models import ModelSpec, build_model  # noqa: E402


def _image(shape=(300, 260), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, shape).astype(np.float32)
    x[100:102, 40:90] += 12.0  # a cosmic-ray track
    x[200, 150] += 20.0
    return x


def _trained_like(spec: ModelSpec, seed: int = 0):
    """A model with non-trivial BatchNorm statistics (as after training), in eval mode."""
    torch.manual_seed(seed)
    model = build_model(spec)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_shipped_model_probabilities_unchanged():
    from astrid_pipeline.ml.checkpoint import load_checkpoint
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS

    if not SHIPPED_WEIGHTS.exists():
        pytest.skip("no shipped CR weights")
    loaded = load_checkpoint(SHIPPED_WEIGHTS)
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    from astrid_pipeline.ml.inference import predict_probability, robust_normalize

    rng = np.random.default_rng(0)
    raw = rng.normal(100.0, 5.0, (300, 260))  # sky 100 ADU, noise 5 ADU
    raw[100, 40:46] += 400.0  # a cosmic-ray track
    raw[200, 150] += 600.0
    ref = predict_whole(model, robust_normalize(raw))  # the network as trained, whole image, NCHW, no folding
    before = torch.get_num_threads()
    got = predict_probability(model, raw, tile=96, overlap=32, threads=1)
    assert torch.get_num_threads() == before
    assert np.abs(got - ref).max() < 1e-5
    assert (got[100, 40:46] > 0.5).all() and got[200, 150] > 0.9 and np.median(got) < 0.01


def test_batchnorm_folding_is_exact_and_refreshed_after_training():
    spec = ModelSpec(architecture="deepcr", hidden=8, depth=2)
    model = _trained_like(spec)
    assert is_local(model)
    net, local = prepared_model(model)
    assert local and not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    x = _image(seed=1)
    np.testing.assert_allclose(predict_normalized(model, x, threads=1), predict_whole(model, x), atol=1e-5)
    with torch.no_grad():  # "training": weights change in place
        for p in model.parameters():
            p.mul_(1.1)
    net2, _ = prepared_model(model)
    assert net2 is not net
    np.testing.assert_allclose(predict_normalized(model, x, threads=1), predict_whole(model, x), atol=1e-5)


def test_group_norm_network_keeps_its_tiles():
    spec = ModelSpec(architecture="cosmicconn", hidden=8, depth=2)
    model = _trained_like(spec)
    assert not is_local(model)  # GroupNorm statistics span the tile: the tile size is not free
    x = _image(seed=2)
    a = predict_normalized(model, x, tile=96, overlap=32, threads=1)
    b = predict_normalized(model, x, tile=128, overlap=32, threads=1)
    assert np.isfinite(a).all() and not np.allclose(a, b, atol=1e-6)
