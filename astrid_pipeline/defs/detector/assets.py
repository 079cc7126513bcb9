"""Detector branch: H2RG up-the-ramp exposures (detector x exposure) and the 3D U-Net that helps read them.

- ``simulated_ramp``: an exposure simulated from a detector preset (HDF5, chunked by row blocks, with truth);
- ``ramp_anomaly_mask`` / ``ramp_events``: reference-pixel correction, rule-based jumps / RTN / snowballs
  merged with the 3D U-Net by the documented hybrid rule; class mask, features, ``prediction_mask.npy``,
  ohana's ``detections.json``, a JWST GROUPDQ for stcal, and the Parquet event catalog;
- ``ramp_training_set`` -> ``ramp_unet3d`` -> ``ramp_model_evaluation``: temporal patches, the seeded training
  (model selection by per-class IoU) and the held-out evaluation of rules, U-Net, hybrid and stcal.

Detectors and exposures are dynamic partitions declared by the simulation configuration files
(``detector_config_sensor`` and ``astrid run`` register them), so a config loaded at run time with other
detectors is not stuck behind partitions fixed at import. Every asset is a thin call into
:mod:`astrid_pipeline.ml.ramps.tasks`.
"""

import os

from dagster import (
    AddDynamicPartitionsRequest,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    multi_asset,
    sensor,
)

from astrid_pipeline.defs._config import config_class
from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline.ml.ramps.evaluate import EvaluationConfig
from astrid_pipeline.ml.ramps.tasks import RampDetectionSettings, RampSimulationSettings, RampTrainingSetSettings
from astrid_pipeline.ml.ramps.train import UNetTrainConfig

OWNERS = ["team:detector"]
GROUP, TRAINING = "detector", "detector_training"
DETECTORS, EXPOSURES = "ramp_detectors", "ramp_exposures"
detector_partitions = MultiPartitionsDefinition({"detector": DynamicPartitionsDefinition(name=DETECTORS),
                                                 "exposure": DynamicPartitionsDefinition(name=EXPOSURES)})
ON_CODE_CHANGE = AutomationCondition.code_version_changed() & ~AutomationCondition.in_progress()

RampSimulationConfig = config_class(RampSimulationSettings, name="RampSimulationConfig")
RampDetectionConfig = config_class(RampDetectionSettings, name="RampDetectionConfig")
RampTrainingSetConfig = config_class(RampTrainingSetSettings, name="RampTrainingSetConfig")
RampTrainConfig = config_class(UNetTrainConfig, name="RampTrainConfig")
RampEvaluationConfig = config_class(EvaluationConfig, name="RampEvaluationConfig")


def config_files() -> list[str]:
    """The simulation configuration files whose detectors and exposures are partitions."""
    from astrid_pipeline.presets import simulation_config_path

    env = os.environ.get("ASTRID_RAMP_CONFIG", "")
    return [str(simulation_config_path(p.strip() or None)) for p in env.split(os.pathsep)] if env else \
        [str(simulation_config_path(None))]


def register_exposures(instance) -> list[str]:
    """Register the configured detectors and exposures as partitions; returns every ``detector|exposure`` key."""
    from astrid_pipeline.ml.ramps.tasks import partition_keys

    keys = partition_keys(config_files())
    for dim, name in (("detector", DETECTORS), ("exposure", EXPOSURES)):
        new = [k for k in keys[dim] if not instance.has_dynamic_partition(name, k)]
        if new:
            instance.add_dynamic_partitions(name, new)
    return [f"{d}|{e}" for d in keys["detector"] for e in keys["exposure"]]


def _keys(context: AssetExecutionContext) -> tuple[str, str]:
    pk = context.partition_key
    d = pk.keys_by_dimension if isinstance(pk, MultiPartitionKey) else dict(zip(("detector", "exposure"), str(pk).split("|")))
    return d["detector"], d["exposure"]


