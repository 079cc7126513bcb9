"""One entry point for a single-image CR mask: a trained network if given, else L.A.Cosmic.

Input checks (the same for both methods): the image must be 2-D with at
least one finite pixel; NaN/Inf pixels are never flagged; pixels at or above
``saturation`` are never flagged (a saturated star core is not a CR, and a
CR on a saturated pixel cannot be seen). Images smaller than a tile are
fine (the tile shrinks to the image).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from astrid_pipeline.errors import BadShapeError, EmptyDataError

METHODS = ("auto", "model", "lacosmic")


@dataclass
class CRMask:
    mask: np.ndarray  # bool
    method: str  # "model" or "lacosmic"
    probability: np.ndarray | None = None  # float32, model only
    info: dict = field(default_factory=dict)

    @property
    def n_pixels(self) -> int:
        return int(self.mask.sum())


def _check(image) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise BadShapeError(None, f"a CR mask needs a 2-D image, got {img.ndim}-D data of shape {img.shape}")
    if img.size == 0 or not np.isfinite(img).any():
        raise EmptyDataError(None, "image has no finite pixel")
    return img


def detect_cosmic_rays(
    image: np.ndarray,
    *,
    method: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    threshold: float = 0.5,
    gain: float = 1.0,
    read_noise: float = 5.0,
    saturation: float | None = None,
    lacosmic: dict | None = None,
    tile: int = 256,
    overlap: int = 32,
    threads: int | None = None,
) -> CRMask:
    """CR mask of one ADU image. ``method="auto"``: the model when ``checkpoint`` exists, else L.A.Cosmic."""
    from pathlib import Path

    img = _check(image)
    if method not in METHODS:
        raise ValueError(f"method {method!r}: one of {METHODS}")
    finite = np.isfinite(img)
    sat = finite & (img >= saturation) if saturation is not None else np.zeros(img.shape, bool)
    use_model = method == "model" or (method == "auto" and checkpoint is not None and Path(checkpoint).is_file())
    if use_model:
        from astrid_pipeline.ml.checkpoint import load_checkpoint
        from astrid_pipeline.ml.inference import predict_probability

        if checkpoint is None:
            from astrid_pipeline.ml.errors import CheckpointError

            raise CheckpointError(None, "method='model' needs a checkpoint")
        model, spec, _ = load_checkpoint(checkpoint)
        prob = predict_probability(model, img, tile=tile, overlap=overlap, threads=threads)
        prob[sat] = 0.0
        return CRMask(prob >= threshold, "model", prob, {"checkpoint": str(checkpoint), "model": spec.name,
                                                          "threshold": threshold})
    from .lacosmic import lacosmic_mask

    kw = dict(gain=gain, read_noise=read_noise, saturation=saturation if saturation is not None else 1e30)
    kw.update(lacosmic or {})
    m = lacosmic_mask(img, **kw) & ~sat
    return CRMask(m, "lacosmic", None, {k: v for k, v in kw.items()})
