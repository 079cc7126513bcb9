"""Stacks defined in configuration (the partitions of the M.M.Cosmic asset).

A stacks file (YAML) has ``defaults`` and ``stacks``; each stack either
lists FITS ``images`` (with numina's ``extnum``, ``gain``, ``rnoise``,
``bias``) or asks for a seeded ``simulate`` stack. ``requirements`` is
numina-crmasks' block, merged key by key over the defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astrid_pipeline.layout import safe_key

from .errors import ParameterError
from .params import Requirements, parse_config, parse_requirements

ENV_STACKS = "ASTRID_MMCOSMIC_STACKS"
PACKAGED_STACKS = Path(__file__).resolve().parents[2] / "resources" / "mmcosmic_stacks.yaml"

_SIM_KEYS = {
    "shape", "n_exposures", "seed", "sky", "n_stars", "star_peak_max", "star_peak_min", "fwhm",
    "gain", "rnoise", "bias", "cr_fraction", "cr_median_adu", "n_coincident", "n_coincident_exposures",
}


@dataclass(frozen=True)
class StackSpec:
    name: str
    requirements: Requirements
    images: tuple = ()
    extnum: int | str = 0
    gain: float = 1.0
    rnoise: float = 0.0
    bias: object = 0.0
    simulate: dict = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return bool(self.simulate)


def default_stacks_path() -> Path:
    env = os.environ.get(ENV_STACKS)
    return Path(env).expanduser() if env else PACKAGED_STACKS


def _merge(base: dict, over: dict) -> dict:
    out = dict(base or {})
    for k, v in (over or {}).items():
        out[k] = v
    return out


def parse_stacks(data: dict, *, base_dir: Path | None = None) -> dict[str, StackSpec]:
    """Validate a stacks mapping; return ``{name: StackSpec}`` in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("stacks"), dict) or not data["stacks"]:
        raise ParameterError("stacks", "the stacks file needs a non-empty 'stacks' mapping")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ParameterError("defaults", "must be a mapping")
    out = {}
    for name, spec in data["stacks"].items():
        try:
            safe_key(str(name))
        except ValueError as exc:
            raise ParameterError(f"stacks.{name}", str(exc)) from None
        if not isinstance(spec, dict):
            raise ParameterError(f"stacks.{name}", "must be a mapping with 'images' or 'simulate'")
        merged = _merge(defaults, {k: v for k, v in spec.items() if k != "requirements"})
        req_map = _merge(defaults.get("requirements") or {}, spec.get("requirements") or {})
        has_img, has_sim = "images" in spec, "simulate" in spec
        if has_img == has_sim:
            raise ParameterError(f"stacks.{name}", "give exactly one of 'images' or 'simulate'")
        if has_sim:
            sim = dict(spec["simulate"] or {})
            bad = set(sim) - _SIM_KEYS
            if bad:
                raise ParameterError(f"stacks.{name}.simulate", f"unknown key(s) {sorted(bad)}")
            n = int(sim.get("n_exposures", 3))
            if n < 3:
                raise ParameterError(f"stacks.{name}.simulate.n_exposures", f"needs at least 3, got {n}")
            req = parse_requirements(req_map, n_images=n)
            sim.setdefault("gain", float(merged.get("gain", 1.0)))
            sim.setdefault("rnoise", float(merged.get("rnoise", 3.4)))
            sim.setdefault("bias", float(merged.get("bias", 0.0)))
            out[str(name)] = StackSpec(
                name=str(name), requirements=req, gain=float(sim["gain"]), rnoise=float(sim["rnoise"]),
                bias=float(sim["bias"]), simulate=sim,
            )
        else:
            cfg = parse_config(
                {
                    "images": merged.get("images"),
                    "extnum": merged.get("extnum", 0),
                    "gain": merged.get("gain"),
                    "rnoise": merged.get("rnoise"),
                    "bias": merged.get("bias"),
                    "requirements": req_map,
                },
                base_dir=base_dir,
            )
            out[str(name)] = StackSpec(
                name=str(name), requirements=cfg.requirements, images=cfg.images, extnum=cfg.extnum,
                gain=cfg.gain, rnoise=cfg.rnoise, bias=cfg.bias,
            )
    return out


def load_stacks(path: str | os.PathLike | None = None) -> dict[str, StackSpec]:
    import yaml

    p = Path(path) if path else default_stacks_path()
    if not p.exists():
        raise ParameterError("stacks", f"{p}: stacks file does not exist")
    return parse_stacks(yaml.safe_load(p.read_text()) or {}, base_dir=p.parent)


def simulated_truth_scores(sim, result, *, nsigma: float = 5.0) -> dict:
    """How well MEDIANCR did on a simulated stack (the benchmark's definitions).

    * significant coincident pixels: hit in >= k exposures and the hits raise
      the median by more than ``nsigma`` x one exposure's noise;
    * recall: fraction of them in MEDIANCR;
    * residual pixels: combined_mediancr still more than ``nsigma`` sigma above the noise-free model;
    * false pixels: MEDIANCR pixels not within one pixel of any pixel hit in >= k exposures.
    """
    from scipy import ndimage

    from .diagram import median_of_stack

    k = result.requirements.mm_cr_coincidences
    sig = sim.noise_sigma()
    images = sim.images.astype(np.float32) - np.float32(sim.bias)
    raise_ = median_of_stack(images) - median_of_stack(images - sim.cosmic_rays)
    hitk = sim.hit_count() >= k
    significant = hitk & (raise_ > nsigma * sig)
    mask = result.masks["MEDIANCR"]
    mediancr = result.combinations["mediancr"].image
    near = ndimage.binary_dilation(hitk, structure=np.ones((3, 3), bool))
    return {
        "significant_coincident_pixels": int(significant.sum()),
        "recall_significant": float(mask[significant].mean()) if significant.any() else float("nan"),
        "residual_pixels": int((mediancr - sim.model > nsigma * sig).sum()),
        "false_pixels": int((mask & ~near).sum()),
    }
