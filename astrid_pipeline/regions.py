"""Sky regions: the region catalog (named fields, HEALPix tiles) and ad-hoc positions.

A region is named by its partition key. The catalog is a YAML file with a
``regions`` list, or a CSV file with one row per region:

- a named field: ``name``, ``ra``, ``dec`` (deg, ICRS), optional
  ``size_arcmin`` and ``note``;
- a HEALPix tile: ``healpix_order`` and ``healpix_index`` (nested ordering,
  ICRS), optional ``name`` (default ``hpx<order>_<index>``); the centre comes
  from astropy-healpix and the size defaults to the tile's pixel resolution.

Any other key (e.g. ``science_archive``, ``reference_archive``) is kept in
``Region.options`` for the resources to read; keys that name a folder or a file
(``local_root``, ``science_psf``, ``reference_psf``) are resolved to absolute
paths relative to the catalog file's folder. The built-in catalog lists
M101 (SN 2011fe), COSMOS and GOODS-N. Which catalog is read: an explicit
path, else ``$ASTRID_REGION_CATALOG``, else ``regions.yaml`` / ``regions.csv``
in the data root, else the built-in one. Keys of the form
``ra150.1190_dec+2.2058`` name any position without a catalog entry.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from astrid_pipeline.errors import ConfigError, UnsafeKeyError
from astrid_pipeline.io.safe_yaml import short
from astrid_pipeline.layout import default_data_root, safe_key

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
    #: HEALPix tile (nested ordering) when the region is a tile, else None
    healpix_order: int | None = None
    healpix_index: int | None = None


def adhoc_key(ra: float, dec: float) -> str:
    return f"ra{ra % 360:.4f}_dec{dec:+.4f}"


_HEALPIX_KEYS = ("healpix_order", "healpix_index")
_KNOWN = {"name", "ra", "dec", "size_arcmin", "note", *_HEALPIX_KEYS}
MAX_HEALPIX_ORDER = 29
#: most regions one catalog may list: each becomes a Dagster partition, and the UI slows past tens of thousands
MAX_CATALOG_REGIONS = 50_000
#: largest region catalog file read (bytes); checked before reading
MAX_CATALOG_BYTES = 8 << 20


def _blank(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def healpix_tile(order: int, index: int) -> tuple[float, float, float]:
    """Centre (RA, Dec in deg, ICRS) and pixel resolution (arcmin) of a nested HEALPix tile."""
    from astropy_healpix import HEALPix
    import astropy.units as u

    hp = HEALPix(nside=2 ** order, order="nested")
    lon, lat = hp.healpix_to_lonlat([index])
    return float(lon.to_value(u.deg)[0]) % 360.0, float(lat.to_value(u.deg)[0]), float(hp.pixel_resolution.to_value(u.arcmin))


def _int(entry: dict, key: str, what: str) -> int:
    v = entry[key]
    if isinstance(v, bool):
        raise ConfigError(f"{what}: {key} {short(v)} is not an integer")
    if isinstance(v, int):
        return v
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what}: {key} {short(v)} is not an integer") from None
    if not math.isfinite(f) or f != int(f):
        raise ConfigError(f"{what}: {key} {short(v)} is not an integer")
    return int(f)


#: option keys that name a folder or a file, resolved relative to the catalog file
PATH_KEYS = ("local_root", "science_psf", "reference_psf")


def _resolve_paths(options: dict, base_dir: Path | None) -> dict:
    out = dict(options)
    for k in PATH_KEYS:
        if k in out:
            p = Path(str(out[k]).strip()).expanduser()
            out[k] = str((p if p.is_absolute() or base_dir is None else base_dir / p).resolve())
    return out


def _validate(entry: dict, source: str, base_dir: Path | None = None) -> Region:
    entry = {k: v for k, v in entry.items() if not _blank(v)}
    where = f"{source}: region entry {short(entry, 120)}"
    tile = [k for k in _HEALPIX_KEYS if k in entry]
    order = index = None
    if tile:
        if len(tile) == 1:
            raise ConfigError(f"{where} gives {tile[0]} without {'healpix_index' if tile[0] == 'healpix_order' else 'healpix_order'}")
        if "ra" in entry or "dec" in entry:
            raise ConfigError(f"{where}: give either ra/dec (a named field) or healpix_order/healpix_index (a tile), not both")
        order, index = _int(entry, "healpix_order", where), _int(entry, "healpix_index", where)
        if not 0 <= order <= MAX_HEALPIX_ORDER:
            raise ConfigError(f"{where}: healpix_order {order} outside [0, {MAX_HEALPIX_ORDER}]")
        npix = 12 * 4 ** order
        if not 0 <= index < npix:
            raise ConfigError(f"{where}: healpix_index {index} outside [0, {npix}) for order {order}")
        ra, dec, res_arcmin = healpix_tile(order, index)
        entry = {"name": f"hpx{order}_{index}", "size_arcmin": res_arcmin, **entry, "ra": ra, "dec": dec}
    missing = [k for k in ("name", "ra", "dec") if k not in entry]
    if missing:
        raise ConfigError(f"{where} lacks {missing} (a named field needs name, ra, dec; "
                          "a HEALPix tile needs healpix_order, healpix_index)")
    raw_name = entry["name"]
    if isinstance(raw_name, bool) or not isinstance(raw_name, (str, int)):
        raise ConfigError(f"{where}: name {short(raw_name)} is a {type(raw_name).__name__}, not a name; "
                          "write it in quotes")
    name = str(raw_name)
    try:
        safe_key(name)
    except UnsafeKeyError as exc:
        raise UnsafeKeyError(f"{source}: region name: {exc}") from None
    try:
        ra, dec = _coordinate(entry["ra"]), _coordinate(entry["dec"])
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{source}: region {name!r} has non-numeric ra/dec "
                          f"(ra={short(entry['ra'], 40)}, dec={short(entry['dec'], 40)})") from None
    if not (0.0 <= ra < 360.0):
        raise ConfigError(f"{source}: region {name!r} has RA {ra} outside [0, 360)")
    if not (-90.0 <= dec <= 90.0):
        raise ConfigError(f"{source}: region {name!r} has Dec {dec} outside [-90, 90]")
    try:
        size = _coordinate(entry.get("size_arcmin", 4.4))
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{source}: region {name!r} has non-numeric size_arcmin "
                          f"{short(entry.get('size_arcmin'), 40)}") from None
    if not (size > 0 and math.isfinite(size)):
        raise ConfigError(f"{source}: region {name!r} has size_arcmin {size}: must be > 0")
    options = _resolve_paths({k: v for k, v in entry.items() if k not in _KNOWN}, base_dir)
    return Region(name, ra, dec, size, str(entry.get("note", "")), options, order, index)


def _coordinate(v) -> float:
    """A number from the catalog (a bool is not one)."""
    if isinstance(v, bool):
        raise TypeError("a boolean is not a number")
    return float(v)


def default_catalog_path() -> Path:
    """``$ASTRID_REGION_CATALOG``, else regions.yaml / regions.csv in the data root, else the built-in catalog."""
    env = os.environ.get("ASTRID_REGION_CATALOG")
    if env:
        return Path(env).expanduser()
    root = default_data_root()
    for name in ("regions.yaml", "regions.yml", "regions.csv"):
        if (root / name).is_file():
            return root / name
    return BUILTIN_CATALOG


def catalog_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path).expanduser() if path else default_catalog_path()


def catalog_fingerprint(path: str | os.PathLike | None = None) -> str:
    """SHA-256 of the catalog file's bytes (sensors use it as a cursor); '' when the file is missing.

    A file larger than :data:`MAX_CATALOG_BYTES` (refused by the loader anyway) is fingerprinted by its size
    and modification time, not read; a folder, a pipe or an unreadable file by what ``stat`` says, so a
    sensor never fails (or blocks) on it and still sees when it changes.
    """
    from astrid_pipeline.io.safe_yaml import file_fingerprint

    return file_fingerprint(catalog_path(path), max_bytes=MAX_CATALOG_BYTES)


def _entries_from_csv(text: str, p: Path) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    cols = [c.strip() for c in (reader.fieldnames or [])]
    if not cols:
        raise ConfigError(f"{p}: empty CSV (expected a header with name, ra, dec or healpix_order, healpix_index)")
    has_field = {"name", "ra", "dec"} <= set(cols)
    has_tile = set(_HEALPIX_KEYS) <= set(cols)
    if not (has_field or has_tile):
        need = sorted({"name", "ra", "dec"} - set(cols))
        raise ConfigError(f"{p}: CSV lacks columns {need} (or healpix_order, healpix_index for tiles); "
                          f"it has {cols}")
    rows = []
    for i, row in enumerate(reader, start=2):
        if None in row:
            raise ConfigError(f"{p}: line {i} has more values than the header has columns")
        row = {k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if all(_blank(v) for v in row.values()):
            continue
        rows.append(row)
    return rows


def load_region_catalog(path: str | os.PathLike | None = None) -> dict[str, Region]:
    """Read a region catalog (YAML or CSV); names must be unique and safe as partition keys.

    ``path`` empty: :func:`default_catalog_path`. Every problem raises
    :class:`ConfigError` naming the file and the entry.
    """
    from astrid_pipeline.io.safe_yaml import load_yaml_text, read_text_file

    p = catalog_path(path)
    if not p.exists():
        raise ConfigError(f"{p}: region catalog not found")
    text = read_text_file(p, max_bytes=MAX_CATALOG_BYTES, kind="region catalog")
    if p.suffix.lower() == ".csv":
        try:
            entries = _entries_from_csv(text, p)
        except csv.Error as exc:
            raise ConfigError(f"{p}: not a valid CSV file ({str(exc)[:200]})") from None
    else:
        doc = load_yaml_text(text, str(p))
        if not isinstance(doc, dict) or not isinstance(doc.get("regions"), list):
            raise ConfigError(f"{p}: expected a mapping with a 'regions' list")
        entries = doc["regions"]
    if len(entries) > MAX_CATALOG_REGIONS:
        raise ConfigError(f"{p}: {len(entries)} regions; a catalog of at most {MAX_CATALOG_REGIONS} is accepted "
                          "(each region is a Dagster partition): split it")
    out: dict[str, Region] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"{p}: region entry {short(entry)} is not a mapping")
        r = _validate(entry, str(p), p.resolve().parent)
        if r.name in out:
            raise ConfigError(f"{p}: duplicate region name {r.name!r}")
        out[r.name] = r
    return out


def resolve_region(key: str, catalog: dict[str, Region]) -> Region:
    """The region for a partition key: a catalog entry, or an ad-hoc ``ra..._dec...`` key."""
    if key in catalog:
        return catalog[key]
    safe_key(key)  # too long, not a string or unsafe: UnsafeKeyError names it
    m = _ADHOC.match(key) if isinstance(key, str) and len(key) <= 64 else None
    if m:
        return _validate({"name": key, "ra": float(m["ra"]), "dec": float(m["dec"])}, "partition key")
    names = sorted(catalog)
    listed = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    raise ConfigError(
        f"unknown sky region {short(key, 80)}: not in the region catalog ({listed or 'empty'}) "
        "and not an ad-hoc key like 'ra150.1190_dec+2.2058'"
    )
