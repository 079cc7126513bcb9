"""M.M.Cosmic: multi-exposure cosmic-ray masks, one dynamic partition per stack of the stacks file.

A stack is a group of equivalent exposures defined in configuration (the packaged stacks file, or the one
named by ``$ASTRID_MMCOSMIC_STACKS`` or the run config): FITS files, or a seeded simulated stack. The asset
calls :func:`astrid_pipeline.science.mmcosmic.stacks.run_stack`, which writes numina-crmasks' files under
``<data root>/mmcosmic/<stack>/`` (the folder replaced as one step). ``mmcosmic_stacks_sensor`` registers the
stacks of the file as partitions when it changes; ``astrid run`` does the same.
"""

from dagster import (
    AddDynamicPartitionsRequest,
    AssetExecutionContext,
    AssetSelection,
    AutomationCondition,
    DefaultSensorStatus,
    DynamicPartitionsDefinition,
    MaterializeResult,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    sensor,
)

from astrid_pipeline.defs._config import config_class
from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline.science.mmcosmic.stacks import StackRunSettings

STACKS = "mmcosmic_stacks"
stack_partitions = DynamicPartitionsDefinition(name=STACKS)
MMCosmicConfig = config_class(StackRunSettings, name="MMCosmicConfig")


@asset(
    partitions_def=stack_partitions,
    group_name="cosmic_rays",
    kinds={"numpy", "fits"},
    owners=["team:cosmic-rays"],
    code_version="2",
    automation_condition=AutomationCondition.code_version_changed() & ~AutomationCondition.in_progress(),
    description="Cosmic rays hitting the same pixel in several exposures (M.M.Cosmic): numina-crmasks' "
                "FITS/CSV/PNG products, with the combined images' variance and WCS.",
)
def mmcosmic_crmasks(context: AssetExecutionContext, config: MMCosmicConfig, storage: StorageResource):
    from astrid_pipeline.defs._metadata import thumbnail, to_metadata
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.instance import tag_worker
    from astrid_pipeline.layout import safe_key
    from astrid_pipeline.science.mmcosmic.stacks import default_stacks_path, load_stacks, run_stack

    tag_worker(context)
    settings = config.to_settings()
    stack = context.partition_key
    path = settings.stacks_path or default_stacks_path()
    specs = load_stacks(path)
    if stack not in specs:
        raise ConfigError(f"stack {stack!r} is not defined in {path} (stacks there: {', '.join(specs) or 'none'})")
    folder = storage.layout.root / "mmcosmic" / safe_key(stack)
    summary, values = run_stack(specs[stack], folder, settings)
    seeing = summary.seeing or {}
    if seeing.get("warning"):
        context.log.warning(f"stack {stack}: {seeing['warning']}")
    md = to_metadata({"path": folder, **{k: v for k, v in values.items() if k != "seeing"},
                      "seeing_fwhm_px": seeing.get("fwhm"), "seeing_variation": seeing.get("variation"),
                      "seeing_warning": seeing.get("warning", "")})
    png = folder / "diagnostic_histogram2d.png"
    if png.exists():
        md["diagnostic_diagram"] = thumbnail(png, "MM diagnostic diagram", path=png)
    context.log.info(f"stack {stack}: MEDIANCR {summary.counts.get('mediancr_pixels')} px ({values['crmethod']}), "
                     f"{len(summary.files)} files in {folder}")
    return MaterializeResult(metadata=md)


mmcosmic_job = define_asset_job("mmcosmic_job", selection=AssetSelection.assets(mmcosmic_crmasks),
                                description="Multi-exposure cosmic-ray masks (M.M.Cosmic) for stacks.")


def register_stacks(instance, path=None) -> list[str]:
    """Register the stacks of the stacks file as partitions; returns the new ones."""
    from astrid_pipeline.science.mmcosmic.stacks import load_stacks

    names = list(load_stacks(path))
    new = [n for n in names if not instance.has_dynamic_partition(STACKS, n)]
    if new:
        instance.add_dynamic_partitions(STACKS, new)
    return new


@sensor(minimum_interval_seconds=120, default_status=DefaultSensorStatus.RUNNING,
        description="Registers the stacks of the stacks file as mmcosmic_stacks partitions when the file changes.")
def mmcosmic_stacks_sensor(context: SensorEvaluationContext):
    from astrid_pipeline.errors import AstridError
    from astrid_pipeline.io.safe_yaml import file_fingerprint
    from astrid_pipeline.science.mmcosmic.stacks import default_stacks_path, load_stacks

    path = default_stacks_path()
    # never blocks (a pipe) nor reads a huge file whole on every tick; a bad file is not re-parsed
    digest = file_fingerprint(path)
    if digest == context.cursor:
        return SkipReason(f"stacks file {path} unchanged")
    try:
        names = list(load_stacks(path))
    except AstridError as exc:
        context.log.error(f"stacks file {path} is malformed, nothing registered: {exc}")
        return SensorResult(cursor=digest, skip_reason=SkipReason(f"MALFORMED stacks file: {exc}"[:1000]))
    new = [n for n in names if not context.instance.has_dynamic_partition(STACKS, n)]
    return SensorResult(cursor=digest, dynamic_partitions_requests=[AddDynamicPartitionsRequest(STACKS, new)] if new
                        else [], skip_reason=None if new else SkipReason("no new stacks"))
