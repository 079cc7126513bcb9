"""Configuration of the ramp simulation and of the rule-based detectors.

:class:`SimulationConfig` accepts ohana's creator-config keys unchanged (a
``creator_config.yaml`` from ohana loads as is) plus a few of ours (``seed``,
``bias_dn``, reference-pixel drifts, ``row_block``). Every value is validated
when the config is built, so a bad range fails at once with a message that
names the key, not half-way through a simulation.

Units follow ohana's documentation: charges, read noise and RTN offsets in
electrons, dark current in electrons per second, times in seconds, radii in
pixels, saturation in DN. The gain library maps detector IDs to gains in
electrons per DN.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from astrid_pipeline.errors import ConfigError

#: Class codes of the anomaly masks (ohana's order).
CLASS_CODES = {"background": 0, "cosmic_ray": 1, "telegraph_noise": 2, "snowball": 3}
#: Event type names used in catalogs and detections.json (ohana's names).
EVENT_TYPES = ("cosmic_ray", "telegraph_noise", "snowball")
INJECTION_TYPES = ("cosmic_ray", "snowball", "rtn", "all", "none")

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "resources" / "ramp_simulation.yaml"

_RANGE_KEYS = {
    # key: (lower bound allowed, integer?)
    "cosmic_ray_per_exp_range": (0, True),
    "snowballs_per_exp_range": (0, True),
    "rtn_per_exp_range": (0, True),
    "dark_current_range": (0.0, False),
    "read_noise_range": (0.0, False),
    "gaussian_noise_range": (0.0, False),
    "cosmic_ray_charge_range": (0.0, False),
    "rtn_offset_range": (0.0, False),
    "rtn_period_range": (1.0, False),
    "rtn_duty_fraction_range": (0.0, False),
    "snowball_radius_range": (0.5, False),
    "snowball_halo_amplitude_ratio_range": (0.0, False),
    "snowball_halo_decay_scale_range": (0.1, False),
}


def _range(name: str, value, lower: float, integer: bool) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{name} must be a [min, max] pair, got {value!r}")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must hold two numbers, got {value!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if lo > hi:
        raise ConfigError(f"{name}: min {lo:g} is greater than max {hi:g}")
    if lo < lower:
        raise ConfigError(f"{name}: values must be >= {lower:g}, got min {lo:g}")
    if integer:
        if lo != int(lo) or hi != int(hi):
            raise ConfigError(f"{name} must hold whole numbers, got {value!r}")
        return (int(lo), int(hi))
    return (lo, hi)


@dataclass(frozen=True)
class SimulationConfig:
    """ohana's creator config (same keys) plus the physics knobs it leaves implicit."""

    image_shape: tuple = (256, 256)
    num_frames: int = 20
    patch_size: tuple = (128, 128)
    overlap: int = 16
    num_exposure_events: int = 2
    num_baseline_exposures: int = 1
    injection_type: str = "all"
    num_classes: int = 4
    cosmic_ray_per_exp_range: tuple = (20, 60)
    snowballs_per_exp_range: tuple = (1, 2)
    rtn_per_exp_range: tuple = (20, 40)
    gain_library: Mapping[str, float] = field(default_factory=lambda: {"18220_SCA": 1.062, "18248_SCA": 1.021})
    exp_time: float = 200.0
    saturation_dn: float = 65535.0
    dark_current_range: tuple = (0.01, 0.02)
    read_noise_range: tuple = (15.0, 25.0)
    gaussian_noise_range: tuple = (0.5, 10.0)
    cosmic_ray_charge_range: tuple = (200.0, 6000.0)
    rtn_offset_range: tuple = (30.0, 300.0)
    rtn_period_range: tuple = (4.0, 12.0)
    rtn_duty_fraction_range: tuple = (0.1, 0.9)
    snowball_radius_range: tuple = (3.0, 10.0)
    snowball_halo_amplitude_ratio_range: tuple = (0.02, 0.15)
    snowball_halo_decay_scale_range: tuple = (3.0, 10.0)
    # --- ours (not in ohana) ---
    output_dir: str = ""
    seed: int = 2024
    bias_dn: float = 12000.0
    bias_spread_dn: float = 600.0
    refpix_border: int = 4
    num_outputs: int = 4
    output_drift_dn: float = 3.0
    row_drift_dn: float = 2.0
    ipc_alpha: float = 0.02
    cosmic_ray_track_fraction: float = 0.4
    snowball_core_fill_range: tuple = (0.9, 1.3)
    row_block: int = 32

    # ------------------------------------------------------------------
    def __post_init__(self):
        def setv(k, v):
            object.__setattr__(self, k, v)

        shape = self.image_shape
        if not isinstance(shape, (list, tuple)) or len(shape) != 2:
            raise ConfigError(f"image_shape must be [rows, cols], got {shape!r}")
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"image_shape must hold integers, got {self.image_shape!r}") from exc
        b = int(self.refpix_border)
        if b < 0:
            raise ConfigError(f"refpix_border must be >= 0, got {b}")
        if min(shape) < 2 * b + 8:
            raise ConfigError(f"image_shape {shape} is too small for a {b}-pixel reference border (need >= {2 * b + 8})")
        setv("image_shape", shape)
        setv("refpix_border", b)
        if int(self.num_frames) != self.num_frames or int(self.num_frames) < 2:
            raise ConfigError(f"num_frames must be an integer >= 2, got {self.num_frames!r}")
        setv("num_frames", int(self.num_frames))
        ps = self.patch_size
        if not isinstance(ps, (list, tuple)) or len(ps) != 2 or any(int(p) < 1 for p in ps):
            raise ConfigError(f"patch_size must be [rows, cols] of positive integers, got {ps!r}")
        ps = tuple(int(p) for p in ps)
        if ps[0] > shape[0] or ps[1] > shape[1]:
            raise ConfigError(f"patch_size {ps} is larger than image_shape {shape}")
        setv("patch_size", ps)
        if not 0 <= int(self.overlap) < min(ps):
            raise ConfigError(f"overlap must be >= 0 and smaller than patch_size, got {self.overlap!r}")
        for k in ("num_exposure_events", "num_baseline_exposures"):
            v = getattr(self, k)
            if int(v) != v or int(v) < 0:
                raise ConfigError(f"{k} must be a non-negative integer, got {v!r}")
            setv(k, int(v))
        if self.num_exposure_events + self.num_baseline_exposures < 1:
            raise ConfigError("num_exposure_events + num_baseline_exposures must be at least 1")
        if self.injection_type not in INJECTION_TYPES:
            raise ConfigError(
                f"injection_type {self.injection_type!r} is unknown; use one of {', '.join(INJECTION_TYPES)}"
            )
        if int(self.num_classes) != 4:
            raise ConfigError(
                f"num_classes must be 4 (background, cosmic_ray, telegraph_noise, snowball), got {self.num_classes!r}"
            )
        for k, (lower, integer) in _RANGE_KEYS.items():
            setv(k, _range(k, getattr(self, k), lower, integer))
        if self.rtn_duty_fraction_range[1] >= 1.0 or self.rtn_duty_fraction_range[0] <= 0.0:
            raise ConfigError("rtn_duty_fraction_range must lie strictly between 0 and 1")
        setv("snowball_core_fill_range", _range("snowball_core_fill_range", self.snowball_core_fill_range, 0.0, False))
        gl = self.gain_library
        if not isinstance(gl, Mapping) or not gl:
            raise ConfigError("gain_library must map at least one detector ID to its gain (e-/DN)")
        clean = {}
        for det, g in gl.items():
            try:
                g = float(g)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"gain_library[{det!r}] must be a number, got {g!r}") from exc
            if not (math.isfinite(g) and g > 0):
                raise ConfigError(f"gain_library[{det!r}] must be a positive gain in e-/DN, got {g!r}")
            from astrid_pipeline.layout import safe_key

            try:
                safe_key(str(det))
            except ValueError as exc:
                raise ConfigError(f"gain_library key {det!r} cannot be used as a partition key: {exc}") from exc
            clean[str(det)] = g
        setv("gain_library", clean)
        for k in ("exp_time", "saturation_dn", "bias_dn"):
            v = float(getattr(self, k))
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{k} must be a positive number, got {getattr(self, k)!r}")
            setv(k, v)
        if self.bias_dn + 5 * self.bias_spread_dn >= self.saturation_dn:
            raise ConfigError(
                f"bias_dn {self.bias_dn:g} (+5 x spread) leaves no room below saturation_dn {self.saturation_dn:g}"
            )
        if self.saturation_dn > 65535:
            raise ConfigError(f"saturation_dn {self.saturation_dn:g} exceeds the 16-bit range of H2RG ramps")
        for k in ("bias_spread_dn", "output_drift_dn", "row_drift_dn", "ipc_alpha"):
            v = float(getattr(self, k))
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{k} must be >= 0, got {getattr(self, k)!r}")
            setv(k, v)
        if self.ipc_alpha >= 0.2:
            raise ConfigError(f"ipc_alpha must be < 0.2 (fraction to each neighbour), got {self.ipc_alpha}")
        if not 0 <= float(self.cosmic_ray_track_fraction) <= 1:
            raise ConfigError("cosmic_ray_track_fraction must be between 0 and 1")
        if int(self.num_outputs) < 1 or (shape[1] - 2 * b) < int(self.num_outputs):
            raise ConfigError(f"num_outputs must be between 1 and the number of columns, got {self.num_outputs}")
        setv("num_outputs", int(self.num_outputs))
        if int(self.row_block) < 1:
            raise ConfigError(f"row_block must be >= 1, got {self.row_block}")
        setv("row_block", int(self.row_block))
        setv("seed", int(self.seed))

    # ------------------------------------------------------------------
    @property
    def detectors(self) -> list[str]:
        return list(self.gain_library)

    @property
    def num_exposures(self) -> int:
        return self.num_exposure_events + self.num_baseline_exposures

    @property
    def exposure_keys(self) -> list[str]:
        return [f"{i:03d}" for i in range(self.num_exposures)]

    @property
    def frame_time(self) -> float:
        """Seconds between reads: the exposure time spread evenly over the frames."""
        return self.exp_time / self.num_frames

    def injects(self, kind: str) -> bool:
        return self.injection_type == "all" or self.injection_type == kind

    def replace(self, **changes) -> "SimulationConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        for k, v in out.items():
            if isinstance(v, tuple):
                out[k] = list(v)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SimulationConfig":
        if not isinstance(values, Mapping):
            raise ConfigError(f"a simulation config must be a mapping of keys to values, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown simulation config keys: {', '.join(unknown)}")
        return cls(**dict(values))


