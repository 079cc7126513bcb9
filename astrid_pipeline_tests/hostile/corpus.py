"""The hostile corpus (issue #14): every row is one bad input or fault, generated here, with its exact outcome.

A :class:`Case` builds its input in a fresh folder and runs it through one interface a user has (a loader, a
reader, a CLI's ``main(argv)`` in-process, a few installed commands as real processes, a Dagster sensor); it
names the error class it must raise (``None``: it must be accepted), the text the message must contain (the
file or the parameter) and, optionally, a ``check`` that nothing stale or half-written is left where a reader
looks. :func:`evaluate` turns one run into an :class:`Outcome` of one of :data:`KINDS`; the pytest corpus
(``test_corpus.py``) asserts the expected kind and class of every row, ``benchmarks/hostile.py`` counts them
(each in its own process, with a timeout and a memory cap).

All inputs are small (the largest is a 6 MB header without an END card; the "too large" YAML files are
sparse): headers *declare* sizes, they do not hold them.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import gzip
import io
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np

#: longest message accepted as "clear" (values quoted in messages are bounded)
MAX_MESSAGE = 2000
KINDS = ("named_errors", "accepted_ok", "unclear_errors", "silently_accepted", "stale_or_partial", "cli_tracebacks")


class Refused:
    """Expected outcome of a CLI case: a non-zero exit with one clear message (the class is not visible)."""


@dataclass
class Case:
    id: str
    item: int  # the item (1-7)
    run: Callable[[Path], object]
    error: type | None = None  # exact class expected (``Refused`` for a CLI; None: accepted)
    names: tuple = ()  # texts the message must contain; "{tmp}" is the case's folder
    cli: bool = False  # ``run`` returns a :class:`CliResult`
    check: Callable[[Path, object], str | None] | None = None  # a problem left behind, or None
    env: dict = field(default_factory=dict)


@dataclass
class CliResult:
    rc: int
    stdout: str
    stderr: str


@dataclass
class Outcome:
    kind: str
    detail: str = ""
    error: BaseException | None = None
    value: object = None


@contextlib.contextmanager
def _environ(values: dict, tmp: Path):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v.format(tmp=tmp) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def evaluate(case: Case, tmp: Path) -> Outcome:
    """Run one case in ``tmp`` and classify what happened (see the module docstring)."""
    from astrid_pipeline.errors import AstridError

    tmp.mkdir(parents=True, exist_ok=True)
    names = [n.format(tmp=tmp) for n in case.names]
    with _environ(case.env, tmp):
        try:
            value = case.run(tmp)
        except Exception as exc:  # noqa: BLE001 - classified below
            problem = case.check(tmp, None) if case.check else None
            if problem:
                return Outcome("stale_or_partial", problem, exc)
            if case.cli:  # an exception escaped main(): the user sees a traceback
                return Outcome("cli_tracebacks", f"{type(exc).__name__}: {str(exc)[:300]}", exc)
            msg = str(exc)
            missing = [n for n in names if n not in msg]
            clear = isinstance(exc, AstridError) and not missing and len(msg) <= MAX_MESSAGE
            detail = f"{type(exc).__name__}: {msg[:300]}" + (f" [does not name {missing}]" if missing else "")
            return Outcome("named_errors" if clear else "unclear_errors", detail, exc)
    problem = case.check(tmp, value) if case.check else None
    if problem:
        return Outcome("stale_or_partial", problem, None, value)
    if not case.cli:
        return Outcome("accepted_ok" if case.error is None else "silently_accepted", "", None, value)
    r: CliResult = value
    if "Traceback (most recent call last)" in r.stderr:
        return Outcome("cli_tracebacks", r.stderr[-600:], None, r)
    if r.rc == 0:
        return Outcome("accepted_ok" if case.error is None else "silently_accepted", r.stderr[-300:], None, r)
    lines = [ln for ln in r.stderr.splitlines() if ": error: " in ln or ln.startswith("usage:")]
    errors = [ln for ln in lines if ": error: " in ln]
    missing = [n for n in names if not any(n in ln for ln in errors)]
    clear = (len(errors) == 1 and not missing and len(errors[0]) <= MAX_MESSAGE
             and ": error: internal error" not in errors[0])  # a bug said politely is still not a clear error
    detail = (errors[0] if errors else r.stderr[-300:]) + (f" [does not name {missing}]" if missing else "")
    return Outcome("named_errors" if clear else "unclear_errors", detail, None, r)


# ----------------------------------------------------------------------------- running the CLIs
def cli(main, argv) -> CliResult:
    """``main(argv)`` in this process with stdout/stderr captured (argparse's exit becomes the status)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
    return CliResult(int(rc or 0), out.getvalue(), err.getvalue())


def cli_process(command: str, argv, tmp: Path, *, timeout: float = 120, preexec=None) -> CliResult:
    """An installed command (``.venv/bin/<command>``) as a real process, in ``tmp``."""
    exe = Path(sys.executable).parent / command
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ASTRID_DATA_ROOT": str(tmp / "data"),
           "DAGSTER_HOME": str(tmp / "dagster_home"), "MPLBACKEND": "Agg"}
    r = subprocess.run([str(exe), *map(str, argv)], capture_output=True, text=True, timeout=timeout, cwd=tmp,
                       env=env, preexec_fn=preexec)
    return CliResult(r.returncode, r.stdout, r.stderr)


def _main(module: str, name: str = "main"):
    import importlib

    return getattr(importlib.import_module(module), name)


def astrid(argv):
    return cli(_main("astrid_pipeline.cli"), argv)


def ramps(argv):
    return cli(_main("astrid_pipeline.cli_ramps"), argv)


def crmasks(argv):
    return cli(_main("astrid_pipeline.cli_crmasks"), argv)


def dead_pid() -> int:
    """The id of a process that has exited (what a killed writer leaves in its temporary names)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def leftovers(folder: Path) -> list[str]:
    """Temporary names (``.tmp-`` / ``.old-``) under ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


def no_leftovers(*subs: str):
    def check(tmp: Path, _value):
        found = [x for s in subs for x in leftovers(tmp / s)]
        return f"temporary files left: {found}" if found else None

    return check


def nothing_at(*paths: str):
    """Check: none of these files exists after the case (a product beside a refused input is stale)."""
    def check(tmp: Path, _value):
        found = [p for p in paths if (tmp / p).exists() and ((tmp / p).is_file() or any((tmp / p).rglob("*.*")))]
        return f"products left where readers look: {found}" if found else None

    return check


# ----------------------------------------------------------------------------- FITS builders
def _card(key: str, value) -> bytes:
    if isinstance(value, bool):
        v = "T" if value else "F"
    elif isinstance(value, str) and not value.startswith("'"):
        v = f"'{value:<8}'"
    else:
        v = str(value)
    return f"{key:<8}= {v:>20}".ljust(80).encode("ascii")


def raw_header(cards: list[tuple[str, object]], *, end: bool = True) -> bytes:
    """A FITS header from (keyword, value) cards, padded to 2880 bytes; values are written verbatim."""
    body = b"".join(_card(k, v) for k, v in cards) + (b"END".ljust(80) if end else b"")
    return body + b" " * (-len(body) % 2880)


def primary(naxes, bitpix=-32, extra=()) -> bytes:
    return raw_header([("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", len(naxes)),
                       *[(f"NAXIS{i}", n) for i, n in enumerate(naxes, 1)], *extra])


def sky_header(n=64, **over):
    from astropy.io import fits

    h = fits.Header()
    cards = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.2, "CRPIX1": n / 2,
             "CRPIX2": n / 2, "CD1_1": -7.0e-5, "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 7.0e-5, "EXPTIME": 60.0,
             "BUNIT": "ADU"}
    cards.update(over)
    for k, v in cards.items():
        if v is not None:
            h[k] = v
    return h


def sky_fits(path: Path, *, n=64, data=None, gz=False, **over) -> Path:
    from astropy.io import fits

    rng = np.random.default_rng(0)
    arr = (100 + rng.normal(0, 5, (n, n))).astype(np.float32) if data is None else data
    hdu = fits.PrimaryHDU(arr, header=sky_header(n, **over))
    buf = io.BytesIO()
    hdu.writeto(buf)
    payload = gzip.compress(buf.getvalue()) if gz else buf.getvalue()
    path.write_bytes(payload)
    return path


def _read_sky(name):
    def run(tmp):
        from astrid_pipeline.io.fits_io import read_sky_image

        return read_sky_image(tmp / name)

    return run


def _build_then(builder, reader):
    def run(tmp):
        builder(tmp)
        return reader(tmp)

    return run


def _huge_primary(tmp, gz=False):
    body = primary((100_000, 100_000)) + b"\0" * 40_000
    (tmp / "huge.fits").write_bytes(gzip.compress(body) if gz else body)


def _comp_image(tmp, znaxis1=10**9):
    from astropy.io import fits

    buf = io.BytesIO()
    image = fits.CompImageHDU(np.ones((64, 64), np.float32), header=sky_header())
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(buf)
    raw = bytearray(buf.getvalue())
    i = raw.index(b"ZNAXIS1 =")
    raw[i:i + 80] = _card("ZNAXIS1", znaxis1)
    (tmp / "comp.fits").write_bytes(bytes(raw))


def _no_end(tmp):
    from astrid_pipeline.io.fits_io import MAX_HEADER_BLOCKS

    cards = b"".join(b"COMMENT filler".ljust(80) for _ in range(36))
    (tmp / "noend.fits").write_bytes(primary((8, 8))[:80 * 4] + cards * (MAX_HEADER_BLOCKS + 1))


