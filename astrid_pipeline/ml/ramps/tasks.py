"""The detector branch's steps as plain functions: configuration, explicit inputs, explicit outputs.

Each returns a result object whose ``metadata`` dict is what a Dagster asset
attaches to its materialization, so the assets (and the ``astrid-ramps``
CLI) are thin calls:

- :func:`run_simulation` -> simulated ramp HDF5 (with its truth);
- :func:`astrid_pipeline.ml.ramps.patches.build_training_set` -> temporal patches;
- :func:`astrid_pipeline.ml.ramps.train.train_unet` -> U-Net checkpoint, history, plot;
- :func:`astrid_pipeline.ml.ramps.evaluate.evaluate_models` -> held-out evaluation JSON;
- :func:`run_detection` -> rules (and, with a model, U-Net and hybrid) products;
- :func:`partition_keys` -> detector and exposure keys declared by configuration files.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from astrid_pipeline.science.ramps.config import DetectionConfig
from astrid_pipeline.setting import setting

from .hybrid import HybridConfig

log = logging.getLogger(__name__)


@dataclass
class SimulationRun:
    path: Path
    plan: object
    metadata: dict = field(default_factory=dict)


@dataclass
class DetectionRun:
    result: object
    paths: dict
    metadata: dict = field(default_factory=dict)


def run_simulation(cfg, detector: str, exposure: int, path: str | os.PathLike) -> SimulationRun:
    """Simulate one exposure of ``cfg`` (a SimulationConfig) into the HDF5 file ``path``."""
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    plan = simulate_exposure(cfg, detector, exposure, path)
    counts = {k: int((plan.events["type"] == k).sum()) for k in ("cosmic_ray", "telegraph_noise", "snowball")}
    p = Path(path)
    return SimulationRun(path=p, plan=plan, metadata={
        "path": str(p), "preset": cfg.preset, "detector": detector, "exposure": f"{exposure:03d}",
        "shape": [cfg.num_frames, *cfg.image_shape], "gain_e_per_dn": plan.gain,
        "read_noise_e": round(plan.read_noise_e, 3), "noise_per_read_dn": round(plan.noise_dn, 3),
        "noise_per_read_dn_per_output": [round(float(v), 3) for v in plan.amp_noise_dn],
        "has_events": plan.has_events, "injected": counts, "seed": cfg.seed,
        "size_mb": round(p.stat().st_size / 1e6, 2),
    })


def run_detection(det_cfg, ramp_path: str | os.PathLike, out_dir: str | os.PathLike, *, model_path=None,
                  hybrid: HybridConfig | None = None, events_path=None, integration: int = 0, attrs: dict | None = None,
                  preview: bool = True, groupdq: bool = False, title: str = "", unet_tile: int = 192,
                  progress: Callable[[int, int], None] | None = None) -> DetectionRun:
    """Rules on ``ramp_path`` (any layout :func:`open_ramp` reads); with ``model_path`` also the U-Net and the
    hybrid, whose mask and events become the products. Writes :func:`write_products` into ``out_dir``."""
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.outputs import write_products
    from astrid_pipeline.science.ramps.readers import open_ramp

    timings = {}
    with open_ramp(ramp_path) as src:
        t0 = time.perf_counter()
        result = detect_ramp(src, det_cfg, integration=integration, progress=progress)
        timings["rules_s"] = round(time.perf_counter() - t0, 3)
        unet_meta = None
        if model_path is not None:
            from astrid_pipeline.science.ramps.prepare import RampPrep

            from .hybrid import merge_hybrid
            from .infer import load_unet, predict_ramp

            model, spec, payload = load_unet(model_path)
            prep = RampPrep(src, integration, gain=det_cfg.gain, saturation=det_cfg.saturation_dn,
                            read_noise=det_cfg.read_noise_dn, side_window=det_cfg.refpix_side_window,
                            calibrate_gls=False)
            t0 = time.perf_counter()
            pred = predict_ramp(prep, model, tile=unet_tile)
            timings["unet_s"] = round(time.perf_counter() - t0, 3)
            result = merge_hybrid(result, pred, hybrid)
            unet_meta = {"model": str(model_path), "best_epoch": payload.get("best_epoch"),
                         "val_mean_anomaly_iou": payload.get("val_mean_anomaly_iou"), **pred.metadata,
                         **result.meta["hybrid"]}
        n_int = src.n_integrations
    extra = dict(attrs or {})
    extra["input"] = str(ramp_path)
    if unet_meta is not None:
        extra["unet"] = unet_meta
    paths = write_products(result, out_dir, events_path=events_path, attrs=extra, preview=preview, title=title,
                           groupdq=groupdq, n_integrations=n_int)
    meta = {
        "input": str(ramp_path), "layout": result.source_layout, "counts": result.counts(),
        "read_noise": round(result.read_noise, 4), "read_noise_per_output": result.meta["read_noise_per_output"],
        "unit": result.unit, "gain": result.gain, "gain_source": result.meta.get("gain_source"),
        "methods": result.meta["methods"], "skipped": result.skipped, "n_groups": result.n_groups,
        "n_flagged_pixel_groups": int(len(result.jumps["y"])), **timings,
        **({"unet": unet_meta} if unet_meta is not None else {}),
        **{k: str(v) for k, v in paths.items()},
    }
    return DetectionRun(result=result, paths=paths, metadata=meta)


def partition_keys(config_paths: Iterable[str | os.PathLike]) -> dict:
    """Detector and exposure partition keys declared by simulation config files (for dynamic partitions).

    Detectors: the union of the gain libraries, in file order; exposures:
    ``000`` up to the largest ``num_exposure_events + num_baseline_exposures``.
    """
    from astrid_pipeline.science.ramps.config import load_simulation_config

    detectors: list[str] = []
    n_exp = 0
    for p in config_paths:
        cfg = load_simulation_config(p)
        detectors += [d for d in cfg.detectors if d not in detectors]
        n_exp = max(n_exp, cfg.num_exposures)
    return {"detector": detectors, "exposure": [f"{i:03d}" for i in range(n_exp)]}


# --------------------------------------------------------------------------- settings of the detector assets
@dataclass
class RampSimulationSettings:
    """Which simulation configuration an exposure is made with (the YAML holds ohana's creator-config keys)."""

    preset: str = setting("", "detector preset (h2rg, roman, nircam) or a simulation YAML path; empty = "
                         "$ASTRID_RAMP_CONFIG or the packaged default")
    image_shape: tuple[int, ...] = setting((), "override [rows, cols], e.g. [2048, 2048] for full frames")
    num_frames: int = setting(0, "override the number of reads (0 = from the configuration)")
    seed: int = setting(-1, "override the seed (-1 = from the configuration)")

    def overrides(self) -> dict:
        out = {}
        if self.image_shape:
            out["image_shape"] = list(self.image_shape)
        if self.num_frames:
            out["num_frames"] = self.num_frames
        if self.seed >= 0:
            out["seed"] = self.seed
        return out


def _detection_default():
    from astrid_pipeline.science.ramps.config import DetectionConfig

    return DetectionConfig()


@dataclass
class RampDetectionSettings:
    """The rules' thresholds, the U-Net hybrid, and what else to write."""

    detection: DetectionConfig = field(default_factory=_detection_default, metadata={
        "description": "rule-based detector thresholds (ohana's DetectorConfig names)"})
    hybrid: HybridConfig = field(default_factory=HybridConfig,
                                 metadata={"description": "how the 3D U-Net extends the rules' detections"})
    model: str = setting("shipped", "3D U-Net of the hybrid: shipped (packaged weights), trained (the ramp_unet3d "
                               "asset's checkpoint), none (rules alone) or a checkpoint path")
    groupdq: bool = setting(True, "also write groupdq.fits: the jump flags as a JWST GROUPDQ (JUMP_DET) for stcal's ramp fit")


@dataclass
class RampTrainingSetSettings:
    """Temporal patches for the 3D U-Net (ohana's create-training: --start_index, --end_index)."""

    preset: str = setting("h2rg", "detector preset or simulation YAML the patches are simulated with")
    start_index: int = setting(0, "first exposure index")
    end_index: int = setting(3, "last exposure index (inclusive)")
    t_max: int = setting(32, "reads kept per patch (longer ramps are subsampled)")
