"""What every archive client returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep ``import astrid_pipeline.definitions`` light: no pandas/astropy at load time
    import pandas as pd
    from astropy.io import fits


@dataclass
class ArchivePair:
    """A region's science and reference images (FITS in memory) and, for simulations, the truth."""

    science: fits.HDUList
    reference: fits.HDUList
    science_source: str
    reference_source: str
    truth: pd.DataFrame | None = None
    cosmic_rays: pd.DataFrame | None = None
    provenance: dict = field(default_factory=dict)
