"""ds9 region files of candidate catalogs (one file per region, outside the Parquet dataset).

A file holds one circle per candidate, in ``fk5`` (ICRS RA/Dec, degrees;
radius in arcseconds) or ``image`` coordinates (1-based pixels, as ds9
counts them), with the candidate number, S/N and (when scored) the
real/bogus score as its text: green for clean candidates (flags == 0), red
for flagged ones, dashed for fadings (sign < 0). ds9 (``ds9 image.fits
-regions file.reg``), astropy-regions and SAOImage read it. The file is
written atomically; where it goes is the caller's choice (the sky branch
keeps them under ``sky/ds9/<region>.reg`` (``DataLayout.ds9_regions``), not inside
``catalogs/candidates/``, whose folders pandas and DuckDB read as a whole).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from astrid_pipeline.errors import ConfigError

HEADER = ('# Region file format: DS9 version 4.1\n'
          'global color=green dashlist=8 3 width=1 font="helvetica 9 normal roman" select=1 highlite=1 '
          'dash=0 fixed=0 edit=1 move=1 delete=1 include=1 source=1\n')


def ds9_region_text(candidates: pd.DataFrame, *, coordinates: str = "fk5", radius_arcsec: float = 2.0,
                    radius_pix: float = 5.0, title: str = "") -> str:
    """The text of a ds9 region file for a candidate table (columns ``ra``/``dec`` or ``x``/``y``)."""
    if coordinates not in ("fk5", "image"):
        raise ConfigError(f"coordinates {coordinates!r}: fk5 or image")
    need = ("ra", "dec") if coordinates == "fk5" else ("x", "y")
    missing = [c for c in need if c not in candidates.columns]
    if missing:
        raise ConfigError(f"a ds9 {coordinates} region file needs columns {list(need)}; missing {missing}")
    lines = [HEADER]
    if title:
        lines.append(f"# {title}\n")
    lines.append(f"{coordinates}\n")
    for _, r in candidates.iterrows():
        if coordinates == "fk5":
            ra, dec = float(r["ra"]), float(r["dec"])
            if not (np.isfinite(ra) and np.isfinite(dec)):
                continue
            shape = f"circle({ra:.7f},{dec:+.7f},{radius_arcsec:.3f}\")"
        else:
            x, y = float(r["x"]) + 1.0, float(r["y"]) + 1.0  # ds9 image pixels are 1-based
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            shape = f"circle({x:.3f},{y:.3f},{radius_pix:.2f})"
        flags = int(r["flags"]) if "flags" in r and pd.notna(r["flags"]) else 0
        props = ["color=green" if flags == 0 else "color=red"]
        if "sign" in r and pd.notna(r["sign"]) and int(r["sign"]) < 0:
            props.append("dash=1")
        text = [f"#{int(r['candidate_id'])}" if "candidate_id" in r else ""]
        if "snr" in r and pd.notna(r["snr"]):
            text.append(f"S/N={float(r['snr']):.1f}")
        if "rb" in r and pd.notna(r["rb"]):
            text.append(f"rb={float(r['rb']):.2f}")
        if flags:
            text.append(f"flags={flags}")
        label = " ".join(t for t in text if t).replace("{", "(").replace("}", ")")
        props.append(f"text={{{label}}}")
        lines.append(f"{shape} # {' '.join(props)}\n")
    return "".join(lines)


def write_ds9_regions(candidates: pd.DataFrame, path: str | os.PathLike, *, coordinates: str = "fk5",
                      radius_arcsec: float = 2.0, radius_pix: float = 5.0, title: str = "") -> Path:
    """Write :func:`ds9_region_text` to ``path`` atomically; returns the path."""
    from astrid_pipeline.io.atomic import atomic_write_text

    text = ds9_region_text(candidates, coordinates=coordinates, radius_arcsec=radius_arcsec, radius_pix=radius_pix,
                           title=title)
    return atomic_write_text(path, text)
