"""Evaluation of the rules, the 3D U-Net, their hybrid and stcal on held-out seeds of each detector preset.

For every preset (a simulation config file), :func:`evaluate_models`
simulates one exposure with a seed the training never used
(``EvaluationConfig.seed``; training indices draw theirs from
``(config seed, index)``), at ``size`` x ``size`` pixels with the
benchmark's event densities, and scores four class masks against the
simulation's truth, pixel by pixel (:func:`astrid_pipeline.science.ramps.metrics.class_scores`):

- ``rules``: :func:`~astrid_pipeline.science.ramps.detect.detect_ramp`;
- ``unet``: the network alone (:func:`.infer.predict_ramp`);
- ``hybrid``: :func:`.hybrid.merge_hybrid` of the two;
- ``stcal``: the JWST pipeline's jump step (cosmic rays only: a pixel with
  any jump flag), given the same reference-corrected cube and the CDS read
  noise measured per output.

Each gets per-class recall, precision, IoU, false pixels per pixel and
recall per S/N bin of the truth pixels; the rules and stcal also get the
per-pixel-group jump recall and false-flag rate. The hybrid's effect per
class is reported as its difference to the rules.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from astrid_pipeline.errors import ConfigError

from .hybrid import HybridConfig

log = logging.getLogger(__name__)
EVALUATION_FILE = "evaluation_unet3d.json"


@dataclass(frozen=True)
class EvaluationConfig:
    """How the held-out evaluation is simulated and run (settings of the evaluation asset)."""

    seed: int = field(default=900_001, metadata={"description": "held-out simulation seed (training never uses it)"})
    size: int = field(default=384, metadata={"description": "rows = columns of the simulated frames"})
    cosmic_ray_density: float = field(default=1 / 300, metadata={"description": "cosmic rays per pixel"})
    rtn_density: float = field(default=1 / 500, metadata={"description": "RTN pixels per pixel"})
    snowballs: int = field(default=3, metadata={"description": "snowballs per frame"})
    tile: int = field(default=192, metadata={"description": "U-Net tile side (px, a multiple of 4)"})
    stcal: bool = field(default=True, metadata={"description": "also score stcal's jump step (needs stcal)"})
    hybrid: HybridConfig = field(default_factory=HybridConfig, metadata={"description": "the U-Net / rules merge"})

    @classmethod
    def from_dict(cls, values) -> "EvaluationConfig":
        values = dict(values)
        if isinstance(values.get("hybrid"), dict):
            values["hybrid"] = HybridConfig(**values["hybrid"])
        return cls(**values)

    def __post_init__(self):
        if self.size < 64:
            raise ConfigError(f"size must be >= 64, got {self.size}")
        if not (0 <= self.cosmic_ray_density < 0.1 and 0 <= self.rtn_density < 0.1) or self.snowballs < 0:
            raise ConfigError("densities must be in [0, 0.1) and snowballs >= 0")


@dataclass
class EvaluationResult:
    metrics: dict
    json_path: Path | None
    metadata: dict = field(default_factory=dict)


def evaluation_simulation(base, cfg: EvaluationConfig):
    """The held-out :class:`SimulationConfig` of a preset: its physics, the evaluation's size, seed and densities."""
    area = cfg.size * cfg.size
    det = base.detectors[0]
    return base.replace(
        image_shape=(cfg.size, cfg.size), seed=cfg.seed, num_exposure_events=1, num_baseline_exposures=0,
        gain_library={det: base.gain_library[det]}, patch_size=(min(cfg.size, base.patch_size[0]),) * 2,
        overlap=min(base.overlap, min(cfg.size, base.patch_size[0]) - 1),
        cosmic_ray_per_exp_range=(int(area * cfg.cosmic_ray_density),) * 2,
        rtn_per_exp_range=(int(area * cfg.rtn_density),) * 2, snowballs_per_exp_range=(cfg.snowballs,) * 2)


def _round(d):
    if isinstance(d, dict):
        return {k: _round(v) for k, v in d.items()}
    if isinstance(d, float):
        return round(d, 5) if math.isfinite(d) else None
    return d


def _delta(a: dict, b: dict) -> dict:
    out = {}
    for cls in ("cosmic_ray", "telegraph_noise", "snowball"):
        out[cls] = {k: (None if a[cls][k] is None or b[cls][k] is None else round(a[cls][k] - b[cls][k], 5))
                    for k in ("recall", "precision", "iou")}
    return out