def _sim_config(settings: RampSimulationSettings):
    from astrid_pipeline.presets import load_preset

    return load_preset(settings.preset or (config_files()[0] if os.environ.get("ASTRID_RAMP_CONFIG") else None),
                       **settings.overrides())


def _unet_version() -> str:
    from astrid_pipeline.ml.ramps import SHIPPED_WEIGHTS as SHIPPED_UNET
    from astrid_pipeline.ml.weights_path import SHA_PREFIX, file_sha256

    return "2+weights-" + (file_sha256(SHIPPED_UNET)[:SHA_PREFIX] if SHIPPED_UNET.exists() else "none")


@asset(partitions_def=detector_partitions, group_name=GROUP, kinds={"hdf5"}, owners=OWNERS, code_version="2",
       automation_condition=ON_CODE_CHANGE,
       description="Simulated H2RG up-the-ramp exposure from a detector preset (DN, HDF5 chunked by row blocks) with "
                   "its truth mask and events.")
def simulated_ramp(context: AssetExecutionContext, config: RampSimulationConfig, storage: StorageResource):
    from astrid_pipeline.defs._metadata import to_metadata
    from astrid_pipeline.instance import tag_worker
    from astrid_pipeline.ml.ramps.tasks import run_simulation
    from astrid_pipeline.science.ramps.simulate import exposure_index

    tag_worker(context)
    detector, exposure = _keys(context)
    cfg = _sim_config(config.to_settings())
    run = run_simulation(cfg, detector, exposure_index(exposure), storage.layout.detector_dir(detector, exposure) / "ramp.h5")
    return MaterializeResult(metadata=to_metadata(run.metadata))


@multi_asset(
    specs=[
        AssetSpec("ramp_anomaly_mask", deps=[AssetKey("simulated_ramp")], group_name=GROUP, kinds={"hdf5", "numpy"},
                  owners=OWNERS, partitions_def=detector_partitions, code_version=_unet_version(),
                  automation_condition=AutomationCondition.eager() | ON_CODE_CHANGE,
                  description="Per-pixel class mask (0 bg, 1 CR, 2 RTN, 3 snowball) of rules + 3D U-Net (hybrid), "
                              "temporal features and jumps (HDF5, prediction_mask.npy, a JWST GROUPDQ)."),
        AssetSpec("ramp_events", deps=[AssetKey("simulated_ramp")], group_name=GROUP, kinds={"parquet", "json"},
                  owners=OWNERS, partitions_def=detector_partitions, code_version=_unet_version(),
                  automation_condition=AutomationCondition.eager() | ON_CODE_CHANGE,
                  description="Event catalog (ohana's fields) as hive-partitioned Parquet, plus detections.json."),
    ],
    partitions_def=detector_partitions,
    can_subset=False,
)
def ramp_detections(context: AssetExecutionContext, config: RampDetectionConfig, storage: StorageResource):
    from astrid_pipeline.defs._metadata import column_schema, thumbnail, to_metadata
    from astrid_pipeline.instance import tag_worker
    from astrid_pipeline.io.parquet_io import partition_dir
    from astrid_pipeline.ml.ramps.tasks import run_detection
    from astrid_pipeline.science.ramps.outputs import events_schema

    tag_worker(context)
    settings = config.to_settings()
    detector, exposure = _keys(context)
    layout = storage.layout
    folder = layout.detector_dir(detector, exposure)
    events = partition_dir(layout.root, "ramp_events", {"detector": detector, "exposure": exposure}) / "part-0.parquet"
    model = _model_path(settings.model, layout)
    progress = lambda done, total: context.log.info(f"{detector}/{exposure}: row block {done}/{total}")  # noqa: E731
    run = run_detection(settings.detection, folder / "ramp.h5", folder, model_path=model, hybrid=settings.hybrid,
                        events_path=events, groupdq=settings.groupdq, title=f"{detector} / {exposure}",
                        attrs={"detector": detector, "exposure": exposure}, progress=progress)
    truth = _truth_scores(folder / "ramp.h5", run.result)
    for method, why in (run.result.skipped or {}).items():
        context.log.warning(f"{detector}/{exposure}: {method} skipped: {why}")
    common = {"detector": detector, "exposure": exposure, **{k: v for k, v in run.metadata.items()
                                                            if k in ("counts", "read_noise", "gain", "gain_source",
                                                                     "methods", "skipped", "n_groups", "rules_s",
                                                                     "unet_s")}, **truth}
    mask_md = to_metadata({**common, "path": run.paths["mask"],
                           "n_flagged_pixel_groups": run.metadata["n_flagged_pixel_groups"]})
    if "preview" in run.paths:
        mask_md["preview"] = thumbnail(run.paths["preview"], f"{detector} / {exposure}", path=run.paths["preview"])
    yield MaterializeResult(asset_key="ramp_anomaly_mask", metadata=mask_md)
    ev_md = to_metadata({**common, "path": run.paths["events"], "detections_json": run.paths["detections"],
                         "n_events": int(len(run.result.events["type"]))})
    ev_md["dagster/column_schema"] = column_schema(events_schema(run.result.unit))
    ev_md["dagster/row_count"] = to_metadata({"n": int(len(run.result.events["type"]))})["n"]
    yield MaterializeResult(asset_key="ramp_events", metadata=ev_md)


