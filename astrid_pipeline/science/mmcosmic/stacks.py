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

from astrid_pipeline.io.safe_yaml import clip, short
from astrid_pipeline.layout import safe_key

from .errors import ParameterError
from .params import Requirements, parse_config, parse_requirements

ENV_STACKS = "ASTRID_MMCOSMIC_STACKS"
PACKAGED_STACKS = Path(__file__).resolve().parents[2] / "resources" / "mmcosmic_stacks.yaml"

_SIM_KEYS = {
    "shape", "n_exposures", "seed", "sky", "n_stars", "star_peak_max", "star_peak_min", "fwhm",
    "gain", "rnoise", "bias", "cr_fraction", "cr_median_adu", "n_coincident", "n_coincident_exposures",
}
#: bounds of a simulated stack, checked before anything is drawn: pixels per side, exposures, stars, hits
MAX_SIM_SIDE = 8192
MAX_SIM_EXPOSURES = 100
MAX_SIM_OBJECTS = 1_000_000
#: most stacks one file may declare (each is a Dagster partition)
MAX_STACKS = 10_000


def _sim_int(name: str, key: str, v, lo: int, hi: int) -> int:
    from .params import _number

    return _number(f"stacks.{name}.simulate.{key}", v, integer=True, lo=lo, hi=hi)


def _sim_float(name: str, key: str, v, lo: float | None = None, hi: float | None = None) -> float:
    from .params import _number

    return _number(f"stacks.{name}.simulate.{key}", v, lo=lo, hi=hi)


def _validate_simulation(name: str, sim: dict) -> dict:
    """Types and bounds of a ``simulate`` block (named errors before any array is allocated)."""
    out = dict(sim)
    if "shape" in sim:
        shape = sim["shape"]
        if not isinstance(shape, (list, tuple)) or len(shape) != 2:
            raise ParameterError(f"stacks.{name}.simulate.shape", f"must be [rows, cols], got {short(shape)}")
        out["shape"] = [_sim_int(name, "shape", v, 16, MAX_SIM_SIDE) for v in shape]
    out["n_exposures"] = _sim_int(name, "n_exposures", sim.get("n_exposures", 3), 3, MAX_SIM_EXPOSURES)
    if "seed" in sim:
        out["seed"] = _sim_int(name, "seed", sim["seed"], 0, 2**63 - 1)
    for key in ("n_stars", "n_coincident"):
        if sim.get(key) is not None:
            out[key] = _sim_int(name, key, sim[key], 0, MAX_SIM_OBJECTS)
    if "n_coincident_exposures" in sim:
        out["n_coincident_exposures"] = _sim_int(name, "n_coincident_exposures", sim["n_coincident_exposures"], 2,
                                                 out["n_exposures"])
    for key in ("sky", "star_peak_max", "star_peak_min", "gain", "rnoise", "bias", "cr_median_adu"):
        if key in sim:
            out[key] = _sim_float(name, key, sim[key], lo=None if key == "bias" else 0.0)
    if "cr_fraction" in sim:
        out["cr_fraction"] = _sim_float(name, "cr_fraction", sim["cr_fraction"], lo=0.0, hi=0.5)
    if "fwhm" in sim:
        f = sim["fwhm"]
        vals = f if isinstance(f, (list, tuple)) else [f]
        if isinstance(f, (list, tuple)) and len(f) != out["n_exposures"]:
            raise ParameterError(f"stacks.{name}.simulate.fwhm", f"has {len(f)} values for {out['n_exposures']} exposures")
        checked = [_sim_float(name, "fwhm", v, lo=0.3, hi=100.0) for v in vals]
        out["fwhm"] = checked if isinstance(f, (list, tuple)) else checked[0]
    return out


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
    if len(data["stacks"]) > MAX_STACKS:
        raise ParameterError("stacks", f"declares {len(data['stacks'])} stacks; at most {MAX_STACKS} are accepted")
    out = {}
    for name, spec in data["stacks"].items():
        if isinstance(name, bool) or not isinstance(name, (str, int)):
            raise ParameterError(f"stacks.{clip(name, 40)}", f"a stack name must be a string, got a "
                                 f"{type(name).__name__}; write it in quotes")
        try:
            safe_key(str(name))
        except ValueError as exc:
            raise ParameterError(f"stacks.{clip(name, 40)}", str(exc)) from None
        if not isinstance(spec, dict):
            raise ParameterError(f"stacks.{name}", "must be a mapping with 'images' or 'simulate'")
        merged = _merge(defaults, {k: v for k, v in spec.items() if k != "requirements"})
        for where, block in (("defaults.requirements", defaults.get("requirements")),
                             (f"stacks.{name}.requirements", spec.get("requirements"))):
            if block is not None and not isinstance(block, dict):
                raise ParameterError(where, f"must be a mapping of numina requirements, got {short(block)}")
        req_map = _merge(defaults.get("requirements") or {}, spec.get("requirements") or {})
        has_img, has_sim = "images" in spec, "simulate" in spec
        if has_img == has_sim:
            raise ParameterError(f"stacks.{name}", "give exactly one of 'images' or 'simulate'")
        if has_sim:
            if not isinstance(spec["simulate"] or {}, dict):
                raise ParameterError(f"stacks.{name}.simulate", f"must be a mapping, got {short(spec['simulate'])}")
            sim = dict(spec["simulate"] or {})
            bad = set(sim) - _SIM_KEYS
            if bad:
                raise ParameterError(f"stacks.{name}.simulate", f"unknown key(s) {clip(', '.join(sorted(map(str, bad))))}")
            sim = _validate_simulation(str(name), sim)
            n = sim["n_exposures"]
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
    """Read and validate a stacks file (YAML through :mod:`astrid_pipeline.io.safe_yaml`); errors name the file."""
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.io.safe_yaml import load_yaml

    p = Path(path) if path else default_stacks_path()
    if not p.exists():
        raise ParameterError("stacks", f"{p}: stacks file does not exist")
    try:
        data = load_yaml(p, "stacks file")
    except ConfigError as exc:
        raise ParameterError("stacks", str(exc)) from None
    try:
        return parse_stacks(data or {}, base_dir=p.parent)
    except ParameterError as exc:
        raise type(exc)(exc.key, f"{exc.reason} (in stacks file {p})") from None


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


