"""Cosmic-CoNN-style U-Net (Xu et al. 2021): GroupNorm, trained with the median-weighted loss.

Cosmic-CoNN's own network is deeper (4 levels, 1024^2 training frames); this
keeps its two defining choices, GroupNorm (robust to small batches and to
the wide dynamic range of astronomical images) and the median-weighted BCE,
on the shared U-Net so it can be compared with the deepCR style at equal size.
"""

from __future__ import annotations


def build(hidden: int = 32, depth: int = 2, attention: bool = False):
    from .blocks import UNet

    return UNet(hidden=hidden, depth=depth, norm="group", attention=attention)
