"""Configuration of the ramp simulation and of the rule-based detectors.

:class:`SimulationConfig` accepts ohana's creator-config keys unchanged (a
``creator_config.yaml`` from ohana loads as is) plus the detector physics
ohana leaves implicit (``seed``, bias, reference pixels, outputs with their
own read noise and offsets, 1/f noise, inter-pixel capacitance, ...). Every
value is validated when the config is built, so a bad range fails at once
with a message that names the key, not half-way through a simulation.

:class:`DetectionConfig` holds every threshold of the rule-based detectors
(ohana's ``DetectorConfig`` names where they exist). Both are plain
dataclasses whose fields carry ``metadata={"description": ...}``: the CLI
builds its flags and the Dagster layer its ``Config`` from those fields, so
each setting is declared here once.

Units follow ohana's documentation: charges, read noise and RTN offsets in
electrons, dark current in electrons per second, times in seconds, radii in
pixels, saturation in DN. The gain library maps detector IDs to gains in
electrons per DN.

Science code never looks up a packaged YAML file by itself: callers pass a
path (:func:`astrid_pipeline.presets.simulation_config_path` gives the
packaged default and the named detector presets).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.io.safe_yaml import clip, short

#: Class codes of the anomaly masks (ohana's order).
CLASS_CODES = {"background": 0, "cosmic_ray": 1, "telegraph_noise": 2, "snowball": 3}
#: Class names by code (index = code).
CLASS_NAMES = ("background", "cosmic_ray", "telegraph_noise", "snowball")
#: Event type names used in catalogs and detections.json (ohana's names).
EVENT_TYPES = ("cosmic_ray", "telegraph_noise", "snowball")
INJECTION_TYPES = ("cosmic_ray", "snowball", "rtn", "all", "none")
#: Detection methods, in the order they run.
METHODS = ("jumps", "rtn", "snowballs")

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
        raise ConfigError(f"{name} must be a [min, max] pair, got {short(value)}")
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must hold two numbers, got {short(value)}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ConfigError(f"{name} must be finite, got {short(value)}")
    if lo > hi:
        raise ConfigError(f"{name}: min {lo:g} is greater than max {hi:g}")
    if lo < lower:
        raise ConfigError(f"{name}: values must be >= {lower:g}, got min {lo:g}")
    if integer:
        if lo != int(lo) or hi != int(hi):
            raise ConfigError(f"{name} must hold whole numbers, got {short(value)}")
        return (int(lo), int(hi))
    return (lo, hi)


def _f(default, description: str, **kw):
    """A dataclass field with its description (the CLI and the Dagster Config show it)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"description": description}, **kw)
    return field(default=default, metadata={"description": description}, **kw)


#: bounds of a simulation, checked when the config is built (before any array exists): a frame side (Roman's
#: H4RG is 4096), reads per ramp, exposures per detector, detectors, values per ramp, events per exposure
MAX_FRAME_SIDE = 4096
MAX_FRAMES = 1000
MAX_EXPOSURES = 10_000
MAX_DETECTORS = 1000
#: detector x exposure partitions of the detector branch (Dagster slows past tens of thousands)
MAX_PARTITIONS = 100_000
MAX_RAMP_VALUES = 2**32
MAX_EVENTS_PER_EXPOSURE = 1_000_000


def _check_field_types(obj, what: str) -> None:
    """Each field of the config dataclass ``obj`` holds a value of its declared kind (named error otherwise).

    Numbers must be numbers (a string ``"abc"`` or ``true`` where an integer goes is refused here, naming
    the key, instead of failing later inside ``int()``); integers may be written as integral floats (``1e3``).
    """
    import types
    import typing

    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        t = hints[f.name]
        optional = False
        if typing.get_origin(t) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            optional, t = True, args[0]
        if v is None:
            if optional:
                continue
            raise ConfigError(f"{what} config: {f.name} must be given, got null")
        origin = typing.get_origin(t) or t
        if t is bool:
            ok = isinstance(v, bool)
            kind = "true or false"
        elif t is int:
            ok = (isinstance(v, int) and not isinstance(v, bool)) or (
                isinstance(v, float) and math.isfinite(v) and v.is_integer())
            kind = "an integer"
        elif t is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            kind = "a number"
        elif origin is tuple:
            args = typing.get_args(t)
            ok = isinstance(v, (list, tuple)) or (isinstance(v, str) and len(args) == 2 and args[1] is Ellipsis)
            kind = "a list"
        elif origin is dict:
            ok = isinstance(v, Mapping)
            kind = "a mapping"
        elif t is str:
            ok = isinstance(v, str)
            kind = "a string"
        else:
            continue
        if not ok:
            raise ConfigError(f"{what} config: {f.name} must be {kind}, got {short(v)}")


