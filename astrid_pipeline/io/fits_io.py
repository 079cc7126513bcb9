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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from astrid_pipeline.errors import (
    AmbiguousImageError,
    BadHeaderError,
    BadShapeError,
    EmptyDataError,
    ImageTooLargeError,
    InputFileError,
    NoCelestialWCSError,
    NotASkyImageError,
    NotFITSError,
    SingularWCSError,
    TruncatedFileError,
)
from astrid_pipeline.io.atomic import atomic_path

#: Extension names that hold a bad-pixel map (non-zero = bad), in the order tried.
MASK_EXTENSIONS = ("MASK", "BPM", "DQ")
#: Extension names preferred for the science pixels.
SCIENCE_EXTENSIONS = ("SCI", "IMAGE")
#: Image extensions that travel with a science image but are never the image itself
AUXILIARY_EXTENSIONS = MASK_EXTENSIONS + (
    "ERR", "ERROR", "SIGMA", "UNCERT", "RMS", "NOISE", "VAR", "VARIANCE", "IVAR", "INVVAR", "IVM", "WHT", "WEIGHT",
    "WGT", "VAR_POISSON", "VAR_RNOISE", "VAR_FLAT", "CON", "CTX", "EXP", "EXPMAP", "COVERAGE", "SAMP", "TIME",
    "SKYFIT", "APERTURE", "PROB", "CRMASK", "OUTSIDE", "BADPIX", "SATMASK", "PSF", "KERNEL")
#: Keywords describing *when* an image was taken: they belong to the image, never to a WCS copied from another
TIME_KEYWORDS = ("MJD-OBS", "DATE-OBS", "MJD-AVG", "DATE-AVG", "MJD-BEG", "DATE-BEG", "MJD-END", "DATE-END",
                 "TSTART", "TSTOP", "MJDREF", "MJDREFI", "MJDREFF", "JDREF", "TIMESYS", "TIMEUNIT", "TREFPOS",
                 "TELAPSE", "XPOSURE", "TIMEDEL")

PIPELINE_NAME = "astrid-pipeline"

#: default most pixels one HDU may declare: admits a 20k x 20k survey mosaic (2^29 = 23170^2), refuses a
#: header that claims more (``$ASTRID_MAX_IMAGE_PIXELS`` or :class:`InputLimits` change it)
DEFAULT_MAX_IMAGE_PIXELS = 2**29
#: default most values one ramp may declare (integrations x groups x rows x columns): 8 integrations of
#: 128 groups of a 4096^2 frame, i.e. 2^34 (``$ASTRID_MAX_RAMP_VALUES``); ramps are read by row blocks
DEFAULT_MAX_RAMP_VALUES = 2**34
#: longest header read (2880-byte blocks of 36 cards: 72,000 cards), most HDUs in one file
MAX_HEADER_BLOCKS = 2000
MAX_HDUS = 10_000
_BLOCK = 2880
_BITPIX = {8: 1, 16: 2, 32: 4, 64: 8, -32: 4, -64: 8}


@dataclass
class InputLimits:
    """How much data one input file may declare before it is read (a header cannot force a huge allocation).

    Both limits compare what the header (FITS) or the dataset (HDF5) *declares*; a file holding less data than
    it declares is refused as truncated whatever the limits. Defaults come from ``$ASTRID_MAX_IMAGE_PIXELS`` and
    ``$ASTRID_MAX_RAMP_VALUES`` when set (:func:`input_limits`).
    """

    max_image_pixels: int = field(default=DEFAULT_MAX_IMAGE_PIXELS, metadata={
        "description": "most pixels one FITS HDU may declare (all axes multiplied; tile-compressed images by "
                       "their ZNAXISn); the default 2^29 admits a 20000 x 20000 mosaic"})
    max_ramp_values: int = field(default=DEFAULT_MAX_RAMP_VALUES, metadata={
        "description": "most values one ramp may declare (integrations x groups x rows x columns); HDF5 ramps "
                       "are read by row blocks, so this bounds time, not memory"})


