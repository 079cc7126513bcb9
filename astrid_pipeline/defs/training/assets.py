"""Training branch: the models the pipeline ships, each reproducible from an asset with its metrics.

2-D cosmic-ray networks (group ``cr_training``):

- ``cr_training_set``: simulated fields with CR hits (spots, tracks, worms, faint 3-8 sigma hits,
  saturated stars, sky augmentation) cut into patches; HDF5 with train / val / test (the test split
  from an unseen seed).
- ``cr_model``: one partition per model family (deepCR, Cosmic-CoNN, their attention-gated variants,
  a small TransUNet: :data:`astrid_pipeline.science.cosmic_rays.family.FAMILY`); Adam, LR drop on a
  validation plateau, the best epoch by a validation detection metric, an optional CPU-time budget
  and resumption; checkpoint, history and the loss/metric plot.
- ``cr_model_evaluation``: every trained model, the shipped weights and an L.A.Cosmic sigclip sweep
  on the test split: ROC/PR, TPR at 0.01 % and 0.1 % FPR, purity at 95 % TPR, F1/IoU/FDR.

Real/bogus classifier of the cutout triplets (group ``realbogus_training``):

- ``triplet_training_set``: many small simulated regions run through the sky branch, perturbed the
  way real data go wrong, every candidate's triplet labelled real (by truth type) or bogus (by cause),
  split by region.
- ``realbogus_model``: the CNN trained on it (seeded; history and curves in metadata).
- ``realbogus_evaluation``: the trained and the shipped model on a triplet set from a seed the
  training never saw: ROC and PR, FPR at 95 % TPR, FNR at 1 % FPR, per-type recall, calibration.

A model trained here never replaces the one the sky branch uses by itself: the cosmic-ray step reads
the shipped weights unless ``ASTRID_CR_MODEL_SOURCE=trained``, and the scoring step reads the shipped
real/bogus weights unless its ``model`` setting names a checkpoint.

Every setting is the science code's dataclass (:func:`~astrid_pipeline.defs._config.config_class`);
the defaults here are small (each asset in about a minute on 2 CPU cores), the launchpad raises them.
"""


import json

import dagster as dg

from astrid_pipeline.defs._config import config_class
from astrid_pipeline.defs._metadata import table_preview, thumbnail, to_metadata
from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline.ml.realbogus.train import RBTrainConfig
from astrid_pipeline.ml.train import TrainConfig
from astrid_pipeline.science.cosmic_rays.family import FAMILY
from astrid_pipeline.science.cosmic_rays.simulate import CRSimConfig
from astrid_pipeline.sky.triplet_set import TripletSetConfig

CR_GROUP, RB_GROUP = "cr_training", "realbogus_training"
OWNERS = ["team:ml"]
#: bump when the asset code changes what it writes (the science code's versions are in its outputs)
VERSION = "2"

cr_model_partitions = dg.StaticPartitionsDefinition(list(FAMILY))

CRTrainingSetConfig = config_class(
    CRSimConfig, name="CRTrainingSetConfig",
    defaults=CRSimConfig(image_size=256, patch=64, n_train=12, n_val=2, n_test=2))
CRModelConfig = config_class(TrainConfig, name="CRModelConfig", defaults=TrainConfig(epochs=4, batch_size=16))
TripletTrainingSetConfig = config_class(
    TripletSetConfig, name="TripletTrainingSetConfig",
    defaults=TripletSetConfig(n_regions=8, seed=1, val_fraction=0.25, test_fraction=0.0))
RealBogusModelConfig = config_class(RBTrainConfig, name="RealBogusModelConfig",
                                    defaults=RBTrainConfig(epochs=3, threads=1))


class CREvaluationConfig(dg.Config):
    """The L.A.Cosmic sweep and the operating points of the comparison."""

    sigclips: list[float] = [1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0]
    operating_sigclip: float = 4.5
    objlim: float = 5.0
    sigfrac: float = 0.3
    threshold: float = 0.5
    include_shipped: bool = True


RealBogusTestSetConfig = config_class(
    TripletSetConfig, name="RealBogusTestSetConfig",
    defaults=TripletSetConfig(n_regions=4, seed=1001, val_fraction=0.0, test_fraction=1.0))


