"""Sky regions: the region catalog (named fields) and ad-hoc positions.

A region is named by its partition key. The catalog is a YAML file with a
``regions`` list (name, ra, dec, optional size_arcmin and note); the
built-in one lists M101 (SN 2011fe), COSMOS and GOODS-N. Keys of the form
``ra150.1190_dec+2.2058`` name any position without a catalog entry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.layout import safe_key

BUILTIN_CATALOG = Path(__file__).parent / "resources" / "regions.yaml"
_ADHOC = re.compile(r"^ra(?P<ra>\d+(\.\d+)?)_dec(?P<dec>[+-]?\d+(\.\d+)?)$")


@dataclass(frozen=True)
class Region:
    name: str
    ra: float
    dec: float
    size_arcmin: float = 4.4
    note: str = ""
    #: any other keys of the catalog entry (e.g. science_archive / reference_archive), for the resources to read
    options: dict = field(default_factory=dict, compare=False, hash=False)


def adhoc_key(ra: float, dec: float) -> str:
    return f"ra{ra % 360:.4f}_dec{dec:+.4f}"


def _validate(entry: dict, source: str) -> Region:
    missing = [k for k in ("name", "ra", "dec") if k not in entry]
    if missing:
        raise ConfigError(f"{source}: region entry {entry!r} lacks {missing}")
    name = str(entry["name"])
    try:
        safe_key(name)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    try:
        ra, dec = float(entry["ra"]), float(entry["dec"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: region {name!r} has non-numeric ra/dec") from exc
    if not (0.0 <= ra < 360.0):
        raise ConfigError(f"{source}: region {name!r} has RA {ra} outside [0, 360)")
    if not (-90.0 <= dec <= 90.0):
        raise ConfigError(f"{source}: region {name!r} has Dec {dec} outside [-90, 90]")
    known = {"name", "ra", "dec", "size_arcmin", "note"}
    options = {k: v for k, v in entry.items() if k not in known}
    return Region(name, ra, dec, float(entry.get("size_arcmin", 4.4)), str(entry.get("note", "")), options)


def load_region_catalog(path: str | os.PathLike | None = None) -> dict[str, Region]:
    """Read a region catalog YAML; names must be unique and safe as partition keys."""
    p = Path(path) if path else BUILTIN_CATALOG
    try:
        doc = yaml.safe_load(p.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: region catalog not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("regions"), list):
        raise ConfigError(f"{p}: expected a mapping with a 'regions' list")
    out: dict[str, Region] = {}
    for entry in doc["regions"]:
        if not isinstance(entry, dict):
            raise ConfigError(f"{p}: region entry {entry!r} is not a mapping")
        r = _validate(entry, str(p))
        if r.name in out:
            raise ConfigError(f"{p}: duplicate region name {r.name!r}")
        out[r.name] = r
    return out


def resolve_region(key: str, catalog: dict[str, Region]) -> Region:
    """The region for a partition key: a catalog entry, or an ad-hoc ``ra..._dec...`` key."""
    if key in catalog:
        return catalog[key]
    m = _ADHOC.match(key)
    if m:
        return _validate({"name": key, "ra": float(m["ra"]), "dec": float(m["dec"])}, "partition key")
    raise ConfigError(
        f"unknown sky region {key!r}: not in the region catalog ({', '.join(sorted(catalog)) or 'empty'}) "
        "and not an ad-hoc key like 'ra150.1190_dec+2.2058'"
    )
