"""Detector-branch assets, partitioned by detector x exposure.

``simulated_ramp`` writes an H2RG up-the-ramp cube (HDF5, chunked by row
blocks across all frames) with its truth; ``ramp_anomaly_mask`` and
``ramp_events`` run reference-pixel correction and the cosmic-ray / RTN /
snowball detectors on it and write the class mask + features (HDF5), the
event catalog (Parquet) and ohana's ``detections.json``. The assets only
read inputs, call :mod:`astrid_pipeline.science.ramps` and attach metadata.
"""


from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    Config,
    MaterializeResult,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
    multi_asset,
)
from pydantic import Field

from astrid_pipeline.assets._meta import png_markdown, to_metadata
from astrid_pipeline.resources.storage import StorageResource
from astrid_pipeline.science.ramps.config import load_simulation_config

OWNERS = ["team:detector"]
GROUP = "detector"

_default_sim = load_simulation_config()

#: detector x exposure: detectors from the default config's gain library, exposures numbered "000", "001", ...
detector_partitions = MultiPartitionsDefinition(
    {
        "detector": StaticPartitionsDefinition(_default_sim.detectors),
        "exposure": StaticPartitionsDefinition(_default_sim.exposure_keys),
    }
)


class RampSimulationConfig(Config):
    config_path: str = Field(default="", description="YAML with ohana's creator-config keys; empty = the packaged default")
    image_shape: list[int] = Field(default=[], description="override [rows, cols], e.g. [2048, 2048] for full frames")
    num_frames: int = Field(default=0, description="override the number of reads (0 = from the YAML)")
    seed: int = Field(default=-1, description="override the seed (-1 = from the YAML)")


class RampDetectionConfig(Config):
    sigma_threshold: float = Field(default=4.0, description="one-sided jump threshold in sigma of a group difference")
    methods: list[str] = Field(default=["jumps", "rtn", "snowballs"], description="detectors to run")
    workers: int = Field(default=1, description="threads over row blocks")
    block_rows: int = Field(default=0, description="rows per block (0 = about 64 MB of float32 per block)")
    read_noise_dn: float = Field(default=0.0, description="per-read noise in DN (0 = estimated from the ramp)")


def _keys(context: AssetExecutionContext):
    pk = context.partition_key
    if isinstance(pk, MultiPartitionKey):
        d = pk.keys_by_dimension
    else:  # the string form "detector|exposure" (dimensions in name order)
        d = dict(zip(("detector", "exposure"), str(pk).split("|")))
    return d["detector"], d["exposure"]


def _sim_config(config: RampSimulationConfig):
    overrides = {}
    if config.image_shape:
        overrides["image_shape"] = list(config.image_shape)
    if config.num_frames:
        overrides["num_frames"] = config.num_frames
    if config.seed >= 0:
        overrides["seed"] = config.seed
    return load_simulation_config(config.config_path or None, **overrides)


@asset(
    partitions_def=detector_partitions,
    group_name=GROUP,
    kinds={"hdf5"},
    owners=OWNERS,
    description="Simulated H2RG up-the-ramp exposure (DN, HDF5 chunked by row blocks) with its truth mask and events.",
)
def simulated_ramp(context: AssetExecutionContext, config: RampSimulationConfig, storage: StorageResource):
    from astrid_pipeline.science.ramps.simulate import exposure_index, simulate_exposure

    detector, exposure = _keys(context)
    cfg = _sim_config(config)
    path = storage.layout.detector_dir(detector, exposure) / "ramp.h5"
    plan = simulate_exposure(cfg, detector, exposure_index(exposure), path)
    counts = {k: int((plan.events["type"] == k).sum()) for k in ("cosmic_ray", "telegraph_noise", "snowball")}
    return MaterializeResult(metadata=to_metadata({
        "path": path,
        "detector": detector,
        "exposure": exposure,
        "shape": [cfg.num_frames, *cfg.image_shape],
        "gain_e_per_dn": plan.gain,
        "read_noise_e": round(plan.read_noise_e, 3),
        "noise_per_read_dn": round(plan.noise_dn, 3),
        "has_events": plan.has_events,
        "injected": counts,
        "size_mb": round(path.stat().st_size / 1e6, 2),
    }))