def _fits_cases() -> list[Case]:
    from astrid_pipeline.errors import (
        BadHeaderError, BadShapeError, ConfigError, EmptyDataError, ImageTooLargeError, InputFileError,
        NoCelestialWCSError, NotFITSError, SingularWCSError, TruncatedFileError,
    )

    read = _read_sky
    w = (lambda name, payload: lambda tmp: (tmp / name).write_bytes(payload))
    c = [
        Case("fits-40kB-declares-100000x100000", 3, _build_then(_huge_primary, read("huge.fits")), ImageTooLargeError,
             ("huge.fits", "100000 x 100000", "ASTRID_MAX_IMAGE_PIXELS")),
        Case("fits-gz-declares-100000x100000", 3, _build_then(lambda t: _huge_primary(t, gz=True), read("huge.fits")),
             ImageTooLargeError, ("huge.fits",)),
        Case("fits-20k-mosaic-declared-is-within-the-limit-but-truncated", 3,
             _build_then(w("mosaic.fits", primary((20_000, 20_000))), read("mosaic.fits")), TruncatedFileError,
             ("mosaic.fits", "1600000000 bytes")),
        Case("fits-header-only", 3, _build_then(w("h.fits", primary((512, 512))), read("h.fits")), TruncatedFileError,
             ("h.fits", "truncated")),
        Case("fits-half-the-data", 3, _build_then(w("half.fits", primary((512, 512)) + b"\0" * 512 * 512 * 2),
                                                  read("half.fits")), TruncatedFileError, ("half.fits",)),
        Case("fits-gz-stream-cut", 3, _build_then(
            lambda t: (t / "cut.fits.gz").write_bytes(
                gzip.compress(primary((256, 256)) + os.urandom(256 * 256 * 4))[:9000]),
            read("cut.fits.gz")), TruncatedFileError, ("cut.fits.gz",)),
        Case("fits-bz2-declares-100000x100000", 3, _build_then(
            w("huge.fits.bz2", bz2.compress(primary((100_000, 100_000)) + b"\0" * 40_000)),
            read("huge.fits.bz2")), ImageTooLargeError, ("huge.fits.bz2",)),
        Case("fits-bz2-stream-cut", 3, _build_then(
            lambda t: (t / "cut.fits.bz2").write_bytes(
                bz2.compress(primary((256, 256)) + os.urandom(256 * 256 * 4))[:9000]),
            read("cut.fits.bz2")), TruncatedFileError, ("cut.fits.bz2",)),
        Case("fits-gz-garbage-after-magic", 3, _build_then(w("bad.fits.gz", b"\x1f\x8b\x08\x00" + os.urandom(4000)),
                                                           read("bad.fits.gz")), TruncatedFileError, ("bad.fits.gz",)),
        Case("fits-bitpix-7", 3, _build_then(w("b.fits", primary((8, 8), bitpix=7) + b"\0" * 2880), read("b.fits")),
             BadHeaderError, ("b.fits", "BITPIX")),
        Case("fits-naxis1-negative", 3, _build_then(w("n.fits", primary((-5, 8)) + b"\0" * 2880), read("n.fits")),
             BadHeaderError, ("n.fits", "NAXIS1")),
        Case("fits-naxis1-text", 3, _build_then(w("t.fits", primary(("'abc'", 8)) + b"\0" * 2880), read("t.fits")),
             BadHeaderError, ("t.fits", "NAXIS1")),
        Case("fits-naxis-1000", 3, _build_then(w("a.fits", raw_header([("SIMPLE", True), ("BITPIX", 8),
                                                                       ("NAXIS", 1000)])), read("a.fits")),
             BadHeaderError, ("a.fits", "NAXIS")),
        Case("fits-header-without-end", 3, _build_then(_no_end, read("noend.fits")), BadHeaderError,
             ("noend.fits", "END")),
        Case("fits-extension-declares-100000x100000", 3, _build_then(
            w("ext.fits", primary(()) + raw_header([("XTENSION", "IMAGE"), ("BITPIX", -32), ("NAXIS", 2),
                                                    ("NAXIS1", 100_000), ("NAXIS2", 100_000), ("PCOUNT", 0),
                                                    ("GCOUNT", 1)]) + b"\0" * 2880), read("ext.fits")),
             ImageTooLargeError, ("ext.fits", "HDU 1")),
        Case("fits-table-declares-1e12-rows", 3, _build_then(
            w("tab.fits", primary(()) + raw_header([("XTENSION", "BINTABLE"), ("BITPIX", 8), ("NAXIS", 2),
                                                    ("NAXIS1", 8), ("NAXIS2", 10**12), ("PCOUNT", 0),
                                                    ("GCOUNT", 1), ("TFIELDS", 1), ("TFORM1", "D")])),
            read("tab.fits")), TruncatedFileError, ("tab.fits",)),
        Case("fits-tile-compressed-declares-1e9-columns", 3, _build_then(_comp_image, read("comp.fits")),
             ImageTooLargeError, ("comp.fits",)),
        Case("fits-tile-compressed-lies-about-its-size", 3, _build_then(lambda t: _comp_image(t, 100_000),
                                                                         read("comp.fits")),
             BadHeaderError, ("comp.fits", "header declares")),
        Case("fits-is-an-html-page", 3, _build_then(w("page.fits", b"<html><body>Service busy</body></html>" * 100),
                                                    read("page.fits")), NotFITSError, ("page.fits",)),
        Case("fits-empty-file", 3, _build_then(w("empty.fits", b""), read("empty.fits")), NotFITSError,
             ("empty.fits",)),
        Case("fits-is-a-folder", 3, _build_then(lambda t: (t / "dir.fits").mkdir(), read("dir.fits")), InputFileError,
             ("dir.fits", "folder")),
        Case("fits-missing", 3, read("missing.fits"), InputFileError, ("missing.fits",)),
        Case("fits-pixel-limit-from-environment", 3, _build_then(lambda t: sky_fits(t / "ok.fits"), read("ok.fits")),
             ImageTooLargeError, ("ok.fits", "4096 pixels", "ASTRID_MAX_IMAGE_PIXELS"),
             env={"ASTRID_MAX_IMAGE_PIXELS": "1000"}),
        Case("fits-pixel-limit-not-a-number", 3, _build_then(lambda t: sky_fits(t / "ok.fits"), read("ok.fits")),
             ConfigError, ("ASTRID_MAX_IMAGE_PIXELS",), env={"ASTRID_MAX_IMAGE_PIXELS": "lots"}),
        Case("fits-good-image-is-read", 3, _build_then(lambda t: sky_fits(t / "ok.fits"), read("ok.fits")), None),
        Case("fits-good-gzip-image-is-read", 3, _build_then(lambda t: sky_fits(t / "ok.fits.gz", gz=True),
                                                            read("ok.fits.gz")), None),
        Case("fits-raised-pixel-limit-admits-image", 3, _build_then(lambda t: sky_fits(t / "ok.fits", n=128),
                                                                    read("ok.fits")), None,
             env={"ASTRID_MAX_IMAGE_PIXELS": "20000"}),
        # ---- item 4: meaningless WCS and data
        Case("wcs-cd-matrix-all-zero", 4, _build_then(
            lambda t: sky_fits(t / "cd0.fits", CD1_1=0.0, CD2_2=0.0), read("cd0.fits")), SingularWCSError,
             ("cd0.fits", "singular")),
        Case("wcs-cd-matrix-rank-one", 4, _build_then(
            lambda t: sky_fits(t / "cd1.fits", CD1_1=7e-5, CD1_2=7e-5, CD2_1=7e-5, CD2_2=7e-5), read("cd1.fits")),
             SingularWCSError, ("cd1.fits", "singular")),
        Case("wcs-cdelt-zero", 4, _build_then(
            lambda t: sky_fits(t / "cdelt.fits", CD1_1=None, CD1_2=None, CD2_1=None, CD2_2=None, CDELT1=0.0,
                               CDELT2=7e-5), read("cdelt.fits")), SingularWCSError, ("cdelt.fits", "singular")),
        Case("wcs-cd-card-is-text", 4, _build_then(lambda t: sky_fits(t / "cdtxt.fits", CD1_1="abc"),
                                                   read("cdtxt.fits")), SingularWCSError, ("cdtxt.fits", "CD")),
        Case("wcs-missing", 4, _build_then(
            lambda t: sky_fits(t / "nowcs.fits", CTYPE1=None, CTYPE2=None, CRVAL1=None, CRVAL2=None, CD1_1=None,
                               CD1_2=None, CD2_1=None, CD2_2=None, CRPIX1=None, CRPIX2=None), read("nowcs.fits")),
             NoCelestialWCSError, ("nowcs.fits",)),
        Case("wcs-good-pc-cdelt", 4, _build_then(
            lambda t: sky_fits(t / "pc.fits", CD1_1=None, CD1_2=None, CD2_1=None, CD2_2=None, CDELT1=-7e-5,
                               CDELT2=7e-5), read("pc.fits")), None),
        Case("image-all-nan", 4, _build_then(lambda t: sky_fits(t / "nan.fits", data=np.full((64, 64), np.nan,
                                                                                            np.float32)),
                                             read("nan.fits")), EmptyDataError, ("nan.fits",)),
        Case("image-one-dimensional", 4, _build_then(
            lambda t: sky_fits(t / "1d.fits", data=np.ones(64, np.float32)), read("1d.fits")), BadShapeError,
             ("1d.fits",)),
    ]
    return c


# ----------------------------------------------------------------------------- ramps (item 3, 4)
def good_cube(n=10, ny=16, nx=16, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1000 + rng.poisson(5.0, (n, ny, nx)).cumsum(axis=0) + rng.normal(0, 10, (n, ny, nx))).astype(np.float32)


