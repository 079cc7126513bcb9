"""FITS reading with validation, and atomic FITS writing with provenance.

``read_sky_image`` is the one entry point the sky branch uses to open an
image: it picks the image HDU, drops degenerate axes (a FREQ or STOKES axis
of length one), builds the celestial WCS and the bad-pixel mask, and turns
every way a file can be unusable into a named error from
:mod:`astrid_pipeline.errors` that names the file.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astrid_pipeline.errors import (
    BadHeaderError,
    BadShapeError,
    EmptyDataError,
    InputFileError,
    NoCelestialWCSError,
    NotFITSError,
    TruncatedFileError,
)
from astrid_pipeline.io.atomic import atomic_path

#: Extension names that hold a bad-pixel map (non-zero = bad), in the order tried.
MASK_EXTENSIONS = ("MASK", "BPM", "DQ")
#: Extension names preferred for the science pixels.
SCIENCE_EXTENSIONS = ("SCI", "IMAGE")

PIPELINE_NAME = "astrid-pipeline"


@dataclass
class SkyImage:
    """A 2-D image with its celestial WCS, header and bad-pixel mask."""

    data: np.ndarray
    wcs: WCS
    header: fits.Header
    mask: np.ndarray  # bool, True = do not use
    path: str | None = None
    extras: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def keyword(self, name: str, default=None):
        return self.header.get(name, default)


def open_fits(path: str | os.PathLike) -> fits.HDUList:
    """Open a FITS file fully into memory, mapping failures to named errors."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    if p.stat().st_size == 0:
        raise NotFITSError(p, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(p, memmap=False, lazy_load_hdus=False)
            for hdu in hdul:
                _ = hdu.data  # force the read so truncation shows here
        for w in caught:
            if "truncated" in str(w.message).lower():
                hdul.close()
                raise TruncatedFileError(p, f"file is truncated ({w.message})")
    except InputFileError:
        raise
    except OSError as exc:
        msg = str(exc)
        if "SIMPLE" in msg or "valid FITS" in msg or "Empty or corrupt" in msg:
            raise NotFITSError(p, "not a FITS file (no SIMPLE card at the start)") from exc
        raise InputFileError(p, f"cannot be read as FITS: {msg}") from exc
    except (ValueError, TypeError) as exc:
        raise TruncatedFileError(
            p, f"file ends before the data its header announces ({exc})"
        ) from exc
    return hdul


def _pick_image_hdu(hdul: fits.HDUList, path, hdu: int | str | None):
    if hdu is not None:
        try:
            chosen = hdul[hdu]
        except (KeyError, IndexError) as exc:
            raise InputFileError(path, f"has no HDU {hdu!r}") from exc
        if chosen.data is None:
            raise BadShapeError(path, f"HDU {hdu!r} holds no data")
        return chosen
    for name in SCIENCE_EXTENSIONS:
        if name in hdul and hdul[name].data is not None and hdul[name].is_image:
            return hdul[name]
    for h in hdul:
        if h.is_image and h.data is not None and h.data.ndim >= 2 and h.name not in MASK_EXTENSIONS:
            return h
    raise BadShapeError(path, "contains no image HDU with 2-D (or higher) data")


def celestial_data_and_wcs(data: np.ndarray, header: fits.Header, path=None) -> tuple[np.ndarray, WCS]:
    """Drop degenerate axes and return 2-D data with a 2-D celestial WCS.

    Axes of length one (FREQ, STOKES, a single spectral channel) are dropped.
    Any other extra axis is an error: the image is a cube, not a sky image.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs_full = WCS(header)
        except Exception as exc:  # astropy raises many types for broken headers
            raise NoCelestialWCSError(path, f"WCS in the header cannot be parsed: {exc}") from exc
    if not wcs_full.has_celestial:
        raise NoCelestialWCSError(
            path, "header has no celestial WCS (no RA/Dec or GLON/GLAT axis pair)"
        )
    arr = np.asarray(data)
    if arr.ndim < 2:
        raise BadShapeError(path, f"data are {arr.ndim}-D; a sky image needs 2 dimensions")
    if arr.ndim > 2:
        extra = arr.shape[:-2]
        if any(n != 1 for n in extra):
            raise BadShapeError(
                path,
                f"data have shape {arr.shape}: the non-celestial axes {extra} are not "
                "degenerate, so this is a cube, not a single sky image",
            )
        arr = arr.reshape(arr.shape[-2:])
    cel = wcs_full.celestial
    lon, lat = wcs_full.wcs.lng, wcs_full.wcs.lat
    if sorted((lon, lat)) != [0, 1]:
        raise BadShapeError(
            path,
            f"celestial axes are FITS axes {lon + 1} and {lat + 1}; only images whose first "
            "two axes are celestial are supported",
        )
    if cel.pixel_shape is None or tuple(cel.pixel_shape) != (arr.shape[1], arr.shape[0]):
        cel.pixel_shape = (arr.shape[1], arr.shape[0])
    return arr, cel


def _mask_from(hdul: fits.HDUList, shape) -> np.ndarray | None:
    for name in MASK_EXTENSIONS:
        if name in hdul and hdul[name].data is not None:
            m = np.asarray(hdul[name].data)
            if m.shape[-2:] == tuple(shape):
                return m.reshape(shape) != 0
    return None


def read_sky_image(
    path: str | os.PathLike,
    hdu: int | str | None = None,
    *,
    require_exptime: bool = False,
    dtype=np.float64,
) -> SkyImage:
    """Read a sky image and validate it.

    Raises a subclass of :class:`~astrid_pipeline.errors.InputFileError`
    naming ``path`` when the file is not FITS, is truncated, has no
    celestial WCS, has non-degenerate extra axes, is all NaN, or (with
    ``require_exptime``) has a missing or non-positive EXPTIME.
    """
    hdul = open_fits(path)
    try:
        chosen = _pick_image_hdu(hdul, path, hdu)
        header = chosen.header.copy()
        if chosen is not hdul[0]:
            # inherit keywords such as EXPTIME/GAIN/DATE-OBS from the primary header
            for card in hdul[0].header.cards:
                if card.keyword not in header and card.keyword not in ("", "COMMENT", "HISTORY") \
                        and not card.keyword.startswith(("NAXIS", "BITPIX", "SIMPLE", "EXTEND")):
                    header[card.keyword] = (card.value, card.comment)
        arr, wcs = celestial_data_and_wcs(chosen.data, header, path)
        data = np.array(arr, dtype=dtype)  # native byte order, a copy
        mask = _mask_from(hdul, data.shape)
    finally:
        hdul.close()
    bad = ~np.isfinite(data)
    if bad.all():
        raise EmptyDataError(path, "every pixel is NaN or infinite")
    if mask is None:
        mask = bad
    else:
        mask = mask | bad
    if mask.all():
        raise EmptyDataError(path, "every pixel is masked as bad")
    sat = header.get("SATURATE")
    if require_exptime:
        exptime_of(header, path)
    img = SkyImage(data=data, wcs=wcs, header=header, mask=mask, path=os.fspath(path))
    if sat is not None:
        try:
            img.extras["saturate"] = float(sat)
        except (TypeError, ValueError):
            pass
    return img


def exptime_of(header: Mapping, path=None) -> float | None:
    """EXPTIME (or EXPOSURE) in seconds; a present but non-positive value is an error."""
    for key in ("EXPTIME", "EXPOSURE", "TEXPTIME"):
        if key in header:
            try:
                value = float(header[key])
            except (TypeError, ValueError) as exc:
                raise BadHeaderError(path, f"{key}={header[key]!r} is not a number") from exc
            if not np.isfinite(value) or value <= 0:
                raise BadHeaderError(path, f"{key}={value} s: exposure time must be positive")
            return value
    return None


def provenance_cards(step: str, inputs: Sequence[str | os.PathLike] = (), extra: Mapping | None = None):
    """HISTORY lines and keywords that say what made a file, when, and from what."""
    from astrid_pipeline import __version__

    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    cards = [
        ("ORIGIN", PIPELINE_NAME, "software that wrote this file"),
        ("ASTRIDV", __version__, "astrid-pipeline version"),
        ("ASTRSTEP", step, "pipeline step that wrote this file"),
        ("DATE", now, "UTC date this file was written"),
    ]
    history = [f"{now} {PIPELINE_NAME} {__version__} step={step}"]
    for i, inp in enumerate(inputs):
        history.append(f"input[{i}]: {os.path.basename(os.fspath(inp))}")
    for k, v in (extra or {}).items():
        cards.append((k, v, ""))
    return cards, history


def write_fits(
    path: str | os.PathLike,
    data: np.ndarray | None,
    *,
    header: fits.Header | None = None,
    wcs: WCS | None = None,
    extensions: Iterable[tuple[str, np.ndarray, fits.Header | None]] = (),
    step: str = "",
    inputs: Sequence[str | os.PathLike] = (),
    keywords: Mapping | None = None,
) -> Path:
    """Write a FITS file atomically: primary image, WCS, provenance, extensions.

    ``keywords`` values may be ``value`` or ``(value, comment)``.
    """
    hdr = fits.Header() if header is None else header.copy()
    if wcs is not None:
        for key in list(hdr.keys()):
            if key.startswith(("CD1_", "CD2_", "PC1_", "PC2_", "A_", "B_", "AP_", "BP_", "PV")):
                del hdr[key]
        hdr.update(wcs.to_header(relax=True))
    cards, history = provenance_cards(step, inputs)
    for k, v, c in cards:
        hdr[k] = (v, c)
    for k, v in (keywords or {}).items():
        if isinstance(v, tuple):
            hdr[k] = v
        else:
            hdr[k] = _fits_value(v)
    for line in history:
        hdr.add_history(line)
    primary = fits.PrimaryHDU(data=data, header=hdr)
    hdus = [primary]
    for name, arr, ehdr in extensions:
        e = fits.ImageHDU(data=arr, header=None if ehdr is None else ehdr.copy(), name=name)
        if wcs is not None and arr is not None and arr.ndim == 2 and arr.shape == getattr(data, "shape", None):
            e.header.update(wcs.to_header(relax=True))
        hdus.append(e)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, output_verify="silentfix")
    return Path(path)


def _fits_value(v):
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    return v
