"""Every setting of the sky branch, declared once (Dagster-free); the Dagster config is derived from it.

Each step reads its own section; ``qa`` holds the bounds the asset checks apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from astrid_pipeline.alerts.packets import AlertSettings
from astrid_pipeline.science.cosmic_rays.masks import CosmicRayMaskSettings
from astrid_pipeline.science.extraction import ExtractionConfig
from astrid_pipeline.science.noise import NoiseSettings
from astrid_pipeline.science.psf import PSFConfig
from astrid_pipeline.science.threads import ThreadSettings
from astrid_pipeline.science.zogy import ScorrNormSettings
from astrid_pipeline.setting import setting
from astrid_pipeline.sky.alert_steps import ScoreSettings


@dataclass
class AlignSettings:
    """Resampling of the reference onto the science grid."""

    order: str = setting("bicubic", "interpolation: bilinear, biquadratic or bicubic")
    refine: bool = setting(True, "remove a residual offset measured on matched stars")


@dataclass
class ZogySettings:
    """ZOGY differencing."""

    source_noise: bool = setting(True, "include source Poisson noise in S_corr")
    astrometric_noise: bool = setting(True, "include registration noise in S_corr")
    normalization: ScorrNormSettings = field(default_factory=ScorrNormSettings, metadata={
        "description": "empirical normalisation of S_corr on source-free pixels"})


@dataclass
class TripletSettings:
    """Cutout triplets around each candidate."""

    size: int = setting(63, "cutout side in pixels (ZTF alerts use 63)")
    difference: str = setting("zogy", "difference plane: zogy (D) or classic")


@dataclass
class QASettings:
    """Bounds of the sky branch's asset checks."""

    max_residual_px: float = setting(0.2, "alignment_residual: largest acceptable matched-star offset (pix)")
    max_scorr_deviation: float = setting(0.1, "scorr_unit_variance: largest |std(S_corr) - 1| on held-out blank pixels")
    min_scorr_norm: float = setting(0.5, "scorr_unit_variance: smallest acceptable S_corr normalisation factor")
    max_scorr_norm: float = setting(4.0, "scorr_unit_variance: largest acceptable S_corr normalisation factor")
    max_cr_pixel_fraction: float = setting(0.01, "cr_fraction_plausible: largest fraction of pixels masked as CRs")
    min_completeness: float = setting(0.95, "injected_transient_recovery: recovery of injected S/N >= 6 transients (or "
                                                      "what their S/N allows, less two binomial sigmas, if lower)")
    max_false_per_mpix: float = setting(1.0, "injected_transient_recovery: clean false candidates per 10^6 pixels")


@dataclass
class SkySettings:
    """The sky branch's settings, one section per step plus the check bounds."""

    noise: NoiseSettings = field(default_factory=NoiseSettings,
                                 metadata={"description": "the noise model read from the data at acquisition"})
    cosmic_rays: CosmicRayMaskSettings = field(default_factory=CosmicRayMaskSettings,
                                           metadata={"description": "cosmic-ray masking of the science image"})
    align: AlignSettings = field(default_factory=AlignSettings, metadata={"description": "alignment"})
    psf: PSFConfig = field(default_factory=PSFConfig, metadata={"description": "PSF star selection and fit"})
    zogy: ZogySettings = field(default_factory=ZogySettings, metadata={"description": "ZOGY differencing"})
    candidates: ExtractionConfig = field(default_factory=ExtractionConfig,
                                         metadata={"description": "candidate extraction on S_corr"})
    triplets: TripletSettings = field(default_factory=TripletSettings, metadata={"description": "cutout triplets"})
    scores: ScoreSettings = field(default_factory=ScoreSettings,
                                  metadata={"description": "real/bogus scores of the candidates"})
    alerts: AlertSettings = field(default_factory=AlertSettings,
                                  metadata={"description": "alert packets (ZTF v4.02 Avro)"})
    qa: QASettings = field(default_factory=QASettings, metadata={"description": "asset-check bounds"})
    threads: ThreadSettings = field(default_factory=ThreadSettings, metadata={
        "description": "thread counts of the network, the FFTs and OpenMP kernels (0: the cores free now)"})
