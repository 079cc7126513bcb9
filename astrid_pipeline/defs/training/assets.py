"""Training branch for 2-D cosmic-ray networks: simulated training set, one model per configuration, evaluation.

- ``cr_training_set``: simulated fields with CR hits (spots, tracks, worms,
  faint 3-8 sigma hits, saturated stars, sky augmentation) cut into patches,
  HDF5 with train / val / test (the test split from an unseen seed).
- ``cr_model``: partitioned by model configuration (deepCR-style,
  Cosmic-CoNN-style, their attention-gated variants, a small TransUNet);
  Adam, LR drop on a validation plateau, the best epoch by a validation
  detection metric; checkpoint, history JSON and the loss/metric plot.
- ``cr_model_evaluation``: every trained model and an L.A.Cosmic sigclip
  sweep on the test split: ROC/PR curves, TPR at 0.01 % and 0.1 % FPR,
  purity at 95 % TPR, F1/IoU/FDR, in the pixel and the dilated protocol.

Defaults are small (a model in well under a minute on 2 CPU cores); the
configs raise fields, epochs and width for real runs.
"""

import json

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    MaterializeResult,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
)
from pydantic import Field

from astrid_pipeline.defs._metadata import table_preview, thumbnail, to_metadata
from astrid_pipeline.defs.resources import StorageResource

GROUP = "cr_training"
OWNERS = ["team:ml"]

#: model configurations: name -> (architecture, attention)
CR_MODEL_CONFIGS = {
    "deepcr": ("deepcr", False),
    "att_deepcr": ("deepcr", True),
    "cosmicconn": ("cosmicconn", False),
    "att_cosmicconn": ("cosmicconn", True),
    "transunet": ("transunet", False),
}
cr_model_partitions = StaticPartitionsDefinition(list(CR_MODEL_CONFIGS))


def training_set_path(layout):
    return layout.root / "training" / "cr2d" / "training_set.h5"


def evaluation_dir(layout):
    return layout.root / "training" / "cr2d" / "evaluation"


class CRTrainingSetConfig(Config):
    image_size: int = Field(default=256, description="side of each simulated field (px)")
    patch: int = Field(default=64, description="training patch side (px)")
    n_train: int = Field(default=12, description="training fields (each gives (image_size/patch)^2 patches)")
    n_val: int = Field(default=2, description="validation fields")
    n_test: int = Field(default=2, description="test fields (from test_seed)")
    seed: int = Field(default=1, description="seed of the train and validation fields")
    test_seed: int = Field(default=9_000_001, description="seed of the test fields; never used for training")
    cr_density: float = Field(default=1200.0, description="hits per 10^6 px")
    faint_fraction: float = Field(default=0.35, description="share of hits at 3-8 sigma")
    dark_frames: list[str] = Field(default=[], description="optional FITS dark frames giving real hit shapes")


@asset(group_name=GROUP, kinds={"hdf5"}, owners=OWNERS,
       description="Simulated CR training set: patches (train/val) and full test fields from an unseen seed, HDF5.")
def cr_training_set(context: AssetExecutionContext, config: CRTrainingSetConfig, storage: StorageResource):
    from astrid_pipeline.science.cosmic_rays.dataset import build_training_set
    from astrid_pipeline.science.cosmic_rays.simulate import CRSimConfig

    cfg = CRSimConfig(image_size=config.image_size, patch=config.patch, n_train=config.n_train, n_val=config.n_val,
                      n_test=config.n_test, seed=config.seed, test_seed=config.test_seed,
                      cr_density=config.cr_density, faint_fraction=config.faint_fraction,
                      dark_frames=tuple(config.dark_frames))
    path = training_set_path(storage.layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    s = build_training_set(cfg, path)
    meta = {"path": path, "train_patches": s["train"]["patches"], "val_patches": s["val"]["patches"],
            "test_fields": s["test"]["fields"], "train_cr_pixel_fraction": s["train"]["cr_pixel_fraction"],
            "train_hits": s["train"]["hits"], "train_faint_hits": s["train"]["faint_hits"],
            "seed": cfg.seed, "test_seed": cfg.test_seed, "config": s["config"]}
    return MaterializeResult(metadata=to_metadata(meta))


class CRModelConfig(Config):
    hidden: int = Field(default=8, description="channels at full resolution (deepCR's published model: 32)")
    depth: int = Field(default=2, description="U-Net levels")
    epochs: int = Field(default=4, description="training epochs")
    batch_size: int = Field(default=16, description="patches per batch")
    lr: float = Field(default=2e-3, description="Adam learning rate")
    loss: str = Field(default="", description="bce, median_weighted_bce or dice_bce; empty = the architecture's default")
    seed: int = Field(default=0, description="weight init, batch order and augmentation seed")
    val_metric: str = Field(default="tpr_at_1e-3", description="validation metric that picks the best epoch")
    plateau_patience: int = Field(default=2, description="epochs without validation-loss gain before the LR drops")
    threads: int = Field(default=0, description="torch CPU threads (0 = default)")


@asset(deps=["cr_training_set"], partitions_def=cr_model_partitions, group_name=GROUP, kinds={"pytorch", "json"},
       owners=OWNERS, description="A trained 2-D CR network per model configuration: checkpoint, history and curves.")
def cr_model(context: AssetExecutionContext, config: CRModelConfig, storage: StorageResource):
    from astrid_pipeline.ml.models import ModelSpec
    from astrid_pipeline.ml.train import TrainConfig, train_model

    name = context.partition_key
    arch, att = CR_MODEL_CONFIGS[name]
    spec = ModelSpec(architecture=arch, hidden=config.hidden, depth=config.depth, attention=att)
    tc = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, loss=config.loss,
                     seed=config.seed, val_metric=config.val_metric, plateau_patience=config.plateau_patience,
                     threads=config.threads)
    out = storage.layout.model_dir(f"cr2d_{name}")
    s = train_model(spec, tc, training_set_path(storage.layout), out, log=context.log.info)
    last = s["history"][-1]
    best = s["history"][s["best_epoch"] - 1]
    meta = to_metadata({"checkpoint": out / "model.pt", "parameters": s["parameters"], "loss": s["loss"],
                        "best_epoch": s["best_epoch"], "val_metric": s["val_metric"],
                        "best_val_metric": s["best_val_metric"], "final_train_loss": last["train_loss"],
                        "best_val_tpr_at_1e-4": best["val_tpr_at_1e-4"],
                        "best_val_tpr_at_1e-3": best["val_tpr_at_1e-3"], "spec": s["spec"]})
    import pandas as pd

    meta["history"] = table_preview(pd.DataFrame(s["history"]), n=50)
    meta["training_curves"] = thumbnail(s["plot"], f"{name}: loss and validation metrics", path=s["plot"])
    return MaterializeResult(metadata=meta)