class RealBogusEvaluationConfig(dg.Config):
    """The unseen-seed test set the models are judged on."""

    test_set: RealBogusTestSetConfig = RealBogusTestSetConfig()  # type: ignore[valid-type]
    include_shipped: bool = True
    exclude_near_real_px: float = 8.0


def training_set_path(layout):
    return layout.root / "training" / "cr2d" / "training_set.h5"


def evaluation_dir(layout):
    return layout.root / "training" / "cr2d" / "evaluation"


def triplet_set_path(layout, name: str = "train"):
    return layout.root / "training" / "realbogus" / f"{name}_set.h5"


def realbogus_dir(layout):
    return layout.model_dir("realbogus")


# --------------------------------------------------------------------------- cosmic rays
@dg.asset(group_name=CR_GROUP, kinds={"hdf5"}, owners=OWNERS, code_version=VERSION,
          description="Simulated CR training set: patches (train/val) and full test fields from an unseen seed, HDF5.")
def cr_training_set(context: dg.AssetExecutionContext, config: CRTrainingSetConfig, storage: StorageResource):
    from astrid_pipeline.science.cosmic_rays.dataset import build_training_set

    cfg = config.to_settings()
    path = training_set_path(storage.layout)
    s = build_training_set(cfg, path)
    return dg.MaterializeResult(metadata=to_metadata({
        "path": path, "train_patches": s["train"]["patches"], "val_patches": s["val"]["patches"],
        "test_fields": s["test"]["fields"], "train_cr_pixel_fraction": s["train"]["cr_pixel_fraction"],
        "train_hits": s["train"]["hits"], "train_faint_hits": s["train"]["faint_hits"],
        "seed": cfg.seed, "test_seed": cfg.test_seed, "config": s["config"]}))


@dg.asset(deps=["cr_training_set"], partitions_def=cr_model_partitions, group_name=CR_GROUP,
          kinds={"pytorch", "json"}, owners=OWNERS, code_version=VERSION,
          description="A trained 2-D CR network per model family: checkpoint, history and curves.")
def cr_model(context: dg.AssetExecutionContext, config: CRModelConfig, storage: StorageResource):
    import pandas as pd

    from astrid_pipeline.ml.train import train_model

    name = context.partition_key
    spec = FAMILY[name]
    out = storage.layout.model_dir(f"cr2d_{name}")
    s = train_model(spec, config.to_settings(), training_set_path(storage.layout), out, log=context.log.info)
    last = s["history"][-1]
    best = s["history"][s["best_epoch"] - 1]
    meta = to_metadata({"checkpoint": out / "model.pt", "parameters": s["parameters"], "loss": s["loss"],
                        "best_epoch": s["best_epoch"], "val_metric": s["val_metric"],
                        "best_val_metric": s["best_val_metric"], "final_train_loss": last["train_loss"],
                        "best_val_tpr_at_1e-4": best["val_tpr_at_1e-4"],
                        "best_val_tpr_at_1e-3": best["val_tpr_at_1e-3"], "spec": s["spec"]})
    meta["history"] = table_preview(pd.DataFrame(s["history"]), n=50)
    meta["training_curves"] = thumbnail(s["plot"], f"{name}: loss and validation metrics", path=s["plot"])
    return dg.MaterializeResult(metadata=meta)


@dg.asset(deps=["cr_model", "cr_training_set"], group_name=CR_GROUP, kinds={"json"}, owners=OWNERS,
          code_version=VERSION,
          description="Trained CR models, the shipped weights and an L.A.Cosmic sigclip sweep on the held-out "
                      "test split: ROC/PR, TPR@FPR, purity, F1/IoU/FDR.")
