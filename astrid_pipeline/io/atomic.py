"""Atomic writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file: either the old file (or none) is
there, or the complete new one. If the block raises, the temporary file is
removed and the target is left untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Iterator


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A unique hidden name in the same directory (same filesystem, so rename is atomic)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it onto ``path`` on success.

    >>> with atomic_path("out.fits") as tmp:   # doctest: +SKIP
    ...     hdul.writeto(tmp)
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(final, exc) from exc
    tmp = temporary_sibling(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{final}: the writer produced no file")
        os.replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a clean-up failure never hides the original error
            tmp.unlink()
        if isinstance(exc, OSError) and _is_write_failure(exc, final, tmp):
            raise _output_error(final, exc) from exc
        raise


#: errno values that say the product cannot be written where it goes (whoever raised them)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                 errno.EACCES, errno.EPERM}


def _is_write_failure(exc: OSError, final: Path, tmp: Path) -> bool:
    """An OSError about the product (its temporary name, its folder) or the disk, not about an input the
    writer happened to read."""
    from astrid_pipeline.errors import AstridError

    if isinstance(exc, AstridError):
        return False
    names = {os.fspath(p) for p in (exc.filename, exc.filename2) if p is not None}
    ours = {os.fspath(tmp), os.fspath(final), os.fspath(final.parent)}
    if names:
        return bool(names & ours)
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _output_error(final: Path, exc: OSError):
    """:class:`~astrid_pipeline.errors.OutputError` naming the product (not the temporary name) and why."""
    from astrid_pipeline.errors import OutputError

    if isinstance(exc, OutputError):
        return exc
    code = exc.errno
    if code == errno.EISDIR or (final.is_dir() and not isinstance(exc, (FileExistsError, NotADirectoryError))):
        reason = "a folder is there, where the file must go"
    elif code in _WRITE_ERRNOS and code not in (errno.EEXIST, errno.ENOTDIR):
        reason = os.strerror(code)
    elif code in (errno.EEXIST, errno.ENOTDIR) or isinstance(exc, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in [final.parent, *final.parent.parents] if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file where a folder must be" if blocker else (exc.strerror or str(exc))
    else:
        reason = exc.strerror or str(exc)
    if code == errno.ENOSPC:
        reason += " (disk full)"
    return OutputError(final, reason, code)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _writer_pid(name: str, marker: str) -> int | None:
    try:
        return int(name.rsplit(marker, 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def sweep_orphan_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove what a killed writer left in ``folder``: temporary files and folders whose process is gone.

    Names come from :func:`temporary_sibling` (``.<name>.tmp-<pid>-<token>``, files or folders being filled);
    a folder moved aside while its replacement was renamed in (``.<name>.old-<pid>-<token>``) is renamed
    back to ``<name>`` when the kill left no ``<name>`` (so the previous complete products survive), and is
    removed otherwise. Entries of live processes (including this one) are left alone. Returns the paths
    removed (or restored).
    """
    import shutil

    removed = []
    d = Path(folder)
    if not d.is_dir():
        return removed
    for marker in (".tmp-", ".old-"):
        for p in d.glob(f".*{marker}*"):
            pid = _writer_pid(p.name, marker)
            if pid is None or pid == os.getpid() or _pid_alive(pid):
                continue
            try:
                target = d / p.name[1:].rsplit(marker, 1)[0]
                if marker == ".old-" and p.is_dir() and not target.exists():
                    os.replace(p, target)
                elif p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
            except FileNotFoundError:  # another process swept it first
                continue
            except OSError:  # not ours to remove (permissions): left, the next run tries again
                continue
    return removed