class CREvaluationConfig(Config):
    sigclips: list[float] = Field(default=[1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0],
                                  description="L.A.Cosmic sigclip sweep")
    operating_sigclip: float = Field(default=4.5, description="L.A.Cosmic operating point for F1/IoU/FDR")
    objlim: float = Field(default=5.0, description="L.A.Cosmic objlim (the paper uses 1.0)")
    sigfrac: float = Field(default=0.3, description="L.A.Cosmic sigfrac (the paper uses 0.1)")
    threshold: float = Field(default=0.5, description="network operating threshold")
    include_shipped: bool = Field(default=True, description="also evaluate the packaged weights")


@asset(deps=["cr_model", "cr_training_set"], group_name=GROUP, kinds={"json"}, owners=OWNERS,
       description="Trained CR models and an L.A.Cosmic sigclip sweep on the held-out test split: ROC/PR, TPR@FPR, purity, F1/IoU/FDR.")
def cr_model_evaluation(context: AssetExecutionContext, config: CREvaluationConfig, storage: StorageResource):
    import pandas as pd

    from astrid_pipeline.io.atomic import atomic_write_text
    from astrid_pipeline.ml.checkpoint import SHIPPED
    from astrid_pipeline.science.cosmic_rays.evaluate import evaluate_test_split

    layout = storage.layout
    cks = {}
    for name in CR_MODEL_CONFIGS:
        p = layout.model_dir(f"cr2d_{name}") / "model.pt"
        if p.exists():
            cks[name] = str(p)
    if config.include_shipped and SHIPPED.exists():
        cks["shipped"] = str(SHIPPED)
    out_dir = evaluation_dir(layout)
    res = evaluate_test_split(training_set_path(layout), cks, sigclips=tuple(config.sigclips),
                              operating_sigclip=config.operating_sigclip, sigfrac=config.sigfrac,
                              objlim=config.objlim, threshold=config.threshold, plot_dir=out_dir)
    atomic_write_text(out_dir / "evaluation.json", json.dumps(res, indent=1))
    df = pd.DataFrame(res["rows"])
    meta = to_metadata({"path": out_dir / "evaluation.json", "models": list(cks), "n_test_fields": res["n_test_fields"],
                        "cr_pixels": res["cr_pixels"]})
    meta["metrics"] = table_preview(df, n=50)
    for proto, p in res["plots"].items():
        meta[f"roc_pr_{proto}"] = thumbnail(p, f"ROC and PR ({proto} protocol)", path=p)
    return MaterializeResult(metadata=meta)


cr_training_set_job = define_asset_job(
    "cr_training_set_job", selection=AssetSelection.assets(cr_training_set),
    description="Simulate the CR training / validation / test patches.",
)
cr_training_job = define_asset_job(
    "cr_training_job", selection=AssetSelection.assets(cr_model),
    description="Train one CR model configuration (partition) on the materialized cr_training_set.",
)
cr_evaluation_job = define_asset_job(
    "cr_evaluation_job", selection=AssetSelection.assets(cr_model_evaluation),
    description="Evaluate every trained CR model and L.A.Cosmic on the test split.",
)
