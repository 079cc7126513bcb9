"""What every archive client returns, and the per-epoch image options that travel with it.

Image options say how to read one epoch's file when its header alone does not
(``{"science": {...}, "reference": {...}}``; an epoch without options is
absent or empty):

=============== ======================================================================
``hdu``         extension holding the image (index or EXTNAME)
``band``        1-based plane of a multi-band cube (e.g. an astrocut cutout)
``error_ext``   extension with the 1-sigma uncertainty (ERR)
``variance_ext`` extension with the variance (VAR, VARIANCE)
``weight_ext``  extension with the inverse variance (WHT, IVAR)
``bunit``       pixel units when the header lacks or misstates BUNIT
``gain``        electrons per data unit (> 0)
``psf``         FITS PSF image for this epoch (absolute path once resolved)
``cosmic_rays`` single-exposure cosmic-ray masking: ``skip`` | ``auto`` | ``force``
=============== ======================================================================

They come from region-catalog keys ``<epoch>_<option>`` (``science_hdu``,
``reference_band``, ``science_psf``...; see :mod:`astrid_pipeline.archives.select`)
and from extra columns of a local folder's manifest
(:mod:`astrid_pipeline.archives.local`). Relative paths are resolved against the
catalog's or the manifest's folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep ``import astrid_pipeline.definitions`` light: no pandas/astropy at load time
    import pandas as pd
    from astropy.io import fits


@dataclass
class ArchivePair:
    """A region's science and reference images (FITS in memory) and, for simulations, the truth."""

    science: fits.HDUList
    reference: fits.HDUList
    science_source: str
    reference_source: str
    truth: pd.DataFrame | None = None
    cosmic_rays: pd.DataFrame | None = None
    provenance: dict = field(default_factory=dict)
    #: per-epoch reading options ``{"science": {...}, "reference": {...}}`` (see the module docstring);
    #: empty for the simulated survey
    image_options: dict[str, dict] = field(default_factory=dict)


#: option name -> what it holds (also the list of accepted names)
IMAGE_OPTIONS = {
    "hdu": "extension holding the image (index or EXTNAME)",
    "band": "1-based plane of a multi-band image cube",
    "error_ext": "extension with the 1-sigma uncertainty",
    "variance_ext": "extension with the variance",
    "weight_ext": "extension with the inverse variance",
    "bunit": "pixel units (overrides the header's BUNIT)",
    "gain": "electrons per data unit",
    "psf": "FITS PSF image of this epoch",
    "cosmic_rays": "single-exposure cosmic-ray masking: skip | auto | force",
}
#: options that name a file (resolved to an absolute path)
PATH_OPTIONS = ("psf",)
#: values of the ``cosmic_rays`` option
COSMIC_RAY_MODES = ("skip", "auto", "force")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or \
        (isinstance(value, float) and value != value)


def _ext(value, where: str, name: str):
    """An extension / plane: an int (a numeric CSV cell becomes one) or a non-empty name."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: {name}={value!r} is neither an extension index nor a name")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        return text


def normalize_image_options(raw: dict, *, base_dir: str | os.PathLike | None, where: str) -> dict:
    """Check and normalise one epoch's options: types coerced, blanks dropped, paths made absolute.

    ``raw`` maps option names (see :data:`IMAGE_OPTIONS`) to values as a YAML
    or CSV file gives them. ``base_dir`` is the folder relative paths are
    resolved against (``None``: the current directory). Raises
    :class:`astrid_pipeline.errors.ConfigError` naming ``where`` and the
    option for an unknown name or a bad value.
    """
    from astrid_pipeline.errors import ConfigError

    out: dict = {}
    for name, value in raw.items():
        if _blank(value):
            continue
        if name not in IMAGE_OPTIONS:
            raise ConfigError(f"{where}: unknown image option {name!r}; known: {', '.join(IMAGE_OPTIONS)}")
        if name in ("hdu", "band", "error_ext", "variance_ext", "weight_ext"):
            v = _ext(value, where, name)
            if name == "band" and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{where}: band={value!r} must be a 1-based plane number")
            if isinstance(v, int) and v < 0:
                raise ConfigError(f"{where}: {name}={value!r} must be >= 0")
            out[name] = v
        elif name == "gain":
            try:
                g = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: gain={value!r} is not a number (electrons per data unit)") from None
            if not (g > 0 and g != float("inf")):
                raise ConfigError(f"{where}: gain={value!r} must be a positive finite number")
            out[name] = g
        elif name == "cosmic_rays":
            mode = str(value).strip().lower()
            if mode not in COSMIC_RAY_MODES:
                raise ConfigError(f"{where}: cosmic_rays={value!r} is not one of {', '.join(COSMIC_RAY_MODES)}")
            out[name] = mode
        elif name in PATH_OPTIONS:
            p = Path(str(value).strip()).expanduser()
            if not p.is_absolute():
                p = Path(base_dir or ".") / p
            out[name] = str(p.resolve())
        else:
            out[name] = str(value).strip()
    return out


def region_image_options(options: dict, epoch: str, *, base_dir: str | os.PathLike | None = None,
                         where: str = "region catalog") -> dict:
    """One epoch's image options from a region catalog entry's keys ``<epoch>_<option>``."""
    prefix = f"{epoch}_"
    raw = {k[len(prefix):]: v for k, v in options.items()
           if k.startswith(prefix) and k[len(prefix):] in IMAGE_OPTIONS}
    return normalize_image_options(raw, base_dir=base_dir, where=where)


def merge_image_options(*layers: dict[str, dict]) -> dict[str, dict]:
    """Merge ``{epoch: {option: value}}`` dicts; later layers win option by option; empty epochs dropped."""
    out: dict[str, dict] = {}
    for layer in layers:
        for epoch, opts in (layer or {}).items():
            if opts:
                out.setdefault(epoch, {}).update(opts)
    return out
