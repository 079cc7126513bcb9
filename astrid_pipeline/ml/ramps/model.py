"""The 3D U-Net over up-the-ramp patches (ohana's model, made small enough to train on a CPU).

Input: (N, 2, T, H, W) per pixel and group difference: the difference's
significance ``asinh(z / 3)`` (``z`` = difference minus the pixel's robust
centre, over its noise) and a saturation flag; ``T`` = groups - 1 (binned to
at most ``t_max`` for long ramps, :mod:`.features`). Encoder and decoder are
3D (3x3x3 convolutions, BatchNorm, ReLU; pooling and up-sampling in space
only, so every level keeps the whole time axis), with skip connections as
in Cicek et al. 2016 (MICCAI, "3D U-Net"). The head pools the time axis
(mean and max of the decoder features: "is there a positive step, a
negative one, both?") and a 1x1 convolution gives 4 class logits per pixel
(background, cosmic ray, telegraph noise, snowball; ohana's codes).

Any T, H, W works: space is padded to a multiple of ``2**depth`` and the
output cropped back. Imports torch at module level: import this module only
inside functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

N_CLASSES = 4
IN_CHANNELS = 2


@dataclass(frozen=True)
class UNet3DSpec:
    """Shape of the network (stored in every checkpoint)."""

    hidden: int = field(default=6, metadata={"description": "channels at full resolution (doubling per level)"})
    depth: int = field(default=2, metadata={"description": "spatial down-sampling levels"})
    t_max: int = field(default=32, metadata={"description": "time bins at most: longer ramps are binned to this many"})

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNet3DSpec":
        return cls(**{k: d[k] for k in ("hidden", "depth", "t_max") if k in d})


class DoubleConv3d(nn.Sequential):
    """(3x3x3 conv -> BatchNorm -> ReLU) x 2. BatchNorm, not GroupNorm: in eval mode it uses fixed
    statistics, so a pixel's output does not depend on what else is in its tile (tiled inference
    reproduces a whole-frame pass)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
        )


class UNet3D(nn.Module):
    def __init__(self, spec: UNet3DSpec = UNet3DSpec()):
        super().__init__()
        self.spec = spec
        ch = [spec.hidden * 2**i for i in range(spec.depth + 1)]
        self.inc = DoubleConv3d(IN_CHANNELS, ch[0])
        self.downs = nn.ModuleList([DoubleConv3d(ch[i], ch[i + 1]) for i in range(spec.depth)])
        self.ups = nn.ModuleList([nn.ConvTranspose3d(ch[i + 1], ch[i], (1, 2, 2), stride=(1, 2, 2))
                                  for i in reversed(range(spec.depth))])
        self.dec = nn.ModuleList([DoubleConv3d(2 * ch[i], ch[i]) for i in reversed(range(spec.depth))])
        self.head = nn.Conv2d(2 * ch[0], N_CLASSES, 1)
        with torch.no_grad():  # prior: anomalies are rare, start near p(background) ~ 0.97
            self.head.bias.copy_(torch.tensor([3.0, 0.0, 0.0, 0.0]))

    @property
    def multiple(self) -> int:
        return 2**self.spec.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2, T, H, W) -> (N, 4, H, W) logits."""
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool3d(skips[-1], (1, 2, 2))))
        y = skips.pop()
        for up, dec in zip(self.ups, self.dec):
            y = up(y)
            y = dec(torch.cat([skips.pop(), y], dim=1))
        pooled = torch.cat([y.mean(dim=2), y.amax(dim=2)], dim=1)  # time pooled: (N, 2C, H, W)
        return self.head(pooled)[..., :h, :w]


def parameter_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
