"""Model family: shapes for odd sizes, parameter counts, losses, attention gates."""

import numpy as np
import pytest
import torch

from astrid_pipeline.ml.losses import bce, dice_bce, get_loss, median_weighted_bce
from astrid_pipeline.ml.models import ARCHITECTURES, ModelSpec, build_model, default_loss, parameter_count


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("attention", [False, True])
def test_output_shape_for_odd_sizes(arch, attention):
    torch.manual_seed(0)
    m = build_model(ModelSpec(arch, hidden=4, depth=2, attention=attention, layers=1)).eval()
    for shape in ((1, 1, 37, 53), (2, 1, 5, 9), (1, 1, 64, 64)):
        with torch.no_grad():
            y = m(torch.randn(*shape))
        assert y.shape == shape


def test_parameter_counts_of_the_published_sizes():
    # at deepCR's published width (32) the U-Net has the paper's size (~467k; the slides list 466,593)
    assert parameter_count(build_model(ModelSpec("deepcr", hidden=32))) == 466593
    assert parameter_count(build_model(ModelSpec("cosmicconn", hidden=32))) == 466593
    att = parameter_count(build_model(ModelSpec("deepcr", hidden=32, attention=True)))
    assert 466593 < att < 1.02 * 466593  # attention gates add about 1 %
    tu = build_model(ModelSpec("transunet", hidden=16))
    enc = tu.encoder.layers
    assert len(enc) == 6 and enc[0].self_attn.num_heads == 6 and enc[0].self_attn.embed_dim == 60
    assert enc[0].linear1.out_features == 64
    assert any(isinstance(x, torch.nn.GroupNorm) for x in tu.modules())
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in build_model(ModelSpec("deepcr")).modules())
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in build_model(ModelSpec("cosmicconn")).modules())


def test_losses_known_values():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert float(bce(logits, target)) == pytest.approx(np.log(2))
    w = torch.full_like(target, 0.5)
    # positives weigh 1, negatives weigh M: (log2 + 3 * 0.5 log2) / 4
    assert float(median_weighted_bce(logits, target, w)) == pytest.approx(np.log(2) * 2.5 / 4)
    assert float(median_weighted_bce(logits, target, None)) == pytest.approx(np.log(2))
    perfect = torch.where(target > 0, 30.0, -30.0)
    assert float(dice_bce(perfect, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(dice_bce(logits, target)) == pytest.approx((1 - (2 * 0.5 + 1) / (2 + 1 + 1) + np.log(2)) / 2)
    assert default_loss(ModelSpec("cosmicconn")) == "median_weighted_bce"
    with pytest.raises(ValueError):
        get_loss("nope")


def test_attention_gate_scales_skip_between_zero_and_one():
    from astrid_pipeline.ml.blocks import AttentionGate

    g = AttentionGate(4, 4, 2, "group")
    x = torch.randn(1, 4, 8, 8)
    y = g(torch.randn(1, 4, 8, 8), x)
    ratio = (y / x)
    assert torch.all(ratio >= 0) and torch.all(ratio <= 1)
