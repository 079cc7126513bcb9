"""Where the packaged CR weights live, and their checksums (no torch import, so steps and assets can ask cheaply)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "cr2d_deepcr_h8.pt"
#: how many hex digits of the sha256 go into the CRMDSHA header keyword
SHA_PREFIX = 16


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
