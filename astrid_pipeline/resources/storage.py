"""The data root as a Dagster resource."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from astrid_pipeline.layout import DataLayout, default_data_root


class StorageResource(ConfigurableResource):
    """Where products are written. Empty ``root`` means ``$ASTRID_DATA_ROOT`` or ``data/``."""

    root: str = Field(default="", description="Data root directory; empty = $ASTRID_DATA_ROOT or the project's data/")

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else default_data_root()

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root_path)
