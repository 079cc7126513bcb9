"""Full-frame CR probability maps by overlapping tiles, with no seams.

The image is normalised once (:func:`robust_normalize`, a global transform)
and padded (reflect) at the bottom/right to a multiple of the network's
``2**depth``; tiles start on that grid and overlap by ``overlap`` pixels on
each side, and only each tile's core is kept. With ``overlap`` larger than
the receptive-field radius of a convolutional U-Net (about 22 px at depth 2)
the tiled map equals the whole-image map to float precision.
"""

from __future__ import annotations

import numpy as np

from astrid_pipeline.errors import BadShapeError, ConfigError, EmptyDataError


def _check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2:
        raise BadShapeError(None, f"a CR mask needs a 2-D image, got shape {img.shape}")
    if img.size == 0 or not np.isfinite(img).any():
        raise EmptyDataError(None, "image has no finite pixel")
    return img


def predict_normalized(model, x: np.ndarray, tile: int = 256, overlap: int = 32, batch: int = 4,
                       threads: int | None = None) -> np.ndarray:
    """Probability map (float32) of an already-normalised 2-D array, by overlapping tiles."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    m = int(getattr(model, "multiple", 1))
    if tile % m or overlap % m:
        raise ConfigError(f"tile {tile} and overlap {overlap} must be multiples of {m} for this network")
    if tile <= 2 * overlap:
        raise ConfigError(f"tile {tile} must be larger than twice the overlap {overlap}")
    h, w = x.shape
    ph, pw = (-h) % m, (-w) % m
    xp = np.pad(x, ((0, ph), (0, pw)), mode="reflect" if min(h, w) > max(ph, pw) else "edge")
    H, W = xp.shape
    core = tile - 2 * overlap
    out = np.zeros((H, W), np.float32)
    jobs = []
    for y0 in range(0, H, core):
        for x0 in range(0, W, core):
            jobs.append((y0, x0, min(y0 + core, H), min(x0 + core, W)))
    model.eval()
    with torch.no_grad():
        # group tiles of equal shape into batches
        groups: dict[tuple, list] = {}
        for j in jobs:
            y0, x0, y1, x1 = j
            a, b = max(0, y0 - overlap), min(H, y1 + overlap)
            c, d = max(0, x0 - overlap), min(W, x1 + overlap)
            groups.setdefault((b - a, d - c), []).append((j, (a, b, c, d)))
        for _, items in groups.items():
            for k in range(0, len(items), batch):
                chunk = items[k:k + batch]
                t = torch.from_numpy(np.stack([xp[a:b, c:d] for _, (a, b, c, d) in chunk])[:, None].copy())
                p = torch.sigmoid(model(t))[:, 0].numpy()
                for (j, (a, b, c, d)), pi in zip(chunk, p):
                    y0, x0, y1, x1 = j
                    out[y0:y1, x0:x1] = pi[y0 - a:y1 - a, x0 - c:x1 - c]
    return out[:h, :w]


def predict_probability(model, image: np.ndarray, tile: int = 256, overlap: int = 32, batch: int = 4,
                        threads: int | None = None) -> np.ndarray:
    """CR probability of every pixel of a raw 2-D image (ADU). NaN pixels get probability 0."""
    from astrid_pipeline.science.cosmic_rays.simulate import robust_normalize

    img = _check_image(image)
    finite = np.isfinite(img)
    x = robust_normalize(img)
    p = predict_normalized(model, x, tile=tile, overlap=overlap, batch=batch, threads=threads)
    p[~finite] = 0.0
    return p


def predict_whole(model, x: np.ndarray) -> np.ndarray:
    """The network on the whole normalised image at once (reference for the tiling tests)."""
    import torch

    model.eval()
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(np.ascontiguousarray(x, np.float32))[None, None]))[0, 0].numpy()
