"""Losses for CR segmentation on logits: BCE, median-weighted BCE, (1 - Dice + BCE) / 2.

Imports torch at module level; import inside functions.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target)


def median_weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cosmic-CoNN's loss: -sum(Y log P + M (1 - Y) log(1 - P)), averaged over pixels.

    ``weight`` is the median-weighted mask M (sources weigh up to 1, sky down
    to the clamp alpha); without it this is plain BCE.
    """
    if weight is None:
        return bce(logits, target)
    pos = target * F.logsigmoid(logits)
    neg = weight * (1 - target) * F.logsigmoid(-logits)
    return -(pos + neg).mean()


def dice_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             eps: float = 1.0) -> torch.Tensor:
    """(1 - soft Dice + BCE) / 2, the CR slides' loss that converges faster."""
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = (2 * inter + eps) / (p.sum() + target.sum() + eps)
    return (1 - dice + bce(logits, target)) / 2


LOSSES = {"bce": bce, "median_weighted_bce": median_weighted_bce, "dice_bce": dice_bce}


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}: one of {sorted(LOSSES)}") from None
