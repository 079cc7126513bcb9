"""What an auxiliary single-image CR method hands M.M.Cosmic (L.A.Cosmic in :mod:`.auxiliary`, the
trained networks in :mod:`.aux_ml`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AuxResult:
    mask: np.ndarray  # merged peaks & tails
    cleaned: np.ndarray  # ADU
    n_peaks: int
    n_tails_windows: int  # tiles used by the tails pass (0 = whole frame or single pass)
