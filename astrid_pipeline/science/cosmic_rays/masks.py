"""One entry point for a single-image CR mask: a trained network, or L.A.Cosmic.

Input checks (the same for both methods): the image must be 2-D with at
least one finite pixel; NaN/Inf pixels are never flagged; pixels at or above
``saturation`` are never flagged (a saturated star core is not a CR, and a
CR on a saturated pixel cannot be seen). Images smaller than a tile are
fine (the tile shrinks to the image).

Which model: fixed by configuration (:class:`CosmicRayMaskSettings`,
``model_source``): the weights shipped in ``astrid_pipeline/ml/weights`` by
default; a model trained by the ``cr_model`` asset only with
``model_source="trained"``; any checkpoint with ``model_source="path"``. A
newly trained model never replaces the shipped one silently. The model is
named in the results with the sha256 of its checkpoint file.

How the network's probability becomes a mask: the operating point stored
with the weights (:mod:`astrid_pipeline.science.cosmic_rays.calibration`:
seed threshold, grow threshold and a seed significance gate, calibrated on
real frames), unless the settings give a threshold.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

import numpy as np

from astrid_pipeline.errors import BadShapeError, ConfigError, EmptyDataError

log = logging.getLogger(__name__)

METHODS = ("auto", "model", "lacosmic")
MODEL_SOURCES = ("shipped", "trained", "path")
#: threshold used for a checkpoint whose card holds no calibrated operating point (with a warning)
UNCALIBRATED_THRESHOLD = 0.5


class CRModelUnavailableError(ConfigError):
    """A configured CR model cannot be used: torch is not installed, or the checkpoint is missing."""


@dataclass
class CosmicRayMaskSettings:
    """Settings of the single-exposure cosmic-ray mask step (the Dagster Config is derived from these)."""

    method: str = field(default="auto", metadata={
        "description": "auto (the configured model when torch and its weights are available, else L.A.Cosmic "
                       "with a warning), model (fail if the model cannot be used) or lacosmic"})
    model_source: str = field(default="shipped", metadata={
        "description": "which network: shipped (the packaged weights), trained (the cr_model asset's "
                       "checkpoint named by trained_model) or path (the checkpoint field)"})
    checkpoint: str = field(default="", metadata={
        "description": "checkpoint file (.pt) when model_source=path"})
    trained_model: str = field(default="deepcr", metadata={
        "description": "cr_model partition whose checkpoint model_source=trained uses"})
    threshold: Optional[float] = field(default=None, metadata={
        "description": "seed probability threshold; empty = the operating point calibrated on real frames and "
                       "stored with the weights"})
    grow_threshold: Optional[float] = field(default=None, metadata={
        "description": "probability down to which a seeded CR group grows; empty = calibrated"})
    min_snr: Optional[float] = field(default=None, metadata={
        "description": "a seed must stand this many sigma above its 5x5 running median; empty = calibrated"})
    sigclip: float = field(default=4.5, metadata={"description": "L.A.Cosmic sigclip"})
    sigfrac: float = field(default=0.3, metadata={"description": "L.A.Cosmic sigfrac"})
    objlim: float = field(default=5.0, metadata={"description": "L.A.Cosmic objlim"})
    applicability: str = field(default="auto", metadata={
        "description": "auto (skip co-added or resampled products, judged from the header and file name), "
                       "skip or force; a region's science_cosmic_rays option wins over this"})

    def validate(self) -> "CosmicRayMaskSettings":
        from astrid_pipeline.science.cosmic_rays.applicability import MODES

        if self.method not in METHODS:
            raise ConfigError(f"cosmic-ray mask: method={self.method!r} is not one of {', '.join(METHODS)}")
        if self.model_source not in MODEL_SOURCES:
            raise ConfigError(f"cosmic-ray mask: model_source={self.model_source!r} is not one of "
                              f"{', '.join(MODEL_SOURCES)}")
        if self.model_source == "path" and not self.checkpoint:
            raise ConfigError("cosmic-ray mask: model_source=path needs checkpoint (a .pt file)")
        if self.checkpoint and self.model_source != "path":
            raise ConfigError(f"cosmic-ray mask: checkpoint={self.checkpoint!r} is only used with "
                              f"model_source=path (model_source is {self.model_source!r})")
        if self.applicability not in MODES:
            raise ConfigError(f"cosmic-ray mask: applicability={self.applicability!r} is not one of "
                              f"{', '.join(MODES)}")
        for name in ("threshold", "grow_threshold"):
            v = getattr(self, name)
            if v is not None and not 0.0 < v < 1.0:
                raise ConfigError(f"cosmic-ray mask: {name}={v} must lie in (0, 1)")
        if self.min_snr is not None and self.min_snr < 0:
            raise ConfigError(f"cosmic-ray mask: min_snr={self.min_snr} must be >= 0")
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "CosmicRayMaskSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"cosmic-ray mask: unknown settings {unknown}; known: {sorted(names)}")
        return cls(**values).validate()

    def lacosmic(self) -> dict:
        return {"sigclip": self.sigclip, "sigfrac": self.sigfrac, "objlim": self.objlim}


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def resolve_checkpoint(settings: CosmicRayMaskSettings, trained_checkpoint: str | os.PathLike | None = None
                       ) -> tuple[Path | None, str]:
    """``(checkpoint or None, note)``: the network the settings name, or None for L.A.Cosmic.

    ``trained_checkpoint``: where the ``cr_model`` asset wrote
    ``settings.trained_model`` (the caller knows the data layout). A model
    that is configured explicitly (``method="model"``, or ``model_source``
    trained/path) and cannot be used raises :class:`CRModelUnavailableError`;
    ``method="auto"`` with the shipped weights falls back to L.A.Cosmic
    with a warning (the note says why).
    """
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS

    s = settings.validate()
    if s.method == "lacosmic":
        return None, "L.A.Cosmic configured"
    explicit = s.method == "model" or s.model_source != "shipped"
    if s.model_source == "shipped":
        ck = SHIPPED_WEIGHTS
    elif s.model_source == "trained":
        if trained_checkpoint is None:
            raise CRModelUnavailableError(f"cosmic-ray mask: model_source=trained but no cr_model checkpoint "
                                          f"location was given for {s.trained_model!r}")
        ck = Path(trained_checkpoint)
    else:
        ck = Path(s.checkpoint).expanduser()
    problem = None
    if not torch_available():
        problem = "torch is not installed (pip install torch, or use method=lacosmic)"
    elif not ck.is_file():
        problem = (f"checkpoint {ck} does not exist" +
                   (" (materialize cr_model first)" if s.model_source == "trained" else ""))
    if problem is None:
        return ck, f"model_source={s.model_source}"
    if explicit:
        raise CRModelUnavailableError(f"cosmic-ray mask: the configured model ({s.model_source}: {ck}) cannot be "
                                      f"used: {problem}")
    log.warning("cosmic-ray mask: falling back to L.A.Cosmic: %s", problem)
    return None, f"fallback to L.A.Cosmic: {problem}"


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


def operating_point(checkpoint: str | os.PathLike, threshold: float | None = None,
                    grow_threshold: float | None = None, min_snr: float | None = None):
    """The operating point for a checkpoint: the configured values, else the calibrated ones from its card."""
    from astrid_pipeline.science.cosmic_rays.calibration import OperatingPoint, operating_threshold

    stored = operating_threshold(checkpoint)
    if stored is None:
        if threshold is None:
            log.warning("%s has no calibrated operating threshold (no 'operating_threshold' in %s); using %.2f "
                        "without a significance gate - calibrate it with "
                        "python -m astrid_pipeline.science.cosmic_rays.calibration",
                        checkpoint, Path(checkpoint).with_suffix(".json").name, UNCALIBRATED_THRESHOLD)
        stored = OperatingPoint(UNCALIBRATED_THRESHOLD, UNCALIBRATED_THRESHOLD, 0.0, "uncalibrated default")
    if threshold is None and grow_threshold is None and min_snr is None:
        return stored
    t = stored.threshold if threshold is None else float(threshold)
    return OperatingPoint(t, min(t, stored.grow_threshold if grow_threshold is None else float(grow_threshold)),
                          stored.min_snr if min_snr is None else float(min_snr), "configured")


def detect_cosmic_rays(
    image: np.ndarray,
    *,
    method: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    threshold: float | None = None,
    grow_threshold: float | None = None,
    min_snr: float | None = None,
    gain: float = 1.0,
    read_noise: float = 5.0,
    saturation: float | None = None,
    noise: np.ndarray | float | None = None,
    lacosmic: dict | None = None,
    tile: int = 256,
    overlap: int = 32,
    threads: int | None = None,
) -> CRMask:
    """CR mask of one image (ADU; ``gain`` e-/ADU, ``read_noise`` ADU).

    ``method="auto"``: the model when ``checkpoint`` exists and torch is
    installed, else L.A.Cosmic; ``"model"`` fails by name when it cannot.
    ``threshold`` / ``grow_threshold`` / ``min_snr``: None = the operating
    point stored with the checkpoint. ``noise``: per-pixel 1-sigma noise for
    the significance gate (ADU); None = measured from the image
    (:func:`~astrid_pipeline.science.cosmic_rays.calibration.frame_noise`).
    L.A.Cosmic gets the sky pedestal a sky-subtracted image lacks
    (:func:`~astrid_pipeline.science.cosmic_rays.lacosmic.sky_pedestal`).
    """
    img = _check(image)
    if method not in METHODS:
        raise ValueError(f"method {method!r}: one of {METHODS}")
    finite = np.isfinite(img)
    sat = finite & (img >= saturation) if saturation is not None else np.zeros(img.shape, bool)
    have = checkpoint is not None and Path(checkpoint).is_file()
    if method == "model" and not torch_available():
        raise CRModelUnavailableError(f"method='model' needs torch, which is not installed (checkpoint {checkpoint})")
    use_model = method == "model" or (method == "auto" and have and torch_available())
    if method == "auto" and have and not torch_available():
        log.warning("torch is not installed: L.A.Cosmic instead of the CR network %s", checkpoint)
    if use_model:
        from astrid_pipeline.ml.checkpoint import load_checkpoint
        from astrid_pipeline.ml.inference import predict_probability
        from astrid_pipeline.ml.weights_path import SHA_PREFIX, file_sha256
        from astrid_pipeline.science.cosmic_rays.calibration import (frame_noise, hysteresis_mask,
                                                                      significance_map)

        if checkpoint is None:
            from astrid_pipeline.ml.errors import CheckpointError

            raise CheckpointError(None, "method='model' needs a checkpoint")
        model, spec, _ = load_checkpoint(checkpoint)
        op = operating_point(checkpoint, threshold, grow_threshold, min_snr)
        prob = predict_probability(model, img, tile=tile, overlap=overlap, threads=threads)
        prob[sat] = 0.0
        sig = None
        noise_source = "none"
        if op.min_snr > 0:
            if noise is None:
                noise = frame_noise(img, gain if gain and gain > 0 else None)
                noise_source = "measured (background robust std + Poisson at the given gain)"
            else:
                noise_source = "given"
            sig = significance_map(img, noise, at=prob >= op.threshold)  # the gate looks at the seeds only
        mask = hysteresis_mask(prob, op.threshold, op.grow_threshold, sig, op.min_snr) & ~sat & finite
        sha = file_sha256(checkpoint)
        return CRMask(mask, "model", prob, {
            "checkpoint": str(checkpoint), "model": spec.name, "sha256": sha, "sha256_prefix": sha[:SHA_PREFIX],
            "threshold": op.threshold, "grow_threshold": op.grow_threshold, "min_snr": op.min_snr,
            "threshold_source": op.source, "noise": noise_source})
    from .lacosmic import lacosmic_mask, sky_pedestal

    kw = dict(gain=gain, read_noise=read_noise, saturation=saturation if saturation is not None else 1e30)
    kw.update(lacosmic or {})
    ped = sky_pedestal(np.where(finite, img, np.nan), kw["gain"], kw["read_noise"])
    m = lacosmic_mask(img, pedestal=ped, **kw) & ~sat
    return CRMask(m, "lacosmic", None, {**kw, "pedestal": ped})


def detector_parameters(header) -> dict:
    """Gain (e-/ADU) and read noise (ADU) for CR detection from a header, each with where it came from.

    GAINUSED (the sky branch's noise model) / GAIN / CCDGAIN / EGAIN, else ``None`` (the significance gate then uses
    the measured background noise only, and L.A.Cosmic a gain of 1 anchored
    on the measured sky noise by its pedestal); RDNOISE / READNOIS / RON /
    RDNOISEA in electrons, else 0 (the pedestal then carries all of the
    measured sky noise). Nothing is assumed silently: the sources are
    returned for the step's metadata, and missing values are logged.
    """
    out = {"gain": None, "gain_source": "", "read_noise_e": 0.0, "read_noise_source": ""}
    for key in ("GAINUSED", "GAIN", "CCDGAIN", "EGAIN"):  # GAINUSED: the sky branch's noise model (GAINSRC says why)
        try:
            g = float(header.get(key))
        except (TypeError, ValueError):
            continue
        if np.isfinite(g) and g > 0:
            src = f" ({header.get('GAINSRC')})" if key == "GAINUSED" and header.get("GAINSRC") else ""
            out["gain"], out["gain_source"] = g, f"header {key}{src}"
            break
    if out["gain"] is None:
        out["gain_source"] = "not in the header: noise measured from the image"
        log.warning("cosmic-ray mask: no GAIN in the header; the significance gate uses the measured background "
                    "noise and L.A.Cosmic a gain of 1 anchored on it")
    for key in ("RDNOISE", "READNOIS", "RON", "RDNOISEA"):
        try:
            r = float(header.get(key))
        except (TypeError, ValueError):
            continue
        if np.isfinite(r) and r >= 0:
            out["read_noise_e"], out["read_noise_source"] = r, f"header {key} (electrons)"
            break
    if not out["read_noise_source"]:
        out["read_noise_source"] = "not in the header: 0, the measured sky noise includes it"
    return out
