"""Single-image cosmic-ray masks of the sky branch's science images, partitioned by sky region.

The mask comes from a trained 2-D network when one is available (the
checkpoint in the config, else the ``cr_model`` asset's checkpoint for
``model``, else the weights shipped in ``astrid_pipeline/ml/weights``
unless ``use_shipped_weights`` is off), otherwise from L.A.Cosmic
(astroscrappy). The sky steps after it treat the masked pixels as bad, so
cosmic rays do not become difference-image candidates.
"""

from dagster import AssetExecutionContext, Config, MaterializeResult, asset
from pydantic import Field

from astrid_pipeline.assets._meta import to_metadata
from astrid_pipeline.partitions import sky_region_partitions
from astrid_pipeline.resources.storage import StorageResource
from astrid_pipeline.steps import sky as steps

OWNERS = ["team:sky"]


class CosmicRayMaskConfig(Config):
    method: str = Field(default="auto", description="auto (a model if one is available, else L.A.Cosmic), model or lacosmic")
    checkpoint: str = Field(default="", description="model checkpoint (.pt); empty = the trained cr_model, then shipped weights")
    model: str = Field(default="deepcr", description="cr_model partition whose checkpoint to use when checkpoint is empty")
    use_shipped_weights: bool = Field(default=True, description="fall back to the packaged weights before L.A.Cosmic")
    threshold: float = Field(default=0.5, description="probability above which a pixel is a CR (model)")
    sigclip: float = Field(default=4.5, description="L.A.Cosmic sigclip (when L.A.Cosmic is used)")
    objlim: float = Field(default=5.0, description="L.A.Cosmic objlim")
    sigfrac: float = Field(default=0.3, description="L.A.Cosmic sigfrac")


def resolve_checkpoint(layout, config: CosmicRayMaskConfig) -> str | None:
    return steps.default_cr_checkpoint(layout, config.model, config.checkpoint, config.use_shipped_weights)


@asset(
    deps=["science_image"],
    partitions_def=sky_region_partitions,
    group_name="sky_cosmic_rays",
    kinds={"fits", "pytorch"},
    owners=OWNERS,
    description="Cosmic-ray mask of the science image (trained 2-D network, or L.A.Cosmic when none is trained).",
)
def cosmic_ray_mask(context: AssetExecutionContext, config: CosmicRayMaskConfig, storage: StorageResource):
    layout = storage.layout
    ck = resolve_checkpoint(layout, config) if config.method != "lacosmic" else None
    method = config.method if config.method != "auto" else ("model" if ck else "lacosmic")
    res = steps.cosmic_ray_mask(layout, context.partition_key, checkpoint=ck, method=method,
                                threshold=config.threshold, sigclip=config.sigclip, objlim=config.objlim,
                                sigfrac=config.sigfrac)
    return MaterializeResult(metadata=to_metadata({**res.metadata, "checkpoint": ck or "none",
                                                   "path": res.paths["cosmic_ray_mask"]}))


cosmic_ray_assets = [cosmic_ray_mask]
