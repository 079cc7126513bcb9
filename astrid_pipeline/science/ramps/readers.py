"""Readers of up-the-ramp data: one interface over several file layouts.

:func:`open_ramp` returns a :class:`RampSource` that serves row blocks
``(groups, rows, cols)`` of one integration as float32, in time order, so
detection never needs the whole cube. Layouts:

- AstrID HDF5 (``/ramp``, frames x y x x, written by the simulation) or any
  HDF5 file with one 3-D/4-D dataset; read lazily, block by block.
- A plain FITS cube (groups x y x x, or integrations x groups x y x x) in the
  primary HDU or the first image extension.
- JWST uncalibrated ramps (``*_uncal.fits``): ``SCI`` is integrations x groups
  x y x x in DN; reference-pixel borders follow from ``SUBSTRT``/``SUBSIZE``.
- HST WFC3/IR IMA files: one ``SCI`` extension per read, stored last read
  first, in e-/s; reads are reversed to time order and turned into
  accumulated electrons (rate x ``SAMPTIME``).
- An in-memory numpy array (:class:`ArrayRampSource`).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astrid_pipeline.errors import BadDataTypeError, BadHeaderError, BadShapeError, EmptyDataError, ImageTooLargeError
from astrid_pipeline.errors import InputFileError, TruncatedFileError
from astrid_pipeline.science.ramps.errors import TooFewGroupsError, UnknownRampFormatError

JWST_FULL_FRAME = 2048
JWST_REFPIX = 4
WFC3IR_REFPIX = 5
#: Minimum groups each method needs (jumps: three differences; RTN: enough reads for two levels)
MIN_GROUPS = {"jumps": 4, "rtn": 8, "snowballs": 4}
#: WFC3/IR DQ bit for full-well saturation
WFC3_DQ_SATURATED = 256


@dataclass
class RampSource(abc.ABC):
    """Common interface: shape (integrations, groups, rows, cols) and row-block reads."""

    path: str | None
    layout: str
    shape: tuple  # (nint, ngroups, ny, nx)
    unit: str = "DN"
    gain: float | None = None  # e-/DN of the values served
    read_noise: float | None = None  # per read, in the unit served
    saturation: float | None = None  # in the unit served; None = no level
    group_times: np.ndarray | None = None  # s, time of each group from the reset
    refpix: tuple = (0, 0, 0, 0)  # border widths (bottom, top, left, right) in rows/cols of the array
    refpix_corrected: bool = False
    num_outputs: int = 4
    attrs: dict = field(default_factory=dict)

    @property
    def n_integrations(self) -> int:
        return self.shape[0]

    @property
    def n_groups(self) -> int:
        return self.shape[1]

    @property
    def frame_shape(self) -> tuple:
        return self.shape[2:]

    @abc.abstractmethod
    def read_rows(self, r0: int, r1: int, integration: int = 0) -> np.ndarray:
        """Groups x rows r0:r1 x columns of one integration (float64, in ``unit``)."""

    def saturated_rows(self, r0: int, r1: int, integration: int = 0) -> np.ndarray | None:
        """Per-group saturation flags from the file's DQ, when the layout has them."""
        return None

    def check_integration(self, integration: int) -> None:
        if not 0 <= integration < self.n_integrations:
            raise BadShapeError(
                self.path, f"integration {integration} does not exist: the file has {self.n_integrations}"
            )

    def require_groups(self, method: str) -> None:
        need = MIN_GROUPS[method]
        if self.n_groups < need:
            raise TooFewGroupsError(
                self.path,
                f"ramp has {self.n_groups} groups; {method} detection needs at least {need}",
            )

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_dtype(dtype, path, what: str = "ramp") -> None:
    """Ramp values are real numbers: integers or floats (not complex, boolean, text or records)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        kinds = {"b": "boolean", "c": "complex", "S": "text", "U": "text", "O": "object/text", "V": "compound records",
                 "M": "dates", "m": "time differences"}
        raise BadDataTypeError(path, f"{what} values are {kinds.get(dtype.kind, 'not numbers')} (dtype {dtype}); "
                                     "a ramp holds real numbers (integer DN or float)")


def _check_size(shape: tuple, path) -> None:
    from astrid_pipeline.io.fits_io import input_limits

    n = int(np.prod([int(v) for v in shape], dtype=object))
    limit = input_limits().max_ramp_values
    if n > limit:
        raise ImageTooLargeError(path, f"ramp of shape {tuple(shape)} declares {n} values, more than the limit of "
                                       f"{limit} (set $ASTRID_MAX_RAMP_VALUES or InputLimits.max_ramp_values)")


def _constant_value(values: np.ndarray):
    """The one value every element holds (None if they differ or any is NaN)."""
    if values.size == 0:
        return None
    lo, hi = values.min(), values.max()
    return lo.item() if lo == hi else None


def _at_saturation(value, saturation) -> bool:
    """A constant ramp at (or above) the saturation level is left to detection's all-saturated error."""
    return saturation is not None and value >= saturation