def input_limits() -> InputLimits:
    """The limits in force: :class:`InputLimits` defaults overridden by ``$ASTRID_MAX_IMAGE_PIXELS`` /
    ``$ASTRID_MAX_RAMP_VALUES`` (a malformed value is a :class:`~astrid_pipeline.errors.ConfigError`)."""
    from astrid_pipeline.errors import ConfigError

    out = InputLimits()
    for env, attr in (("ASTRID_MAX_IMAGE_PIXELS", "max_image_pixels"), ("ASTRID_MAX_RAMP_VALUES", "max_ramp_values")):
        text = os.environ.get(env, "").strip()
        if text:
            try:
                value = int(float(text))
            except (ValueError, OverflowError):
                raise ConfigError(f"${env}={text[:40]!r} is not a number of pixels") from None
            if value < 1:
                raise ConfigError(f"${env}={text[:40]!r} must be a positive number")
            setattr(out, attr, value)
    return out


@dataclass
class DeclaredHDU:
    """What one HDU's header declares (read by :func:`declared_layout` without reading its data)."""

    index: int
    kind: str  # "PRIMARY", "IMAGE", "BINTABLE", "TABLE", ...
    shape: tuple  # NAXISn in FITS order (fastest axis first); ZNAXISn for a tile-compressed image
    bitpix: int
    data_bytes: int  # bytes of data the header announces, padding excluded
    offset: int  # byte where the data start in the (uncompressed) stream
    compressed_image: bool = False

    @property
    def pixels(self) -> int:
        n = 1
        for v in self.shape:
            n *= int(v)
        return n if self.shape else 0


def _card_value(card: bytes):
    """The value of a fixed-format card (``KEYWORD= value / comment``) as int, bool or str (None if absent)."""
    if card[8:10] != b"= ":
        return None
    text = card[10:].decode("ascii", "replace")
    if text.lstrip().startswith("'"):
        body = text.lstrip()[1:]
        return body.split("'", 1)[0].strip()
    text = text.split("/", 1)[0].strip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _read_header_cards(read, where, index: int) -> dict | None:
    """Cards of one header from the stream ``read(n)``: {keyword: value}; None at a clean end of file."""
    cards: dict = {}
    for block_no in range(MAX_HEADER_BLOCKS):
        block = read(_BLOCK)
        if not block and block_no == 0:
            return None
        if index == 0 and block_no == 0 and not block.startswith(b"SIMPLE"):
            return {}  # not FITS: the reader says what it is
        if len(block) < _BLOCK:
            if index == 0 and block_no == 0:
                return {}  # shorter than one FITS block: not FITS, the reader says what it is
            if block_no == 0 and not block.strip(b"\0 "):
                return None  # trailing padding after the last HDU
            raise TruncatedFileError(where, f"file is truncated: it ends inside the header of HDU {index}")
        for i in range(0, _BLOCK, 80):
            card = block[i:i + 80]
            key = card[:8].decode("ascii", "replace").strip()
            if key == "END":
                return cards
            if key and key not in cards:
                cards[key] = _card_value(card)
    raise BadHeaderError(where, f"header of HDU {index} has no END card within {MAX_HEADER_BLOCKS * 36} cards")


def _int_card(cards, key, where, index, *, lo=0, hi=None) -> int:
    v = cards.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise BadHeaderError(where, f"HDU {index}: {key} = {str(v)[:30]!r} is not a valid value"
                                    f"{'' if hi is None else f' (an integer in [{lo}, {hi}])'}")
    return v