def h5(path: Path, data=None, *, name="ramp", shape=None, dtype=None, chunks=None, write=None, attrs=None):
    import h5py

    with h5py.File(path, "w") as f:
        if data is not None:
            ds = f.create_dataset(name, data=data, chunks=chunks)
        else:
            ds = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)
            if write is not None:
                write(ds)
        for k, v in (attrs or {}).items():
            ds.attrs[k] = v
    return path


def _open_ramp(name):
    def run(tmp):
        from astrid_pipeline.science.ramps.readers import open_ramp

        src = open_ramp(tmp / name)
        src.close()
        return src

    return run


def _array_ramp(data):
    def run(tmp):
        from astrid_pipeline.science.ramps.readers import ArrayRampSource

        return ArrayRampSource(data)

    return run


def _fits_cube(path: Path, data):
    from astropy.io import fits

    fits.PrimaryHDU(data).writeto(path)
    return path


def _group_named_ramp(tmp):
    import h5py

    with h5py.File(tmp / "g.h5", "w") as f:
        f.create_group("ramp").create_dataset("frames", data=good_cube())


def _truncated_h5(tmp):
    p = h5(tmp / "cut.h5", good_cube(20, 64, 64))
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _ramp_cases() -> list[Case]:
    from astrid_pipeline.errors import (
        BadDataTypeError, BadShapeError, EmptyDataError, ImageTooLargeError, InputFileError, TruncatedFileError,
    )
    from astrid_pipeline.science.ramps.errors import UnknownRampFormatError

    o = _open_ramp
    b = _build_then
    rec = np.zeros((10, 8, 8), dtype=[("a", "f4"), ("b", "i4")])
    c = [
        Case("h5-1.4kB-declares-100x4096x4096-chunked", 3, b(
            lambda t: h5(t / "huge.h5", shape=(100, 4096, 4096), dtype="u2", chunks=(1, 256, 256)), o("huge.h5")),
             TruncatedFileError, ("huge.h5", "were ever written")),
        Case("h5-declares-100x4096x4096-contiguous", 3, b(
            lambda t: h5(t / "huge.h5", shape=(100, 4096, 4096), dtype="u2"), o("huge.h5")), TruncatedFileError,
             ("huge.h5",)),
        Case("h5-only-the-first-chunk-written", 3, b(
            lambda t: h5(t / "part.h5", shape=(20, 64, 64), dtype="f4", chunks=(20, 16, 16),
                         write=lambda ds: ds.__setitem__((slice(None), slice(0, 16), slice(0, 16)),
                                                         good_cube(20, 16, 16))), o("part.h5")),
             TruncatedFileError, ("part.h5", "chunks")),
        Case("h5-ramp-limit-from-environment", 3, b(lambda t: h5(t / "ok.h5", good_cube()), o("ok.h5")),
             ImageTooLargeError, ("ok.h5", "ASTRID_MAX_RAMP_VALUES"), env={"ASTRID_MAX_RAMP_VALUES": "1000"}),
        Case("h5-file-cut-in-half", 3, b(_truncated_h5, o("cut.h5")), InputFileError, ("cut.h5",)),
        Case("fits-cube-header-declares-100x4096x4096", 3, b(
            lambda t: (t / "cube.fits").write_bytes(primary((4096, 4096, 100), bitpix=16)), o("cube.fits")),
             TruncatedFileError, ("cube.fits",)),
        Case("fits-cube-declares-more-than-the-ramp-limit", 3, b(
            lambda t: (t / "cube.fits").write_bytes(primary((100_000, 100_000, 10_000), bitpix=16)), o("cube.fits")),
             ImageTooLargeError, ("cube.fits", "ASTRID_MAX_RAMP_VALUES")),
        Case("h5-good-ramp-is-read", 3, b(lambda t: h5(t / "ok.h5", good_cube()), o("ok.h5")), None),
        Case("h5-good-chunked-ramp-is-read", 3, b(lambda t: h5(t / "ok.h5", good_cube(), chunks=(10, 8, 8)),
                                                  o("ok.h5")), None),
        Case("fits-good-cube-is-read", 3, b(lambda t: _fits_cube(t / "ok.fits", good_cube()), o("ok.fits")), None),
        Case("ramp-not-a-ramp-file", 3, b(lambda t: (t / "notes.h5").write_text("hello\n" * 50), o("notes.h5")),
             UnknownRampFormatError, ("notes.h5",)),
        # ---- item 4: meaningless ramps, refused before any work
        Case("h5-complex-ramp", 4, b(lambda t: h5(t / "c.h5", good_cube().astype(np.complex64)), o("c.h5")),
             BadDataTypeError, ("c.h5", "complex")),
        Case("h5-boolean-ramp", 4, b(lambda t: h5(t / "bool.h5", good_cube() > 1010), o("bool.h5")), BadDataTypeError,
             ("bool.h5", "boolean")),
        Case("h5-all-zero-ramp", 4, b(lambda t: h5(t / "zero.h5", np.zeros((10, 16, 16), np.float32)), o("zero.h5")),
             EmptyDataError, ("zero.h5", "every value")),
        Case("h5-all-zero-chunked-ramp", 4, b(
            lambda t: h5(t / "zero.h5", np.zeros((10, 64, 64), np.uint16), chunks=(10, 16, 16)), o("zero.h5")),
             EmptyDataError, ("zero.h5", "every value")),
        Case("h5-constant-ramp", 4, b(lambda t: h5(t / "k.h5", np.full((10, 16, 16), 1234.0, np.float32)), o("k.h5")),
             EmptyDataError, ("k.h5", "1234")),
        Case("h5-text-ramp", 4, b(lambda t: h5(t / "s.h5", np.full((10, 4, 4), b"abcd")), o("s.h5")),
             BadDataTypeError, ("s.h5", "text")),
        Case("h5-compound-ramp", 4, b(lambda t: h5(t / "rec.h5", rec), o("rec.h5")), BadDataTypeError,
             ("rec.h5", "compound")),
        Case("h5-two-dimensional-only", 4, b(lambda t: h5(t / "2d.h5", np.ones((16, 16), np.float32), name="img"),
                                             o("2d.h5")), BadShapeError, ("2d.h5",)),
        Case("h5-zero-groups", 4, b(lambda t: h5(t / "e.h5", np.zeros((0, 16, 16), np.float32)), o("e.h5")),
             EmptyDataError, ("e.h5",)),
        Case("h5-ramp-is-a-group", 4, b(_group_named_ramp, o("g.h5")), BadShapeError, ("g.h5", "group")),
        Case("fits-all-zero-cube", 4, b(lambda t: _fits_cube(t / "zero.fits", np.zeros((10, 16, 16), np.int16)),
                                        o("zero.fits")), EmptyDataError, ("zero.fits",)),
        Case("array-complex-ramp", 4, _array_ramp(good_cube().astype(np.complex128)), BadDataTypeError, ("complex",)),
        Case("array-boolean-ramp", 4, _array_ramp(good_cube() > 1010), BadDataTypeError, ("boolean",)),
        Case("array-all-zero-ramp", 4, _array_ramp(np.zeros((10, 8, 8))), EmptyDataError, ("every value",)),
        Case("array-good-ramp", 4, _array_ramp(good_cube()), None),
    ]
    return c


# ----------------------------------------------------------------------------- YAML inputs (item 1)
@dataclass
class Site:
    """One place that reads a YAML file: how to write a minimal valid document with one value in it."""

    name: str
    file: str  # the file name (a manifest is <root>/manifest.yaml)
    template: str  # YAML with {v} where a number must go
    good: str  # a value that makes the document valid
    load: Callable[[Path], object]  # reads tmp/file
    error: type  # class of every refusal at this site
    cli: bool = False
    accepts_empty: bool = False


def _load_catalog(p):
    from astrid_pipeline.regions import load_region_catalog

    return load_region_catalog(p)


def _load_params(p):
    from astrid_pipeline.science.mmcosmic.params import load_config

    return load_config(p)


def _load_stacks(p):
    from astrid_pipeline.science.mmcosmic.stacks import load_stacks

    return load_stacks(p)


def _load_manifest(p):
    from astrid_pipeline.archives.local import LocalFolderArchive

    return LocalFolderArchive(p.parent).manifest()


def _load_sim(p):
    from astrid_pipeline.science.ramps.config import load_simulation_config

    return load_simulation_config(p)


def _load_detection(p):
    from astrid_pipeline.science.ramps.config import load_detection_config

    return load_detection_config(p)


SIM = "num_frames: {v}\nimage_shape: [64, 64]\npatch_size: [32, 32]\noverlap: 8\n"


def _sites() -> list[Site]:
    from astrid_pipeline.errors import ConfigError, InputFileError
    from astrid_pipeline.science.mmcosmic.errors import ParameterError

    params = ("images: [a.fits, b.fits, c.fits]\ngain: 1.0\nrnoise: 3.0\nbias: 0.0\n"
              "requirements:\n  crmethod: mmcosmic\n  mm_nsimulations: {v}\n")
    return [
        Site("catalog", "regions.yaml", "regions:\n  - name: F1\n    ra: {v}\n    dec: 2.0\n", "150.1", _load_catalog,
             ConfigError),
        Site("mm-params", "params.yaml", params, "10", _load_params, ParameterError),
        Site("mm-stacks", "stacks.yaml", "stacks:\n  s1:\n    simulate: {{shape: [64, 64], n_exposures: {v}, "
                                         "seed: 1}}\n", "3", _load_stacks, ParameterError),
        Site("manifest", "manifest.yaml", "images:\n  - {{region: F1, epoch: science, file: a.fits}}\n"
                                          "  - {{region: F1, epoch: {v}, file: b.fits}}\n", "reference",
             _load_manifest, InputFileError),
        Site("ramp-sim", "sim.yaml", SIM, "20", _load_sim, ConfigError,
             accepts_empty=True),
        Site("detection", "detection.yaml", "sigma_threshold: {v}\n", "5.0", _load_detection, ConfigError,
             accepts_empty=True),
        Site("cli-astrid-regions", "regions.yaml", "regions:\n  - name: F1\n    ra: {v}\n    dec: 2.0\n", "150.1",
             lambda p: astrid(["regions", "--catalog", p]), Refused, cli=True),
        Site("cli-astrid-ramps-config", "detection.yaml", "sigma_threshold: {v}\n", "5.0",
             lambda p: ramps(["detect", p.parent / "missing.h5", "-o", p.parent / "out", "--config", p]), Refused,
             cli=True),
        Site("cli-astrid-crmasks", "params.yaml", params, "10",
             lambda p: crmasks([p, "--output_dir", p.parent / "out", "--no-plots"]), Refused, cli=True),
        Site("cli-astrid-ramps-simulate", "sim.yaml", SIM, "20",
             lambda p: ramps(["simulate", "--config", p, "-o", p.parent / "sim.h5"]), Refused, cli=True),
    ]


