"""Where every product lives under the data root.

One place for paths, so assets, tests, notebooks and the CLI agree. The data
root is ``$ASTRID_DATA_ROOT`` when set, else ``data/`` in the project
checkout (or in the current directory for an installed package).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


def default_data_root() -> Path:
    env = os.environ.get("ASTRID_DATA_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    project = Path(__file__).resolve().parents[1]
    if (project / "pyproject.toml").exists():
        return project / "data"
    return Path.cwd() / "data"


#: longest partition key: products are named ``<key>.fits``, ``region=<key>``, and atomic writes add
#: ``.<name>.tmp-<pid>-<token>``, all within a file system's 255-byte name limit
MAX_KEY_LENGTH = 128


def safe_key(key: str) -> str:
    """Reject partition keys that could escape the data root (``../x``, ``a/b``) or are too long for a file
    name (more than :data:`MAX_KEY_LENGTH` characters): :class:`~astrid_pipeline.errors.UnsafeKeyError`
    (a ``ValueError``)."""
    from astrid_pipeline.errors import UnsafeKeyError

    if not isinstance(key, str):
        raise UnsafeKeyError(f"partition key {_short(key)} is a {type(key).__name__}, not a string")
    if len(key) > MAX_KEY_LENGTH:
        raise UnsafeKeyError(f"partition key {_short(key)} has {len(key)} characters; at most {MAX_KEY_LENGTH} "
                             "are accepted (products and partitions are named after it)")
    if not _SAFE_KEY.match(key) or ".." in key:
        raise UnsafeKeyError(
            f"partition key {_short(key)} is not a safe name: use letters, digits and _ . + - "
            "(no slashes, no '..')"
        )
    return key


def _short(value) -> str:
    from astrid_pipeline.io.safe_yaml import short

    return short(value, 60)


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @classmethod
    def default(cls) -> "DataLayout":
        return cls(default_data_root())

    # --- sky branch -------------------------------------------------------
    def raw_image(self, region: str, epoch: str) -> Path:
        return self.root / "sky" / "raw" / safe_key(region) / f"{epoch}.fits"

    def cosmic_ray_mask(self, region: str) -> Path:
        return self.root / "sky" / "crmask" / f"{safe_key(region)}.fits"

    def aligned_reference(self, region: str) -> Path:
        return self.root / "sky" / "aligned" / safe_key(region) / "reference_aligned.fits"

    def normalized_image(self, region: str, epoch: str) -> Path:
        return self.root / "sky" / "normalized" / safe_key(region) / f"{epoch}.fits"

    def psf_models(self, region: str) -> Path:
        return self.root / "sky" / "psf" / safe_key(region) / "psf.fits"

    def difference(self, region: str, method: str) -> Path:
        return self.root / "sky" / "differences" / method / f"{safe_key(region)}.fits"

    def triplets(self, region: str) -> Path:
        return self.root / "sky" / "triplets" / f"{safe_key(region)}.h5"

    def preview(self, region: str, name: str) -> Path:
        return self.root / "sky" / "previews" / safe_key(region) / f"{name}.png"

    def ds9_regions(self, region: str) -> Path:
        """The region's candidates as a ds9 region file (beside the catalogs, not inside a Parquet dataset)."""
        return self.root / "sky" / "ds9" / f"{safe_key(region)}.reg"

    def alerts(self, region: str) -> Path:
        """The region's alert packets: one Avro file in the ZTF v4.02 alert schema."""
        return self.root / "sky" / "alerts" / f"{safe_key(region)}.avro"

    # --- catalogs -----------------------------------------------------------
    def catalog(self, table: str, partition: dict[str, str]) -> Path:
        p = self.root / "catalogs" / table
        for k, v in partition.items():
            p = p / f"{k}={safe_key(v)}"
        return p / "part-0.parquet"

    def catalog_root(self, table: str) -> Path:
        return self.root / "catalogs" / table

    # --- detector branch, models ----------------------------------------------
    def detector_dir(self, *parts: str) -> Path:
        return self.root.joinpath("detector", *[safe_key(p) for p in parts])

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / safe_key(name)

    def dagster_home(self) -> Path:
        return self.root / ".dagster"
