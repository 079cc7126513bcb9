"""Auxiliary single-image detector from the trained 2-D CR networks: numina-crmasks' ``deepcr`` / ``conn``.

numina-crmasks (Cardiel et al. 2026) can run deepCR (Zhang & Bloom 2020)
or Cosmic-CoNN (Xu et al. 2023) instead of L.A.Cosmic as the auxiliary
method: ``crmethod: deepcr`` / ``conn`` use the network alone, ``mm_deepcr``
/ ``mm_conn`` combine it with M.M.Cosmic and keep only the network's CR
groups that hold a pixel above the median-minimum threshold
(``mm_threshold_rnoise``; :func:`~astrid_pipeline.science.mmcosmic.masks.keep_groups_with`).
numina calls the published pretrained models (deepCR ``ACS-WFC`` /
``WFC3-UVIS``, Cosmic-CoNN ``ground_imaging`` / ``NRES`` / ``HST_ACS_WFC``);
here the same roles are played by this project's own networks of those two
families (:mod:`astrid_pipeline.ml.models`, trained by
:mod:`astrid_pipeline.science.cosmic_rays.family`):

* ``deepcr``: the packaged 2-D CR weights (``ml/weights/cr2d_deepcr_h8.pt``,
  a deepCR-style U-Net), with the operating point calibrated on real frames
  (:mod:`astrid_pipeline.science.cosmic_rays.calibration`);
* ``conn``: the packaged attention-gated Cosmic-CoNN-style U-Net
  (``ml/weights/cr2d_att_cosmicconn_h8.pt``, the best of that family by test
  TPR at 0.1 % FPR, calibrated the same way);

either replaced by any checkpoint given as ``dc_checkpoint`` / ``nn_checkpoint``.

The mask is made by the project's one single-image entry point,
:func:`astrid_pipeline.science.cosmic_rays.masks.detect_cosmic_rays`
(probability map, then hysteresis from seeds above the threshold that also
stand ``min_snr`` sigma above their 5x5 running median). The significance
gate uses each pixel's noise from the detector model,
``sqrt(max(image, 0) / gain + rnoise**2)`` in ADU (one exposure's noise;
on a median of N exposures that over-estimates the noise, so the gate is
conservative there). A ``dc_threshold`` / ``nn_threshold`` that is given
is used as numina uses it, the probability threshold alone (no gate);
without one the operating point calibrated with the weights on real frames
is used (for both packaged networks: seed 0.5, grow 0.5, gate 6 sigma;
numina's own default threshold is also 0.5).

Cleaned image (numina's deepCR call inpaints; its Cosmic-CoNN call does not
and refuses ``use_auxmedian``): for ``deepcr`` each flagged pixel is replaced
by the median of the unflagged pixels of its 5x5 window (11x11, then 23x23
where a window holds none; astroscrappy's ``medmask`` rule); for ``conn`` the
image comes back unchanged and :attr:`AuxResult.cleaned` equals the input.

Images are bias-subtracted ADU; ``gain`` is electrons per ADU, ``rnoise``
ADU (as everywhere in M.M.Cosmic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from .aux_result import AuxResult
from .errors import ParameterError

log = logging.getLogger(__name__)

#: numina's crmethod values that use a network, and the network family each names
NETWORK_CRMETHODS = {"deepcr": "deepcr", "mm_deepcr": "deepcr", "conn": "conn", "mm_conn": "conn"}
#: the pretrained models numina knows (accepted and mapped to this project's weights, with a note)
NUMINA_PRETRAINED = {"deepcr": ("ACS-WFC", "WFC3-UVIS"), "conn": ("ground_imaging", "NRES", "HST_ACS_WFC")}
#: windows (px) of the masked-median cleaning, tried in turn
CLEAN_WINDOWS = (5, 11, 23)


@dataclass
class NetworkAuxResult(AuxResult):
    """:class:`AuxResult` plus what ran: checkpoint, sha256, operating point and its source."""

    info: dict = field(default_factory=dict)


def packaged_checkpoint(method: str) -> Path:
    """The packaged weights that play numina's ``deepcr`` or ``conn`` model."""
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS, WEIGHTS_DIR

    if method == "deepcr":
        return SHIPPED_WEIGHTS
    if method == "conn":
        return WEIGHTS_DIR / "cr2d_att_cosmicconn_h8.pt"
    raise ParameterError("crmethod", f"{method!r} is not a network method ({', '.join(NETWORK_CRMETHODS)})")