def _from_mapping(cls, values: Mapping[str, Any], what: str):
    if not isinstance(values, Mapping):
        raise ConfigError(f"a {what} config must be a mapping of keys to values, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {clip(', '.join(unknown), 300)}")
    try:
        return cls(**dict(values))
    except TypeError as exc:  # a value of the wrong kind (e.g. a list where a number goes)
        raise ConfigError(f"{what} config: {exc}") from exc


def _as_dict(obj) -> dict:
    out = dataclasses.asdict(obj)
    for k, v in out.items():
        if isinstance(v, tuple):
            out[k] = list(v)
    return out


def config_descriptions(cls) -> dict[str, str]:
    """Field name -> description of a configuration dataclass."""
    return {f.name: f.metadata.get("description", "") for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class SimulationConfig:
    """ohana's creator config (same keys) plus the detector physics it leaves implicit."""

    image_shape: tuple[int, int] = _f((256, 256), "rows, columns of a frame, reference border included")
    num_frames: int = _f(20, "reads (groups) per exposure ramp")
    patch_size: tuple[int, int] = _f((128, 128), "rows, columns of the U-Net training patches")
    overlap: int = _f(16, "overlap in pixels between neighbouring training patches")
    num_exposure_events: int = _f(2, "exposures with anomalies, per detector")
    num_baseline_exposures: int = _f(1, "exposures without anomalies, per detector")
    injection_type: str = _f("all", "anomalies to inject: cosmic_ray, snowball, rtn, all or none")
    num_classes: int = _f(4, "classes of the masks (background, cosmic_ray, telegraph_noise, snowball)")
    cosmic_ray_per_exp_range: tuple[int, int] = _f((20, 60), "cosmic rays per exposure [min, max]")
    snowballs_per_exp_range: tuple[int, int] = _f((1, 2), "snowballs per exposure [min, max]")
    rtn_per_exp_range: tuple[int, int] = _f((20, 40), "RTN pixels per exposure [min, max]")
    gain_library: dict[str, float] = _f({"18220_SCA": 1.062, "18248_SCA": 1.021},
                                        "detector ID -> gain (e-/DN); one partition per detector")
    exp_time: float = _f(200.0, "exposure time (s); frame time = exp_time / num_frames")
    saturation_dn: float = _f(65535.0, "saturation level (DN)")
    dark_current_range: tuple[float, float] = _f((0.01, 0.02), "dark current per pixel (e-/s) [min, max]")
    read_noise_range: tuple[float, float] = _f((15.0, 25.0), "white read noise per read (e-) [min, max]")
    gaussian_noise_range: tuple[float, float] = _f((0.5, 10.0), "extra white noise per read (e-) [min, max]")
    cosmic_ray_charge_range: tuple[float, float] = _f((200.0, 6000.0), "cosmic-ray charge (e-, log-uniform)")
    rtn_offset_range: tuple[float, float] = _f((30.0, 300.0), "RTN step amplitude (e-) [min, max]")
    rtn_period_range: tuple[float, float] = _f((4.0, 12.0), "RTN period (frames: mean high + low dwell)")
    rtn_duty_fraction_range: tuple[float, float] = _f((0.1, 0.9), "fraction of time in the RTN high state")
    snowball_radius_range: tuple[float, float] = _f((3.0, 10.0), "snowball core radius (px) [min, max]")
    snowball_halo_amplitude_ratio_range: tuple[float, float] = _f((0.02, 0.15), "halo charge / core charge")
    snowball_halo_decay_scale_range: tuple[float, float] = _f((3.0, 10.0), "halo exponential scale (px)")
    # --- ours (not in ohana) ---
    output_dir: str = _f("", "ohana's training-set folder (create-training writes there when no folder is given)")
    preset: str = _f("custom", "name of the detector preset these values describe (recorded in every product)")
    seed: int = _f(2024, "seed of every random draw: the same seed gives the same ramps")
    bias_dn: float = _f(12000.0, "bias pedestal (DN)")
    bias_spread_dn: float = _f(600.0, "pixel-to-pixel rms of the bias pattern (DN)")
    refpix_border: int = _f(4, "reference pixels on each side of the frame")
    num_outputs: int = _f(4, "readout outputs (amplifiers), each a strip of columns")
    output_drift_dn: float = _f(3.0, "random-walk step per frame of each output's offset (DN)")
    amp_offset_spread_dn: float = _f(0.0, "rms of the constant offsets between outputs (DN)")
    read_noise_amp_spread: float = _f(0.0, "fractional rms spread of the white read noise between outputs")
    row_drift_dn: float = _f(2.0, "amplitude of a smooth pattern along rows per frame (DN)")
    one_over_f_dn: float = _f(0.0, "rms per read of pink (1/f) noise common to all outputs (DN), correlated along rows")
    one_over_f_amp_dn: float = _f(0.0, "rms per read of pink (1/f) noise independent in each output (DN)")
    ipc_alpha: float = _f(0.02, "inter-pixel capacitance: charge fraction to each of the 4 side neighbours")
    ipc_alpha_diagonal: float = _f(0.0, "inter-pixel capacitance: charge fraction to each of the 4 diagonal neighbours")
    cosmic_ray_track_fraction: float = _f(0.4, "fraction of cosmic rays that are tracks (the rest are spots)")
    snowball_core_fill_range: tuple[float, float] = _f((0.9, 1.3), "snowball core charge / full well (>= 1 saturates)")
    row_block: int = _f(32, "rows per HDF5 chunk (chunks hold all frames of a strip of rows)")

    # ------------------------------------------------------------------
    def __post_init__(self):
        def setv(k, v):
            object.__setattr__(self, k, v)

        _check_field_types(self, "simulation")
        shape = self.image_shape
        if not isinstance(shape, (list, tuple)) or len(shape) != 2:
            raise ConfigError(f"image_shape must be [rows, cols], got {short(shape)}")
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"image_shape must hold integers, got {short(self.image_shape)}") from exc
        b = int(self.refpix_border)
        if b < 0:
            raise ConfigError(f"refpix_border must be >= 0, got {b}")
        if max(shape) > MAX_FRAME_SIDE:
            raise ConfigError(f"image_shape {shape}: at most {MAX_FRAME_SIDE} pixels per side are simulated")
        if min(shape) < 2 * b + 8:
            raise ConfigError(f"image_shape {shape} is too small for a {b}-pixel reference border (need >= {2 * b + 8})")
        setv("image_shape", shape)
        setv("refpix_border", b)
        if int(self.num_frames) != self.num_frames or int(self.num_frames) < 2:
            raise ConfigError(f"num_frames must be an integer >= 2, got {short(self.num_frames)}")
        setv("num_frames", int(self.num_frames))
        if self.num_frames > MAX_FRAMES:
            raise ConfigError(f"num_frames {self.num_frames}: at most {MAX_FRAMES} reads per ramp are simulated")
        if self.num_frames * shape[0] * shape[1] > MAX_RAMP_VALUES:
            raise ConfigError(f"image_shape {shape} x num_frames {self.num_frames} = "
                              f"{self.num_frames * shape[0] * shape[1]} values per ramp; at most {MAX_RAMP_VALUES}")
        ps = self.patch_size
        if not isinstance(ps, (list, tuple)) or len(ps) != 2 or any(int(p) < 1 for p in ps):
            raise ConfigError(f"patch_size must be [rows, cols] of positive integers, got {short(ps)}")
        ps = tuple(int(p) for p in ps)
        if ps[0] > shape[0] or ps[1] > shape[1]:
            raise ConfigError(f"patch_size {ps} is larger than image_shape {shape}")
        setv("patch_size", ps)
        if not 0 <= int(self.overlap) < min(ps):
            raise ConfigError(f"overlap must be >= 0 and smaller than patch_size, got {short(self.overlap)}")
        setv("overlap", int(self.overlap))
        for k in ("num_exposure_events", "num_baseline_exposures"):
            v = getattr(self, k)
            if int(v) != v or int(v) < 0:
                raise ConfigError(f"{k} must be a non-negative integer, got {short(v)}")
            setv(k, int(v))
        if self.num_exposure_events + self.num_baseline_exposures < 1:
            raise ConfigError("num_exposure_events + num_baseline_exposures must be at least 1")
        if self.num_exposure_events + self.num_baseline_exposures > MAX_EXPOSURES:
            raise ConfigError(f"num_exposure_events + num_baseline_exposures = "
                              f"{self.num_exposure_events + self.num_baseline_exposures}: at most {MAX_EXPOSURES}")
        if self.injection_type not in INJECTION_TYPES:
            raise ConfigError(
                f"injection_type {short(self.injection_type)} is unknown; use one of {', '.join(INJECTION_TYPES)}"
            )
        if int(self.num_classes) != 4:
            raise ConfigError(
                f"num_classes must be 4 (background, cosmic_ray, telegraph_noise, snowball), got {short(self.num_classes)}"
            )
        for k, (lower, integer) in _RANGE_KEYS.items():
            setv(k, _range(k, getattr(self, k), lower, integer))
        for k in ("cosmic_ray_per_exp_range", "snowballs_per_exp_range", "rtn_per_exp_range"):
            if getattr(self, k)[1] > MAX_EVENTS_PER_EXPOSURE:
                raise ConfigError(f"{k}: at most {MAX_EVENTS_PER_EXPOSURE} events per exposure, "
                                  f"got max {getattr(self, k)[1]}")
        if self.rtn_duty_fraction_range[1] >= 1.0 or self.rtn_duty_fraction_range[0] <= 0.0:
            raise ConfigError("rtn_duty_fraction_range must lie strictly between 0 and 1")
        setv("snowball_core_fill_range", _range("snowball_core_fill_range", self.snowball_core_fill_range, 0.0, False))
        gl = self.gain_library
        if not isinstance(gl, Mapping) or not gl:
            raise ConfigError("gain_library must map at least one detector ID to its gain (e-/DN)")
        if len(gl) > MAX_DETECTORS:
            raise ConfigError(f"gain_library lists {len(gl)} detectors; at most {MAX_DETECTORS}")
        if len(gl) * (self.num_exposure_events + self.num_baseline_exposures) > MAX_PARTITIONS:
            raise ConfigError(f"{len(gl)} detectors x {self.num_exposure_events + self.num_baseline_exposures} "
                              f"exposures = more than {MAX_PARTITIONS} detector partitions")
        clean = {}
        for det, g in gl.items():
            try:
                g = float(g)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"gain_library[{short(det)}] must be a number, got {short(g)}") from exc
            if not (math.isfinite(g) and g > 0):
                raise ConfigError(f"gain_library[{short(det)}] must be a positive gain in e-/DN, got {short(g)}")
            from astrid_pipeline.layout import safe_key

            try:
                safe_key(str(det))
            except ValueError as exc:
                raise ConfigError(f"gain_library key {short(det)} cannot be used as a partition key: {exc}") from exc
            clean[str(det)] = g
        setv("gain_library", clean)
        for k in ("exp_time", "saturation_dn", "bias_dn"):
            v = float(getattr(self, k))
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{k} must be a positive number, got {short(getattr(self, k))}")
            setv(k, v)
        if self.bias_dn + 5 * self.bias_spread_dn >= self.saturation_dn:
            raise ConfigError(
                f"bias_dn {self.bias_dn:g} (+5 x spread) leaves no room below saturation_dn {self.saturation_dn:g}"
            )
        if self.saturation_dn > 65535:
            raise ConfigError(f"saturation_dn {self.saturation_dn:g} exceeds the 16-bit range of H2RG ramps")
        for k in ("bias_spread_dn", "output_drift_dn", "row_drift_dn", "ipc_alpha", "ipc_alpha_diagonal",
                  "amp_offset_spread_dn", "read_noise_amp_spread", "one_over_f_dn", "one_over_f_amp_dn"):
            try:
                v = float(getattr(self, k))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{k} must be a number, got {short(getattr(self, k))}") from exc
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{k} must be >= 0, got {short(getattr(self, k))}")
            setv(k, v)
        if 4 * (self.ipc_alpha + self.ipc_alpha_diagonal) >= 0.8:
            raise ConfigError(
                f"ipc_alpha + ipc_alpha_diagonal = {self.ipc_alpha + self.ipc_alpha_diagonal:g} leaves the hit pixel "
                "less than 20 % of its charge (each is the fraction to ONE neighbour)"
            )
        if self.read_noise_amp_spread >= 0.5:
            raise ConfigError(f"read_noise_amp_spread must be < 0.5 (a fraction), got {self.read_noise_amp_spread}")
        if not 0 <= float(self.cosmic_ray_track_fraction) <= 1:
            raise ConfigError("cosmic_ray_track_fraction must be between 0 and 1")
        if int(self.num_outputs) < 1 or (shape[1] - 2 * b) < int(self.num_outputs):
            raise ConfigError(f"num_outputs must be between 1 and the number of columns, got {self.num_outputs}")
        setv("num_outputs", int(self.num_outputs))
        if int(self.row_block) < 1:
            raise ConfigError(f"row_block must be >= 1, got {self.row_block}")
        setv("row_block", int(self.row_block))
        setv("seed", int(self.seed))
        setv("preset", str(self.preset))

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
        return _as_dict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SimulationConfig":
        return _from_mapping(cls, values, "simulation")


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """The mapping stored in a YAML file, with named errors (missing file, bad YAML, not a mapping); read through
    :mod:`astrid_pipeline.io.safe_yaml` (no aliases, bounded size and depth)."""
    from astrid_pipeline.io.safe_yaml import load_yaml

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file does not exist")
    values = load_yaml(p) or {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"{p}: the YAML must be a mapping of keys to values")
    return dict(values)


