"""Full-frame CR probability maps by overlapping tiles, with no seams.

The image is normalised once (:func:`robust_normalize`, a global transform)
and padded (reflect) at the bottom/right to a multiple of the network's
``2**depth``; tiles start on that grid and overlap by ``overlap`` pixels on
each side, and only each tile's core is kept. With ``overlap`` larger than
the receptive-field radius of a convolutional U-Net (about 26 px at depth 2)
the tiled map equals the whole-image map to float precision.

Speed (the network is the cost of the cosmic-ray step; measured on 2 cores in
``benchmarks/region.py``): the network is run on a prepared copy, made once
per model and weights (:func:`prepared_model`): each BatchNorm that follows a
convolution is folded into it (exact algebra in eval mode; the probabilities
change by float rounding only, ~1e-6) and the tensors are channels-last,
which oneDNN runs 2-4x faster than NCHW for these few-channel layers. For
networks whose output at a pixel depends only on its neighbourhood
(convolutions, BatchNorm, pooling: no GroupNorm, LayerNorm or attention,
whose statistics span the tile) the tile size does not change the result, so
tiles smaller than :data:`LOCAL_TILE` are enlarged to it (fewer overlap
pixels computed twice) and run one at a time (a tile's feature maps stay in
the CPU cache). Other networks use ``tile`` and ``batch`` exactly as given.
The thread count is :func:`astrid_pipeline.science.threads.torch_threads`
unless ``threads`` is given, and is restored afterwards.
"""

from __future__ import annotations

import weakref

import numpy as np

from astrid_pipeline.errors import BadShapeError, ConfigError, EmptyDataError
from astrid_pipeline.science.stats import MAD_TO_SIGMA

#: the tile side (pixels) used for local networks when the caller's tile is smaller (measured fastest on 2 cores)
LOCAL_TILE = 512

_PREPARED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def robust_normalize(image: np.ndarray, bad: np.ndarray | None = None) -> np.ndarray:
    """The network input: ``asinh((image - median) / sigma)``, sigma from the MAD; NaN/bad -> 0.

    One global transform per image (not per tile), so tiled inference has no seams.
    """
    img = np.asarray(image, dtype=np.float64)
    ok = np.isfinite(img)
    if bad is not None:
        ok &= ~np.asarray(bad, bool)
    if not ok.any():
        return np.zeros(img.shape, np.float32)
    v = img[ok]
    if v.size > 1_000_000:
        v = v[:: v.size // 1_000_000]
    med = float(np.median(v))
    sd = MAD_TO_SIGMA * float(np.median(np.abs(v - med)))
    if not sd > 0:
        sd = float(np.std(v)) or 1.0
    out = np.arcsinh((img - med) / sd)
    out[~ok] = 0.0
    return out.astype(np.float32)


def _check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2:
        raise BadShapeError(None, f"a CR mask needs a 2-D image, got shape {img.shape}")
    if img.size == 0 or not np.isfinite(img).any():
        raise EmptyDataError(None, "image has no finite pixel")
    return img


def _weights_version(model) -> tuple:
    """Changes whenever a parameter or buffer of ``model`` is modified in place (training) or replaced."""
    return tuple((id(t), t._version) for t in list(model.parameters()) + list(model.buffers()))


def is_local(model) -> bool:
    """True when the network's output at a pixel depends only on a bounded neighbourhood (tile size is free)."""
    from torch import nn

    nonlocal_types = (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d, nn.MultiheadAttention)
    if any(isinstance(m, nonlocal_types) for m in model.modules()):
        return False
    return all(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Sigmoid,
                              nn.Identity, nn.Sequential, nn.ModuleList)) or type(m).__module__.startswith(
        "astrid_pipeline.ml.blocks") for m in model.modules())


def _fold_batchnorm(module) -> None:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in a Sequential into that convolution."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        _fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats:
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()


def prepared_model(model):
    """(network to run, local?) for inference: a BatchNorm-folded, channels-last copy of ``model`` in eval mode.

    Made once per model object and kept while its weights are unchanged (a
    model trained further gets a fresh copy); ``model`` itself is not modified
    beyond ``eval()``.
    """
    import copy

    import torch

    model.eval()
    version = _weights_version(model)
    hit = _PREPARED.get(model)
    if hit is not None and hit[0] == version:
        return hit[1], hit[2]
    with torch.no_grad():
        net = copy.deepcopy(model).eval()
        _fold_batchnorm(net)
        net = net.to(memory_format=torch.channels_last)
    for p in net.parameters():
        p.requires_grad_(False)
    local = is_local(model)
    _PREPARED[model] = (version, net, local)
    return net, local


def predict_normalized(model, x: np.ndarray, tile: int = 256, overlap: int = 32, batch: int = 4,
                       threads: int | None = None) -> np.ndarray:
    """Probability map (float32) of an already-normalised 2-D array, by overlapping tiles (see the module doc)."""
    import torch

    from astrid_pipeline.science.threads import torch_threads

    m = int(getattr(model, "multiple", 1))
    if tile % m or overlap % m:
        raise ConfigError(f"tile {tile} and overlap {overlap} must be multiples of {m} for this network")
    if tile <= 2 * overlap:
        raise ConfigError(f"tile {tile} must be larger than twice the overlap {overlap}")
    net, local = prepared_model(model)
    if local and tile < LOCAL_TILE and LOCAL_TILE % m == 0 and LOCAL_TILE > 2 * overlap + m:
        tile, batch = LOCAL_TILE, 1
    h, w = x.shape
    ph, pw = (-h) % m, (-w) % m
    xp = np.pad(np.asarray(x, np.float32), ((0, ph), (0, pw)),
                mode="reflect" if min(h, w) > max(ph, pw) else "edge")
    H, W = xp.shape
    core = tile - 2 * overlap
    out = np.zeros((H, W), np.float32)
    jobs = []
    for y0 in range(0, H, core):
        for x0 in range(0, W, core):
            jobs.append((y0, x0, min(y0 + core, H), min(x0 + core, W)))
    before = torch.get_num_threads()
    n_threads = int(threads) if threads else torch_threads()
    if n_threads != before:
        torch.set_num_threads(n_threads)
    try:
        with torch.inference_mode():
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
                    t = torch.from_numpy(np.stack([xp[a:b, c:d] for _, (a, b, c, d) in chunk])[:, None])
                    p = torch.sigmoid(net(t.contiguous(memory_format=torch.channels_last)))[:, 0].numpy()
                    for (j, (a, b, c, d)), pi in zip(chunk, p):
                        y0, x0, y1, x1 = j
                        out[y0:y1, x0:x1] = pi[y0 - a:y1 - a, x0 - c:x1 - c]
    finally:
        if n_threads != before:
            torch.set_num_threads(before)
    return out[:h, :w]


def predict_probability(model, image: np.ndarray, tile: int = 256, overlap: int = 32, batch: int = 4,
                        threads: int | None = None) -> np.ndarray:
    """CR probability of every pixel of a raw 2-D image (ADU). NaN pixels get probability 0."""

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
