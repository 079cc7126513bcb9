"""The triplet preview is a readable PNG grid: one row per candidate, north up, each cutout scaled on its own."""

from __future__ import annotations

import numpy as np
from PIL import Image

from astrid_pipeline.sky import previews


def test_triplet_preview_grid(tmp_path):
    rng = np.random.default_rng(0)
    trip = rng.normal(0, 1, (3, 3, 21, 21)).astype(np.float32)
    trip[1, 2, 10, 10] = 50.0  # a bright difference source: the brightest grey of its cutout
    trip[2, 1, :4] = np.nan  # beyond the image edge (bottom rows of the cutout)
    table = {"candidate_id": np.array([7, 8, 9]), "snr": np.array([6.0, 12.5, 30.0]),
             "label": np.array(["unknown", "real", "bogus"])}
    path = previews.render_triplet_preview(trip, table, tmp_path / "p.png")
    img = np.asarray(Image.open(path).convert("L"))
    z, w = previews._ZOOM, 21 * previews._ZOOM
    assert img.shape == (previews._TITLE_H + 3 * (w + previews._GAP), previews._LABEL_W + 3 * w + 2 * previews._GAP)

    def cutout(i, j):
        y0 = previews._TITLE_H + i * (w + previews._GAP)
        x0 = previews._LABEL_W + j * (w + previews._GAP)
        return img[y0:y0 + w, x0:x0 + w]

    bright = cutout(1, 2)
    # north up: cutout row 10 of 21 is displayed row 20 - 10 = 10, enlarged by the zoom
    assert bright[10 * z, 10 * z] == 255 and bright.mean() < 200
    # NaN rows (cutout rows 0-3) are black and shown at the bottom
    assert (cutout(2, 1)[-4 * z:] == 0).all()
    assert not (cutout(2, 1)[: -4 * z] == 0).all()
    # the label column carries text (dark pixels) next to each row
    assert (img[previews._TITLE_H:, : previews._LABEL_W] < 128).any()