def load_simulation_config(path: str | os.PathLike | None = None, **overrides) -> SimulationConfig:
    """Read a YAML simulation config (ohana's keys); ``None`` = the packaged default."""
    import yaml

    p = Path(path) if path else DEFAULT_CONFIG_PATH
    if not p.exists():
        raise ConfigError(f"{p}: simulation config file does not exist")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(values, Mapping):
        raise ConfigError(f"{p}: the YAML must be a mapping of keys to values")
    values = dict(values)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SimulationConfig.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds of the rule-based detectors (ohana's DetectorConfig names where they exist).

    Jumps are tested one-sided (cosmic rays only add charge) on frame
    differences against ``sqrt(2 sigma_read^2 + slope/gain)`` in DN.
    """

    sigma_threshold: float = 4.0  # one-sided (cosmic rays only add charge)
    read_noise_dn: float | None = None  # per-read noise in DN; None = estimated from the ramp
    gain: float | None = None  # e-/DN; None = from the file (1.0 when absent)
    saturation_dn: float | None = None  # None = from the file, else 65535 for integer data
    cosmic_ray_min_step: float = 0.0  # DN; jumps below are ignored even if significant
    event_min_snr: float = 5.0  # single-pixel cosmic rays below this S/N are flagged but not catalogued
    neighbor_sigma: float | None = 8.0  # jumps this significant also flag their 4 neighbours (IPC); None = off
    cosmic_ray_max_spatial_extent: int = 400
    rtn_min_transitions: int = 2
    rtn_max_transitions: int = 50
    rtn_min_snr: float = 4.0  # two-level amplitude / per-read noise
    rtn_min_tstat: float = 7.0  # amplitude * sqrt(n_hi n_lo / n) / noise
    rtn_fit_quality_threshold: float = 0.3  # minimum R^2 gain of the two-level model over a line
    rtn_amplitude_range: tuple = (0.0, 65535.0)  # DN
    rtn_candidate_chi2_p: float = 1e-3
    snowball_min_radius: float = 3.0  # core radius, px
    snowball_max_radius: float = 250.0
    snowball_circularity_threshold: float = 0.7
    snowball_min_area: int = 40  # core + halo, px
    snowball_max_area: int = 200000
    snowball_core_fraction: float = 0.7  # jump / headroom-to-saturation that makes a "near-saturated" core pixel
    snowball_halo_fraction: float = 0.5  # fraction of the ring just outside the core that must jump
    block_rows: int = 0  # 0 = automatic (about 64 MB of float32 per block)
    workers: int = 1  # threads over row blocks
    methods: tuple = ("jumps", "rtn", "snowballs")

    def __post_init__(self):
        if not (self.sigma_threshold > 0):
            raise ConfigError(f"sigma_threshold must be > 0, got {self.sigma_threshold}")
        for k in ("read_noise_dn", "gain", "saturation_dn"):
            v = getattr(self, k)
            if v is not None and not (float(v) > 0 and math.isfinite(float(v))):
                raise ConfigError(f"{k} must be a positive number or None, got {v!r}")
        if self.rtn_min_transitions < 1 or self.rtn_max_transitions < self.rtn_min_transitions:
            raise ConfigError("rtn_min_transitions must be >= 1 and <= rtn_max_transitions")
        object.__setattr__(self, "rtn_amplitude_range", _range("rtn_amplitude_range", self.rtn_amplitude_range, 0.0, False))
        if not 0 < self.rtn_candidate_chi2_p < 1:
            raise ConfigError("rtn_candidate_chi2_p must be between 0 and 1")
        if self.snowball_min_radius > self.snowball_max_radius:
            raise ConfigError("snowball_min_radius is greater than snowball_max_radius")
        if not 0 < self.snowball_circularity_threshold <= 1:
            raise ConfigError("snowball_circularity_threshold must be in (0, 1]")
        if self.block_rows < 0 or self.workers < 1:
            raise ConfigError("block_rows must be >= 0 and workers >= 1")
        methods = tuple(self.methods)
        bad = [m for m in methods if m not in ("jumps", "rtn", "snowballs")]
        if bad or not methods:
            raise ConfigError(f"methods must be a non-empty subset of jumps, rtn, snowballs; got {self.methods!r}")
        if "snowballs" in methods and "jumps" not in methods:
            raise ConfigError("method 'snowballs' needs 'jumps' (snowballs are groups of jumping pixels)")
        object.__setattr__(self, "methods", methods)

    def replace(self, **changes) -> "DetectionConfig":
        return dataclasses.replace(self, **changes)
