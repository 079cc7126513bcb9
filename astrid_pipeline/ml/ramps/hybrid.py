"""The hybrid of the 3D U-Net and the rules: a documented merge, its effect measured per class.

The rules come with false-alarm rates set from the measured noise; the
U-Net sees shapes the rules do not model (the faint rim of a cosmic-ray
footprint, a snowball's diffuse halo). The merge therefore keeps every
rules decision and lets the U-Net *extend* it, never start anything on its
own:

1. Start from the rules' class mask.
2. For each class in ``extend_classes`` (default cosmic ray and snowball):
   a background pixel where the U-Net's most probable class is that class,
   with probability >= ``min_confidence`` (ohana's key), joins the mask
   when its 8-connected U-Net region of that class touches a rules pixel of
   the same class. RTN is a property of one pixel's readout: RTN stays the
   rules' decision alone.
3. A rules cosmic-ray pixel that the U-Net calls snowball (probability >=
   ``min_confidence``) inside a region touching a rules snowball becomes
   snowball (the snowball's halo that the rules cut off as separate jumps).

So the hybrid can only add pixels next to what the rules found: its false
events are the rules' false events, and its pixel false rate grows by at
most the U-Net's rim around true detections. Events (the catalog) are the
rules' events; their ``confidence`` is raised to the U-Net's mean
probability of the class over the event's pixels when that is higher.
:func:`astrid_pipeline.ml.ramps.evaluate.evaluate_models` reports recall,
precision and IoU per class for the rules, the U-Net and this merge.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.science.ramps.config import CLASS_CODES


@dataclass(frozen=True)
class HybridConfig:
    """How U-Net and rules are merged (settings of the detection asset and of ``predict``)."""

    min_confidence: float = field(default=0.5, metadata={"description": "U-Net class probability a pixel needs to "
                                                                          "extend a rules detection (ohana's key)"})
    extend_classes: tuple[str, ...] = field(default=("cosmic_ray", "snowball"),
                                            metadata={"description": "classes the U-Net may extend: cosmic_ray, snowball"})
    relabel_snowball_halo: bool = field(default=True, metadata={"description": "rules cosmic-ray pixels the U-Net calls "
                                                                               "snowball next to a rules snowball become snowball"})

    def __post_init__(self):
        if not 0 < float(self.min_confidence) <= 1:
            raise ConfigError(f"min_confidence must be in (0, 1], got {self.min_confidence}")
        ext = tuple(self.extend_classes) if not isinstance(self.extend_classes, str) else tuple(
            c.strip() for c in self.extend_classes.split(",") if c.strip())
        bad = [c for c in ext if c not in ("cosmic_ray", "snowball")]
        if bad:
            raise ConfigError(f"extend_classes may hold cosmic_ray and snowball only (RTN stays the rules'), got {bad}")
        object.__setattr__(self, "extend_classes", ext)


def _grow(seed: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pixels of ``candidates`` whose 8-connected component of ``candidates | seed`` contains a seed pixel."""
    from scipy import ndimage

    region = candidates | seed
    lab, n = ndimage.label(region, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros_like(seed)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(lab[seed])] = True
    keep[0] = False
    return keep[lab] & candidates


def merge_hybrid(rules, unet, cfg: HybridConfig | None = None):
    """The hybrid :class:`~astrid_pipeline.science.ramps.detect.DetectionResult` of a rules result and a
    :class:`~astrid_pipeline.ml.ramps.infer.UNetPrediction` of the same integration."""
    cfg = cfg or HybridConfig()
    if rules.mask.shape != unet.mask.shape:
        from astrid_pipeline.errors import BadShapeError

        raise BadShapeError(None, f"rules mask {rules.mask.shape} and U-Net mask {unet.mask.shape} differ")
    mask = rules.mask.copy()
    prob = unet.prob.astype(np.float32)
    added = {}
    for name in cfg.extend_classes:
        c = CLASS_CODES[name]
        cand = (mask == 0) & (unet.mask == c) & (prob[c] >= cfg.min_confidence)
        grown = _grow(rules.mask == c, cand)
        mask[grown] = c
        added[name] = int(grown.sum())
    relabelled = 0
    if cfg.relabel_snowball_halo:
        sb, cr = CLASS_CODES["snowball"], CLASS_CODES["cosmic_ray"]
        cand = (rules.mask == cr) & (unet.mask == sb) & (prob[sb] >= cfg.min_confidence)
        grown = _grow(mask == sb, cand)
        mask[grown] = sb
        relabelled = int(grown.sum())
    ev = dict(rules.events)
    E = len(ev["type"])
    from astrid_pipeline.science.ramps.outputs import event_confidence, event_pixels

    conf = event_confidence(rules).copy()
    src = np.array(["rules"] * E, dtype=object)
    for i, pix in enumerate(event_pixels(rules)):
        c = CLASS_CODES.get(str(ev["type"][i]), 0)
        if c and len(pix):
            pu = float(prob[c, pix[:, 0], pix[:, 1]].mean())
            if pu > conf[i]:
                conf[i], src[i] = pu, "unet"
    ev["confidence"] = conf
    ev["confidence_source"] = src
    meta = dict(rules.meta)
    meta["hybrid"] = {"min_confidence": cfg.min_confidence, "extend_classes": list(cfg.extend_classes),
                      "pixels_added": added, "pixels_relabelled_snowball": relabelled}
    return dataclasses.replace(rules, mask=mask, events=ev, meta=meta)