def _declared_hdu(cards: dict, where, index: int, offset: int) -> DeclaredHDU:
    bitpix = cards.get("BITPIX")
    if bitpix not in _BITPIX or isinstance(bitpix, bool):
        raise BadHeaderError(where, f"HDU {index}: BITPIX = {str(bitpix)[:30]!r} is not one of 8, 16, 32, 64, "
                                    "-32, -64")
    naxis = _int_card(cards, "NAXIS", where, index, hi=999)
    axes = tuple(_int_card(cards, f"NAXIS{i}", where, index) for i in range(1, naxis + 1))
    kind = "PRIMARY" if index == 0 else str(cards.get("XTENSION", "")).strip().upper()
    pcount = cards.get("PCOUNT", 0) if kind != "PRIMARY" or cards.get("GROUPS") is True else 0
    gcount = cards.get("GCOUNT", 1) if kind != "PRIMARY" or cards.get("GROUPS") is True else 1
    if isinstance(pcount, bool) or not isinstance(pcount, int) or pcount < 0:
        raise BadHeaderError(where, f"HDU {index}: PCOUNT = {str(pcount)[:30]!r} is not a valid value")
    if isinstance(gcount, bool) or not isinstance(gcount, int) or gcount < 0:
        raise BadHeaderError(where, f"HDU {index}: GCOUNT = {str(gcount)[:30]!r} is not a valid value")
    counted = axes[1:] if (kind == "PRIMARY" and cards.get("GROUPS") is True and axes and axes[0] == 0) else axes
    n = 1
    for v in counted:
        n *= v
    data_bytes = _BITPIX[bitpix] * gcount * (pcount + n) if naxis > 0 else 0
    shape, compressed = axes, False
    if kind == "BINTABLE" and cards.get("ZIMAGE") is True:
        znaxis = _int_card(cards, "ZNAXIS", where, index, hi=999)
        shape, compressed = tuple(_int_card(cards, f"ZNAXIS{i}", where, index) for i in range(1, znaxis + 1)), True
    elif kind in ("BINTABLE", "TABLE"):
        shape = ()  # a table: its bytes are checked against the file, not against the pixel limit
    return DeclaredHDU(index, kind, shape, bitpix, data_bytes, offset, compressed)