def _model_path(model: str, layout):
    from astrid_pipeline.ml.ramps import SHIPPED_WEIGHTS as SHIPPED_UNET

    if model == "none":
        return None
    if model == "shipped":
        return SHIPPED_UNET if SHIPPED_UNET.exists() else None
    if model == "trained":
        from astrid_pipeline.ml.ramps.train import CHECKPOINT_FILE

        return layout.model_dir("ramp_unet3d") / CHECKPOINT_FILE  # the training asset's checkpoint
    return model


def _truth_scores(ramp_path, result) -> dict:
    """Per-class pixel agreement with the simulation's truth mask, when the ramp has one."""
    import h5py

    from astrid_pipeline.science.ramps.metrics import class_scores
    from astrid_pipeline.science.ramps.refpix import science_mask

    with h5py.File(ramp_path, "r") as f:
        if "truth/class_mask" not in f:
            return {}
        truth = f["truth/class_mask"][()]
        refpix = tuple(int(v) for v in f.attrs.get("refpix", (4, 4, 4, 4)))
    scores = class_scores(result.mask, truth, science_mask(truth.shape, refpix))
    return {"truth_scores": {k: ({kk: vv for kk, vv in v.items() if kk != "recall_by_snr"} if isinstance(v, dict) else v)
                             for k, v in scores.items()}}


@asset(group_name=TRAINING, kinds={"hdf5"}, owners=OWNERS, code_version="2",
       description="Temporal patches (ohana's patch_size / overlap) of simulated exposures with the four classes "
                   "(background, cosmic ray, RTN, snowball), one HDF5 file per exposure index.")
def ramp_training_set(context: AssetExecutionContext, config: RampTrainingSetConfig, storage: StorageResource):
    from astrid_pipeline.defs._metadata import to_metadata
    from astrid_pipeline.ml.ramps.patches import build_training_set
    from astrid_pipeline.presets import load_preset

    s = config.to_settings()
    out = storage.layout.root / "training" / "ramp_unet3d" / "patches"
    res = build_training_set(load_preset(s.preset), s.start_index, s.end_index, out, t_max=s.t_max,
                             progress=context.log.info)
    return MaterializeResult(metadata=to_metadata({"path": out, **res.metadata}))


@asset(deps=["ramp_training_set"], group_name=TRAINING, kinds={"pytorch", "json"}, owners=OWNERS, code_version="2",
       description="The 3D U-Net trained on the patches (seeded; best epoch by mean per-class IoU), with history "
                   "and curves. Used by ramp_anomaly_mask only when its model setting is 'trained'.")
