"""Loading the ramp 3D U-Net and running it on a whole frame, tile by tile, with bounded memory.

:func:`predict_ramp` reads the integration in row strips through the same
preprocessing as the rules (:class:`~astrid_pipeline.science.ramps.prepare.RampPrep`),
turns each strip into network inputs (:mod:`.features`), runs the network
on tiles of ``tile`` x ``tile`` pixels with a ``halo`` of context on every
side (the halo is cut away, so tile seams do not show) and keeps the class
probabilities of every pixel (float16). Memory: one strip of inputs plus one
tile's activations, whatever the frame size. A GPU is used when present.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


from .features import difference_features

log = logging.getLogger(__name__)


@dataclass
class UNetPrediction:
    """Per-pixel class probabilities (4, rows, cols) float16 and the arg-max class mask (rows, cols) uint8."""

    prob: np.ndarray
    mask: np.ndarray
    metadata: dict = field(default_factory=dict)


def load_unet(path: str | os.PathLike, device: str = "auto"):
    """``(model in eval mode, spec, payload)`` from a checkpoint written by :func:`.train.train_unet`.

    Reads with ``torch.load(weights_only=True)`` (tensors and plain values
    only, never pickled code); :class:`~astrid_pipeline.ml.errors.CheckpointError`
    names the file when it is missing, unreadable or another network.
    """
    from astrid_pipeline.ml.checkpoint import fill_weights, read_payload

    from .model import UNet3D, UNet3DSpec
    from .train import FORMAT, pick_device

    p = Path(path)
    payload = read_payload(p, FORMAT, "ramp U-Net",
                           "no such U-Net checkpoint (train one with `astrid-ramps train`, or use the rules)")
    model = fill_weights(lambda: UNet3D(UNet3DSpec.from_dict(payload["spec"])), payload, p,
                         f"network spec {payload.get('spec')}")
    model.to(pick_device(device)).eval()
    return model, UNet3DSpec.from_dict(payload["spec"]), payload


def predict_ramp(prep, model, *, tile: int = 192, halo: int = 24, threads: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> UNetPrediction:
    """Class probabilities of every pixel of the integration behind ``prep`` (a :class:`RampPrep`)."""
    import torch

    if tile < 8 or halo < 0 or tile % model.multiple or halo % model.multiple:
        from astrid_pipeline.errors import ConfigError

        raise ConfigError(f"tile ({tile}) and halo ({halo}) must be multiples of {model.multiple}, tile >= 8")
    if threads:
        torch.set_num_threads(threads)
    device = next(model.parameters()).device
    t_max = model.spec.t_max
    ny, nx = prep.ny, prep.nx
    prob = np.zeros((4, ny, nx), np.float16)
    strips = list(range(0, ny, tile))
    t0 = time.perf_counter()
    with torch.no_grad():
        for si, r0 in enumerate(strips):
            r1 = min(ny, r0 + tile)
            e0, e1 = max(0, r0 - halo), min(ny, r1 + halo)
            cube, sat = prep.load(e0, e1)
            x = difference_features(cube, sat, prep.rn_col, prep.gain, t_max)
            del cube
            for c0 in range(0, nx, tile):
                c1 = min(nx, c0 + tile)
                f0, f1 = max(0, c0 - halo), min(nx, c1 + halo)
                xb = torch.from_numpy(np.ascontiguousarray(x[None, :, :, :, f0:f1])).to(device)
                p = torch.softmax(model(xb), dim=1)[0].cpu().numpy()
                prob[:, r0:r1, c0:c1] = p[:, r0 - e0: r1 - e0, c0 - f0: c1 - f0]
            if progress is not None:
                progress(si + 1, len(strips))
    mask = prob.argmax(axis=0).astype(np.uint8)
    mask[~prep.sci] = 0
    prob[:, ~prep.sci] = 0
    prob[0, ~prep.sci] = 1
    return UNetPrediction(prob=prob, mask=mask, metadata={
        "seconds": round(time.perf_counter() - t0, 3), "tile": tile, "halo": halo, "device": str(device),
        "t_max": t_max, "counts_pixels": {k: int((mask == c).sum()) for c, k in
                                          enumerate(("background", "cosmic_ray", "telegraph_noise", "snowball"))},
    })