def _laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


#: hostile YAML bodies: (id, how to write the file from the site, what the message must name besides the file)
def _hostile_yaml():
    return [
        ("billion-laughs", lambda s: _laughs(), ("anchor",)),
        ("anchor-in-a-valid-document", lambda s: s.template.format(v=f"&x {s.good}"), ("anchor",)),
        ("nested-5000-deep-flow", lambda s: "[" * 5000 + "]" * 5000, ("nested",)),
        ("nested-200-deep-block", lambda s: "".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n",
         ("nested",)),
        ("binary-file", lambda s: gzip.compress(s.template.format(v=s.good).encode()) + b"\0\0", ("binary",)),
        ("latin-1-text", lambda s: s.template.format(v=s.good).encode() + "# caf\xe9\n".encode("latin-1"),
         ("UTF-8",)),
        ("sparse-64MiB-file", None, ("bytes",)),
        ("unclosed-bracket", lambda s: s.template.format(v="[1, 2"), ("YAML",)),
        ("python-object-tag", lambda s: "!!python/object/apply:os.system ['echo pwned']\n", ("YAML",)),
        ("huge-string-value", lambda s: s.template.format(v='"' + "9" * 100_000 + 'x"'), ()),
        ("5000-digit-integer", lambda s: s.template.format(v="9" * 5000), ()),
        ("nan-value", lambda s: s.template.format(v=".nan"), ()),
        ("yes-as-a-number", lambda s: s.template.format(v="yes"), ()),
        ("list-as-a-number", lambda s: s.template.format(v="[1, 2]"), ()),
        ("top-level-list", lambda s: "- 1\n- 2\n", ()),
        ("duplicate-key", lambda s: s.template.format(v=s.good) + s.template.split(":", 1)[0] + ": 1\n",
         ("duplicate key",)),
        ("valid-document", lambda s: s.template.format(v=s.good), ()),
    ]


#: (site, hostile body) pairs whose right outcome is acceptance (the body is valid there)
_ACCEPTED = {("ramp-sim", "valid-document"), ("detection", "valid-document"), ("catalog", "valid-document"),
             ("mm-params", "valid-document"), ("mm-stacks", "valid-document"), ("manifest", "valid-document"),
             ("cli-astrid-regions", "valid-document"), ("cli-astrid-ramps-simulate", "valid-document")}


def _yaml_run(site: Site, body):
    def run(tmp):
        p = tmp / site.file
        if body is None:  # sparse: 64 MiB declared, nothing written
            with open(p, "wb") as fh:
                fh.truncate(64 << 20)
        else:
            text = body(site)
            p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        return site.load(p)

    return run


def _yaml_cases() -> list[Case]:
    out = []
    for site in _sites():
        for hid, body, says in _hostile_yaml():
            accepted = (site.name, hid) in _ACCEPTED
            if hid == "valid-document" and not accepted:
                continue  # the CLI would go on to real work (a missing ramp, absent images): covered elsewhere
            names = (site.file,) + (() if site.cli else says)
            check = no_leftovers("out") if site.cli else None
            out.append(Case(f"yaml-{site.name}-{hid}", 1, _yaml_run(site, body), None if accepted else site.error,
                            () if accepted else names, cli=site.cli, check=check,
                            env={"ASTRID_DATA_ROOT": "{tmp}/data"}))
    return out


# ----------------------------------------------------------------------------- item 4: parameters and names
def _catalog_text(entries: list[str]) -> str:
    return "regions:\n" + "".join(f"  - {e}\n" for e in entries)


def _catalog(entries):
    def run(tmp):
        from astrid_pipeline.regions import load_region_catalog

        (tmp / "regions.yaml").write_text(_catalog_text(entries))
        return load_region_catalog(tmp / "regions.yaml")

    return run


def _names_stay_strings(tmp, value):
    if value is None:
        return None
    keys = list(value)
    bad = [k for k in keys if not isinstance(k, str)]
    if bad or set(keys) != {"yes", "no", "on", "off", "null-ish"}:
        return f"region names changed type or value: {keys!r}"
    return None


def _params(nsim: str, extra: str = ""):
    def run(tmp):
        from astrid_pipeline.science.mmcosmic.params import load_config

        (tmp / "params.yaml").write_text("images: [a.fits, b.fits, c.fits]\ngain: 1.0\nrnoise: 3.0\nbias: 0.0\n"
                                         f"requirements:\n  crmethod: mmcosmic\n  mm_nsimulations: {nsim}\n{extra}")
        return load_config(tmp / "params.yaml")

    return run


def _key(value):
    def run(tmp):
        from astrid_pipeline.layout import safe_key

        return safe_key(value)

    return run


def _resolve(key):
    def run(tmp):
        from astrid_pipeline.regions import load_region_catalog, resolve_region

        return resolve_region(key, load_region_catalog())

    return run


def _csv_catalog(text):
    def run(tmp):
        from astrid_pipeline.regions import load_region_catalog

        (tmp / "regions.csv").write_text(text)
        return load_region_catalog(tmp / "regions.csv")

    return run


def _csv_cases() -> list[Case]:
    from astrid_pipeline.errors import ConfigError, UnsafeKeyError

    rows = "".join(f"r{i},{i % 360}.5,1.0\n" for i in range(50_001))
    return [
        Case("csv-catalog-200k-character-field", 1, _csv_catalog("name,ra,dec\nF1,1.0,\"" + "9" * 200_000 + "\"\n"),
             ConfigError, ("regions.csv",)),
        Case("csv-catalog-unclosed-quote", 1, _csv_catalog('name,ra,dec\nF1,"1.0,2.0\nF2,3.0,4.0\n'), ConfigError,
             ("regions.csv",)),
        Case("csv-catalog-no-header", 1, _csv_catalog(""), ConfigError, ("regions.csv", "empty")),
        Case("csv-catalog-wrong-columns", 1, _csv_catalog("a,b\n1,2\n"), ConfigError, ("regions.csv", "columns")),
        Case("csv-catalog-extra-values", 1, _csv_catalog("name,ra,dec\nF1,1.0,2.0,3.0\n"), ConfigError,
             ("regions.csv", "line 2")),
        Case("csv-catalog-50001-regions", 1, _csv_catalog("name,ra,dec\n" + rows), ConfigError,
             ("regions.csv", "50001")),
        Case("csv-catalog-ra-text", 1, _csv_catalog("name,ra,dec\nF1,east,2.0\n"), ConfigError,
             ("regions.csv", "ra")),
        Case("csv-catalog-5000-character-name", 4, _csv_catalog("name,ra,dec\n" + "N" * 5000 + ",1.0,2.0\n"),
             UnsafeKeyError, ("regions.csv", "5000 characters")),
        Case("csv-catalog-names-yes-no-stay-strings", 4, _csv_catalog("name,ra,dec\nyes,1.0,2.0\nno,3.0,4.0\n"),
             None, check=lambda t, v: None if v is None or list(v) == ["yes", "no"] else f"names: {list(v)}"),
    ]


def _ramp_attr_cases() -> list[Case]:
    """HDF5 ramps whose attributes (gain, frame time, borders, outputs, saturation) are not usable."""
    from astrid_pipeline.errors import BadHeaderError

    def with_attrs(name, **attrs):
        return _build_then(lambda t: h5(t / name, good_cube(), attrs=attrs), _open_ramp(name))

    return [
        Case("h5-gain-is-text", 4, with_attrs("g.h5", gain="fast"), BadHeaderError, ("g.h5", "gain")),
        Case("h5-gain-negative", 4, with_attrs("g.h5", gain=-2.0), BadHeaderError, ("g.h5", "gain")),
        Case("h5-frame-time-is-text", 4, with_attrs("f.h5", frame_time="slow"), BadHeaderError,
             ("f.h5", "frame_time")),
        Case("h5-frame-time-zero", 4, with_attrs("f.h5", frame_time=0.0), BadHeaderError, ("f.h5", "frame_time")),
        Case("h5-refpix-border-larger-than-the-frame", 4, with_attrs("b.h5", refpix_border=1_000_000),
             BadHeaderError, ("b.h5", "refpix_border")),
        Case("h5-num-outputs-zero", 4, with_attrs("o.h5", num_outputs=0), BadHeaderError, ("o.h5", "num_outputs")),
        Case("h5-saturation-nan", 4, with_attrs("s.h5", saturation_dn=float("nan")), BadHeaderError,
             ("s.h5", "saturation_dn")),
        Case("h5-good-attributes", 4, with_attrs("ok.h5", gain=2.0, frame_time=10.0, refpix_border=4,
                                                  num_outputs=4, saturation_dn=65535.0), None),
    ]


