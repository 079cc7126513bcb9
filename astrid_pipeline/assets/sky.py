"""Sky-branch assets, partitioned by sky region.

Each asset is thin: it calls one step of :mod:`astrid_pipeline.steps.sky`
(which calls the science code), and turns the result into metadata and
asset-check results. Products are files under the data root, so the assets
return ``MaterializeResult`` rather than passing arrays through an IO manager.
"""


from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from pydantic import Field

from astrid_pipeline.assets._meta import png_markdown, table_markdown, to_metadata
from astrid_pipeline.partitions import sky_region_partitions
from astrid_pipeline.resources.archives import RegionCatalogResource, SkyArchiveResource
from astrid_pipeline.resources.storage import StorageResource


def _steps():
    """The sky steps, imported on first use (numpy/astropy/pandas stay out of definition loading)."""
    from astrid_pipeline.steps import sky

    return sky

OWNERS = ["team:sky"]


class AlignmentConfig(Config):
    order: str = Field(default="bicubic", description="interpolation: bilinear, biquadratic or bicubic")
    refine: bool = Field(default=True, description="remove a residual offset measured on matched stars")
    max_residual_px: float = Field(default=0.2, description="asset check: largest acceptable residual offset")


class ZogyConfig(Config):
    source_noise: bool = Field(default=True, description="include source Poisson noise in S_corr")
    astrometric_noise: bool = Field(default=True, description="include registration noise in S_corr")
    max_noise_deviation: float = Field(default=0.1, description="asset check: |std(S_corr) - 1| allowed")


class CandidateConfig(Config):
    threshold: float = Field(default=5.0, description="|S_corr| peak needed for a candidate")
    min_completeness: float = Field(default=0.95, description="asset check: recovery of injected S/N >= 6")
    max_false_per_mpix: float = Field(default=1.0, description="asset check: clean false candidates per 10^6 px")


class TripletConfig(Config):
    size: int = Field(default=63, description="cutout side in pixels (ZTF alerts use 63)")
    difference: str = Field(default="zogy", description="difference plane: zogy (D) or classic")


@multi_asset(
    specs=[
        AssetSpec("science_image", description="Science epoch FITS as fetched from the archive (validated).",
                  group_name="sky_acquisition", kinds={"fits"}, owners=OWNERS),
        AssetSpec("reference_image", description="Reference epoch FITS as fetched from the archive (validated).",
                  group_name="sky_acquisition", kinds={"fits"}, owners=OWNERS),
        AssetSpec("transient_truth", description="Injected transients and cosmic rays (simulated survey only).",
                  group_name="sky_acquisition", kinds={"parquet"}, owners=OWNERS),
    ],
    partitions_def=sky_region_partitions,
    can_subset=False,
)
def sky_exposures(context: AssetExecutionContext, storage: StorageResource, archive: SkyArchiveResource,
                  regions: RegionCatalogResource):
    region = regions.region(context.partition_key)
    pair = archive.fetch_pair(region, cache_root=str(storage.layout.root / "archive_cache"))
    res = _steps().acquire(storage.layout, region.name, pair)
    common = {"region": region.name, "ra": region.ra, "dec": region.dec, **res.metadata}
    yield MaterializeResult(asset_key="science_image", metadata=to_metadata(
        {**common, "path": res.paths["science"], "source": pair.science_source}))
    yield MaterializeResult(asset_key="reference_image", metadata=to_metadata(
        {**common, "path": res.paths["reference"], "source": pair.reference_source}))
    truth_meta = {"region": region.name, "n_injected": res.metadata.get("n_injected", 0),
                  "n_cosmic_rays": res.metadata.get("n_cosmic_rays", 0),
                  "has_truth": "truth" in res.paths}
    if "truth" in res.paths:
        truth_meta["path"] = res.paths["truth"]
    yield MaterializeResult(asset_key="transient_truth", metadata=to_metadata(truth_meta))


