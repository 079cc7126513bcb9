"""Pictures of the sky branch's products for people: triplet grids and S_corr thumbnails (plain Python)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from astrid_pipeline.io.atomic import atomic_path
from astrid_pipeline.layout import DataLayout
from astrid_pipeline.sky.products import read_ext


#: pixels per cutout pixel in the triplet grid, and the grid's margins (label column, title row)
_ZOOM, _LABEL_W, _TITLE_H, _GAP = 2, 96, 14, 4


def _grey(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """uint8 grey levels of ``a`` between ``lo`` and ``hi`` (default: its 1st and 99.5th percentiles); NaN -> black."""
    a = np.asarray(a, np.float32)
    finite = a[np.isfinite(a)]
    if lo is None or hi is None:
        plo, phi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
        lo = float(plo) if lo is None else lo
        hi = float(phi) if hi is None else hi
    scaled = np.clip((np.nan_to_num(a, nan=lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return (255.0 * scaled + 0.5).astype(np.uint8)


def render_triplet_preview(trip: np.ndarray, table: dict, path: Path) -> Path:
    """A PNG grid of the first triplets: one row per candidate (science, reference, difference), labelled.

    Each cutout is scaled between its own 1st and 99.5th percentiles, north
    up (row 0 at the bottom, as ``imshow(origin="lower")`` shows it) and
    enlarged 2x; drawn with Pillow (milliseconds, where a matplotlib figure
    took about a second per region).
    """
    from PIL import Image, ImageDraw

    n = len(trip)
    h, w = (trip.shape[-2], trip.shape[-1]) if n else (1, 1)
    ch, cw = h * _ZOOM, w * _ZOOM
    width = _LABEL_W + 3 * cw + 2 * _GAP
    height = _TITLE_H + n * (ch + _GAP)
    canvas = Image.new("L", (width, max(height, _TITLE_H + 1)), color=255)
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(("science", "reference", "difference")):
        draw.text((_LABEL_W + j * (cw + _GAP) + 2, 1), title, fill=0)
    for i in range(n):
        y0 = _TITLE_H + i * (ch + _GAP)
        for j in range(3):
            g = _grey(trip[i, j])[::-1]
            tile = np.repeat(np.repeat(g, _ZOOM, axis=0), _ZOOM, axis=1)
            canvas.paste(Image.fromarray(tile, mode="L"), (_LABEL_W + j * (cw + _GAP), y0))
        label = f"#{table['candidate_id'][i]}\nS/N={float(table['snr'][i]):.1f}\n{str(table['label'][i])[:14]}"
        draw.multiline_text((2, y0 + 2), label, fill=0)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
    return path


def difference_thumbnail(layout: DataLayout, region: str, size: int = 512) -> Path:
    """A PNG thumbnail of S_corr (grey from -5 to 8 sigma) with clean candidates circled green, flagged ones red."""
    import math

    from PIL import Image, ImageDraw

    from astrid_pipeline.io.parquet_io import read_partitioned

    sc = np.asarray(read_ext(layout.difference(region, "zogy"), "SCORR"), np.float32)
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    step = max(1, int(math.ceil(max(sc.shape) / size)))
    small = sc[::step, ::step]
    img = Image.fromarray(_grey(small, -5.0, 8.0)[::-1], mode="L").convert("RGB")
    draw = ImageDraw.Draw(img)
    hgt = small.shape[0]
    for r in (cands.itertuples() if len(cands) else ()):
        cx, cy = r.x / step, hgt - 1 - r.y / step
        if r.clean:
            draw.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), outline=(0, 255, 0))
        else:
            draw.line((cx - 3, cy - 3, cx + 3, cy + 3), fill=(255, 0, 0))
            draw.line((cx - 3, cy + 3, cx + 3, cy - 3), fill=(255, 0, 0))
    draw.text((4, 2), f"{region}: S_corr", fill=(255, 255, 0))
    path = layout.preview(region, "scorr")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path
