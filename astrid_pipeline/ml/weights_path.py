"""Where the packaged CR weights live (no torch import, so steps and assets can ask cheaply)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "cr2d_deepcr_h8.pt"