def load_simulation_config(path: str | os.PathLike, **overrides) -> SimulationConfig:
    """Read a YAML simulation config (ohana's creator-config keys plus ours) from ``path``.

    ``overrides`` replace keys of the file (``None`` values are ignored).
    Callers that want the packaged default or a named preset get the path
    from :func:`astrid_pipeline.presets.simulation_config_path`.
    """
    return _load_yaml_config(SimulationConfig, path, overrides)


def _load_yaml_config(cls, path, overrides: Mapping[str, Any]):
    """``cls.from_dict`` of a YAML file's mapping with ``overrides`` (None values ignored); errors name the file."""
    p = Path(path)
    values = read_yaml_mapping(p)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from exc


@dataclass(frozen=True)
class DetectionConfig:
    """Thresholds of the rule-based detectors (ohana's ``DetectorConfig`` names where they exist).

    Noise comes from the data: the white read noise is measured per readout
    output (second differences of the reads, robust to jumps), and jump and
    RTN significances are in units of that noise. Jumps are tested
    one-sided (cosmic rays only add charge).
    """

    sigma_threshold: float = _f(4.0, "one-sided jump threshold, in sigma of the jump statistic")
    jump_test: str = _f("gls", "jump statistic: 'gls' (generalised least squares step over the whole ramp, "
                              "read and Poisson noise) or 'two_point' (group differences, as the JWST pipeline)")
    read_noise_dn: Optional[float] = _f(None, "white noise per read (data unit); None = measured per output from the ramp")
    gain: Optional[float] = _f(None, "e- per data unit; None = from the file (1.0, with a warning, when absent)")
    saturation_dn: Optional[float] = _f(None, "saturation level (data unit); None = from the file (65535 for 16-bit data)")
    cosmic_ray_min_step: float = _f(0.0, "jumps smaller than this (data unit) are ignored even if significant")
    event_min_snr: float = _f(5.0, "single-pixel cosmic rays below this S/N stay flagged but are not catalogued")
    neighbor_sigma: Optional[float] = _f(8.0, "jumps of this S/N per group difference or more also flag their 4 "
                                              "side neighbours (inter-pixel capacitance); None = off")
    rtn_min_transitions: int = _f(2, "minimum RTN state changes")
    rtn_max_transitions: int = _f(50, "maximum RTN state changes (more is flicker, not RTN)")
    rtn_false_rate: float = _f(4e-5, "RTN false alarms allowed per pixel: the two-level significance threshold is "
                                      "the level that white noise of the measured read noise exceeds this often, "
                                      "computed for the ramp's number of reads")
    rtn_min_snr: float = _f(4.0, "minimum RTN amplitude over the per-read noise")
    rtn_min_tstat: float = _f(5.0, "lower bound of the two-level significance threshold (amplitude sqrt(n_hi n_lo / n) / noise)")
    rtn_fit_quality_threshold: float = _f(0.3, "minimum R^2 gain of the two-level model over a straight line")
    rtn_amplitude_range: tuple[float, float] = _f((0.0, 65535.0), "allowed RTN amplitude [min, max] (data unit)")
    rtn_candidate_chi2_p: float = _f(1e-3, "p-value of the line chi2 that makes a pixel an RTN candidate")
    snowball_min_radius: float = _f(3.0, "minimum snowball core radius (px)")
    snowball_max_radius: float = _f(250.0, "maximum snowball core radius (px)")
    snowball_circularity_threshold: float = _f(0.7, "minimum core pixels / pixels of the enclosing disk")
    snowball_min_area: int = _f(40, "minimum snowball area, core + halo (px)")
    snowball_max_area: int = _f(200000, "maximum snowball area (px)")
    snowball_core_fraction: float = _f(0.7, "jump / headroom to saturation that makes a near-saturated core pixel")
    snowball_halo_fraction: float = _f(0.5, "fraction of the ring just outside the core that must jump")
    refpix_side_window: int = _f(11, "rows over which the reference-column (1/f) correction is smoothed")
    block_rows: int = _f(0, "rows per block (0 = automatic, about 16 MB of float32 per block)")
    workers: int = _f(1, "threads over row blocks")
    methods: tuple[str, ...] = _f(METHODS, "detectors to run: jumps, rtn, snowballs")
    skip_unrunnable: bool = _f(True, "skip (with a named reason) a method the ramp has too few groups for, "
                                     "instead of failing; fails anyway when no method can run")
    progress_every: int = _f(16, "log progress every this many row blocks (0 = never)")

    def __post_init__(self):
        def setv(k, v):
            object.__setattr__(self, k, v)

        _check_field_types(self, "detection")

        def number(k, v):
            try:
                return float(v)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{k} must be a number, got {short(v)}") from exc

        if not (number("sigma_threshold", self.sigma_threshold) > 0):
            raise ConfigError(f"sigma_threshold must be > 0, got {self.sigma_threshold}")
        if self.jump_test not in ("gls", "two_point"):
            raise ConfigError(f"jump_test must be 'gls' or 'two_point', got {short(self.jump_test)}")
        for k in ("read_noise_dn", "gain", "saturation_dn"):
            v = getattr(self, k)
            if v is not None and not (number(k, v) > 0 and math.isfinite(float(v))):
                raise ConfigError(f"{k} must be a positive number or None, got {short(v)}")
        if self.neighbor_sigma is not None and not number("neighbor_sigma", self.neighbor_sigma) > 0:
            raise ConfigError(f"neighbor_sigma must be > 0 or None, got {short(self.neighbor_sigma)}")
        if self.rtn_min_transitions < 1 or self.rtn_max_transitions < self.rtn_min_transitions:
            raise ConfigError("rtn_min_transitions must be >= 1 and <= rtn_max_transitions")
        if not 0 < number("rtn_false_rate", self.rtn_false_rate) < 0.1:
            raise ConfigError(f"rtn_false_rate must be between 0 and 0.1 (per pixel), got {short(self.rtn_false_rate)}")
        setv("rtn_amplitude_range", _range("rtn_amplitude_range", self.rtn_amplitude_range, 0.0, False))
        if not 0 < self.rtn_candidate_chi2_p < 1:
            raise ConfigError("rtn_candidate_chi2_p must be between 0 and 1")
        if self.snowball_min_radius > self.snowball_max_radius:
            raise ConfigError("snowball_min_radius is greater than snowball_max_radius")
        if not 0 < self.snowball_circularity_threshold <= 1:
            raise ConfigError("snowball_circularity_threshold must be in (0, 1]")
        if self.snowball_min_area > self.snowball_max_area:
            raise ConfigError("snowball_min_area is greater than snowball_max_area")
        if self.block_rows < 0 or self.workers < 1:
            raise ConfigError("block_rows must be >= 0 and workers >= 1")
        if self.refpix_side_window < 1:
            raise ConfigError(f"refpix_side_window must be >= 1, got {self.refpix_side_window}")
        if self.progress_every < 0:
            raise ConfigError(f"progress_every must be >= 0, got {self.progress_every}")
        methods = self.methods
        if isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        methods = tuple(methods)
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise ConfigError(f"methods must be a non-empty subset of jumps, rtn, snowballs; got {short(self.methods)}")
        if "snowballs" in methods and "jumps" not in methods:
            raise ConfigError("method 'snowballs' needs 'jumps' (snowballs are groups of jumping pixels)")
        setv("methods", tuple(m for m in METHODS if m in methods))

    def replace(self, **changes) -> "DetectionConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return _as_dict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "DetectionConfig":
        return _from_mapping(cls, values, "detection")


def load_detection_config(path: str | os.PathLike, **overrides) -> DetectionConfig:
    """A :class:`DetectionConfig` from a YAML file of its fields (unknown keys are an error)."""
    return _load_yaml_config(DetectionConfig, path, overrides)
