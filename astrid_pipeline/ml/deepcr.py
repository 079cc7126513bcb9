"""deepCR-style U-Net (Zhang & Bloom 2020): BatchNorm, plain or attention-gated skips."""

from __future__ import annotations


def build(hidden: int = 32, depth: int = 2, attention: bool = False):
    from .blocks import UNet

    return UNet(hidden=hidden, depth=depth, norm="batch", attention=attention)
