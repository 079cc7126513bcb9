"""Does single-exposure cosmic-ray masking apply to this image?

A single-image CR detector (L.A.Cosmic, van Dokkum 2001; deepCR, Zhang &
Bloom 2020) looks for features sharper than the PSF in *uncorrelated* pixel
noise. Two kinds of image break that premise:

- **co-added products** (stacks, drizzled and resampled mosaics): cosmic rays
  were already rejected when the exposures were combined (NCOMBINE > 1,
  drizzle's D###VER cards, "coadd"/"stack" product types, JWST's ``S_RESAMP``);
- **resampled images** (SWarp, Montage, drizzle, SkyView, PS1 warps): the
  interpolation kernel correlates neighbouring pixels, so noise peaks look
  like the small sharp groups a CR detector was trained to flag (the issue's
  drizzled pair: 417 noise groups masked on an already CR-cleaned mosaic).

Digitised photographic plates (POSS/DSS scans) have no CCD cosmic rays
either. :func:`cr_masking_applies` reads these cues from the header(s) and
the file name; configuration can override them (``skip`` / ``force``).

Only the *values* of product-type keywords (PRODTYPE, PRODUCT, FILETYPE,
IMAGETYP, ...) are matched against product names: a keyword *named* like a
product (GMOS writes ``MOSAIC = '<time stamp>'`` for its CCD-tiling step) is
not a cue. HST's ``DRIZCORR = 'PERFORM'`` is a calibration switch of a raw
exposure, not a drizzled product, and is not a cue either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from astrid_pipeline.errors import ConfigError

MODES = ("auto", "skip", "force")

#: product-type words, in file names (as tokens) and in product-type keyword values
PRODUCT_WORDS = {
    "i2d": "JWST resampled (i2d) mosaic",
    "s2d": "JWST resampled (s2d) spectrum",
    "drz": "HST drizzled (drz) product",
    "drc": "HST drizzled, CTE-corrected (drc) product",
    "crj": "HST CR-split combined (crj) product",
    "crc": "HST CR-split combined (crc) product",
    "coadd": "co-added image",
    "coadded": "co-added image",
    "stack": "stacked image",
    "stacked": "stacked image",
    "stk": "stacked image (PS1 stk)",
    "warp": "resampled (warp) image",
    "wrp": "resampled (PS1 wrp) image",
    "skycell": "image resampled onto a sky cell",
    "mosaic": "mosaic",
    "resampled": "resampled image",
    "drizzled": "drizzled image",
}
#: keywords whose value names the product type
PRODUCT_KEYS = ("PRODTYPE", "PRODUCT", "FILETYPE", "IMAGETYP", "IMAGETYPE", "PROCTYPE", "OBSTYPE", "DATATYPE",
                "STK_TYPE", "PRODCATG", "SUBTYPE")
#: combined-exposure counters: a value > 1 means a co-add
COUNT_KEYS = ("NCOMBINE", "NDRIZIM", "NINPUTS", "NSTACK", "NCOADD", "NCOADDS", "NEXPOSUR", "NUMEXP", "NFRAMES",
              "NIMAGES", "NSUBEXP")
#: drizzle's per-input cards (D001VER, D001DATA, D002EXPT, ...)
_DRIZZLE_CARD = re.compile(r"^D\d{3}(VER|DATA|DEXP|EXPT|KERN|PIXF|SCAL|GEOM|OUDA|OUWE|OUCO|MASK|WTSC|ISCL|FVAL)")
#: software that resamples or co-adds, as named in HISTORY / COMMENT cards
_SOFTWARE = re.compile(r"\b(swarp|montage|astrodrizzle|multidrizzle|drizzlepac|drizzled|drizzle|reproject|"
                       r"resampl\w*|co-?add\w*|mosaic was created|stacked)\b", re.IGNORECASE)
#: archive names (the sky branch's ARCHIVE keyword) whose products are always resampled
RESAMPLING_ARCHIVES = {"skyview": "SkyView resamples survey images onto the requested grid",
                       "ps1": "Pan-STARRS1 image-service cutouts are stacks or warps (resampled onto sky cells)"}
#: keywords a digitised photographic plate carries
_PLATE_KEYS = ("PLTLABEL", "PLATEID", "SCANNUM", "PLTSCALE")


def _headers(header) -> list:
    if header is None:
        return []
    if isinstance(header, Mapping) or hasattr(header, "cards"):
        return [header]
    return [h for h in header if h is not None]


def _int(value) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def _product_word(text: str) -> str | None:
    """The first product word of :data:`PRODUCT_WORDS` (in its order: most specific first) among the tokens."""
    tokens = set(_tokens(text))
    return next((w for w in PRODUCT_WORDS if w in tokens), None)


def _history(h) -> Iterable[str]:
    for key in ("HISTORY", "COMMENT"):
        try:
            values = h[key] if key in h else []
        except (KeyError, IndexError):
            values = []
        if isinstance(values, str):
            values = [values]
        for v in values:
            yield str(v)


def header_cues(header, filename: str | None = "") -> list[str]:
    """Every reason found in the header(s) and the file name that the image is co-added or resampled.

    ``header``: an astropy Header, a dict, or a sequence of them (primary and
    image extension). Returns human-readable reasons, empty when none.
    """
    reasons: list[str] = []
    for h in _headers(header):
        for key in COUNT_KEYS:
            if key in h:
                n = _int(h[key])
                if n is not None and n > 1:
                    reasons.append(f"{key}={n}: a combination of {n} exposures")
        cards = [k for k in h.keys() if isinstance(k, str) and _DRIZZLE_CARD.match(k)]
        if cards:
            reasons.append(f"drizzle keywords ({', '.join(sorted(cards)[:3])}{'...' if len(cards) > 3 else ''})")
        if str(h.get("S_RESAMP", "")).strip().upper() == "COMPLETE":
            reasons.append("S_RESAMP=COMPLETE: JWST resample step applied")
        for key in PRODUCT_KEYS:
            if key in h:
                word = _product_word(str(h[key]))
                if word:
                    reasons.append(f"{key}={str(h[key]).strip()!r}: {PRODUCT_WORDS[word]}")
        archive = str(h.get("ARCHIVE", h.get("ARCHSRC", ""))).strip().lower()
        if archive in RESAMPLING_ARCHIVES:
            reasons.append(f"ARCHIVE={archive}: {RESAMPLING_ARCHIVES[archive]}")
        plate = [k for k in _PLATE_KEYS if k in h]
        if len(plate) >= 2:
            reasons.append(f"digitised photographic plate ({', '.join(plate)}): no CCD cosmic rays")
        for line in _history(h):
            m = _SOFTWARE.search(line)
            if m:
                reasons.append(f"HISTORY/COMMENT names {m.group(0)!r}: {line.strip()[:60]}")
                break
        src = str(h.get("SRCFILE", "")).strip()
        if src and src != filename:
            reasons.extend(_name_cues(src))
    if filename:
        reasons.extend(_name_cues(filename))
    out = []
    for r in reasons:  # keep order, drop repeats (primary and extension often agree)
        if r not in out:
            out.append(r)
    return out


def _name_cues(filename: str) -> list[str]:
    name = Path(str(filename)).name
    lowered = name.lower()
    if lowered.startswith("skv") and lowered[3:4].isdigit():
        return [f"file name {name!r}: a SkyView (resampled) image"]
    word = _product_word(name)
    return [f"file name {name!r}: {PRODUCT_WORDS[word]}"] if word else []


def resolve_mode(option: str | None = None, setting: str | None = "auto") -> tuple[str, str]:
    """The effective mode and where it came from: the image's own option wins over the step setting."""
    for value, source in ((option, "image option cosmic_rays"), (setting, "step setting applicability")):
        if value is None or str(value).strip() == "":
            continue
        mode = str(value).strip().lower()
        if mode not in MODES:
            raise ConfigError(f"{source}={value!r} is not one of {', '.join(MODES)}")
        return mode, source
    return "auto", "default"


def cr_masking_applies(header, filename: str | None = "", options: Mapping | None = None,
                       setting: str | None = "auto") -> tuple[bool, str]:
    """``(applies, reason)``: whether single-exposure CR masking should run on this image.

    ``options``: the epoch's image options (``{"cosmic_rays": "skip" | "auto" | "force"}``,
    from the region catalog's ``science_cosmic_rays`` or a manifest column);
    ``setting``: the step's own ``applicability`` (the default for images whose
    options do not say). ``force`` runs and ``skip`` skips whatever the header
    says; ``auto`` skips when :func:`header_cues` finds a co-added or
    resampled product. The reason is always a sentence worth showing.
    """
    mode, source = resolve_mode((options or {}).get("cosmic_rays"), setting)
    cues = header_cues(header, filename)
    if mode == "skip":
        return False, f"skipped by configuration ({source}=skip)"
    if mode == "force":
        extra = f"; header cues ignored: {cues[0]}" if cues else ""
        return True, f"forced by configuration ({source}=force){extra}"
    if cues:
        return False, "not a single exposure: " + "; ".join(cues[:3])
    return True, "single exposure: no co-add/resampling cue in header or file name"
