"""A small TransUNet (Chen et al. 2021) for CR masks, as in the CR slides' "TUNet_4".

CNN encoder (GroupNorm double convs) down to 1/2**depth resolution, a
1x1 projection to ``hidden_dim`` = 60 tokens (one per low-resolution
pixel), ``layers`` = 6 pre-norm transformer layers with ``heads`` = 6 and an
MLP of ``mlp_dim`` = 64, a learned position embedding on a 16x16 grid
interpolated to the actual grid (so any image size works), then the U-Net
decoder with skip connections.

Unlike the convolutional U-Nets, attention is global: tiled inference of a
TransUNet is not bit-equal to whole-image inference (tiles are still
overlapped so seams are small).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import UNet


class TransUNet(UNet):
    """The U-Net of :mod:`.blocks` with a transformer encoder over the lowest-level feature map."""

    def __init__(self, hidden: int = 16, depth: int = 2, hidden_dim: int = 60, mlp_dim: int = 64, layers: int = 6,
                 heads: int = 6, norm: str = "group", attention: bool = False, grid: int = 16):
        if hidden_dim % heads:
            raise ValueError(f"hidden_dim {hidden_dim} must be divisible by heads {heads}")
        super().__init__(hidden=hidden, depth=depth, norm=norm, attention=attention)
        bottom = hidden * 2**depth
        self.embed = nn.Conv2d(bottom, hidden_dim, 1)
        self.pos = nn.Parameter(torch.zeros(1, hidden_dim, grid, grid))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden_dim, heads, dim_feedforward=mlp_dim, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_dim)
        self.unembed = nn.Sequential(nn.Conv2d(hidden_dim, bottom, 3, padding=1), nn.ReLU(inplace=True))

    def bottleneck(self, y: torch.Tensor) -> torch.Tensor:
        z = self.embed(y)
        n, c, gh, gw = z.shape
        pos = F.interpolate(self.pos, size=(gh, gw), mode="bilinear", align_corners=False)
        t = (z + pos).flatten(2).transpose(1, 2)
        t = self.norm(self.encoder(t))
        return self.unembed(t.transpose(1, 2).reshape(n, c, gh, gw))


def build(hidden: int = 16, depth: int = 2, attention: bool = False, hidden_dim: int = 60, mlp_dim: int = 64,
          layers: int = 6, heads: int = 6):
    return TransUNet(hidden=hidden, depth=depth, hidden_dim=hidden_dim, mlp_dim=mlp_dim, layers=layers, heads=heads,
                     norm="group", attention=attention)
