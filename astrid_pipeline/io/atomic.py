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