@dataclass
class NetworkAuxSettings:
    """The network auxiliary method of M.M.Cosmic (numina's ``dc_`` / ``nn_`` parameters)."""

    method: str = field(default="deepcr", metadata={
        "description": "network family: deepcr (numina's deepcr / mm_deepcr) or conn (conn / mm_conn)"})
    checkpoint: str = field(default="", metadata={
        "description": "CR network checkpoint (.pt); empty = the packaged weights of that family "
                       "(numina's dc_checkpoint / nn_checkpoint extension keys)"})
    threshold: Optional[float] = field(default=None, metadata={
        "description": "seed probability threshold in (0, 1) (numina's dc_threshold / nn_threshold); "
                       "empty = the operating point calibrated on real frames and stored with the weights"})
    min_snr: Optional[float] = field(default=None, metadata={
        "description": "a seed must stand this many sigma above its 5x5 running median (0 = no gate, as "
                       "numina); empty = the calibrated value, or 0 when threshold is given"})
    threads: int = field(default=1, metadata={"description": "torch threads for the network"})

    def validate(self) -> "NetworkAuxSettings":
        if self.method not in NUMINA_PRETRAINED:
            raise ParameterError("crmethod", f"network method {self.method!r}: one of {', '.join(NUMINA_PRETRAINED)}")
        key = "dc_threshold" if self.method == "deepcr" else "nn_threshold"
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError(key, f"{self.threshold} must be a number between 0 and 1 (exclusive)")
        if self.min_snr is not None and float(self.min_snr) < 0:
            raise ParameterError("min_snr", f"{self.min_snr} must be >= 0")
        if int(self.threads) < 1:
            raise ParameterError("threads", f"{self.threads} must be >= 1")
        return self

    def resolved_checkpoint(self) -> Path:
        return Path(self.checkpoint).expanduser() if self.checkpoint else packaged_checkpoint(self.method)

    @classmethod
    def from_requirements(cls, crmethod: str, requirements: Mapping | None = None,
                          threads: int = 1) -> "NetworkAuxSettings":
        """Settings from a numina ``requirements`` mapping (``dc_*`` for deepcr, ``nn_*`` for conn).

        ``dc_mask`` / ``nn_model`` name numina's pretrained models; they are
        accepted (the packaged network of the same family runs instead, with
        an info line) and any other value is refused, as numina does.
        ``dc_checkpoint`` / ``nn_checkpoint`` (extensions) name a checkpoint.
        """
        cm = str(crmethod).strip().lower()
        if cm not in NETWORK_CRMETHODS:
            raise ParameterError("crmethod", f"{cm!r} is not one of {', '.join(NETWORK_CRMETHODS)}")
        method = NETWORK_CRMETHODS[cm]
        req = dict(requirements or {})
        pre = "dc_" if method == "deepcr" else "nn_"
        name_key = "dc_mask" if method == "deepcr" else "nn_model"
        named = req.get(name_key)
        if named is not None:
            if str(named) not in NUMINA_PRETRAINED[method]:
                raise ParameterError(name_key, f"{named!r} must be one of {', '.join(NUMINA_PRETRAINED[method])}")
            log.info("%s=%s names a pretrained %s model; this project's packaged %s network runs instead",
                     name_key, named, "deepCR" if method == "deepcr" else "Cosmic-CoNN", method)
        thr = req.get(pre + "threshold")
        if thr is not None:
            try:
                thr = float(thr)
            except (TypeError, ValueError):
                raise ParameterError(pre + "threshold", f"{thr!r} is not a number") from None
        ck = req.get(pre + "checkpoint") or ""
        return cls(method=method, checkpoint=str(ck), threshold=thr, threads=int(threads)).validate()