def _no_signal(path, value) -> EmptyDataError:
    return EmptyDataError(path, f"every value of the ramp is {value:g}: it holds no signal to analyse (an unwritten "
                                "or blanked file?)")


def _as_4d(shape: tuple, path) -> tuple:
    if len(shape) == 3:
        return (1, *shape)
    if len(shape) == 4:
        return tuple(shape)
    raise BadShapeError(
        path, f"data have {len(shape)} dimensions {tuple(shape)}; a ramp needs 3 (groups, y, x) or 4 (integrations, groups, y, x)"
    )


class ArrayRampSource(RampSource):
    """A ramp held in memory (3-D groups x y x x, or 4-D)."""

    def __init__(self, data: np.ndarray, *, path=None, layout="array", **kw):
        arr = np.asarray(data)
        shape = _as_4d(arr.shape, path)
        if arr.size == 0:
            raise EmptyDataError(path, f"ramp of shape {arr.shape} holds no pixels")
        _check_dtype(arr.dtype, path)
        super().__init__(path=None if path is None else os.fspath(path), layout=layout, shape=shape, **kw)
        value = _constant_value(arr)
        if value is not None and not _at_saturation(value, self.saturation):
            raise _no_signal(path, value)
        self._data = arr.reshape(shape)
        self._sat_dq = None

    def read_rows(self, r0, r1, integration=0):
        self.check_integration(integration)
        return np.asarray(self._data[integration, :, r0:r1, :], dtype=np.float32)

    def saturated_rows(self, r0, r1, integration=0):
        if self._sat_dq is None:
            return None
        return self._sat_dq[integration, :, r0:r1, :]