def _meaning_cases() -> list[Case]:
    from astrid_pipeline.errors import ConfigError, UnsafeKeyError
    from astrid_pipeline.science.mmcosmic.errors import ParameterError

    long = "R" * 5000
    c = [
        Case("mm-nsimulations-1e9", 4, _params("1e9"), ParameterError, ("mm_nsimulations", "params.yaml")),
        Case("mm-nsimulations-0", 4, _params("0"), ParameterError, ("mm_nsimulations",)),
        Case("mm-nsimulations-negative", 4, _params("-3"), ParameterError, ("mm_nsimulations",)),
        Case("mm-nsimulations-fraction", 4, _params("2.5"), ParameterError, ("mm_nsimulations",)),
        Case("mm-nsimulations-text", 4, _params("many"), ParameterError, ("mm_nsimulations",)),
        Case("mm-nsimulations-1000-is-accepted", 4, _params("1000"), None),
        Case("mm-dilation-1e6", 4, _params("10", "  mm_dilation: 1000000\n"), ParameterError, ("mm_dilation",)),
        Case("region-names-yes-no-on-off-stay-strings", 4, _catalog(
            [f"{{name: {n}, ra: 1.0, dec: {i}.0}}" for i, n in enumerate(["yes", "no", "on", "off"])]
            + ["{name: null-ish, ra: 2.0, dec: 2.0}"]), None, check=_names_stay_strings),
        Case("region-name-5000-characters", 4, _catalog([f"{{name: {long}, ra: 1.0, dec: 2.0}}"]), UnsafeKeyError,
             ("5000 characters", "regions.yaml")),
        Case("region-name-escapes-the-root", 4, _catalog(["{name: ../../etc, ra: 1.0, dec: 2.0}"]), UnsafeKeyError,
             ("../../etc",)),
        Case("region-name-with-slash", 4, _catalog(["{name: a/b, ra: 1.0, dec: 2.0}"]), UnsafeKeyError, ("a/b",)),
        Case("region-name-true-is-a-boolean", 4, _catalog(["{name: true, ra: 1.0, dec: 2.0}"]), ConfigError,
             ("regions.yaml", "name")),
        Case("region-ra-400", 4, _catalog(["{name: F1, ra: 400.0, dec: 2.0}"]), ConfigError,
             ("regions.yaml", "RA 400")),
        Case("region-dec-minus-91", 4, _catalog(["{name: F1, ra: 1.0, dec: -91.0}"]), ConfigError,
             ("regions.yaml", "Dec -91")),
        Case("region-ra-infinite", 4, _catalog(["{name: F1, ra: .inf, dec: 1.0}"]), ConfigError, ("regions.yaml",)),
        Case("region-healpix-order-40", 4, _catalog(["{healpix_order: 40, healpix_index: 1}"]), ConfigError,
             ("regions.yaml", "healpix_order")),
        Case("region-duplicate-names", 4, _catalog(["{name: F1, ra: 1.0, dec: 2.0}", "{name: F1, ra: 3.0, dec: 4.0}"]),
             ConfigError, ("regions.yaml", "F1")),
        Case("region-size-negative", 4, _catalog(["{name: F1, ra: 1.0, dec: 2.0, size_arcmin: -4}"]), ConfigError,
             ("regions.yaml", "size_arcmin")),
        Case("partition-key-5000-characters", 4, _key(long), UnsafeKeyError, ("5000 characters",)),
        Case("partition-key-not-a-string", 4, _key(12), UnsafeKeyError, ("int",)),
        Case("partition-key-empty", 4, _key(""), UnsafeKeyError, ("partition key",)),
        Case("partition-key-128-characters-is-accepted", 4, _key("R" * 128), None),
        Case("partition-key-129-characters", 4, _key("R" * 129), UnsafeKeyError, ("129 characters",)),
        Case("adhoc-region-key-5000-characters", 4, _resolve("ra1.0_dec" + "1" * 5000), UnsafeKeyError,
             ("characters",)),
    ]
    return c


# ----------------------------------------------------------------------------- item 5: the CLIs
def _write_ramp(tmp, name="ramp.h5", data=None, **kw):
    return h5(tmp / name, good_cube(12, 24, 24) if data is None else data, **kw)