def cr_model_evaluation(context: dg.AssetExecutionContext, config: CREvaluationConfig, storage: StorageResource):
    import pandas as pd

    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.checkpoint import SHIPPED
    from astrid_pipeline.science.cosmic_rays.evaluate import evaluate_test_split

    layout = storage.layout
    cks = {name: str(p) for name in FAMILY if (p := layout.model_dir(f"cr2d_{name}") / "model.pt").exists()}
    if config.include_shipped and SHIPPED.exists():
        cks["shipped"] = str(SHIPPED)
    out_dir = evaluation_dir(layout)
    res = evaluate_test_split(training_set_path(layout), cks, sigclips=tuple(config.sigclips),
                              operating_sigclip=config.operating_sigclip, sigfrac=config.sigfrac,
                              objlim=config.objlim, threshold=config.threshold, plot_dir=out_dir)
    atomic_write_text(out_dir / "evaluation.json", json.dumps(res, indent=1))
    meta = to_metadata({"path": out_dir / "evaluation.json", "models": list(cks),
                        "n_test_fields": res["n_test_fields"], "cr_pixels": res["cr_pixels"]})
    meta["metrics"] = table_preview(pd.DataFrame(res["rows"]), n=50)
    for proto, p in res["plots"].items():
        meta[f"roc_pr_{proto}"] = thumbnail(p, f"ROC and PR ({proto} protocol)", path=p)
    return dg.MaterializeResult(metadata=meta)


# --------------------------------------------------------------------------- real/bogus
def _set_metadata(meta: dict, path) -> dict:
    splits = meta.get("splits", {})
    rows = [{"split": sp, "n": v["n"], "real": v["real"], "bogus": v["bogus"], "regions": v["regions"]}
            for sp, v in splits.items()]
    types = sorted({t for v in splits.values() for t in v["types"]})
    type_rows = [{"type": t, **{sp: v["types"].get(t, 0) for sp, v in splits.items()}} for t in types]
    import pandas as pd

    out = to_metadata({"path": path, "n_triplets": meta["n_triplets"], "n_real": meta["n_real"],
                       "n_bogus": meta["n_bogus"], "real_fraction": meta["real_fraction"],
                       "n_regions": meta["n_regions"], "perturbations": meta["perturbations"],
                       "seconds": meta["seconds"]})
    out["splits"] = table_preview(pd.DataFrame(rows), n=10)
    out["types"] = table_preview(pd.DataFrame(type_rows), n=20)
    return out


@dg.asset(group_name=RB_GROUP, kinds={"hdf5"}, owners=OWNERS, code_version=VERSION,
          description="Real/bogus training set: science/reference/difference triplets of every candidate of many "
                      "small simulated, perturbed regions, labelled by truth type or bogus cause, split by region.")
def triplet_training_set(context: dg.AssetExecutionContext, config: TripletTrainingSetConfig,
                         storage: StorageResource):
    from astrid_pipeline.sky.triplet_set import build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    path = triplet_set_path(storage.layout)
    meta = build_triplet_training_set(config.to_settings(), path, run_sky_chain, log=context.log.info)
    return dg.MaterializeResult(metadata=_set_metadata(meta, path))


@dg.asset(deps=["triplet_training_set"], group_name=RB_GROUP, kinds={"pytorch", "json"}, owners=OWNERS,
          code_version=VERSION,
          description="The real/bogus CNN (score and real-type probabilities of a 3x63x63 triplet) trained on the "
                      "triplet set: checkpoint with its operating threshold, history and curves.")
def realbogus_model(context: dg.AssetExecutionContext, config: RealBogusModelConfig, storage: StorageResource):
    import pandas as pd

    from astrid_pipeline.ml.realbogus.train import train_realbogus

    out = realbogus_dir(storage.layout)
    s = train_realbogus(triplet_set_path(storage.layout), out, config.to_settings(), log=context.log.info)
    meta = to_metadata({"checkpoint": s["checkpoint"], "parameters": s["parameters"], "best_epoch": s["best_epoch"],
                        "best_val_fpr_at_95tpr": s["best_val_fpr_at_95tpr"], "best_val_auc": s["best_val_auc"],
                        "threshold": s["threshold"], "epochs_done": s["epochs_done"], "cpu_s": s["cpu_s"],
                        "n_train": s["n_train"], "n_val": s["n_val"], "train_config": s["train_config"]})
    meta["history"] = table_preview(pd.DataFrame(s["history"]), n=50)
    meta["training_curves"] = thumbnail(s["plot"], "real/bogus: loss and validation metrics", path=s["plot"])
    return dg.MaterializeResult(metadata=meta)


@dg.asset(deps=["realbogus_model"], group_name=RB_GROUP, kinds={"json"}, owners=OWNERS, code_version=VERSION,
          description="The trained and the shipped real/bogus models on triplets from a seed the training never "
                      "saw: AUC, FPR at 95 % TPR, FNR at 1 % FPR, per-type recall, confusion, calibration.")