@multi_asset(
    specs=[
        AssetSpec("ramp_anomaly_mask", deps=[AssetKey("simulated_ramp")], group_name=GROUP, kinds={"hdf5"},
                  owners=OWNERS, partitions_def=detector_partitions,
                  description="Per-pixel class mask (0 bg, 1 CR, 2 RTN, 3 snowball), temporal features and jumps (HDF5)."),
        AssetSpec("ramp_events", deps=[AssetKey("simulated_ramp")], group_name=GROUP, kinds={"parquet"},
                  owners=OWNERS, partitions_def=detector_partitions,
                  description="Event catalog (ohana's fields) as hive-partitioned Parquet, plus detections.json."),
    ],
    partitions_def=detector_partitions,
    can_subset=False,
)
def ramp_detections(context: AssetExecutionContext, config: RampDetectionConfig, storage: StorageResource):
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.outputs import write_products
    from astrid_pipeline.science.ramps.readers import open_ramp

    detector, exposure = _keys(context)
    layout = storage.layout
    ramp_path = layout.detector_dir(detector, exposure) / "ramp.h5"
    dcfg = DetectionConfig(
        sigma_threshold=config.sigma_threshold, methods=tuple(config.methods), workers=config.workers,
        block_rows=config.block_rows, read_noise_dn=config.read_noise_dn or None,
    )
    with open_ramp(ramp_path) as src:
        result = detect_ramp(src, dcfg)
        truth = _truth_scores(ramp_path, result, src)
    paths = write_products(result, layout, detector, exposure, attrs={"ramp": str(ramp_path)})
    common = {"detector": detector, "exposure": exposure, "counts": result.counts(),
              "read_noise_dn": round(result.read_noise, 3), **truth}
    mask_meta = to_metadata({**common, "path": paths["mask"], "n_flagged_pixel_groups": int(len(result.jumps["y"]))})
    mask_meta["preview"] = png_markdown(paths["preview"], f"{detector} / {exposure}")
    yield MaterializeResult(asset_key="ramp_anomaly_mask", metadata=mask_meta)
    yield MaterializeResult(asset_key="ramp_events", metadata=to_metadata({
        **common, "path": paths["events"], "detections_json": paths["detections"],
        "n_events": int(len(result.events["type"])),
    }))


def _truth_scores(ramp_path, result, src) -> dict:
    """Pixel-level agreement with the simulation's truth mask, when the ramp has one."""
    import h5py

    from astrid_pipeline.science.ramps.refpix import science_mask

    with h5py.File(ramp_path, "r") as f:
        if "truth/class_mask" not in f:
            return {}
        truth = f["truth/class_mask"][()]
    sci = science_mask(truth.shape, src.refpix)
    out = {}
    for name, code in (("cosmic_ray", 1), ("telegraph_noise", 2), ("snowball", 3)):
        t = (truth == code) & sci
        d = (result.mask == code) & sci
        out[f"truth_{name}_pixels"] = int(t.sum())
        out[f"pixel_recall_{name}"] = round(float((t & d).sum() / t.sum()), 4) if t.any() else None
        out[f"pixel_precision_{name}"] = round(float((t & d).sum() / d.sum()), 4) if d.any() else None
    out["pixel_false_anomaly_rate"] = float(((result.mask > 0) & (truth == 0) & sci).sum() / max(int(sci.sum()), 1))
    return out


detector_assets = [simulated_ramp, ramp_detections]

detector_job = define_asset_job(
    "detector_job",
    selection=AssetSelection.assets(simulated_ramp, ramp_detections),
    description="Simulate and analyse one detector x exposure partition (ramp, masks, events).",
)