def _failing_rename(code: int):
    """A file system that refuses to complete a product (``code``: ENOSPC disk full, EROFS read-only): the rename
    of a temporary file fails as the kernel would report it (root ignores permission bits, so they cannot)."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if ".tmp-" in os.fspath(src):
            raise OSError(code, os.strerror(code), os.fspath(src))
        return real(src, dst, *a, **k)

    return lambda: mock.patch("os.replace", replace)


_disk_full = _failing_rename(errno.ENOSPC)
_read_only = _failing_rename(errno.EROFS)


def _then(builder, runner):
    def run(tmp):
        builder(tmp)
        return runner(tmp)

    return run


def _under(patch, runner):
    def run(tmp):
        with patch():
            return runner(tmp)

    return run


def _mm_stack(tmp, n=3, shape=(48, 48), bad=None):
    """A tiny stack of exposures and its numina-crmasks parameter file (``bad``: replace one exposure)."""
    from astropy.io import fits

    rng = np.random.default_rng(3)
    names = []
    for i in range(n):
        p = tmp / f"e{i}.fits"
        img = (100 + rng.normal(0, 3, shape)).astype(np.float32)
        fits.PrimaryHDU(img).writeto(p)
        names.append(p.name)
    if bad is not None:
        bad(tmp / names[0])
    (tmp / "params.yaml").write_text(
        f"images: [{', '.join(names)}]\ngain: 1.0\nrnoise: 3.0\nbias: 0.0\n"
        "requirements:\n  crmethod: mmcosmic\n  mm_nsimulations: 2\n  mm_seed: 1\n")
    return tmp / "params.yaml"


def _rerun_failing_at_detections(tmp):
    """A detection written once, then re-run with the write of detections.json failing (disk full then)."""
    _write_ramp(tmp)
    argv = ["detect", tmp / "ramp.h5", "-o", tmp / "out", "--no-preview"]
    first = ramps(argv)
    if first.rc != 0:
        raise AssertionError(f"the first run failed: {first.stderr[-300:]}")
    real = os.replace

    def replace(src, dst, *a, **k):
        if ".detections.json.tmp-" in os.fspath(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(src))
        return real(src, dst, *a, **k)

    with mock.patch("os.replace", replace):
        return ramps(argv)


def _no_mixed_detector_set(tmp, value):
    d = tmp / "out" / "detector" / "ramp" / "000"
    left = sorted(p.name for p in d.iterdir()) if d.exists() else []
    events = sorted(str(p.relative_to(tmp)) for p in (tmp / "out" / "catalogs").rglob("*.parquet")) \
        if (tmp / "out" / "catalogs").exists() else []
    return f"products of two runs mixed: {left} {events}" if left or events else None


def _replace_fits(path: Path, data) -> None:
    from astropy.io import fits

    fits.PrimaryHDU(data).writeto(path, overwrite=True)


RUN_ENV = {"ASTRID_DATA_ROOT": "{tmp}/data", "DAGSTER_HOME": "{tmp}/home"}


def _cli_cases() -> list[Case]:
    ramp_out = no_leftovers("out")
    c = [
        # astrid
        Case("astrid-regions-missing-catalog", 5, lambda t: astrid(["regions", "--catalog", t / "nope.yaml"]), Refused,
             ("nope.yaml",), cli=True),
        Case("astrid-regions-catalog-is-a-folder", 5, _then(lambda t: (t / "cat.yaml").mkdir(),
                                                            lambda t: astrid(["regions", "--catalog", t / "cat.yaml"])),
             Refused, ("cat.yaml", "folder"), cli=True),
        Case("astrid-regions-csv-binary", 5, _then(lambda t: (t / "cat.csv").write_bytes(os.urandom(3000) + b"\0"),
                                                   lambda t: astrid(["regions", "--catalog", t / "cat.csv"])),
             Refused, ("cat.csv",), cli=True),
        Case("astrid-run-unknown-branch", 5, lambda t: astrid(["run", "--branches", "sky,bogus"]), Refused,
             ("bogus",), cli=True, env={"ASTRID_DATA_ROOT": "{tmp}/data", "DAGSTER_HOME": "{tmp}/home"}),
        Case("astrid-run-bad-catalog", 5, _then(
            lambda t: (t / "regions.yaml").write_text(_laughs()),
            lambda t: astrid(["run", "--branches", "sky", "--catalog", t / "regions.yaml"])), Refused,
             ("regions.yaml",), cli=True, env={"ASTRID_DATA_ROOT": "{tmp}/data", "DAGSTER_HOME": "{tmp}/home"}),
        Case("astrid-run-5000-character-region", 4,
             lambda t: astrid(["run", "--branches", "sky", "--regions", "R" * 5000]), Refused, ("5000 characters",),
             cli=True, env=RUN_ENV, check=nothing_at("data/sky")),
        Case("astrid-run-region-escaping-the-root", 4,
             lambda t: astrid(["run", "--branches", "sky", "--regions", "../x"]), Refused, ("../x",), cli=True,
             env=RUN_ENV, check=nothing_at("data/sky")),
        Case("astrid-regions-good-catalog", 5, _then(
            lambda t: (t / "regions.yaml").write_text(_catalog_text(["{name: F1, ra: 1.0, dec: 2.0}"])),
            lambda t: astrid(["regions", "--catalog", t / "regions.yaml"])), None, cli=True),
        # astrid-ramps
        Case("ramps-detect-missing-file", 5, lambda t: ramps(["detect", t / "none.h5", "-o", t / "out"]), Refused,
             ("none.h5",), cli=True, check=nothing_at("out/detector")),
        Case("ramps-detect-text-file", 5, _then(lambda t: (t / "r.fits").write_text("not a ramp\n" * 300),
                                                lambda t: ramps(["detect", t / "r.fits", "-o", t / "out"])),
             Refused, ("r.fits",), cli=True, check=nothing_at("out/detector")),
        Case("ramps-detect-complex-ramp", 5, _then(lambda t: _write_ramp(t, "c.h5", good_cube().astype(np.complex64)),
                                                   lambda t: ramps(["detect", t / "c.h5", "-o", t / "out"])),
             Refused, ("c.h5", "complex"), cli=True, check=nothing_at("out/detector", "out/catalogs")),
        Case("ramps-detect-all-zero-ramp", 5, _then(lambda t: _write_ramp(t, "z.h5", np.zeros((10, 16, 16), "u2")),
                                                    lambda t: ramps(["detect", t / "z.h5", "-o", t / "out"])),
             Refused, ("z.h5",), cli=True, check=nothing_at("out/detector", "out/catalogs")),
        Case("ramps-detect-1.4kB-declaring-100x4096x4096", 5, _then(
            lambda t: h5(t / "huge.h5", shape=(100, 4096, 4096), dtype="u2", chunks=(1, 256, 256)),
            lambda t: ramps(["detect", t / "huge.h5", "-o", t / "out"])), Refused, ("huge.h5",), cli=True,
             check=nothing_at("out/detector", "out/catalogs")),
        Case("ramps-detect-output-is-a-file", 5, _then(
            lambda t: (_write_ramp(t), (t / "out").write_text("x")),
            lambda t: ramps(["detect", t / "ramp.h5", "-o", t / "out", "--no-preview"])), Refused, ("out",), cli=True),
        Case("ramps-detect-disk-full", 5, _then(_write_ramp, _under(_disk_full, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--no-preview"]))), Refused, ("mask.h5", "disk full"),
             cli=True, check=ramp_out),
        Case("ramps-detect-read-only-output", 5, _then(_write_ramp, _under(_read_only, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--no-preview"]))), Refused, ("out", "Read-only"), cli=True,
             check=ramp_out),
        Case("ramps-detect-bad-detector-key", 5, _then(_write_ramp, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--detector", "../escape"])), Refused, ("../escape",),
             cli=True, check=nothing_at("out/detector")),
        Case("ramps-detect-integration-out-of-range", 5, _then(_write_ramp, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--integration", "7", "--no-preview"])), Refused,
             ("integration 7",), cli=True, check=nothing_at("out/detector")),
        Case("ramps-detect-bad-setting-value", 5, _then(_write_ramp, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--sigma_threshold", "-4"])), Refused, ("sigma_threshold",),
             cli=True),
        Case("ramps-detect-missing-config", 5, _then(_write_ramp, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--config", t / "nope.yaml"])), Refused, ("nope.yaml",),
             cli=True),
        Case("ramps-detect-unknown-config-key", 5, _then(
            lambda t: (_write_ramp(t), (t / "d.yaml").write_text("sigma_treshold: 5\n")),
            lambda t: ramps(["detect", t / "ramp.h5", "-o", t / "out", "--config", t / "d.yaml"])), Refused,
             ("d.yaml", "sigma_treshold"), cli=True),
        Case("ramps-detect-missing-model", 5, _then(_write_ramp, lambda t: ramps(
            ["detect", t / "ramp.h5", "-o", t / "out", "--model", t / "nope.pt"])), Refused, ("nope.pt",), cli=True),
        Case("ramps-detect-good-ramp-sweeps-orphans", 6, _then(
            lambda t: (_write_ramp(t), _orphans(t / "out" / "detector" / "ramp" / "000", "mask.h5",
                                                "detections.json")),
            lambda t: ramps(["detect", t / "ramp.h5", "-o", t / "out", "--no-preview"])), None, cli=True,
             check=_all(no_leftovers("out"), _exists("out/detector/ramp/000/mask.h5"))),
        Case("ramps-detect-rerun-failing-part-way-leaves-no-mixed-set", 6, _rerun_failing_at_detections, Refused,
             ("detections.json", "disk full"), cli=True, check=_no_mixed_detector_set),
        Case("ramps-simulate-unknown-preset", 5, lambda t: ramps(["simulate", "--preset", "bogus", "-o", t / "s.h5"]),
             Refused, ("bogus",), cli=True),
        Case("ramps-simulate-output-is-a-folder", 5, _then(lambda t: (t / "s.h5").mkdir(), lambda t: ramps(
            ["simulate", "--preset", "h2rg", "-o", t / "s.h5"])), Refused, ("s.h5",), cli=True),
        Case("ramps-simulate-config-and-preset", 5, lambda t: ramps(
            ["simulate", "--preset", "h2rg", "--config", t / "x.yaml", "-o", t / "s.h5"]), Refused, ("--preset",),
             cli=True),
        Case("ramps-create-training-output-is-a-file", 5, _then(
            lambda t: ((t / "c.yaml").write_text(SIM.format(v=10)), (t / "patches").write_text("x")),
            lambda t: ramps(["create-training", "--config", t / "c.yaml", "--output_dir", t / "patches"])), Refused,
             ("patches", "is a file"), cli=True),
        Case("ramps-evaluate-output-under-a-file", 5, _then(lambda t: (t / "f").write_text("x"), lambda t: ramps(
            ["evaluate", "--model", "none", "--presets", "h2rg", "--output", t / "f" / "ev"])), Refused,
             ("is a file where a folder must be",), cli=True),
        Case("ramps-predict-output-is-a-file", 5, _then(
            lambda t: (_write_ramp(t), (t / "pred").write_text("x")),
            lambda t: ramps(["predict", "--input", t / "ramp.h5", "--output", t / "pred"])), Refused, ("pred",),
             cli=True),
        Case("ramps-create-training-no-output", 5, _then(
            lambda t: (t / "c.yaml").write_text(SIM.format(v=10)),
            lambda t: ramps(["create-training", "--config", t / "c.yaml"])), Refused, ("output",), cli=True),
        Case("ramps-train-missing-data", 5, lambda t: ramps(["train", "--data_dir", t / "none", "--output_dir",
                                                             t / "models"]), Refused, ("none",), cli=True),
        Case("ramps-evaluate-unknown-preset", 5, lambda t: ramps(
            ["evaluate", "--model", "none", "--presets", "bogus", "--output", t / "ev"]), Refused, ("bogus",),
             cli=True),
        Case("ramps-predict-missing-input", 5, lambda t: ramps(["predict", "--input", t / "none.h5", "--output",
                                                                t / "pred"]), Refused, ("none.h5",), cli=True),
        Case("ohana-predict-complex-input", 5, _then(
            lambda t: _write_ramp(t, "c.h5", good_cube().astype(np.complex64)),
            lambda t: cli(_main("astrid_pipeline.cli_ramps", "ohana_predict"),
                          ["--input", t / "c.h5", "--output", t / "pred"])), Refused, ("c.h5",), cli=True,
             check=nothing_at("pred")),
        Case("ohana-train-missing-data", 5, lambda t: cli(_main("astrid_pipeline.cli_ramps", "ohana_train"),
                                                          ["--data_dir", t / "none"]), Refused, ("none",), cli=True),
        Case("ohana-create-training-bad-config", 5, _then(
            lambda t: (t / "c.yaml").write_bytes(b"\0\1\2binary"),
            lambda t: cli(_main("astrid_pipeline.cli_ramps", "ohana_create_training"),
                          ["--config", t / "c.yaml", "--output_dir", t / "patches"])), Refused, ("c.yaml",),
             cli=True),
        # astrid-crmasks
        Case("crmasks-missing-parameter-file", 5, lambda t: crmasks([t / "none.yaml", "--output_dir", t / "out"]),
             Refused, ("none.yaml",), cli=True),
        Case("crmasks-missing-exposure", 5, _then(lambda t: _mm_stack(t, bad=lambda p: p.unlink()), lambda t: crmasks(
            [t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("e0.fits",), cli=True,
             check=nothing_at("out/crmasks.fits")),
        Case("crmasks-exposure-is-html", 5, _then(
            lambda t: _mm_stack(t, bad=lambda p: p.write_text("<html>busy</html>" * 200)),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("e0.fits",),
             cli=True, check=nothing_at("out/crmasks.fits")),
        Case("crmasks-exposure-declares-huge-image", 5, _then(
            lambda t: _mm_stack(t, bad=lambda p: p.write_bytes(primary((100_000, 100_000)) + b"\0" * 2880)),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("e0.fits",),
             cli=True, check=nothing_at("out/crmasks.fits")),
        Case("crmasks-exposure-of-another-shape", 4, _then(
            lambda t: _mm_stack(t, bad=lambda p: _replace_fits(p, np.ones((32, 48), np.float32))),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("e0.fits",),
             cli=True, check=nothing_at("out/crmasks.fits")),
        Case("crmasks-exposure-all-nan", 4, _then(
            lambda t: _mm_stack(t, bad=lambda p: _replace_fits(p, np.full((48, 48), np.nan, np.float32))),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("e0.fits",),
             cli=True, check=nothing_at("out/crmasks.fits")),
        Case("crmasks-exposure-is-a-cube", 4, _then(
            lambda t: _mm_stack(t, bad=lambda p: _replace_fits(p, np.ones((3, 48, 48), np.float32))),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("e0.fits",),
             cli=True, check=nothing_at("out/crmasks.fits")),
        Case("crmasks-output-dir-is-a-file", 5, _then(
            lambda t: (_mm_stack(t), (t / "out").write_text("x")),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), Refused, ("out",),
             cli=True),
        Case("crmasks-reuse-missing-masks", 5, _then(_mm_stack, lambda t: crmasks(
            [t / "params.yaml", "--output_dir", t / "out", "--crmasks", t / "old.fits"])), Refused, ("old.fits",),
             cli=True),
        Case("crmasks-good-stack-sweeps-orphans", 6, _then(
            lambda t: (_mm_stack(t), _orphans(t / "out", "crmasks", folder=True)),
            lambda t: crmasks([t / "params.yaml", "--output_dir", t / "out", "--no-plots"])), None, cli=True,
             check=_all(no_leftovers("out"), _exists("out/crmasks.fits"))),
        # secrets in messages (item 7)
        Case("cli-message-strips-url-token", 7, lambda t: _message_of(
            "https://archive.example/get?ra=1&token=SECRET123"), None, check=_without("SECRET123")),
        Case("cli-message-strips-password-in-url", 7, lambda t: _message_of(
            "https://user:SECRET123@archive.example/f.fits"), None, check=_without("SECRET123")),
        # real processes: the installed commands
        Case("process-astrid-ramps-complex-ramp", 5, _then(
            lambda t: _write_ramp(t, "c.h5", good_cube().astype(np.complex64)),
            lambda t: cli_process("astrid-ramps", ["detect", t / "c.h5", "-o", t / "out"], t)), Refused,
             ("c.h5",), cli=True, check=nothing_at("out/detector")),
        Case("process-astrid-crmasks-billion-laughs", 5, _then(
            lambda t: (t / "params.yaml").write_text(_laughs()),
            lambda t: cli_process("astrid-crmasks", [t / "params.yaml"], t)), Refused, ("params.yaml",), cli=True),
        Case("process-astrid-regions-deep-catalog", 5, _then(
            lambda t: (t / "regions.yaml").write_text("[" * 5000 + "]" * 5000),
            lambda t: cli_process("astrid", ["regions", "--catalog", t / "regions.yaml"], t)), Refused,
             ("regions.yaml",), cli=True),
        Case("process-astrid-crmasks-disk-full", 5, _then(_mm_stack, lambda t: cli_process(
            "astrid-crmasks", [t / "params.yaml", "--output_dir", t / "out", "--no-plots"], t,
            preexec=_file_size_limit(6000))), Refused, ("out", "File too large"), cli=True,
             check=_all(no_leftovers("out"), nothing_at("out/crmasks.fits"))),
    ]
    return c


def _file_size_limit(nbytes: int):
    def preexec():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return preexec


def _message_of(url: str):
    from astrid_pipeline.cli import describe_error
    from astrid_pipeline.errors import InputFileError

    return describe_error(InputFileError(url, "server answered 500"))


def _without(secret: str):
    def check(tmp, value):
        return f"secret in message: {value}" if value is not None and secret in str(value) else None

    return check


def _all(*checks):
    def check(tmp, value):
        for c in checks:
            problem = c(tmp, value)
            if problem:
                return problem
        return None

    return check


def _exists(rel: str):
    def check(tmp, value):
        return None if (tmp / rel).exists() else f"{rel} was not written"

    return check


def _orphans(where: Path, *names: str, folder: bool = False) -> list[Path]:
    """Temporary files (``folder``: temporary folders holding a file) named as a killed writer leaves them."""
    pid = dead_pid()
    where.mkdir(parents=True, exist_ok=True)
    made = []
    for i, name in enumerate(names):
        p = where / f".{name}.tmp-{pid}-{i:08x}"
        if folder:
            p.mkdir()
            (p / "crmasks.fits").write_bytes(b"half written")
        else:
            p.write_bytes(b"half written")
        made.append(p)
    return made


# ----------------------------------------------------------------------------- item 6: faults
def _kill_writer(tmp):
    """A writer killed (SIGKILL) in the middle of an atomic write: the old product stays, the next sweep cleans."""
    import signal

    from astrid_pipeline.io.atomic import sweep_orphan_temporaries

    target = tmp / "catalog.parquet"
    target.write_text("previous complete product")
    code = ("import sys, time\nfrom astrid_pipeline.io.atomic import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n"
            "    fh = open(tmp, 'w'); fh.write('half'); fh.flush(); print('writing', flush=True); time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stdout.close()
    orphans = [x.name for x in tmp.iterdir() if ".tmp-" in x.name]
    removed = sweep_orphan_temporaries(tmp)
    if target.read_text() != "previous complete product":
        raise AssertionError("the previous product was damaged")
    return {"orphans": orphans, "removed": [x.name for x in removed]}


def _kill_detect_at_moments(tmp, fractions=(0.6, 0.85, 0.95, 0.99)):
    """``astrid-ramps detect`` run once, then killed (SIGKILL) at several moments of a re-run (fractions of the
    first run's wall time, so the late ones fall among the writes), then run again: whatever is there after
    each kill is complete (a reader can open it), and the run after the kills leaves no temporary file."""
    import json
    import signal
    import time

    import h5py

    _write_ramp(tmp, data=good_cube(16, 128, 128, seed=4))
    out = tmp / "out"
    exe = Path(sys.executable).parent / "astrid-ramps"
    argv = [str(exe), "detect", str(tmp / "ramp.h5"), "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    seen = []
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=env, timeout=120, check=True)
    whole = time.perf_counter() - t0
    for fraction in fractions:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(fraction * whole)
        p.send_signal(signal.SIGKILL)
        p.wait()
        d = out / "detector" / "ramp" / "000"
        for f in sorted(d.glob("*")) if d.exists() else []:
            if f.name.startswith("."):
                continue
            if f.suffix == ".h5":
                with h5py.File(f, "r") as h:
                    list(h.keys())
            elif f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".npy":
                np.load(f)
            seen.append(f.name)
    orphans = leftovers(out)
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    return {"rc": r.returncode, "seen": seen, "left": leftovers(out), "whole_s": round(whole, 2),
            "orphans_after_kills": orphans, "mask": (out / "detector" / "ramp" / "000" / "mask.h5").exists()}


def _kill_detect_check(tmp, v):
    if v is None:
        return None
    if v["rc"] != 0 or not v["mask"]:
        return f"the run after the kills did not complete: {v}"
    return f"temporary files left after the next run: {v['left']}" if v["left"] else None


def _kill_check(tmp, value):
    if value is None:
        return None
    if not value["orphans"] or sorted(value["orphans"]) != sorted(value["removed"]):
        return f"orphans {value['orphans']} not all swept ({value['removed']})"
    return leftovers(tmp) and f"left: {leftovers(tmp)}" or None


def _old_folder_restored(tmp):
    from astrid_pipeline.io.atomic import sweep_orphan_temporaries

    pid = dead_pid()
    old = tmp / f".stackA.old-{pid}-abcd1234"
    old.mkdir()
    (old / "crmasks.fits").write_text("complete")
    new = tmp / f".stackA.tmp-{pid}-beef0001"
    new.mkdir()
    (new / "crmasks.fits").write_text("hal")
    sweep_orphan_temporaries(tmp)
    return (tmp / "stackA" / "crmasks.fits").read_text()


def _live_temporaries_kept(tmp):
    from astrid_pipeline.io.atomic import sweep_orphan_temporaries

    mine = tmp / f".x.fits.tmp-{os.getpid()}-00000001"
    mine.write_text("being written")
    sweep_orphan_temporaries(tmp)
    return mine.exists()


def _failing_writer(tmp):
    from astrid_pipeline.errors import EmptyDataError
    from astrid_pipeline.io.atomic import atomic_path

    target = tmp / "product.fits"
    target.write_text("old")
    with atomic_path(target) as t:
        t.write_text("partial")
        raise EmptyDataError(tmp / "input.fits", "all NaN")


def _cleanup_failure_keeps_original(tmp):
    """The temporary file cannot be removed after the writer failed: the writer's error is still the one seen."""
    from astrid_pipeline.io.atomic import atomic_path

    real_unlink = Path.unlink

    def unlink(self, *a, **k):
        if ".tmp-" in self.name:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_unlink(self, *a, **k)

    with mock.patch.object(Path, "unlink", unlink):
        with atomic_path(tmp / "out.fits") as t:
            t.write_text("x")
            from astrid_pipeline.errors import TruncatedFileError

            raise TruncatedFileError(tmp / "science.fits", "file is truncated")


def _dead_run_marked_failed(tmp):
    import socket

    from dagster import DagsterInstance, DagsterRunStatus
    from dagster._core.storage.dagster_run import DagsterRun

    from astrid_pipeline.instance import fail_dead_runs

    (tmp / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp / "home")) as instance:
        run = DagsterRun(job_name="sky_branch_job", run_id="deadbeef-0000-0000-0000-000000000001",
                         status=DagsterRunStatus.STARTED,
                         tags={"astrid/host": socket.gethostname(), "astrid/pid": str(dead_pid())})
        instance.add_run(run)
        live = DagsterRun(job_name="sky_branch_job", run_id="deadbeef-0000-0000-0000-000000000002",
                          status=DagsterRunStatus.STARTED,
                          tags={"astrid/host": socket.gethostname(), "astrid/pid": str(os.getpid())})
        instance.add_run(live)
        failed = fail_dead_runs(instance)
        return {"failed": failed, "dead": instance.get_run_by_id(run.run_id).status.value,
                "live": instance.get_run_by_id(live.run_id).status.value}