@asset(
    deps=["science_image", "reference_image"],
    partitions_def=sky_region_partitions,
    group_name="sky_alignment",
    kinds={"fits"},
    owners=OWNERS,
    description="Reference resampled onto the science pixel grid by WCS, with the residual offset measured on matched stars.",
    check_specs=[AssetCheckSpec("alignment_residual", asset="aligned_reference",
                                description="matched-star offset after alignment is below 0.2 px")],
)
def aligned_reference(context: AssetExecutionContext, config: AlignmentConfig, storage: StorageResource):
    res = _steps().align(storage.layout, context.partition_key, order=config.order, refine=config.refine)
    q = res.metadata
    offset = float((q["residual_dx"] ** 2 + q["residual_dy"] ** 2) ** 0.5)
    passed = q["n_matched"] > 0 and offset < config.max_residual_px
    return MaterializeResult(
        metadata=to_metadata({**q, "residual_offset_px": offset, "path": res.paths["aligned_reference"]}),
        check_results=[AssetCheckResult(
            check_name="alignment_residual", passed=bool(passed), severity=AssetCheckSeverity.WARN,
            metadata=to_metadata({"residual_offset_px": offset, "residual_rms_px": q["residual_rms"],
                                  "n_matched": q["n_matched"], "limit_px": config.max_residual_px}))],
    )


@asset(
    # cosmic_ray_mask (assets/cosmic_rays.py): when its file exists, CR pixels are bad pixels from here on
    deps=["aligned_reference", "cosmic_ray_mask"],
    partitions_def=sky_region_partitions,
    group_name="sky_alignment",
    kinds={"fits"},
    owners=OWNERS,
    description="PSF of the science image and of the aligned reference (Moffat fits to isolated stars), with FWHM.",
)
def psf_models(context: AssetExecutionContext, storage: StorageResource):
    res = _steps().measure_psfs(storage.layout, context.partition_key)
    return MaterializeResult(metadata=to_metadata({**res.metadata, "path": res.paths["psf_models"]}))


@asset(
    deps=["psf_models"],
    partitions_def=sky_region_partitions,
    group_name="sky_alignment",
    kinds={"fits"},
    owners=OWNERS,
    description="Background-subtracted science and flux-matched reference (PSF photometry of matched stars).",
)
def normalized_images(context: AssetExecutionContext, storage: StorageResource):
    res = _steps().normalize(storage.layout, context.partition_key)
    return MaterializeResult(metadata=to_metadata({**res.metadata, "science_path": res.paths["science"],
                                                   "reference_path": res.paths["reference"]}))


@asset(
    deps=["normalized_images"],
    partitions_def=sky_region_partitions,
    group_name="sky_differencing",
    kinds={"fits"},
    owners=OWNERS,
    description="ZOGY difference: D, S, S_corr (source and astrometric noise), flux, and the PSF of D.",
    check_specs=[AssetCheckSpec("scorr_unit_variance", asset="zogy_difference",
                                description="robust std of S_corr within 10% of 1")],
)
def zogy_difference(context: AssetExecutionContext, config: ZogyConfig, storage: StorageResource):
    res = _steps().zogy(storage.layout, context.partition_key, config.source_noise, config.astrometric_noise)
    dev = abs(res.metadata["noise_S_corr"] - 1.0)
    return MaterializeResult(
        metadata=to_metadata({**res.metadata, "path": res.paths["zogy_difference"]}),
        check_results=[AssetCheckResult(
            check_name="scorr_unit_variance", passed=bool(dev <= config.max_noise_deviation),
            severity=AssetCheckSeverity.WARN,
            metadata=to_metadata({"noise_S_corr": res.metadata["noise_S_corr"], "noise_D": res.metadata["noise_D"],
                                  "allowed_deviation": config.max_noise_deviation}))],
    )