def clean_masked(image: np.ndarray, mask: np.ndarray, windows=CLEAN_WINDOWS) -> np.ndarray:
    """Replace each ``mask`` pixel by the median of the unmasked finite pixels of its window (see the module doc).

    A pixel whose largest window holds no usable pixel keeps its value.
    """
    img = np.asarray(image, dtype=np.float32)
    out = img.copy()
    todo = np.argwhere(np.asarray(mask, dtype=bool))
    usable = np.asarray(~np.asarray(mask, dtype=bool) & np.isfinite(img))
    for w in windows:
        if len(todo) == 0:
            break
        h = int(w) // 2
        pad_img = np.pad(img, h, mode="constant")
        pad_ok = np.pad(usable, h, mode="constant", constant_values=False)
        dy, dx = np.mgrid[-h : h + 1, -h : h + 1]
        rr = todo[:, :1] + h + dy.ravel()[None, :]
        cc = todo[:, 1:] + h + dx.ravel()[None, :]
        vals = np.where(pad_ok[rr, cc], pad_img[rr, cc], np.nan)
        have = pad_ok[rr, cc].any(axis=1)
        if have.any():
            out[todo[have, 0], todo[have, 1]] = np.nanmedian(vals[have], axis=1)
        todo = todo[~have]
    return out


def network_aux(
    image: np.ndarray,
    settings: NetworkAuxSettings | None = None,
    *,
    gain: float,
    rnoise: float,
    satlevel: float | None = None,
    allowed: np.ndarray | None = None,
) -> NetworkAuxResult:
    """Run the CR network on one bias-subtracted ADU image as M.M.Cosmic's auxiliary method.

    Returns an :class:`~astrid_pipeline.science.mmcosmic.aux_result.AuxResult`
    like :func:`~astrid_pipeline.science.mmcosmic.auxiliary.lacosmic_peaks_tails`
    (``n_peaks``: flagged pixels at or above the seed threshold;
    ``n_tails_windows``: 0) with ``info`` added.
    ``satlevel`` (ADU): pixels at or above it are never flagged. ``allowed``:
    pixels outside it are never flagged (numina's ``bool_to_be_cleaned``).
    """
    from astrid_pipeline.science.cosmic_rays.masks import detect_cosmic_rays

    s = (settings or NetworkAuxSettings()).validate()
    if not gain or gain <= 0:
        raise ParameterError("gain", f"{gain} must be > 0 (electrons per ADU)")
    if rnoise is None or rnoise < 0:
        raise ParameterError("rnoise", f"{rnoise} must be >= 0 (ADU)")
    ck = s.resolved_checkpoint()
    if not ck.is_file():
        raise ParameterError("dc_checkpoint" if s.method == "deepcr" else "nn_checkpoint",
                             f"checkpoint {ck} does not exist" + ("" if s.checkpoint else
                             " (no packaged weights for this family: give one)"))
    img = np.asarray(image, dtype=np.float64)
    noise = np.sqrt(np.clip(np.nan_to_num(img), 0, None) / float(gain) + float(rnoise) ** 2)
    min_snr = s.min_snr
    if s.threshold is not None and min_snr is None:
        min_snr = 0.0  # numina's rule: the probability threshold alone
    cr = detect_cosmic_rays(img, method="model", checkpoint=ck, threshold=s.threshold, min_snr=min_snr,
                            gain=float(gain), read_noise=float(rnoise), saturation=satlevel, noise=noise,
                            threads=s.threads)
    mask = cr.mask if allowed is None else cr.mask & np.asarray(allowed, dtype=bool)
    n_seeds = int((mask & (cr.probability >= cr.info["threshold"])).sum())
    cleaned = clean_masked(img, mask) if s.method == "deepcr" else np.asarray(image, dtype=np.float32).copy()
    info = {"method": s.method, **{k: cr.info[k] for k in ("checkpoint", "model", "sha256", "threshold",
                                                           "grow_threshold", "min_snr", "threshold_source")},
            "noise": "sqrt(max(image,0)/gain + rnoise^2) ADU"}
    log.info("M.M.Cosmic auxiliary %s (%s, threshold %.3f, min_snr %.1f): %d CR pixels", s.method,
             cr.info["model"], cr.info["threshold"], cr.info["min_snr"], int(mask.sum()))
    return NetworkAuxResult(mask=mask, cleaned=cleaned, n_peaks=n_seeds, n_tails_windows=0, info=info)


__all__ = ["NETWORK_CRMETHODS", "NetworkAuxResult", "NetworkAuxSettings", "clean_masked", "network_aux", "packaged_checkpoint"]
