"""Identifiers of alerts: 64-bit candidate ids, object names, and the ZTF-only ids filled from AstrID's own.

**Candidate id** (``candid``, a signed 64-bit long; always positive)::

    candid = processing_id(region, mjd) << 16 | number

- ``processing_id`` (47 bits) is the first 47 bits of the BLAKE2b-64 hash of
  ``"<region>@<MJD to 1e-5 d>"``: one value per exposure of a region (1e-5 d
  = 0.86 s, shorter than any exposure); it is also the alert's ``pid``;
- ``number`` (16 bits) is the candidate's number within that exposure
  (the ``candidate_id`` column of the candidate catalog, 0 ... 65535).

Two candidates of the same region and epoch never share an id; two
different exposures share a ``processing_id`` with probability about
n^2 / 2^48 for n exposures (1e6 exposures: 0.4 %), which
:func:`assert_unique` checks for the ids written together. The id decodes
back into (processing id, number) with :func:`decode_candidate_id`.

**Object id** (``objectId``): the IAU-style name of the position,
``ASTJhhmmss.ss+ddmmss.s`` (ICRS, truncated, not rounded, as the IAU asks),
so detections of the same source in different epochs share it (to 0.15").

**ZTF-only fields** (documented in :mod:`.packets` too): ``pid`` = the
processing id above; ``rfid`` = the processing id of the reference image
(region and reference MJD); ``field`` = a 31-bit hash of the region name;
``rcid`` = 0 (one detector per image); ``programid`` = 0 (not a ZTF
programme); ``nid`` = the integer MJD of the exposure start; ``tblid`` = the
candidate number.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from .errors import AlertInputError

NUMBER_BITS = 16
PID_BITS = 47
MAX_NUMBER = (1 << NUMBER_BITS) - 1


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def exposure_key(region: str, mjd: float) -> str:
    """The text hashed into a processing id: region name and MJD rounded to 1e-5 day."""
    if not isinstance(region, str) or not region:
        raise AlertInputError(f"region must be a non-empty string, got {region!r}")
    if mjd is None or not np.isfinite(mjd):
        raise AlertInputError(f"region {region!r}: the exposure MJD is {mjd!r}; a candidate id needs the epoch")
    return f"{region}@{float(mjd):.5f}"


def processing_id(region: str, mjd: float) -> int:
    """47-bit id of one exposure of one region (the alert's ``pid``)."""
    return _hash64(exposure_key(region, mjd)) >> (64 - PID_BITS)


def candidate_id(region: str, mjd: float, number: int) -> int:
    """64-bit candidate id (see the module docstring); ``number`` is the candidate's number in its exposure."""
    n = int(number)
    if not 0 <= n <= MAX_NUMBER:
        raise AlertInputError(f"region {region!r}: candidate number {n} outside 0..{MAX_NUMBER} "
                              "(more candidates than one exposure's id space holds)")
    return (processing_id(region, mjd) << NUMBER_BITS) | n


def candidate_ids(region: str, mjd: float, numbers) -> np.ndarray:
    """Vectorised :func:`candidate_id` for one exposure (int64 array)."""
    pid = processing_id(region, mjd) << NUMBER_BITS
    nums = np.asarray(numbers, dtype=np.int64)
    if nums.size and (nums.min() < 0 or nums.max() > MAX_NUMBER):
        raise AlertInputError(f"region {region!r}: candidate numbers must be within 0..{MAX_NUMBER}")
    return (np.int64(pid) | nums).astype(np.int64)


def decode_candidate_id(candid: int) -> tuple[int, int]:
    """(processing id, candidate number) of a candidate id."""
    c = int(candid)
    return c >> NUMBER_BITS, c & MAX_NUMBER


def assert_unique(ids, what: str = "candidate ids") -> None:
    a = np.asarray(ids, dtype=np.int64)
    u, counts = np.unique(a, return_counts=True)
    if (counts > 1).any():
        raise AlertInputError(f"{what} are not unique: {u[counts > 1][:5].tolist()} repeat "
                              "(two exposures hash to the same processing id, or a candidate number repeats)")


def field_id(region: str) -> int:
    """31-bit (non-negative int32) number of a region, for the ZTF ``field`` slot."""
    return _hash64(f"field:{region}") >> 33


def night_id(mjd: float) -> int:
    """The integer MJD of the exposure start (the ZTF ``nid`` slot)."""
    return int(math.floor(float(mjd)))


def object_id(ra: float, dec: float, prefix: str = "AST") -> str:
    """IAU-style name ``<prefix>Jhhmmss.ss+ddmmss.s`` of an ICRS position (truncated digits)."""
    ra = float(ra) % 360.0
    dec = float(dec)
    if not (np.isfinite(ra) and np.isfinite(dec) and -90.0 <= dec <= 90.0):
        raise AlertInputError(f"position ({ra}, {dec}) is not a valid RA/Dec in degrees")
    cs = int(math.floor(ra / 15.0 * 3600.0 * 100.0 + 1e-9))  # hundredths of a second of time
    h, rem = divmod(cs, 360000)
    m, rem = divmod(rem, 6000)
    s = rem / 100.0
    sign = "-" if dec < 0 else "+"
    ds = int(math.floor(abs(dec) * 3600.0 * 10.0 + 1e-9))  # tenths of an arcsecond
    d, rem = divmod(ds, 36000)
    am, rem = divmod(rem, 600)
    asec = rem / 10.0
    return f"{prefix}J{h:02d}{m:02d}{s:05.2f}{sign}{d:02d}{am:02d}{asec:04.1f}"
