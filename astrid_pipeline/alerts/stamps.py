"""Cutout stamps as gzipped FITS with their WCS (ZTF alert style: 63x63 science, template, difference).

Each stamp is an :class:`astropy.nddata.Cutout2D` of the image around the
candidate (``mode="partial"``: beyond the image edge the stamp is NaN), so
the WCS of the stamp is the image's WCS shifted to the cut-out origin and
ds9, astropy or any FITS viewer places it on the sky. The header also
carries ``BUNIT``, the cut-out origin in the parent image (``XORIGIN``,
``YORIGIN``, 0-based), the candidate id and the stamp's role. The bytes are
``gzip`` with a zero timestamp, so the same inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import io

import numpy as np

from .errors import AlertInputError


def cutout(image: np.ndarray, wcs, x: float, y: float, size: int = 63):
    """A ``size`` x ``size`` :class:`~astropy.nddata.Cutout2D` centred on pixel (x, y), NaN-padded at edges."""
    from astropy.nddata import Cutout2D

    if size < 3:
        raise AlertInputError(f"stamp size must be at least 3 pixels, got {size}")
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise AlertInputError(f"a stamp needs a 2-D image, got shape {data.shape}")
    return Cutout2D(data, (float(x), float(y)), (size, size), wcs=wcs, mode="partial", fill_value=np.nan, copy=True)


def stamp_bytes(image: np.ndarray, wcs, x: float, y: float, size: int = 63, *, role: str = "",
                bunit: str = "", candid: int | None = None, extra: dict | None = None) -> bytes:
    """Gzipped FITS of one stamp (primary HDU, float32, WCS of the cut-out)."""
    from astropy.io import fits

    c = cutout(image, wcs, x, y, size)
    hdr = fits.Header()
    if c.wcs is not None:
        hdr.update(c.wcs.to_header(relax=True))
    if bunit:
        hdr["BUNIT"] = (bunit, "pixel units")
    if role:
        hdr["STMPROLE"] = (role, "science, template or difference")
    if candid is not None:
        hdr["CANDID"] = (int(candid), "AstrID 64-bit candidate id")
    x0, y0 = c.origin_original
    hdr["XORIGIN"] = (int(x0), "[pix] 0-based image column of stamp column 0")
    hdr["YORIGIN"] = (int(y0), "[pix] 0-based image row of stamp row 0")
    for k, v in (extra or {}).items():
        hdr[k] = v
    buf = io.BytesIO()
    fits.PrimaryHDU(np.asarray(c.data, np.float32), hdr).writeto(buf)
    return gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)


def read_stamp(payload: bytes):
    """The :class:`~astropy.io.fits.HDUList` of a stamp from an alert's ``stampData`` (gzipped or plain FITS)."""
    from astropy.io import fits

    raw = gzip.decompress(payload) if payload[:2] == b"\x1f\x8b" else payload
    return fits.open(io.BytesIO(raw))
