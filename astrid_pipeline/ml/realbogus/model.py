"""The real/bogus CNN (braai-like; Duev et al. 2019) with a type head.

Three blocks of two 3x3 convolutions (16, 32, 64 channels by default) with
batch normalisation (not in braai; it makes training converge in a few
epochs on a CPU budget) and ReLU, each followed by 2x2 max pooling and dropout; an adaptive average pool
to 3x3 (keeps where in the stamp the signal is, at a tenth of a full dense
layer's weights); a 32-unit dense layer with dropout; two heads: one logit
for real vs bogus (sigmoid) and one logit per real type (softmax).

Imports torch at module level: import it inside functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from astrid_pipeline.setting import setting


@dataclass
class RBModelConfig:
    """Shape of the network (stored in every checkpoint)."""

    channels: tuple = setting((16, 32, 64), "channels of the three convolution blocks")
    dense: int = setting(32, "units of the dense layer")
    pool: int = setting(3, "side of the adaptive average pool before the dense layer")
    dropout_conv: float = setting(0.1, "dropout after each convolution block")
    batchnorm: bool = setting(True, "batch normalisation after each convolution")
    dropout_dense: float = setting(0.5, "dropout after the dense layer")
    n_types: int = setting(5, "real types of the type head")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(d["channels"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RBModelConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "channels" in known:
            known["channels"] = tuple(known["channels"])
        return cls(**known)


class RealBogusNet(nn.Module):
    def __init__(self, cfg: RBModelConfig | None = None):
        super().__init__()
        cfg = cfg or RBModelConfig()
        self.cfg = cfg
        layers = []
        cin = 3
        def conv(a, b):
            if cfg.batchnorm:
                return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
            return [nn.Conv2d(a, b, 3, padding=1), nn.ReLU(inplace=True)]

        for c in cfg.channels:
            layers += [*conv(cin, c), *conv(c, c), nn.MaxPool2d(2), nn.Dropout(cfg.dropout_conv)]
            cin = c
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(cfg.pool))
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(cin * cfg.pool**2, cfg.dense), nn.ReLU(inplace=True),
                                   nn.Dropout(cfg.dropout_dense))
        self.rb_head = nn.Linear(cfg.dense, 1)
        self.type_head = nn.Linear(cfg.dense, cfg.n_types)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(real/bogus logit (N,), type logits (N, n_types)) of normalised triplets (N, 3, H, W)."""
        h = self.dense(self.features(x))
        return self.rb_head(h)[:, 0], self.type_head(h)


def parameter_count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