def evaluate_preset(name: str, base, cfg: EvaluationConfig, model=None) -> dict:
    """All four methods on one preset's held-out exposure."""
    from astrid_pipeline.science.ramps import metrics
    from astrid_pipeline.science.ramps.config import CLASS_CODES, DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.prepare import RampPrep
    from astrid_pipeline.science.ramps.readers import ArrayRampSource
    from astrid_pipeline.science.ramps.refpix import science_mask
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    sim = evaluation_simulation(base, cfg)
    det = sim.detectors[0]
    cube, plan = simulate_exposure(sim, det, 0)
    b = sim.refpix_border
    src = ArrayRampSource(cube, gain=plan.gain, saturation=sim.saturation_dn, refpix=(b,) * 4,
                          num_outputs=sim.num_outputs)
    truth, snr = plan.class_mask, metrics.truth_snr_map(plan)
    t0 = time.perf_counter()
    rules = detect_ramp(src, DetectionConfig())
    t_rules = time.perf_counter() - t0
    sci = science_mask(sim.image_shape, src.refpix)
    out = {"preset": name, "seed": cfg.seed, "shape": [sim.num_frames, *sim.image_shape],
           "rules": metrics.class_scores(rules.mask, truth, sci, snr)}
    jumps = {"rules": metrics.score_jumps_against_truth(rules.jumps["y"], rules.jumps["x"], rules.jumps["frame"],
                                                        plan, sci, np.isin(truth, (2, 3)) | np.isin(rules.mask, (2, 3)))}
    seconds = {"rules": round(t_rules, 3)}
    prep = RampPrep(src, 0, calibrate_gls=False)
    if model is not None:
        from .hybrid import merge_hybrid
        from .infer import predict_ramp

        t0 = time.perf_counter()
        pred = predict_ramp(prep, model, tile=cfg.tile)
        seconds["unet"] = round(time.perf_counter() - t0, 3)
        hyb = merge_hybrid(rules, pred, cfg.hybrid)
        out["unet"] = metrics.class_scores(pred.mask, truth, sci, snr)
        out["hybrid"] = metrics.class_scores(hyb.mask, truth, sci, snr)
        out["hybrid_minus_rules"] = _delta(out["hybrid"], out["rules"])
        out["hybrid_meta"] = hyb.meta["hybrid"]
    if cfg.stcal:
        try:
            from astrid_pipeline.science.ramps.peer_stcal import stcal_detect_jumps

            sat = src.read_rows(0, prep.ny) >= np.float32(sim.saturation_dn - 0.5)  # before the correction
            corr, _ = prep.load(0, prep.ny)
            st = stcal_detect_jumps(corr, sat, math.sqrt(2) * prep.rn_col[None, :], plan.gain)
            smask = np.zeros_like(rules.mask)
            smask[st["y"], st["x"]] = CLASS_CODES["cosmic_ray"]
            out["stcal"] = metrics.class_scores(smask, truth, sci, snr)
            jumps["stcal"] = metrics.score_jumps_against_truth(st["y"], st["x"], st["group"], plan, sci,
                                                               np.isin(truth, (2, 3)) | np.isin(rules.mask, (2, 3)))
            seconds["stcal"] = round(st["seconds"], 3)
        except ImportError as exc:
            out["stcal"] = {"skipped": str(exc)}
    out["jumps"] = {k: {kk: v[kk] for kk in ("recall_by_snr", "false_flag_rate")} for k, v in jumps.items()}
    out["seconds"] = seconds
    return _round(out)


def evaluate_models(cfg: EvaluationConfig, presets: Mapping[str, str | os.PathLike], model_path=None,
                    out_dir: str | os.PathLike | None = None) -> EvaluationResult:
    """Evaluate on each preset (name -> simulation config file); write ``evaluation_unet3d.json`` into ``out_dir``.

    Without ``model_path`` only the rules (and stcal) are scored.
    """
    from astrid_pipeline.science.ramps.config import load_simulation_config

    if not presets:
        raise ConfigError("evaluate_models needs at least one preset (name -> simulation config file)")
    model = None
    if model_path is not None:
        from .infer import load_unet

        model, _spec, _payload = load_unet(model_path)
    results = {}
    for name, path in presets.items():
        log.info("evaluating on preset %s (%s), seed %d", name, path, cfg.seed)
        results[name] = evaluate_preset(name, load_simulation_config(path), cfg, model)
    metrics = {"presets": results, "seed": cfg.seed, "size": cfg.size,
               "model": None if model_path is None else str(model_path)}
    json_path = None
    if out_dir is not None:
        from astrid_pipeline.io.atomic import atomic_write_text

        json_path = atomic_write_text(Path(out_dir) / EVALUATION_FILE, json.dumps(metrics, indent=1))
    meta = {}
    for name, r in results.items():
        for method in ("rules", "unet", "hybrid", "stcal"):
            if method in r and "mean_iou" in r[method]:
                meta[f"{name}/{method}/mean_iou"] = r[method]["mean_iou"]
    return EvaluationResult(metrics=metrics, json_path=json_path, metadata=meta)