def realbogus_evaluation(context: dg.AssetExecutionContext, config: RealBogusEvaluationConfig,
                         storage: StorageResource):
    import pandas as pd

    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.realbogus.dataset import load_triplet_set
    from astrid_pipeline.ml.realbogus.evaluate import evaluate_realbogus
    from astrid_pipeline.ml.realbogus.score import SHIPPED
    from astrid_pipeline.sky.triplet_set import build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    layout = storage.layout
    test_cfg = config.test_set.to_settings()
    train_seed = json.loads(_attr(triplet_set_path(layout), "config_json") or "{}").get("seed")
    if train_seed is not None and int(train_seed) == test_cfg.seed:
        raise dg.Failure(f"the test set's seed {test_cfg.seed} is the training set's: evaluate on an unseen seed")
    path = triplet_set_path(layout, f"test_seed{test_cfg.seed}")
    build_triplet_training_set(test_cfg, path, run_sky_chain, log=context.log.info)
    x, table = load_triplet_set(path, exclude_near_real_px=config.exclude_near_real_px)
    models = {"trained": realbogus_dir(layout) / "realbogus.pt"}
    if config.include_shipped:
        models["shipped"] = SHIPPED
    rows, plots, results = [], {}, {}
    for name, ck in models.items():
        if not ck.exists():
            context.log.warning(f"real/bogus model {name!r}: no checkpoint at {ck}; not evaluated")
            continue
        ev = evaluate_realbogus(str(ck), x, table, plot_dir=layout.root / "training" / "realbogus" / f"eval_{name}")
        results[name] = {k: v for k, v in ev.items() if k not in ("roc",)}
        rows.append({"model": name, "auc": ev["auc"], "fpr_at_95tpr": ev["fpr_at_95tpr"],
                     "fnr_at_1fpr": ev["fnr_at_1fpr"], "threshold": ev["threshold"],
                     "tpr_at_threshold": ev["tpr_at_threshold"], "fpr_at_threshold": ev["fpr_at_threshold"],
                     "type_accuracy": ev["type_accuracy"], "seconds_per_1000": ev["seconds_per_1000"]})
        plots.update({f"{name}_{k}": v for k, v in ev.get("plots", {}).items()})
    out = layout.root / "training" / "realbogus" / "evaluation.json"
    atomic_write_text(out, json.dumps({"test_set": str(path), "n": int(len(table)), "models": results}, indent=1,
                                      default=str))
    meta = to_metadata({"path": out, "n_test_triplets": int(len(table)), "test_seed": test_cfg.seed,
                        "n_real": int((table["label"] == 1).sum())})
    meta["metrics"] = table_preview(pd.DataFrame(rows), n=10)
    if results:
        first = next(iter(results.values()))
        meta["per_type"] = table_preview(pd.DataFrame([{"type": t, **v} for t, v in first["per_type"].items()]), n=20)
    for k, p in plots.items():
        meta[f"plot_{k}"] = thumbnail(p, f"{k}: ROC, PR, calibration", path=p)
    return dg.MaterializeResult(metadata=meta)


def _attr(path, name: str) -> str | None:
    import h5py

    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        v = f.attrs.get(name)
    return v.decode() if isinstance(v, bytes) else (str(v) if v is not None else None)


cr_training_set_job = dg.define_asset_job(
    "cr_training_set_job", selection=dg.AssetSelection.assets(cr_training_set),
    description="Simulate the CR training / validation / test patches.")
cr_training_job = dg.define_asset_job(
    "cr_training_job", selection=dg.AssetSelection.assets(cr_model),
    description="Train one CR model family (partition) on the materialized cr_training_set.")
cr_evaluation_job = dg.define_asset_job(
    "cr_evaluation_job", selection=dg.AssetSelection.assets(cr_model_evaluation),
    description="Evaluate every trained CR model, the shipped weights and L.A.Cosmic on the test split.")
realbogus_training_job = dg.define_asset_job(
    "realbogus_training_job",
    selection=dg.AssetSelection.assets(triplet_training_set, realbogus_model, realbogus_evaluation),
    description="Build the triplet set, train the real/bogus CNN and evaluate it (and the shipped weights) on an "
                "unseen seed.")