@asset(
    deps=["normalized_images"],
    partitions_def=sky_region_partitions,
    group_name="sky_differencing",
    kinds={"fits"},
    owners=OWNERS,
    description="Classic PSF-matched difference (the sharper image convolved to the other's PSF).",
)
def classic_difference(context: AssetExecutionContext, storage: StorageResource):
    res = _steps().classic(storage.layout, context.partition_key)
    return MaterializeResult(metadata=to_metadata({**res.metadata, "path": res.paths["classic_difference"]}))


@asset(
    deps=["zogy_difference", "classic_difference"],
    partitions_def=sky_region_partitions,
    group_name="sky_candidates",
    kinds={"parquet"},
    owners=OWNERS,
    description="Candidates on S_corr (both signs) with position, flux, S/N, shape and artifact flags.",
    check_specs=[AssetCheckSpec("injected_transient_recovery", asset="candidate_catalog",
                                description="simulated data: >=95% of injected S/N>=6 transients recovered, "
                                            "<=1 clean false candidate per 10^6 px")],
)
def candidate_catalog(context: AssetExecutionContext, config: CandidateConfig, storage: StorageResource):
    from astrid_pipeline.science.extraction import ExtractionConfig

    layout = storage.layout
    region = context.partition_key
    res = _steps().candidates(layout, region, ExtractionConfig(threshold=config.threshold))
    import pandas as pd

    cands = pd.read_parquet(res.paths["candidates"])
    thumb = _steps().difference_thumbnail(layout, region)
    meta = to_metadata({k: v for k, v in res.metadata.items()})
    meta["path"] = MetadataValue.path(str(res.paths["candidates"]))
    meta["dagster/row_count"] = MetadataValue.int(len(cands))
    meta["head"] = table_markdown(cands.head(10)[["candidate_id", "x", "y", "ra", "dec", "snr", "flux", "flags", "label"]])
    meta["s_corr_thumbnail"] = png_markdown(thumb, f"{region} S_corr with candidates")
    rec = res.metadata.get("recovery")
    if rec is None:
        check = AssetCheckResult(check_name="injected_transient_recovery", passed=True,
                                 metadata={"note": MetadataValue.text("real data: no truth table to compare with")})
    else:
        completeness = res.metadata["completeness_snr_ge_6"]
        fp_rate = res.metadata["false_per_mpix"]
        check = AssetCheckResult(
            check_name="injected_transient_recovery",
            passed=bool(completeness >= config.min_completeness and fp_rate <= config.max_false_per_mpix),
            severity=AssetCheckSeverity.WARN,
            metadata=to_metadata({"completeness_snr_ge_6": completeness, "false_per_mpix": fp_rate, **rec}),
        )
    return MaterializeResult(metadata=meta, check_results=[check])


@asset(
    deps=["candidate_catalog"],
    partitions_def=sky_region_partitions,
    group_name="sky_candidates",
    kinds={"hdf5"},
    owners=OWNERS,
    description="Science/reference/difference cutouts (N, 3, 63, 63) around each candidate, with a metadata table.",
)
def cutout_triplets(context: AssetExecutionContext, config: TripletConfig, storage: StorageResource):
    res = _steps().triplets(storage.layout, context.partition_key, size=config.size, difference=config.difference)
    meta = to_metadata({**res.metadata, "path": res.paths["triplets"]})
    if "preview" in res.paths:
        meta["preview"] = png_markdown(res.paths["preview"], "first triplets")
    return MaterializeResult(metadata=meta)


sky_assets = [sky_exposures, aligned_reference, psf_models, normalized_images, zogy_difference,
              classic_difference, candidate_catalog, cutout_triplets]
SKY_ASSET_KEYS = [AssetKey(k) for k in ("science_image", "reference_image", "transient_truth", "aligned_reference",
                                         "psf_models", "normalized_images", "zogy_difference", "classic_difference",
                                         "candidate_catalog", "cutout_triplets")]
