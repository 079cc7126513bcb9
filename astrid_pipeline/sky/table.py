"""The sky branch's steps, listed once.

:data:`SKY_STEPS` is the one ordered list of the branch: for each step, the function that runs it, the
assets (products) it materializes, the checks that judge it, the section of :class:`SkySettings` it
reads and its code version. The Dagster assets (``astrid_pipeline.defs.sky``), the batch loop
(:mod:`astrid_pipeline.sky.runner`) and the ``astrid`` CLI are all built from this table; nothing
else lists the steps.

A check's ``evaluate(result, settings)`` returns a :class:`CheckOutcome`, or ``None`` when the check
does not apply (e.g. truth recovery on real data): such a check is *skipped*, never passed.
``blocking`` checks guard steps whose downstream products would be meaningless: when one fails, the
region's later steps do not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from astrid_pipeline.sky.settings import SkySettings


@dataclass(frozen=True)
class Product:
    """An asset a step materializes."""

    key: str
    description: str
    group: str
    kinds: tuple[str, ...] = ("fits",)


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    metadata: dict = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    asset: str
    description: str
    evaluate: Callable[[Any, SkySettings], CheckOutcome | None]
    blocking: bool = False  # ERROR severity and downstream steps of the region do not run when it fails


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[..., Any]  # run(inputs: StepInputs) -> StepResult
    products: tuple[Product, ...]
    checks: tuple[Check, ...]
    version: str
    description: str
    #: asset keys the step reads (its lineage): other steps' products or assets outside the table
    reads: tuple[str, ...] = ()

    @property
    def asset_keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.products)


@dataclass
class StepInputs:
    """What a step function gets: the data layout, the region, the settings, and how to fetch the pair."""

    layout: Any  # astrid_pipeline.layout.DataLayout
    region: Any  # astrid_pipeline.regions.Region
    settings: SkySettings
    fetch_pair: Callable[[], Any] | None = None
    log: Any = None

    @property
    def key(self) -> str:
        return self.region.name


# --------------------------------------------------------------------------- check evaluators
def _inputs_valid(res, s: SkySettings):
    m = res.metadata
    return CheckOutcome(True, {"overlap_fraction": m.get("overlap_fraction"), "archive": m.get("archive")})


def _cr_fraction(res, s: SkySettings):
    m = res.metadata
    if m.get("skipped"):
        return None
    frac = float(m.get("cr_pixel_fraction", 0.0))
    return CheckOutcome(frac <= s.qa.max_cr_pixel_fraction,
                        {"cr_pixel_fraction": frac, "limit": s.qa.max_cr_pixel_fraction, "method": m.get("method")})


def _alignment_residual(res, s: SkySettings):
    q = res.metadata
    offset = float((q["residual_dx"] ** 2 + q["residual_dy"] ** 2) ** 0.5)
    passed = q["n_matched"] > 0 and offset < s.qa.max_residual_px
    return CheckOutcome(bool(passed), {"residual_offset_px": offset, "residual_rms_px": q.get("residual_rms"),
                                       "n_matched": q["n_matched"], "limit_px": s.qa.max_residual_px})


def _psf_from_stars(res, s: SkySettings):
    m = res.metadata
    warnings = [w for w in (m.get("warning_science"), m.get("warning_reference")) if w]
    fallback = [e for e in ("science", "reference") if "fallback" in str(m.get(f"method_{e}", ""))]
    passed = not fallback and not warnings
    return CheckOutcome(passed, {"method_science": m.get("method_science"), "method_reference": m.get("method_reference"),
                                 "n_stars_science": m.get("n_stars_science"),
                                 "n_stars_reference": m.get("n_stars_reference"),
                                 "warnings": warnings})


def _flux_scale(res, s: SkySettings):
    m = res.metadata
    return CheckOutcome(m.get("method") == "matched-stars",
                        {"method": m.get("method"), "n_stars": m.get("n_stars"), "flux_ratio": m.get("flux_ratio")})


def _scorr_unit_variance(res, s: SkySettings):
    m = res.metadata
    noise = float(m.get("noise_S_corr_holdout", m.get("noise_S_corr", float("nan"))))
    factor = float(m.get("scorr_norm", 1.0))
    ok_noise = abs(noise - 1.0) <= s.qa.max_scorr_deviation
    ok_factor = s.qa.min_scorr_norm <= factor <= s.qa.max_scorr_norm
    return CheckOutcome(bool(ok_noise and ok_factor),
                        {"noise_S_corr": noise, "scorr_norm": factor, "allowed_deviation": s.qa.max_scorr_deviation,
                         "norm_range": [s.qa.min_scorr_norm, s.qa.max_scorr_norm]})


def _classic_finite(res, s: SkySettings):
    import math

    noise = float(res.metadata.get("noise", float("nan")))
    return CheckOutcome(math.isfinite(noise) and noise > 0, {"noise": noise})


def _recovery(res, s: SkySettings):
    m = res.metadata
    if "recovery" not in m:
        return None  # real data: no truth table, nothing to test
    comp, fp = float(m["completeness_snr_ge_6"]), float(m["false_per_mpix"])
    # the bar is the lower of min_completeness and what the noise allows for these transients (the mean
    # detection probability at their expected S/N, less two binomial sigmas): with 12 transients at S/N 6-8 a
    # single miss is chance, not a fault
    n = int(m.get("n_snr_ge_6", 0))
    expected = float(m.get("expected_completeness_snr_ge_6", 1.0))
    allowed = expected - 2.0 * (expected * (1.0 - expected) / n) ** 0.5 if n else expected
    bar = min(s.qa.min_completeness, allowed)
    return CheckOutcome(comp >= bar and fp <= s.qa.max_false_per_mpix,
                        {"completeness_snr_ge_6": comp, "completeness_bar": bar,
                         "expected_completeness_snr_ge_6": expected, "n_snr_ge_6": n, "false_per_mpix": fp,
                         **m["recovery"]})


def _triplets_complete(res, s: SkySettings):
    m = res.metadata
    return CheckOutcome(int(m.get("n_triplets", 0)) == int(m.get("n_candidates", m.get("n_triplets", 0))),
                        {"n_triplets": m.get("n_triplets"), "n_candidates": m.get("n_candidates")})


def _score_distribution(res, s: SkySettings):
    m = res.metadata
    n = int(m.get("n", 0))
    if n == 0:
        return CheckOutcome(True, {"n": 0}, "no candidates to score")
    scored = 1.0 - int(m.get("n_nan", 0)) / n
    real = float(m.get("real_fraction", float("nan")))
    passed = scored >= s.scores.min_scored_fraction and real <= s.scores.max_real_fraction
    return CheckOutcome(bool(passed), {"n": n, "scored_fraction": scored, "real_fraction": real,
                                       "median_rb": m.get("median"), "q10_rb": m.get("q10"), "q90_rb": m.get("q90"),
                                       "threshold": m.get("threshold"), "max_real_fraction": s.scores.max_real_fraction,
                                       "rb_version": m.get("rb_version")})


def _alerts_complete(res, s: SkySettings):
    m = res.metadata
    return CheckOutcome(int(m.get("n_alerts", 0)) == int(m.get("n_expected", m.get("n_alerts", 0))),
                        {"n_alerts": m.get("n_alerts"), "photometry": m.get("photometry"), "band": m.get("band"),
                         "schema_version": m.get("schema_version")})


# --------------------------------------------------------------------------- the steps
def _acquire(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.acquire(i.layout, i.key, i.fetch_pair(), noise=i.settings.noise)


def _cosmic_rays(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.cosmic_ray_mask(i.layout, i.key, settings=i.settings.cosmic_rays.validate())


def _align(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.align(i.layout, i.key, order=i.settings.align.order, refine=i.settings.align.refine)


def _psf(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.measure_psfs(i.layout, i.key, i.settings.psf)


def _normalize(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.normalize(i.layout, i.key)


def _zogy(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    z = i.settings.zogy
    return sky.zogy(i.layout, i.key, z.source_noise, z.astrometric_noise, normalization=z.normalization)


def _classic(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.classic(i.layout, i.key)


def _candidates(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    return sky.candidates(i.layout, i.key, i.settings.candidates)


def _triplets(i: StepInputs):
    from astrid_pipeline.sky import steps as sky

    t = i.settings.triplets
    return sky.triplets(i.layout, i.key, size=t.size, difference=t.difference)


def _scores(i: StepInputs):
    from astrid_pipeline.sky import alert_steps

    return alert_steps.scores(i.layout, i.key, i.settings.scores)


def _alerts(i: StepInputs):
    from astrid_pipeline.sky import alert_steps

    return alert_steps.alerts(i.layout, i.key, i.settings.alerts)


ACQ, CRG, ALN, DIF, CAN = "sky_acquisition", "sky_cosmic_rays", "sky_alignment", "sky_differencing", "sky_candidates"
ALR = "sky_alerts"

SKY_STEPS: tuple[Step, ...] = (
    Step("acquire", _acquire, version="2", reads=("observation_inventory",),
         description="fetch the science/reference pair (download cache first), validate it, write it with provenance",
         products=(Product("science_image", "Science epoch FITS as fetched from the archive (validated).", ACQ),
                   Product("reference_image", "Reference epoch FITS as fetched from the archive (validated).", ACQ),
                   Product("transient_truth", "Injected transients and cosmic rays (simulated survey only).", ACQ,
                           ("parquet",))),
         checks=(Check("inputs_valid", "science_image",
                       "both epochs are readable FITS with a celestial WCS, finite data and a positive exposure "
                       "time, and they overlap on the sky", _inputs_valid, blocking=True),)),
    Step("cosmic_ray_mask", _cosmic_rays, version="2", reads=("science_image",),
         description="single-exposure cosmic-ray mask of the science image",
         products=(Product("cosmic_ray_mask", "Cosmic-ray mask of the science image (trained 2-D network or "
                                              "L.A.Cosmic; skipped with the reason for co-added or resampled "
                                              "products).", CRG, ("fits", "pytorch")),),
         checks=(Check("cr_fraction_plausible", "cosmic_ray_mask",
                       "the fraction of pixels masked as cosmic rays is plausible for one exposure",
                       _cr_fraction),)),
    Step("align", _align, version="2", reads=("science_image", "reference_image"),
         description="reference resampled once onto the science grid by WCS plus the measured residual offset",
         products=(Product("aligned_reference", "Reference resampled onto the science pixel grid by WCS, with the "
                                                "residual offset measured on matched stars.", ALN),),
         checks=(Check("alignment_residual", "aligned_reference",
                       "matched-star offset after alignment is below the bound (downstream differences would be "
                       "dipoles otherwise)", _alignment_residual, blocking=True),)),
    Step("psf", _psf, version="2", reads=("aligned_reference", "cosmic_ray_mask"),
         description="PSF of the science image and of the aligned reference",
         products=(Product("psf_models", "PSF of the science image and of the aligned reference (from stars on the "
                                         "stellar locus, or user-supplied), with FWHM.", ALN),),
         checks=(Check("psf_from_stars", "psf_models",
                       "both PSFs come from stars (or a user PSF), not a fallback", _psf_from_stars),)),
    Step("normalize", _normalize, version="2", reads=("psf_models",),
         description="background subtraction and flux matching",
         products=(Product("normalized_images", "Background-subtracted science and flux-matched reference (PSF "
                                                "photometry of matched stars).", ALN),),
         checks=(Check("flux_scale_measured", "normalized_images",
                       "the flux ratio comes from matched stars, not a header or unity fallback", _flux_scale),)),
    Step("zogy", _zogy, version="2", reads=("normalized_images", "psf_models"),
         description="ZOGY difference with S_corr normalised on source-free pixels",
         products=(Product("zogy_difference", "ZOGY difference: D, S, S_corr (source and astrometric noise, "
                                              "normalised on source-free pixels), flux, and the PSF of D.", DIF),),
         checks=(Check("scorr_unit_variance", "zogy_difference",
                       "S_corr has unit variance on held-out blank pixels and its normalisation factor is in range",
                       _scorr_unit_variance, blocking=True),)),
    Step("classic", _classic, version="2", reads=("normalized_images", "psf_models"),
         description="classic PSF-matched difference",
         products=(Product("classic_difference", "Classic PSF-matched difference (the sharper image convolved to "
                                                 "the other's PSF).", DIF),),
         checks=(Check("classic_noise_finite", "classic_difference", "the classic difference has a finite noise",
                       _classic_finite),)),
    Step("candidates", _candidates, version="3", reads=("zogy_difference", "classic_difference"),
         description="candidates on S_corr with artifact flags",
         products=(Product("candidate_catalog", "Candidates on S_corr (both signs) with position, flux, S/N, shape "
                                                "and artifact flags.", CAN, ("parquet",)),),
         checks=(Check("injected_transient_recovery", "candidate_catalog",
                       "simulated data: injected transients at S/N >= 6 recovered as often as their S/N allows "
                       "and few clean false candidates (skipped on real data)", _recovery),)),
    Step("triplets", _triplets, version="2", reads=("candidate_catalog",),
         description="science/reference/difference cutouts around each candidate",
         products=(Product("cutout_triplets", "Science/reference/difference cutouts (N, 3, 63, 63) around each "
                                              "candidate, with a metadata table.", CAN, ("hdf5",)),),
         checks=(Check("triplets_complete", "cutout_triplets", "one triplet per candidate", _triplets_complete),)),
    Step("scores", _scores, version="1", reads=("cutout_triplets",),
         description="real/bogus CNN scores and type probabilities per candidate, and the ds9 region file",
         products=(Product("candidate_scores", "Real/bogus score, real flag and type probabilities of each candidate "
                                               "(keyed by candidate_id, with the 64-bit candid), and a ds9 region "
                                               "file.", ALR, ("parquet", "pytorch")),),
         checks=(Check("score_distribution", "candidate_scores",
                       "every candidate has a finite score and the share called real is plausible for a survey "
                       "field", _score_distribution),)),
    Step("alerts", _alerts, version="1", reads=("candidate_scores",),
         description="alert packets in the ZTF v4.02 Avro schema, with gzipped FITS cutouts carrying their WCS",
         products=(Product("alert_packets", "One Avro file of alert packets per region and epoch (ZTF alert "
                                            "schema v4.02): magnitudes, rb score, science/template/difference "
                                            "cutouts.", ALR, ("avro",)),),
         checks=(Check("alerts_complete", "alert_packets", "one alert per candidate", _alerts_complete),)),
)

STEP_BY_NAME = {s.name: s for s in SKY_STEPS}
STEP_OF_ASSET = {p.key: s for s in SKY_STEPS for p in s.products}
SKY_ASSET_KEYS = tuple(p.key for s in SKY_STEPS for p in s.products)


def steps_for_assets(asset_keys) -> list[Step]:
    """The steps (in table order) that materialize any of ``asset_keys``."""
    wanted = set(asset_keys)
    return [s for s in SKY_STEPS if wanted & set(s.asset_keys)]


def code_version(step: Step, model_source: str = "shipped", trained_model: str = "deepcr") -> str:
    """The step's code version; the cosmic-ray and scoring steps' also name the model they read (the shipped
    weights' checksum, or the trained model the CR step depends on), so new weights re-run them and nothing
    else does."""
    if step.name == "scores":
        from astrid_pipeline.ml.realbogus.score import SHIPPED as RB_SHIPPED
        from astrid_pipeline.ml.weights_path import SHA_PREFIX, file_sha256

        sha = file_sha256(RB_SHIPPED)[:SHA_PREFIX] if RB_SHIPPED.exists() else "none"
        return f"{step.version}+rb-{sha}"
    if step.name != "cosmic_ray_mask":
        return step.version
    if model_source == "trained":
        return f"{step.version}+trained-{trained_model}"
    from astrid_pipeline.ml.weights_path import SHA_PREFIX, SHIPPED_WEIGHTS, file_sha256

    sha = file_sha256(SHIPPED_WEIGHTS)[:SHA_PREFIX] if SHIPPED_WEIGHTS.exists() else "none"
    return f"{step.version}+weights-{sha}"
