"""Building blocks shared by every 2-D CR network (U-Net encoder/decoder, attention gates, norms).

Imports torch at module level: import this module only inside functions
(``astrid_pipeline.ml.models.build_model`` does).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def norm_layer(kind: str, channels: int) -> nn.Module:
    """``batch`` (deepCR), ``group`` (Cosmic-CoNN; 8 channels per group, at least 1 group) or ``none``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = max(1, channels // 8)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: batch, group or none")



def pad_to_multiple(x: torch.Tensor, m: int) -> torch.Tensor:
    """Pad the last two axes (bottom/right) up to a multiple of ``m``; callers crop the output back."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")

class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) x 2."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), norm_layer(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"), norm_layer(norm, cout), nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__(nn.MaxPool2d(2), DoubleConv(cin, cout, norm))


class AttentionGate(nn.Module):
    """Additive attention gate on a skip connection (Oktay et al. 2018; Bhavanam et al. 2022, Fig. 2).

    ``g`` is the gating signal from the coarser decoder level, ``x`` the skip
    features; returns ``x * alpha`` with ``alpha`` in (0, 1) per pixel.
    """

    def __init__(self, g_ch: int, x_ch: int, inter: int, norm: str):
        super().__init__()
        self.wg = nn.Sequential(nn.Conv2d(g_ch, inter, 1, bias=True), norm_layer(norm, inter))
        self.wx = nn.Sequential(nn.Conv2d(x_ch, inter, 1, bias=False), norm_layer(norm, inter))
        self.psi = nn.Sequential(nn.Conv2d(inter, 1, 1, bias=True), nn.Sigmoid())

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.wg(g) + self.wx(x))
        return x * self.psi(a)


class Up(nn.Module):
    """Transposed-conv upsampling, optional attention on the skip, concatenation, double conv."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: str, attention: bool):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.gate = AttentionGate(cin // 2, cskip, max(1, cskip // 2), norm) if attention else None
        self.conv = DoubleConv(cin // 2 + cskip, cout, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
        if self.gate is not None:
            skip = self.gate(x, skip)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """A U-Net of ``depth`` levels with ``hidden`` channels at the top, doubling per level.

    Any input size works: it is padded (reflect) to a multiple of
    ``2**depth`` and the output cropped back. Output: logits (N, 1, H, W).
    """

    def __init__(self, hidden: int = 32, depth: int = 2, norm: str = "batch", attention: bool = False,
                 in_channels: int = 1):
        super().__init__()
        self.depth = depth
        ch = [hidden * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, ch[0], norm)
        self.downs = nn.ModuleList([Down(ch[i], ch[i + 1], norm) for i in range(depth)])
        self.ups = nn.ModuleList([Up(ch[i + 1], ch[i], ch[i], norm, attention) for i in reversed(range(depth))])
        self.outc = nn.Conv2d(ch[0], 1, 1)
        nn.init.constant_(self.outc.bias, -4.0)  # prior: CR pixels are rare (~2 %), so start near p = 0.02

    @property
    def multiple(self) -> int:
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        skips = [self.inc(x)]
        for d in self.downs:
            skips.append(d(skips[-1]))
        y = self.bottleneck(skips.pop())
        for up in self.ups:
            y = up(y, skips.pop())
        return self.outc(y)[..., :h, :w]

    def bottleneck(self, y: torch.Tensor) -> torch.Tensor:
        """What happens at the lowest level between encoder and decoder (nothing, in a plain U-Net)."""
        return y
