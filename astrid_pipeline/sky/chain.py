"""The sky branch run on one archive pair in a scratch folder, read back as arrays (for training sets)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from astrid_pipeline.sky.triplet_set import ChainProducts


def run_sky_chain(pair, region: str, workdir: str | os.PathLike, stamp_size: int = 63) -> ChainProducts:
    """Run every sky step on one archive pair in a scratch data root and read back what the triplet set needs.

    The one adapter between the real/bogus training set
    (:func:`astrid_pipeline.sky.triplet_set.build_triplet_training_set`, which takes it as ``run_chain``)
    and the sky branch's data layout: :func:`astrid_pipeline.sky.runner.run_pair` on a
    :class:`~astrid_pipeline.layout.DataLayout` rooted at ``workdir``.
    """
    from astrid_pipeline.io.parquet_io import read_partitioned
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    layout = DataLayout(Path(workdir))
    runner.run_pair(layout, region, pair)
    if stamp_size != 63:
        sky.triplets(layout, region, size=stamp_size)
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    trip = products.read_triplets(layout, region, cands["candidate_id"])

    def ext(path, name="PRIMARY"):
        return products.read_ext(path, name).astype(np.float32)

    zp = layout.difference(region, "zogy")
    return ChainProducts(cands, trip, ext(layout.normalized_image(region, "science")),
                         ext(layout.normalized_image(region, "reference")), ext(zp), ext(zp, "SCORR"))
