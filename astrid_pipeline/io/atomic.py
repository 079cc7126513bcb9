"""Atomic writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file: either the old file (or none) is
there, or the complete new one. If the block raises, the temporary file is
removed and the target is left untouched.
"""

from __future__ import annotations

import contextlib
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
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{final}: the writer produced no file")
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


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


def sweep_orphan_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed writer left in ``folder`` (their pid is no longer alive).

    Names come from :func:`temporary_sibling` (``.<name>.tmp-<pid>-<token>``); files of live processes
    (including this one) are left alone. Returns the paths removed.
    """
    removed = []
    d = Path(folder)
    if not d.is_dir():
        return removed
    for p in d.glob(".*.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                p.unlink()
                removed.append(p)
    return removed
