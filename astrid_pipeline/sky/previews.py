"""Pictures of the sky branch's products for people: triplet grids and S_corr thumbnails (plain Python)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrid_pipeline.io.atomic import atomic_path
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.sky.products import read_ext


def render_triplet_preview(trip: np.ndarray, table: dict, path: Path) -> Path:
    """A PNG grid of the first triplets (science, reference, difference per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(trip)
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        for j, title in enumerate(("science", "reference", "difference")):
            ax = axes[i, j]
            im = trip[i, j]
            finite = im[np.isfinite(im)]
            lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0, 1))
            ax.imshow(im, origin="lower", cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
        axes[i, 0].set_ylabel(f"#{table['candidate_id'][i]} S/N={table['snr'][i]:.1f}\n{table['label'][i]}", fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def difference_thumbnail(layout: DataLayout, region: str, size: int = 512) -> Path:
    """A PNG thumbnail of S_corr with clean candidates circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from astrid_pipeline.io.parquet_io import read_partitioned

    sc = read_ext(layout.difference(region, "zogy"), "SCORR")
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(sc, origin="lower", cmap="gray", vmin=-5, vmax=8)
    if len(cands):
        c = cands[cands["clean"]]
        ax.scatter(c["x"], c["y"], s=60, facecolors="none", edgecolors="lime", linewidths=0.8, label="clean")
        f = cands[~cands["clean"]]
        ax.scatter(f["x"], f["y"], s=30, marker="x", color="red", linewidths=0.6, label="flagged")
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(f"{region}: S_corr", fontsize=9)
    path = layout.preview(region, "scorr")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=max(60, size // 5))
    plt.close(fig)
    return path