def _open_stream(p: Path):
    with open(p, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        import gzip

        return gzip.open(p, "rb"), True
    if magic == b"BZh":
        import bz2

        return bz2.open(p, "rb"), True
    return open(p, "rb"), False


def declared_layout(path: str | os.PathLike, limits: InputLimits | None = None, *,
                    ramp: bool = False) -> list[DeclaredHDU]:
    """Read only the headers of a FITS file and check what they declare, before any data are read.

    Every HDU's data size (``|BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)``, FITS standard 4.0
    sect. 4.4.1) must fit in the file (uncompressed files: against the file size, without reading the data;
    gzip/bzip2 files: the data are decompressed and counted in blocks, never held), and no image may declare
    more than ``limits.max_image_pixels`` pixels (tile-compressed images: their ZNAXISn). Raises
    :class:`~astrid_pipeline.errors.ImageTooLargeError`, :class:`~astrid_pipeline.errors.TruncatedFileError` or
    :class:`~astrid_pipeline.errors.BadHeaderError` naming the file; returns the HDUs found. A file that does not
    start like FITS returns ``[]`` (the reader then names what it is). ``ramp``: the file is an up-the-ramp
    cube, held to ``limits.max_ramp_values`` instead.
    """
    p = Path(path)
    limits = limits or input_limits()
    most, setting = ((limits.max_ramp_values, "$ASTRID_MAX_RAMP_VALUES or InputLimits.max_ramp_values") if ramp else
                     (limits.max_image_pixels, "$ASTRID_MAX_IMAGE_PIXELS or InputLimits.max_image_pixels"))
    size = p.stat().st_size
    stream, compressed = _open_stream(p)
    out: list[DeclaredHDU] = []
    try:
        pos = 0

        def read(n):
            nonlocal pos
            try:
                b = stream.read(n)
            except (OSError, EOFError, zlib.error) as exc:  # a corrupt or cut compressed stream
                raise TruncatedFileError(p, f"file is truncated or corrupt: the compressed stream fails at byte {pos} "
                                            f"({str(exc)[:120]})") from None
            pos += len(b)
            return b

        for index in range(MAX_HDUS + 1):
            cards = _read_header_cards(read, p, index)
            if cards is None or (index == 0 and not cards):
                break
            if index > 0 and "XTENSION" not in cards:
                break  # not an extension header: data after the last HDU (astropy warns about it)
            if index == MAX_HDUS:
                raise BadHeaderError(p, f"has more than {MAX_HDUS} HDUs")
            hdu = _declared_hdu(cards, p, index, pos)
            out.append(hdu)
            if hdu.shape and hdu.pixels > most:
                dims = " x ".join(str(v) for v in reversed(hdu.shape))
                raise ImageTooLargeError(
                    p, f"HDU {index} declares {dims} = {hdu.pixels} {'values' if ramp else 'pixels'}, more than the "
                       f"limit of {most} (set {setting} to read larger {'ramps' if ramp else 'images'}); nothing "
                       "was read")
            padded = -(-hdu.data_bytes // _BLOCK) * _BLOCK
            if not compressed:
                if pos + hdu.data_bytes > size:
                    raise TruncatedFileError(
                        p, f"file is truncated: HDU {index} declares {hdu.data_bytes} bytes of data but the file ends "
                           f"{size - pos} bytes after its header (file size {size} bytes); nothing was read")
                if pos + padded >= size:
                    break
                stream.seek(pos + padded)
                pos += padded
            else:
                left = padded
                while left > 0:
                    chunk = read(min(left, 1 << 20))
                    if not chunk:
                        if padded - left < hdu.data_bytes:
                            raise TruncatedFileError(
                                p, f"file is truncated: HDU {index} declares {hdu.data_bytes} bytes of data but the compressed "
                                   f"stream holds only {padded - left} of them")
                        break
                    left -= len(chunk)
                if left > 0:
                    break
    finally:
        stream.close()
    return out


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


def inherit_primary_keywords(header: fits.Header, primary: fits.Header) -> fits.Header:
    """Copy into an extension's ``header`` (in place) the primary header's keywords it lacks, such as
    EXPTIME, GAIN, DATE-OBS (structural, COMMENT and HISTORY cards excepted); returns ``header``."""
    for card in primary.cards:
        if card.keyword not in header and card.keyword not in ("", "COMMENT", "HISTORY") \
                and not card.keyword.startswith(("NAXIS", "BITPIX", "SIMPLE", "EXTEND")):
            header[card.keyword] = (card.value, card.comment)
    return header


def open_fits(path: str | os.PathLike, limits: InputLimits | None = None, *, ramp: bool = False) -> fits.HDUList:
    """Open a FITS file fully into memory, mapping failures to named errors.

    The headers are checked first (:func:`declared_layout`): a header that declares more data than the file
    holds, or more pixels than ``limits`` allow, is refused before any data are read (``ramp``: a ramp cube,
    held to the ramp limit).
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    if p.is_dir():
        raise InputFileError(p, "is a folder, not a FITS file")
    if not p.is_file():  # a FIFO would block the read forever
        raise InputFileError(p, "is not a regular file (a pipe, socket or device), not a FITS file")
    if p.stat().st_size == 0:
        raise NotFITSError(p, "file is empty (0 bytes)")
    try:
        declared_layout(p, limits, ramp=ramp)
    except PermissionError as exc:
        raise InputFileError(p, f"cannot be read ({exc.strerror})") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(p, memmap=False, lazy_load_hdus=False)
            for hdu in hdul:
                if hdu.is_image:
                    _ = hdu.data  # force the read so truncation shows here
                else:
                    # tables (an ASCII table after the image, a TESS pixel table) are read only to see that
                    # the file is complete; a table astropy cannot convert does not make the image unusable
                    try:
                        _ = hdu.data
                    except (TypeError, ValueError, KeyError, IndexError):
                        pass
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
    except (ValueError, TypeError, EOFError, zlib.error) as exc:
        raise TruncatedFileError(
            p, f"file ends before the data its header announces ({str(exc)[:200]})"
        ) from exc
    except (IndexError, KeyError) as exc:  # a compressed image whose tiles contradict its header
        raise BadHeaderError(p, f"the data do not match what the header declares ({type(exc).__name__}: "
                                f"{str(exc)[:200]})") from exc
    return hdul


def _table_pixel_columns(h) -> list[str]:
    """Columns of a binary table whose cells are 2-D images (a time series of pixel stamps)."""
    out = []
    if not isinstance(h, fits.BinTableHDU):
        return out
    for col in h.columns:
        dim = col.dim
        if dim:
            try:
                n = len([d for d in str(dim).strip("()").split(",") if d.strip()])
            except Exception:  # pragma: no cover - malformed TDIM
                n = 0
            if n >= 2:
                out.append(col.name)
    return out


def _describe(i, h) -> str:
    bits = [f"[{i}]"]
    if h.name and h.name != "PRIMARY":
        bits.append(h.name + (f",{h.ver}" if h.ver and h.ver > 1 else ""))
    for k in ("FILTER", "BAND", "FILTNAM1", "ORIG_FLE"):
        v = h.header.get(k)
        if v not in (None, ""):
            bits.append(f"{k}={str(v).strip()}")
            break
    shape = "x".join(str(n) for n in h.data.shape) if h.data is not None else "no data"
    bits.append(shape)
    return " ".join(bits)


def check_sky_image_file(hdul: fits.HDUList, path) -> None:
    """Raise :class:`NotASkyImageError` for a time series of pixels (TESS/Kepler target-pixel files,
    astrocut TESS cube cut-outs): a binary table whose cells are 2-D pixel stamps."""
    for i, h in enumerate(hdul):
        cols = _table_pixel_columns(h)
        if cols:
            n = h.data.shape[0] if h.data is not None else 0
            stamp = h.columns[cols[0]].dim
            tele = str(hdul[0].header.get("TELESCOP", "") or h.header.get("TELESCOP", "")).strip()
            raise NotASkyImageError(
                path, f"is a time-series target-pixel file{' (' + tele + ')' if tele else ''}: HDU {i} "
                      f"({h.name or 'unnamed'}) is a table of {n} cadences whose column(s) {', '.join(cols[:3])} "
                      f"hold {stamp} pixel stamps, not a sky image; make an image (e.g. a median over "
                      "cadences) or use a full-frame image instead")


def _pick_image_hdu(hdul: fits.HDUList, path, hdu: int | str | None, band: int | None = None):
    """The HDU holding the science image (see :func:`read_sky_image` for the rules)."""
    check_sky_image_file(hdul, path)
    if hdu is not None:
        try:
            chosen = hdul[hdu]
        except (KeyError, IndexError) as exc:
            names = [_describe(i, h) for i, h in enumerate(hdul)]
            raise InputFileError(path, f"has no HDU {hdu!r} (HDUs: {'; '.join(names)})") from exc
        if not chosen.is_image:
            raise NotASkyImageError(path, f"HDU {hdu!r} is a table, not an image")
        if chosen.data is None:
            raise BadShapeError(path, f"HDU {hdu!r} holds no data")
        return chosen
    for name in SCIENCE_EXTENSIONS:
        if name in hdul and hdul[name].data is not None and hdul[name].is_image:
            return hdul[name]
    images = [(i, h) for i, h in enumerate(hdul)
              if h.is_image and h.data is not None and h.data.ndim >= 2 and h.name.upper() not in AUXILIARY_EXTENSIONS]
    if not images:
        if any(not h.is_image for h in hdul):
            raise NotASkyImageError(path, "holds tables but no image HDU with 2-D (or higher) data")
        raise BadShapeError(path, "contains no image HDU with 2-D (or higher) data")
    if images[0][0] == 0 or len(images) == 1:
        return images[0][1]  # an image in the primary HDU is the image; a single extension image too
    # several image extensions and an empty primary: bands of a multi-band cut-out
    shapes = {h.data.shape[-2:] for _, h in images}
    if band is not None:
        if not 1 <= int(band) <= len(images):
            raise AmbiguousImageError(path, f"band={band} is out of range: the file has {len(images)} image "
                                            f"extensions ({'; '.join(_describe(i, h) for i, h in images)})")
        return images[int(band) - 1][1]
    what = "bands of one field" if len(shapes) == 1 else "images"
    raise AmbiguousImageError(
        path, f"has {len(images)} image extensions ({what}): {'; '.join(_describe(i, h) for i, h in images)}; "
              "say which one to use with the image option band (1-based, in this order) or hdu (index or EXTNAME)")


def _is_time_axis(header, axis: int) -> bool:
    ctype = str(header.get(f"CTYPE{axis}", "")).upper()
    return ctype.startswith(("TIME", "MJD", "JD", "UTC", "TAI", "TT", "TDB", "BJD"))


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
            text = " ".join(str(exc).split())[:300]
            if "singular" in text.lower():
                raise SingularWCSError(path, f"the WCS pixel-to-sky matrix (CD, or PC x CDELT) is singular: it maps "
                                             f"the image onto a line (or a point) of sky ({text})") from exc
            raise NoCelestialWCSError(path, f"WCS in the header cannot be parsed: {text}") from exc
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
                "degenerate, so this is a cube, not a single sky image (for a multi-band cube, the image "
                "option band picks one plane, 1-based)",
            )
        arr = arr.reshape(arr.shape[-2:])
    try:
        cel = wcs_full.celestial
    except RuntimeError:  # wcslib cannot sub-select some distorted (TPV) WCS with extra axes: read axes 1-2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            cel = WCS(header, naxis=2)
    lon, lat = wcs_full.wcs.lng, wcs_full.wcs.lat
    if sorted((lon, lat)) != [0, 1]:
        raise BadShapeError(
            path,
            f"celestial axes are FITS axes {lon + 1} and {lat + 1}; only images whose first "
            "two axes are celestial are supported",
        )
    if cel.pixel_shape is None or tuple(cel.pixel_shape) != (arr.shape[1], arr.shape[0]):
        cel.pixel_shape = (arr.shape[1], arr.shape[0])
    _check_scale_cards(header, path)
    check_wcs_usable(cel, path)
    return arr, cel


def _check_scale_cards(header, path) -> None:
    """CDi_j cards, when present, form a non-singular matrix (wcslib silently takes 1 deg/pixel when they are
    all zero). Headers without CD cards (CDELT/PC, or a DSS plate solution) are checked by
    :func:`check_wcs_usable`."""
    cd = {k: header.get(k) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2") if k in header}
    if cd:
        try:
            m = np.array([[float(cd.get(f"CD{i}_{j}", 0.0)) for j in (1, 2)] for i in (1, 2)])
        except (TypeError, ValueError):
            raise SingularWCSError(path, f"the CD matrix cards are not numbers: {str(cd)[:200]}") from None
        sv = np.linalg.svd(m, compute_uv=False) if np.all(np.isfinite(m)) else np.array([np.nan, np.nan])
        if not (np.all(np.isfinite(sv)) and sv[0] > 0 and sv[-1] > 1e-10 * sv[0]):
            raise SingularWCSError(path, f"the CD matrix {m.tolist()} deg/pixel is singular (or not finite): it maps "
                                         "the image onto a line (or a point) of sky; fix the CDi_j cards")


def check_wcs_usable(wcs: WCS, path=None) -> None:
    """Refuse a celestial WCS that maps the image onto no sky area (before any work is done with it).

    The linear part (CD, or PC x CDELT) must be finite and non-singular: its smaller singular value at least
    1e-10 of the larger one (a singular matrix sends every pixel onto one line of sky, so no star can be
    matched and every "candidate" is an artefact); CRVAL and CRPIX must be finite.
    :class:`~astrid_pipeline.errors.SingularWCSError` names the file and the matrix.
    """
    try:
        m = np.asarray(wcs.pixel_scale_matrix, dtype=float)
    except Exception as exc:  # noqa: BLE001 - wcslib refuses some broken matrices outright
        raise SingularWCSError(path, f"the WCS linear transformation cannot be evaluated ({str(exc)[:200]})") from None
    text = np.array2string(m, precision=4, separator=", ").replace("\n", "")
    if m.shape != (2, 2) or not np.all(np.isfinite(m)):
        raise SingularWCSError(path, f"the WCS pixel-to-sky matrix (CD, or PC x CDELT) is not finite: {text} deg/pixel")
    sv = np.linalg.svd(m, compute_uv=False)
    if not sv[0] > 0 or sv[-1] <= 1e-10 * sv[0]:
        raise SingularWCSError(
            path, f"the WCS pixel-to-sky matrix (CD, or PC x CDELT) is singular: {text} deg/pixel maps the image "
                  "onto a line (or a point) of sky, so nothing can be aligned or matched; fix the CD/CDELT/PC cards")
    for name, vec in (("CRVAL", wcs.wcs.crval), ("CRPIX", wcs.wcs.crpix)):
        if not np.all(np.isfinite(np.asarray(vec, dtype=float))):
            raise NoCelestialWCSError(path, f"the WCS {name} values {list(np.asarray(vec, dtype=float))} are not finite")


#: JWST data-quality bits that make a pixel unusable (DO_NOT_USE, SATURATED)
JWST_BAD_DQ = 1 | 2


def _mask_from(hdul: fits.HDUList, shape, header=None, plane: int | None = None) -> np.ndarray | None:
    """The bad-pixel map (True = bad) from a MASK/BPM/DQ extension of the image's shape.

    DQ flags are bit fields: HST's serious flags are ``SDQFLAGS``, JWST's
    unusable bits DO_NOT_USE and SATURATED; other masks are bad where non-zero.
    """
    for name in MASK_EXTENSIONS:
        if name in hdul and hdul[name].data is not None and hdul[name].is_image:
            m = np.asarray(hdul[name].data)
            if plane is not None and m.ndim == 3:
                m = m[plane]
            if m.shape[-2:] != tuple(shape) or m.size != int(np.prod(shape)):
                continue
            m = m.reshape(shape)
            if name == "DQ" and m.dtype.kind in "iu":
                h = header if header is not None else hdul[name].header
                serious = h.get("SDQFLAGS", hdul[name].header.get("SDQFLAGS"))
                if serious is not None:
                    return (m.astype(np.int64) & int(serious)) != 0
                if str(h.get("TELESCOP", "")).strip().upper() == "JWST":
                    return (m.astype(np.int64) & JWST_BAD_DQ) != 0
            return m != 0
    return None


def read_sky_image(
    path: str | os.PathLike,
    hdu: int | str | None = None,
    *,
    band: int | None = None,
    require_exptime: bool = False,
    dtype=np.float64,
) -> SkyImage:
    """Read a sky image and validate it.

    The image is, in order: the HDU named by ``hdu``; an ``SCI``/``IMAGE``
    extension; an image in the primary HDU; the only image extension. A
    file with several image extensions and an empty primary (a multi-band
    cut-out) needs ``band`` (1-based) or ``hdu``, else
    :class:`~astrid_pipeline.errors.AmbiguousImageError` lists them; a cube
    whose third axis is not degenerate needs ``band`` too (the plane). A
    time series of pixels (TESS/Kepler target-pixel files, astrocut TESS
    cut-outs, a cube with a time axis) is a
    :class:`~astrid_pipeline.errors.NotASkyImageError`. Tables and other
    non-image HDUs are ignored.

    Raises a subclass of :class:`~astrid_pipeline.errors.InputFileError`
    naming ``path`` when the file is not FITS, is truncated, has no
    celestial WCS, has non-degenerate extra axes, is all NaN, or (with
    ``require_exptime``) has a missing or non-positive EXPTIME.
    """
    hdul = open_fits(path)
    try:
        return sky_image_from_hdul(hdul, path, hdu, band=band, require_exptime=require_exptime, dtype=dtype)
    finally:
        hdul.close()


def sky_image_from_hdul(
    hdul: fits.HDUList,
    path,
    hdu: int | str | None = None,
    *,
    band: int | None = None,
    require_exptime: bool = False,
    dtype=np.float64,
) -> SkyImage:
    """:func:`read_sky_image` on an HDUList already in memory (``path`` names it in errors)."""
    chosen = _pick_image_hdu(hdul, path, hdu, band if hdu is None else None)
    header = chosen.header.copy()
    if chosen is not hdul[0]:
        inherit_primary_keywords(header, hdul[0].header)
    raw = chosen.data
    plane = None
    if raw.ndim >= 3:
        extra = [n for n in raw.shape[:-2]]
        if any(n != 1 for n in extra):
            if any(_is_time_axis(header, a) for a in range(3, raw.ndim + 1)):
                raise NotASkyImageError(path, f"data have shape {raw.shape} with a time axis "
                                              f"(CTYPE3={header.get('CTYPE3')!r}): a time series, not a sky image")
            if band is not None and raw.ndim == 3:
                if not 1 <= int(band) <= raw.shape[0]:
                    raise AmbiguousImageError(path, f"band={band} is out of range: the cube has {raw.shape[0]} "
                                                    "planes (1-based)")
                plane = int(band) - 1
                raw = raw[plane]
    arr, wcs = celestial_data_and_wcs(raw, header, path)
    data = np.array(arr, dtype=dtype)  # native byte order, a copy
    mask = _mask_from(hdul, data.shape, header, plane)
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
    img.extras["hdu"] = hdul.index_of(chosen)
    img.extras["hdu_name"] = chosen.name
    if plane is not None:
        img.extras["plane"] = plane + 1
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
    wcs_hdr = None if wcs is None else wcs_header(wcs)
    if wcs is not None:
        for key in list(hdr.keys()):
            if key.startswith(("CD1_", "CD2_", "PC1_", "PC2_", "A_", "B_", "AP_", "BP_", "PV")):
                del hdr[key]
        hdr.update(wcs_hdr)
    cards, history = provenance_cards(step, inputs)
    for k, v, c in cards:
        hdr[k] = (v, c)
    for k, v in (keywords or {}).items():
        if isinstance(v, tuple):
            hdr[k] = (_fits_value(v[0]),) + tuple(v[1:])
        else:
            hdr[k] = _fits_value(v)
    for line in history:
        hdr.add_history(line)
    primary = fits.PrimaryHDU(data=data, header=hdr)
    hdus = [primary]
    for name, arr, ehdr in extensions:
        e = fits.ImageHDU(data=arr, header=None if ehdr is None else ehdr.copy(), name=name)
        if wcs is not None and arr is not None and arr.ndim == 2 and arr.shape == getattr(data, "shape", None):
            e.header.update(wcs_hdr)
        hdus.append(e)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # a comment longer than its card is cut to fit: intended, not worth a warning per card
        warnings.filterwarnings("ignore", message="Card is too long", category=fits.verify.VerifyWarning)
        fits.HDUList(hdus).writeto(tmp, output_verify="silentfix")
    return Path(path)


def wcs_header(wcs: WCS) -> fits.Header:
    """The header cards of a celestial WCS without its time keywords (MJD-OBS, DATE-OBS, ...).

    A WCS object remembers the observation time of the image it came from;
    copying it onto another epoch's data (the aligned reference, a
    difference) must not overwrite that image's own time.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        h = wcs.to_header(relax=True)
    for k in TIME_KEYWORDS:
        while k in h:
            del h[k]
    return h


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