def ramp_unet3d(context: AssetExecutionContext, config: RampTrainConfig, storage: StorageResource):
    from astrid_pipeline.defs._metadata import thumbnail, to_metadata
    from astrid_pipeline.ml.ramps.train import train_unet

    data = storage.layout.root / "training" / "ramp_unet3d" / "patches"
    out = storage.layout.model_dir("ramp_unet3d")
    res = train_unet(config.to_settings(), data, out, log_fn=context.log.info)
    md = to_metadata({"checkpoint": res.model_path, "history": res.history_path,
                      **{k: v for k, v in res.metadata.items() if k != "history"}})
    plot = res.plot_path
    if plot:
        md["training_curves"] = thumbnail(plot, "3D U-Net: loss and per-class IoU", path=plot)
    return MaterializeResult(metadata=md)


@asset(deps=["ramp_unet3d"], group_name=TRAINING, kinds={"json"}, owners=OWNERS, code_version="2",
       description="Held-out evaluation per preset: per-class recall, precision and IoU per S/N bin for rules alone, "
                   "U-Net alone, the hybrid and stcal (jumps).")
def ramp_model_evaluation(context: AssetExecutionContext, config: RampEvaluationConfig, storage: StorageResource):
    from astrid_pipeline.defs._metadata import to_metadata
    from astrid_pipeline.ml.ramps.evaluate import evaluate_models
    from astrid_pipeline.presets import preset_names, simulation_config_path

    from astrid_pipeline.ml.ramps.train import CHECKPOINT_FILE

    model = storage.layout.model_dir("ramp_unet3d") / CHECKPOINT_FILE
    presets = {n: simulation_config_path(n) for n in preset_names() if n != "roman"}
    out = storage.layout.root / "training" / "ramp_unet3d" / "evaluation"
    res = evaluate_models(config.to_settings(), presets, model if model.exists() else None, out)
    return MaterializeResult(metadata=to_metadata({"path": res.json_path, "metrics": res.metrics}))


detector_job = define_asset_job("detector_job", selection=AssetSelection.assets(simulated_ramp, ramp_detections),
                                description="Simulate and analyse detector x exposure partitions (ramp, masks, events).")
ramp_training_job = define_asset_job("ramp_training_job",
                                     selection=AssetSelection.assets(ramp_training_set, ramp_unet3d, ramp_model_evaluation),
                                     description="Patches, 3D U-Net training and its held-out evaluation.")


@sensor(minimum_interval_seconds=120, default_status=DefaultSensorStatus.RUNNING,
        description="Registers the detectors and exposures of the simulation configuration files as partitions.")
def detector_config_sensor(context: SensorEvaluationContext):
    from astrid_pipeline.errors import AstridError
    from astrid_pipeline.io.safe_yaml import file_fingerprint
    from astrid_pipeline.ml.ramps.tasks import partition_keys

    files = config_files()
    # never blocks (a pipe) nor reads a huge file whole on every tick; a bad file is not re-parsed
    digest = "|".join(file_fingerprint(f) for f in files)
    if digest == context.cursor:
        return SkipReason("simulation configuration unchanged")
    try:
        keys = partition_keys(files)
    except AstridError as exc:
        context.log.error(f"simulation configuration is malformed, nothing registered: {exc}")
        return SensorResult(cursor=digest, skip_reason=SkipReason(f"MALFORMED simulation configuration: {exc}"[:1000]))
    requests = []
    for dim, name in (("detector", DETECTORS), ("exposure", EXPOSURES)):
        new = [k for k in keys[dim] if not context.instance.has_dynamic_partition(name, k)]
        if new:
            requests.append(AddDynamicPartitionsRequest(name, new))
    return SensorResult(cursor=digest, dynamic_partitions_requests=requests,
                        skip_reason=None if requests else SkipReason("no new detectors or exposures"))
