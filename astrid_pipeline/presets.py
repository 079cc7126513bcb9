"""Where the packaged ramp-simulation configurations live: the one place that knows.

Science code (``astrid_pipeline.science.ramps``) takes explicit paths; the
CLI, the benchmarks and the Dagster layer ask here for the packaged
default (``resources/ramp_simulation.yaml``) or a named detector preset
(``resources/ramp_presets/<name>.yaml``), and pass the path on.

Presets: ``h2rg`` (alias ``roman``), a generic H2RG / Roman-like array with
many groups, and ``nircam``, a JWST NIRCam-like array with 10 groups, four
outputs with their own noise and offsets, 1/f noise correlated along rows
and 3x3 inter-pixel capacitance. Each file cites the public figures it
takes. A path to any YAML file with the same keys works wherever a preset
name does.
"""

from __future__ import annotations

import os
from pathlib import Path

from astrid_pipeline.errors import ConfigError

RESOURCES = Path(__file__).resolve().parent / "resources"
DEFAULT_SIMULATION_CONFIG = RESOURCES / "ramp_simulation.yaml"
PRESET_DIR = RESOURCES / "ramp_presets"
PRESET_ALIASES = {"roman": "h2rg"}


def preset_names() -> list[str]:
    """Names of the packaged presets (aliases included)."""
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    return names + sorted(a for a, target in PRESET_ALIASES.items() if target in names)


def simulation_config_path(preset: str | os.PathLike | None = None) -> Path:
    """Path of a simulation config: ``None`` = the packaged default, a preset name, or a YAML path."""
    if preset is None or preset == "":
        return DEFAULT_SIMULATION_CONFIG
    p = Path(preset)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: simulation config file does not exist")
        return p
    name = PRESET_ALIASES.get(str(preset), str(preset))
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown detector preset {preset!r}; use one of {', '.join(preset_names())} "
                          "or the path of a YAML file")
    return path


def load_preset(preset: str | os.PathLike | None = None, **overrides):
    """The :class:`~astrid_pipeline.science.ramps.config.SimulationConfig` of a preset (or file), with overrides."""
    from astrid_pipeline.science.ramps.config import load_simulation_config

    return load_simulation_config(simulation_config_path(preset), **overrides)
