"""HDF5 datasets written atomically, chunked for how they are read.

Units and provenance go into attributes. Large arrays are written block by
block through :func:`open_atomic_hdf5`, so memory stays bounded by a block.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from astrid_pipeline.errors import AstridError
from astrid_pipeline.io.atomic import atomic_path


def _attr_value(v):
    if isinstance(v, (dict, list, tuple)) and not isinstance(v, np.ndarray):
        import json

        return json.dumps(v, default=str)
    if v is None:
        return "None"
    return v


def set_attrs(obj, attrs: Mapping) -> None:
    for k, v in attrs.items():
        obj.attrs[k] = _attr_value(v)


def provenance_attrs(step: str, extra: Mapping | None = None) -> dict:
    from astrid_pipeline import __version__

    out = {
        "origin": "astrid-pipeline",
        "astrid_version": __version__,
        "step": step,
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.update(extra or {})
    return out


@contextlib.contextmanager
def open_atomic_hdf5(path: str | os.PathLike, step: str = "", attrs: Mapping | None = None) -> Iterator["h5py.File"]:  # noqa: F821
    """Open a new HDF5 file under a temporary name; it is renamed into place on success.

    A write that fails (disk full, file-size limit, read-only file system: HDF5 reports them as ``OSError`` or
    ``RuntimeError`` with ``errno = N`` in the text) becomes an :class:`~astrid_pipeline.errors.OutputError`
    naming ``path`` and the temporary file is removed. Known limit: after such a failure HDF5 retries the
    flush when the objects of the file are freed, and h5py prints those failures (and may crash the
    interpreter at exit); the error raised here is still the first thing reported.
    """
    import h5py

    with atomic_path(path) as tmp:
        f = h5py.File(tmp, "w")
        try:
            set_attrs(f, provenance_attrs(step, attrs))
            yield f
            f.close()
        except BaseException as exc:
            code = _write_errno(exc)
            if code is None:  # the writer's own error: close the file as usual, the temporary goes
                with contextlib.suppress(Exception):
                    f.close()
                raise
            _abandon(f)
            raise OSError(code, os.strerror(code), os.fspath(tmp)) from exc


#: system errors that mean the disk (or the file system) refused a write
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def _write_errno(exc: BaseException) -> int | None:
    """The errno of a refused write that an HDF5 failure carries (``errno = 28`` in its text, or
    ``exc.errno``); None for any other error."""
    import re

    if not isinstance(exc, (OSError, RuntimeError)) or isinstance(exc, AstridError):
        return None
    m = re.search(r"errno = (\d+)", str(exc))
    code = int(m.group(1)) if m else getattr(exc, "errno", None)
    return code if code in _WRITE_ERRNOS else None


_ABANDONED: list = []


def _quiet_hdf5_dealloc(hook):
    """An unraisable-exception hook that drops HDF5's failing flushes of an abandoned file (not the error the
    user needs to see: that one was raised) and passes everything else to ``hook``."""
    def quiet(u):
        text = f"{getattr(u, 'object', '')} {u.exc_value}"
        if "file write failed" in text or ("_dealloc" in text and "ObjectID" in text and _ABANDONED):
            return
        hook(u)

    quiet.astrid_quiet = True
    return quiet


def _abandon(f) -> None:
    """Give up a file whose writing failed (disk full...): HDF5 cannot close it cleanly any more, and closing
    it while datasets of it are still referenced crashed the interpreter at once, so the file is left open
    (its objects are kept; its descriptor goes at exit) and the complaints that reach
    ``sys.unraisablehook`` while they go are dropped."""
    import sys

    _ABANDONED.append(f)
    if not getattr(sys.unraisablehook, "astrid_quiet", False):
        sys.unraisablehook = _quiet_hdf5_dealloc(sys.unraisablehook)


def write_dataset(
    f,
    name: str,
    data: np.ndarray,
    *,
    chunks=True,
    unit: str | None = None,
    description: str | None = None,
    compression: str | None = "gzip",
    attrs: Mapping | None = None,
):
    """Create one dataset in an open file with unit/description attributes."""
    arr = np.asarray(data)
    kwargs = {}
    if arr.ndim > 0 and arr.size > 0:
        kwargs["chunks"] = chunks
        if compression:
            kwargs["compression"] = compression
            if compression == "gzip":
                kwargs["compression_opts"] = 4
            kwargs["shuffle"] = True
    if arr.dtype.kind in "UO":
        import h5py

        arr = np.asarray([str(x) for x in arr.ravel()], dtype=object).reshape(arr.shape)
        ds = f.create_dataset(name, data=arr, dtype=h5py.string_dtype())
    else:
        ds = f.create_dataset(name, data=arr, **kwargs)
    if unit is not None:
        ds.attrs["unit"] = unit
    if description is not None:
        ds.attrs["description"] = description
    set_attrs(ds, attrs or {})
    return ds


def write_table_group(f, name: str, table: Mapping[str, np.ndarray], units: Mapping[str, str] | None = None):
    """Store a table as a group with one 1-D dataset per column (pandas-friendly)."""
    g = f.create_group(name)
    for col, values in table.items():
        write_dataset(g, col, np.asarray(values), unit=(units or {}).get(col), compression=None, chunks=None)
    g.attrs["columns"] = list(table.keys())
    return g


def read_table_group(path_or_file, name: str):
    """Read a group written by :func:`write_table_group` into a DataFrame."""
    import h5py
    import pandas as pd

    def _read(f):
        g = f[name]
        cols = [c.decode() if isinstance(c, bytes) else str(c) for c in g.attrs.get("columns", list(g.keys()))]
        data = {}
        for c in cols:
            v = g[c][()]
            if v.dtype.kind == "O":
                v = np.array([x.decode() if isinstance(x, bytes) else x for x in v], dtype=object)
            data[c] = v
        return pd.DataFrame(data)

    if isinstance(path_or_file, (str, os.PathLike, Path)):
        with h5py.File(path_or_file, "r") as f:
            return _read(f)
    return _read(path_or_file)


def read_group_arrays(path: str | os.PathLike, group: str, what: str = "an HDF5 dataset") -> dict[str, np.ndarray]:
    """Every dataset of one group of ``path`` as arrays, {name: array}; a missing group is a named
    :class:`~astrid_pipeline.errors.InputFileError` (``what`` says what the file should be)."""
    import h5py

    from astrid_pipeline.errors import InputFileError

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(path, f"is not a readable HDF5 file ({str(exc)[:160]})") from None
    with f:
        if group not in f:
            raise InputFileError(path, f"has no {group!r} group ({what} has {', '.join(sorted(f.keys())) or 'none'})")
        return {k: np.asarray(v) for k, v in f[group].items()}