def _sensor_skips_bad_catalog(tmp):
    """The catalog sensor parses a malformed catalog once; later ticks skip it without parsing (item 1)."""
    import json

    from dagster import DagsterInstance, build_sensor_context

    import astrid_pipeline.regions as regions_mod
    from astrid_pipeline.defs.resources import RegionCatalogResource
    from astrid_pipeline.defs.sky.automation import region_catalog_sensor

    cat = tmp / "regions.yaml"
    cat.write_text(_laughs())
    calls = []
    real = regions_mod.load_region_catalog

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    with DagsterInstance.ephemeral() as instance, mock.patch.object(regions_mod, "load_region_catalog", counting):
        res = RegionCatalogResource(path=str(cat))
        first = region_catalog_sensor(build_sensor_context(instance=instance, resources={"regions": res}))
        cursor = first.cursor
        second = region_catalog_sensor(build_sensor_context(instance=instance, cursor=cursor,
                                                            resources={"regions": res}))
        return {"parses": len(calls), "bad": json.loads(cursor).get("bad", ""),
                "second": str(getattr(second, "skip_message", second))}


# ----------------------------------------------------------------------------- the sky branch through Dagster
def _sky_batch_with(bad_file):
    """A batch of a simulated region and one whose local science file is hostile, through ``sky_branch_job``:
    returns what was materialized, the bad region's input check and its message."""
    def run(tmp):
        import yaml
        from dagster import DagsterInstance

        from astrid_pipeline_tests.dagster_helpers import check_results, materialized, run_sky

        local = tmp / "local" / "bad"
        local.mkdir(parents=True)
        bad_file(local / "science.fits")
        sky_fits(local / "reference.fits")
        cat = tmp / "regions.yaml"
        cat.write_text(yaml.safe_dump({"regions": [
            {"name": "good", "ra": 150.1, "dec": 2.2},
            {"name": "bad", "ra": 150.0, "dec": 2.2, "science_archive": "local", "reference_archive": "local",
             "local_root": str(tmp / "local")}]}))
        with DagsterInstance.ephemeral() as instance:
            result = run_sky(instance, ["good", "bad"], catalog=cat)
            ev = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
                  and e.event_specific_data.partition == "bad" and not e.event_specific_data.passed]
            return {"success": result.success, "materialized": {k: sorted(v) for k, v in materialized(result).items()},
                    "check": check_results(result).get(("science_image", "inputs_valid", "bad")),
                    "message": " ".join(str(e.event_specific_data.metadata.get("error").value) for e in ev
                                        if e.event_specific_data.metadata.get("error") is not None)}

    return run