@dataclass
class StackRunSettings:
    """How a stack of the stacks file is processed (the M.M.Cosmic asset's configuration)."""

    stacks_path: str = field(default="", metadata={
        "description": "stacks YAML to read the stack from; empty = $ASTRID_MMCOSMIC_STACKS or the packaged file"})
    requirements_yaml: str = field(default="", metadata={
        "description": "YAML mapping of numina requirements to override for this run, e.g. '{crmethod: mm_lacosmic}'"})
    plots: bool = field(default=True, metadata={"description": "write the PNG diagnostics"})


def requirements_mapping(req: Requirements) -> dict:
    """A validated Requirements back as a numina-style mapping (tuples as lists, extensions kept)."""
    out = {}
    for k, v in req.to_dict().items():
        if isinstance(v, tuple):
            v = [list(e) if isinstance(e, tuple) else e for e in v]
        out[k] = v
    for key in ("flux_factor_regions", "regions_to_be_skipped", "pixels_to_be_flagged_as_cr",
                "pixels_to_be_ignored_as_cr", "pixels_to_be_replaced_by_local_median", "mm_fixed_points_in_boundary"):
        if not out.get(key):
            out[key] = None
    cc = out.get("mm_crosscorr_region")
    if isinstance(cc, list) and cc and not isinstance(cc[0], list):
        out["mm_crosscorr_region"] = [cc]
    return out


def run_stack(spec: StackSpec, folder: str | os.PathLike, settings: StackRunSettings | None = None):
    """Process one stack into ``folder`` (replaced as one step): (RunSummary, metadata dict).

    Simulated stacks are drawn with their seed and scored against their truth; FITS stacks keep the first
    exposure's header (WCS, EXPTIME) on the combined images.
    """
    from . import run_arrays, simulate_stack
    from .runner import read_bias, read_header, read_stack

    settings = settings or StackRunSettings()
    req = spec.requirements
    if settings.requirements_yaml.strip():
        from astrid_pipeline.io.safe_yaml import load_yaml_text

        over = load_yaml_text(settings.requirements_yaml, "requirements_yaml") or {}
        if not isinstance(over, dict):
            raise ParameterError(f"requirements_yaml must be a mapping of numina requirements, got {type(over).__name__}")
        n = spec.simulate.get("n_exposures", 3) if spec.simulated else len(spec.images)
        req = parse_requirements({**requirements_mapping(req), **over}, n_images=n)
    sim, header = None, None
    if spec.simulated:
        kwargs = dict(spec.simulate)
        if "shape" in kwargs:
            kwargs["shape"] = tuple(int(v) for v in kwargs["shape"])
        sim = simulate_stack(**kwargs)
        arrays, names, bias = list(sim.images), [f"{spec.name}-sim{i + 1}" for i in range(sim.n_exposures)], sim.bias
    else:
        arrays, names = read_stack(spec.images, spec.extnum), list(spec.images)
        bias = read_bias(spec.bias, spec.extnum)
        header = read_header(spec.images[0], spec.extnum)
    summary = run_arrays(arrays, folder, gain=spec.gain, rnoise=spec.rnoise, bias=bias, requirements=req, names=names,
                         replace_folder=True, plots=settings.plots, keep_result=sim is not None, header=header)
    values = {
        "stack": spec.name, "crmethod": req.crmethod, "n_files": len(summary.files), **summary.counts,
        "timings_s": {k: round(v, 4) for k, v in summary.timings.items()},
        "boundary_adu_at_x": {str(k): round(v, 3) for k, v in summary.boundary_at.items()},
        "seeing": summary.seeing,
    }
    if sim is not None:
        values.update(simulated_truth_scores(sim, summary.result))
        values["simulation_seed"] = int(sim.seed)
    return summary, values