class HDF5RampSource(RampSource):
    """A ramp dataset in an HDF5 file, read lazily by row blocks."""

    def __init__(self, path, dataset: str | None = None):
        import h5py

        try:
            self._f = h5py.File(path, "r")
        except OSError as exc:
            raise InputFileError(path, f"cannot be opened as HDF5 ({exc})") from exc
        try:
            name = dataset or self._find_dataset(path)
            if name not in self._f:
                raise InputFileError(path, f"has no dataset {str(name)[:80]!r}")
            ds = self._f[name]
            if not hasattr(ds, "shape") or not hasattr(ds, "dtype"):
                raise BadShapeError(path, f"{str(name)[:80]!r} is a group, not a dataset")
            shape = _as_4d(ds.shape, path)
            if ds.size == 0:
                raise EmptyDataError(path, f"dataset {name!r} holds no pixels")
            _check_dtype(ds.dtype, path, f"dataset {name!r}")
            _check_size(ds.shape, path)
            _check_stored(ds, path, name)
            a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ds.attrs.items()}
            ft = _attr_number(a, "frame_time", path, positive=True)
            border = _attr_number(a, "refpix_border", path, integer=True, default=0)
            if 2 * border >= min(shape[2:]):
                raise BadHeaderError(path, f"attribute refpix_border = {border} leaves no science pixel in a "
                                           f"{shape[2]} x {shape[3]} frame")
            sat = _attr_number(a, "saturation_dn", path, positive=True)
            if sat is None and ds.dtype == np.uint16:
                sat = 65535.0
            outputs = _attr_number(a, "num_outputs", path, integer=True, positive=True, default=4)
            if outputs > shape[3]:
                raise BadHeaderError(path, f"attribute num_outputs = {outputs} is more than the {shape[3]} columns")
            super().__init__(
                path=os.fspath(path), layout="hdf5", shape=shape, unit=str(a.get("unit", "DN"))[:40],
                gain=_attr_number(a, "gain", path, positive=True),
                read_noise=None,  # estimated from the data unless the caller sets it
                saturation=sat,
                group_times=None if ft is None else ft * np.arange(1, shape[1] + 1),
                refpix=(border,) * 4, num_outputs=outputs, attrs=a,
            )
            self._ds = ds
            self._nd = len(ds.shape)
            self._check_signal()
        except BaseException:
            self._f.close()
            raise

    def _check_signal(self) -> None:
        """Refuse a ramp whose values are all the same (all zero): a few row strips first, the whole only if
        those are constant (read by row blocks, so memory stays bounded)."""
        ny = self.frame_shape[0]
        rows = sorted({int(r) for r in np.linspace(0, ny - 1, min(ny, 8))})
        first = None
        for r in rows:
            v = _constant_value(self.read_rows(r, r + 1))
            if v is None or (first is not None and v != first):
                return
            first = v
        step = max(1, int(16e6 // max(1, 4 * self.n_groups * self.frame_shape[1])))
        for i in range(self.n_integrations):
            for r0 in range(0, ny, step):
                v = _constant_value(self.read_rows(r0, min(ny, r0 + step), i))
                if v is None or v != first:
                    return
        if not _at_saturation(first, self.saturation):
            raise _no_signal(self.path, first)

    def _find_dataset(self, path) -> str:
        if "ramp" in self._f:
            return "ramp"
        found = []
        self._f.visititems(lambda n, o: found.append(n) if getattr(o, "ndim", 0) in (3, 4) else None)
        if not found:
            raise BadShapeError(path, "HDF5 file holds no 3-D or 4-D dataset to read as a ramp")
        return found[0]

    def read_rows(self, r0, r1, integration=0):
        self.check_integration(integration)
        if self._nd == 3:
            block = self._ds[:, r0:r1, :]
        else:
            block = self._ds[integration, :, r0:r1, :]
        return block.astype(np.float32, copy=False)

    def close(self):
        try:
            self._f.close()
        except Exception:  # already closed
            pass


def _attr_number(attrs: dict, key: str, path, *, integer: bool = False, positive: bool = False, default=None):
    """A numeric attribute of a ramp dataset (``gain`` e-/DN, ``frame_time`` s, ``saturation_dn`` DN, ...), or
    ``default`` when absent; text, NaN, infinite, negative (or, with ``positive``, zero) values are a
    :class:`~astrid_pipeline.errors.BadHeaderError` naming the file and the attribute."""
    if key not in attrs:
        return default
    raw = attrs[key]
    try:
        value = float(np.asarray(raw).item()) if not isinstance(raw, (bool, np.bool_)) else float("nan")
    except (TypeError, ValueError):
        value = float("nan")
    ok = np.isfinite(value) and (value > 0 if positive else value >= 0) and (not integer or value == int(value))
    if not ok:
        from astrid_pipeline.io.safe_yaml import short

        what = "a positive" if positive else "a non-negative"
        kind = "integer" if integer else "number"
        raise BadHeaderError(path, f"attribute {key} = {short(raw, 40)} is not {what} {kind}")
    return int(value) if integer else value


def _check_stored(ds, path, name) -> None:
    """The file holds every byte the dataset declares: an HDF5 dataset whose chunks (or contiguous block)
    were never written reads back as fill values, so a 1.4 kB file can declare 100 x 4096^2 values."""
    dcpl = ds.id.get_create_plist()
    import h5py

    layout = dcpl.get_layout()
    if layout == h5py.h5d.COMPACT:
        return
    if layout == h5py.h5d.CONTIGUOUS:
        if dcpl.get_external_count() > 0:
            return
        stored = ds.id.get_storage_size()
        if stored < ds.nbytes:
            raise TruncatedFileError(path, f"dataset {name!r} declares {ds.nbytes} bytes {tuple(ds.shape)} but "
                                           f"the file holds {stored} of them (never written, or truncated)")
        return
    chunks = ds.chunks or ds.shape
    expected = 1
    for n, c in zip(ds.shape, chunks):
        expected *= -(-int(n) // int(c))
    written = ds.id.get_num_chunks()
    if written < expected:
        raise TruncatedFileError(path, f"dataset {name!r} declares {tuple(ds.shape)} values in {expected} chunks but "
                                       f"only {written} were ever written: the rest would read as fill values "
                                       f"({np.asarray(ds.fillvalue).item()!r}), not data")
    size = Path(path).stat().st_size
    end = [0]

    def seen(info):
        end[0] = max(end[0], info.byte_offset + info.size)

    try:
        ds.id.chunk_iter(seen)
    except (AttributeError, RuntimeError):  # an HDF5 without chunk iteration: the chunk count was checked
        return
    if end[0] > size:
        raise TruncatedFileError(path, f"dataset {name!r} has chunks up to byte {end[0]} but the file has {size} "
                                       "bytes: it is truncated")


def _is_hdf5(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def _is_fits(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(30)
    if head[:2] == b"\x1f\x8b":
        return True  # gzipped FITS; open_fits decides
    return head.startswith(b"SIMPLE  =")


def open_ramp(path: str | os.PathLike, *, dataset: str | None = None) -> RampSource:
    """Open a ramp file (HDF5, plain FITS cube, JWST uncal or HST WFC3/IR IMA)."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    if p.is_dir():
        raise InputFileError(p, "is a folder, not a ramp file")
    if not p.is_file():  # a FIFO would block the read forever
        raise InputFileError(p, "is not a regular file (a pipe, socket or device), not a ramp file")
    if p.stat().st_size == 0:
        raise EmptyDataError(p, "file is empty (0 bytes)")
    try:
        hdf5 = _is_hdf5(p)
    except OSError as exc:
        raise InputFileError(p, f"cannot be read ({exc.strerror or exc})") from None
    if hdf5:
        return HDF5RampSource(p, dataset)
    if _is_fits(p):
        return read_fits_ramp(p)
    raise UnknownRampFormatError(p, "neither HDF5 nor FITS (no HDF5 signature, no SIMPLE card)")


# ----------------------------------------------------------------------------
# FITS layouts
# ----------------------------------------------------------------------------

def read_fits_ramp(path) -> RampSource:
    from astrid_pipeline.io.fits_io import open_fits

    hdul = open_fits(path, ramp=True)
    try:
        prim = hdul[0].header
        sci_ext = [h for h in hdul if h.name == "SCI" and h.is_image]
        if prim.get("INSTRUME") == "WFC3" and prim.get("DETECTOR") == "IR" and len(sci_ext) > 1:
            return _hst_ima(path, hdul)
        if prim.get("TELESCOP") == "JWST" or (sci_ext and sci_ext[0].data is not None and sci_ext[0].data.ndim == 4):
            return _jwst_uncal(path, hdul)
        return _plain_cube(path, hdul)
    finally:
        hdul.close()


def _gain_from(header) -> float | None:
    for k in ("GAIN", "CCDGAIN", "GAINVAL"):
        v = header.get(k)
        if v is not None:
            try:
                g = float(v)
            except (TypeError, ValueError):
                continue
            if g > 0:
                return g
    return None


def _plain_cube(path, hdul) -> RampSource:
    chosen = None
    for h in hdul:
        if h.is_image and h.data is not None and h.data.ndim >= 1:
            chosen = h
            break
    if chosen is None:
        raise BadShapeError(path, "contains no image data")
    data = np.asarray(chosen.data)
    hdr = chosen.header
    sat = hdr.get("SATURATE", hdul[0].header.get("SATURATE"))
    if sat is None and (data.dtype.kind in "ui" and data.dtype.itemsize == 2):
        sat = float(np.iinfo(data.dtype).max)
    border = int(hdr.get("REFPIX", hdul[0].header.get("REFPIX", 0)))
    ft = hdr.get("TGROUP", hdr.get("FRMTIME", hdul[0].header.get("TGROUP")))
    shape = _as_4d(data.shape, path)
    return ArrayRampSource(
        data, path=path, layout="fits-cube", unit=str(hdr.get("BUNIT", "DN")),
        gain=_gain_from(hdr) or _gain_from(hdul[0].header),
        saturation=None if sat is None else float(sat),
        group_times=None if ft is None else float(ft) * np.arange(1, shape[1] + 1),
        refpix=(border,) * 4,
    )


def _jwst_refpix(prim) -> tuple:
    """Reference-pixel border widths (bottom, top, left, right) of a (sub)array."""
    try:
        x0 = int(prim["SUBSTRT1"]) - 1
        y0 = int(prim["SUBSTRT2"]) - 1
        nx = int(prim["SUBSIZE1"])
        ny = int(prim["SUBSIZE2"])
    except (KeyError, TypeError, ValueError):
        return (JWST_REFPIX,) * 4
    if prim.get("INSTRUME") == "MIRI":
        return (0, 0, 0, 0)
    ff, b = JWST_FULL_FRAME, JWST_REFPIX

    def lo(start):
        return int(np.clip(b - start, 0, b))

    def hi(start, size):
        return int(np.clip(start + size - (ff - b), 0, b))

    return (lo(y0), hi(y0, ny), lo(x0), hi(x0, nx))


def _jwst_uncal(path, hdul) -> RampSource:
    if "SCI" not in hdul or hdul["SCI"].data is None:
        raise BadShapeError(path, "JWST file has no SCI data")
    data = np.asarray(hdul["SCI"].data)
    if data.ndim != 4:
        raise BadShapeError(path, f"JWST uncal SCI must be 4-D (integrations, groups, y, x), got {data.shape}")
    prim = hdul[0].header
    tg = prim.get("TGROUP")
    return ArrayRampSource(
        data, path=path, layout="jwst-uncal", unit="DN",
        gain=None, saturation=65535.0,
        group_times=None if tg is None else float(tg) * np.arange(1, data.shape[1] + 1),
        refpix=_jwst_refpix(prim),
        attrs={k: prim.get(k) for k in ("INSTRUME", "DETECTOR", "READPATT", "SUBARRAY", "NGROUPS", "NINTS")},
    )


def _hst_ima(path, hdul) -> RampSource:
    reads = []
    for h in hdul:
        if h.name == "SCI" and h.is_image:
            if h.data is None:
                raise BadShapeError(path, f"SCI extension {h.ver} holds no data")
            t = h.header.get("SAMPTIME")
            if t is None:
                raise InputFileError(path, f"SCI extension {h.ver} has no SAMPTIME")
            dq = hdul["DQ", h.ver].data if ("DQ", h.ver) in hdul else None
            reads.append((float(t), np.asarray(h.data, dtype=np.float64), dq))
    if len({r[1].shape for r in reads}) != 1:
        raise BadShapeError(path, "IMA reads have different shapes")
    reads.sort(key=lambda r: r[0])  # stored last read first: put them in time order
    times = np.array([r[0] for r in reads])
    unit = str(hdul["SCI", 1].header.get("BUNIT", "ELECTRONS/S")).upper()
    if unit.endswith("/S"):
        cube = np.stack([r[1] * r[0] for r in reads]).astype(np.float32)  # accumulated charge
        unit = unit[:-2]
    else:
        cube = np.stack([r[1] for r in reads]).astype(np.float32)
    out_unit = "electron" if unit.startswith("ELECTRON") else unit
    src = ArrayRampSource(
        cube, path=path, layout="hst-wfc3ir-ima", unit=out_unit,
        gain=1.0 if out_unit == "electron" else _gain_from(hdul[0].header),
        saturation=None, group_times=times, refpix=(WFC3IR_REFPIX,) * 4,
        refpix_corrected=True,  # calwf3 has already subtracted the reference pixels
        attrs={k: hdul[0].header.get(k) for k in ("INSTRUME", "DETECTOR", "SAMP_SEQ", "NSAMP", "SUBTYPE")},
    )
    if all(r[2] is not None for r in reads):
        dq = np.stack([r[2] for r in reads])
        src._sat_dq = ((dq & WFC3_DQ_SATURATED) != 0)[None]
    return src