def _sky_batch_check(*says):
    def check(tmp, v):
        from astrid_pipeline.sky.table import SKY_ASSET_KEYS

        if v is None:
            return None
        missing = [a for a in SKY_ASSET_KEYS if "good" not in v["materialized"].get(a, [])]
        if missing:
            return f"the good region was not materialized: {missing}"
        if any("bad" in keys for a, keys in v["materialized"].items() if a != "observation_inventory"):
            return f"the bad region was materialized: {v['materialized']}"
        if v["check"] is not False or not all(s in v["message"] for s in says):
            return f"the bad region's input check did not name the file and the reason: {v['check']} {v['message']!r}"
        raw = tmp / "data" / "sky" / "raw" / "bad"
        if raw.exists() and any(raw.rglob("*.fits")):
            return f"raw products left for the refused region: {sorted(map(str, raw.rglob('*.fits')))}"
        return None

    return check


def _failing_rerun(tmp):
    """A region processed once, then re-run with its PSF step failing: its old catalog and triplets must not stay
    beside the new raw and aligned images (issue #14 item 6, through the Dagster job)."""
    import yaml
    from dagster import DagsterInstance

    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky import steps as sky
    from astrid_pipeline_tests.dagster_helpers import run_sky

    cat = tmp / "regions.yaml"
    cat.write_text(yaml.safe_dump({"regions": [{"name": "good", "ra": 150.1, "dec": 2.2}]}))
    layout = DataLayout(tmp / "data")
    with DagsterInstance.ephemeral() as instance:
        first = run_sky(instance, ["good"], catalog=cat).success
        before = [layout.catalog("candidates", {"region": "good"}).exists(), layout.triplets("good").exists()]

        def broken(*a, **k):
            raise RuntimeError("PSF step exploded")

        with mock.patch.object(sky, "measure_psfs", broken):
            second = run_sky(instance, ["good"], catalog=cat).success
    return {"first": first, "before": before, "second": second,
            "aligned": layout.aligned_reference("good").exists(),
            "stale": [str(p) for p in (layout.catalog("candidates", {"region": "good"}), layout.triplets("good"),
                                       layout.difference("good", "zogy")) if p.exists()]}


def _failing_rerun_check(tmp, v):
    if v is None:
        return None
    if not (v["first"] and all(v["before"]) and not v["second"] and v["aligned"]):
        return f"the runs did not go as set up: {v}"
    return f"stale products beside the new images: {v['stale']}" if v["stale"] else None


def _sky_cases() -> list[Case]:
    env = {"ASTRID_DATA_ROOT": "{tmp}/data"}
    return [
        Case("sky-batch-science-declares-100000x100000", 3, _sky_batch_with(
            lambda p: p.write_bytes(primary((100_000, 100_000)) + b"\0" * 40_000)), None, env=env,
             check=_sky_batch_check("science.fits", "100000 x 100000")),
        Case("sky-batch-science-singular-cd", 4, _sky_batch_with(lambda p: sky_fits(p, CD1_1=0.0, CD2_2=0.0)), None,
             env=env, check=_sky_batch_check("science.fits", "singular")),
        Case("sky-rerun-failing-part-way-leaves-nothing-stale", 6, _failing_rerun, None, env=env,
             check=_failing_rerun_check),
    ]


def _fifo_then(name, reader):
    """A named pipe where a file should be: reading it would block forever (nobody writes to it)."""
    def run(tmp):
        os.mkfifo(tmp / name)
        return reader(tmp / name)

    return run


def _fifo_cases() -> list[Case]:
    from astrid_pipeline.errors import ConfigError, InputFileError
    from astrid_pipeline.science.mmcosmic.errors import ParameterError

    def fingerprint(p):
        from astrid_pipeline.regions import catalog_fingerprint

        return catalog_fingerprint(p)

    def sky(p):
        from astrid_pipeline.io.fits_io import read_sky_image

        return read_sky_image(p)

    def ramp(p):
        from astrid_pipeline.science.ramps.readers import open_ramp

        return open_ramp(p)

    return [
        Case("fifo-region-catalog", 5, _fifo_then("regions.yaml", _load_catalog), ConfigError,
             ("regions.yaml", "regular file")),
        Case("fifo-mm-params", 5, _fifo_then("params.yaml", _load_params), ParameterError, ("params.yaml",)),
        Case("fifo-detection-config", 5, _fifo_then("detection.yaml", _load_detection), ConfigError,
             ("detection.yaml",)),
        Case("fifo-manifest", 5, _fifo_then("manifest.yaml", _load_manifest), InputFileError, ("manifest.yaml",)),
        Case("fifo-sky-image", 5, _fifo_then("science.fits", sky), InputFileError, ("science.fits", "regular file")),
        Case("fifo-ramp", 5, _fifo_then("ramp.h5", ramp), InputFileError, ("ramp.h5", "regular file")),
        Case("fifo-catalog-fingerprint", 1, _fifo_then("regions.yaml", fingerprint), None),
        Case("fifo-cli-astrid-regions", 5, _fifo_then("regions.yaml", lambda p: astrid(["regions", "--catalog", p])),
             Refused, ("regions.yaml",), cli=True),
    ]


def _fingerprint_of_folder(tmp):
    from astrid_pipeline.regions import catalog_fingerprint

    (tmp / "cat").mkdir()
    return catalog_fingerprint(tmp / "cat")


def _fault_cases() -> list[Case]:
    from astrid_pipeline.errors import EmptyDataError, TruncatedFileError

    def expect(predicate, text):
        def check(tmp, value):
            return None if value is None or predicate(value) else f"{text}: {value!r}"

        return check

    return [
        Case("kill-9-during-an-atomic-write", 6, _kill_writer, None, check=_kill_check),
        Case("kill-9-detect-at-four-moments-then-rerun", 6, _kill_detect_at_moments, None, check=_kill_detect_check),
        Case("moved-aside-folder-restored-after-kill", 6, _old_folder_restored, None,
             check=_all(expect(lambda v: v == "complete", "old products not restored"), no_leftovers("."))),
        Case("live-writers-temporaries-kept", 6, _live_temporaries_kept, None,
             check=expect(lambda v: v is True, "a live writer's file was removed")),
        Case("failing-writer-leaves-old-product-and-no-temporary", 6, _failing_writer, EmptyDataError,
             ("input.fits",), check=_all(no_leftovers("."), lambda t, v: None if (t / "product.fits").read_text()
                                         == "old" else "old product changed")),
        Case("clean-up-failure-does-not-hide-the-error", 5, _cleanup_failure_keeps_original, TruncatedFileError,
             ("science.fits",)),
        Case("dead-run-marked-failed-live-run-kept", 6, _dead_run_marked_failed, None,
             check=expect(lambda v: v["dead"] == "FAILURE" and v["live"] == "STARTED" and len(v["failed"]) == 1,
                          "runs")),
        Case("catalog-sensor-does-not-reparse-a-bad-file", 1, _sensor_skips_bad_catalog, None,
             check=expect(lambda v: v["parses"] == 1 and v["bad"] and "still the malformed" in v["second"],
                          "sensor")),
        Case("catalog-fingerprint-of-a-folder", 1, _fingerprint_of_folder, None),
    ]


def all_cases() -> list[Case]:
    """Every row of the corpus, in a fixed order (ids are unique)."""
    cases = (_yaml_cases() + _fits_cases() + _ramp_cases() + _meaning_cases() + _cli_cases() + _fault_cases()
             + _sky_cases() + _fifo_cases() + _csv_cases() + _ramp_attr_cases())
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"duplicate case ids: {sorted(dup)}")
    return cases
