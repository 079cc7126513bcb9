"""M.M.Cosmic assets: multi-exposure cosmic-ray masks, partitioned by stack.

A stack is a group of equivalent exposures defined in configuration
(``astrid_pipeline/resources/mmcosmic_stacks.yaml``, or the file named by
``$ASTRID_MMCOSMIC_STACKS``): FITS files, or a seeded simulated stack. The
asset reads the stack, calls :mod:`astrid_pipeline.science.mmcosmic` and
writes numina-crmasks' files under ``<data root>/mmcosmic/<stack>/``
(the folder is replaced as one step), then attaches counts, timings and the
diagnostic diagram as metadata.
"""


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

from astrid_pipeline.assets._meta import png_markdown, to_metadata
from astrid_pipeline.layout import safe_key
from astrid_pipeline.resources.storage import StorageResource
from astrid_pipeline.science.mmcosmic.stacks import default_stacks_path, load_stacks

GROUP = "cosmic_rays"

#: one partition per stack of the default stacks file (read once, at import)
stack_partitions = StaticPartitionsDefinition(list(load_stacks(default_stacks_path())))


class MMCosmicConfig(Config):
    stacks_path: str = Field(
        default="", description="stacks YAML to read the partition's stack from; empty = $ASTRID_MMCOSMIC_STACKS or the packaged file"
    )
    requirements_yaml: str = Field(
        default="", description="YAML mapping of numina requirements to override for this run, e.g. '{crmethod: mm_lacosmic}'"
    )
    plots: bool = Field(default=True, description="write the PNG diagnostics")


def _requirements_mapping(req) -> dict:
    """A validated Requirements back as a numina-style mapping (tuples as lists, extensions kept)."""
    out = {}
    for k, v in req.to_dict().items():
        if isinstance(v, tuple):
            v = [list(e) if isinstance(e, tuple) else e for e in v]
        out[k] = v
    for key in ("flux_factor_regions", "regions_to_be_skipped", "pixels_to_be_flagged_as_cr",
                "pixels_to_be_ignored_as_cr", "pixels_to_be_replaced_by_local_median", "mm_fixed_points_in_boundary"):
        if not out.get(key):
            out[key] = None
    if isinstance(out.get("mm_crosscorr_region"), list) and out["mm_crosscorr_region"] and not isinstance(out["mm_crosscorr_region"][0], list):
        out["mm_crosscorr_region"] = [out["mm_crosscorr_region"]]
    return out


def mmcosmic_folder(storage: StorageResource, stack: str):
    return storage.layout.root / "mmcosmic" / safe_key(stack)


@asset(
    partitions_def=stack_partitions,
    group_name=GROUP,
    kinds={"numpy", "fits"},
    owners=["team:cosmic-rays"],
    description="Cosmic rays hitting the same pixel in several exposures (M.M.Cosmic): numina-crmasks' FITS/CSV/PNG products.",
)
def mmcosmic_crmasks(context: AssetExecutionContext, config: MMCosmicConfig, storage: StorageResource) -> MaterializeResult:
    import yaml

    from astrid_pipeline.science.mmcosmic import parse_requirements, read_stack, run_arrays, simulate_stack
    from astrid_pipeline.science.mmcosmic.runner import read_bias
    from astrid_pipeline.science.mmcosmic.stacks import simulated_truth_scores

    stack = context.partition_key
    specs = load_stacks(config.stacks_path or None)
    if stack not in specs:
        raise KeyError(f"stack {stack!r} is not defined in {config.stacks_path or default_stacks_path()}")
    spec = specs[stack]
    req = spec.requirements
    if config.requirements_yaml.strip():
        over = yaml.safe_load(config.requirements_yaml) or {}
        n = spec.simulate.get("n_exposures", 3) if spec.simulated else len(spec.images)
        merged = _requirements_mapping(req)
        merged.update(over)
        req = parse_requirements(merged, n_images=n)
    folder = mmcosmic_folder(storage, stack)
    sim = None
    if spec.simulated:
        kwargs = dict(spec.simulate)
        if "shape" in kwargs:
            kwargs["shape"] = tuple(int(v) for v in kwargs["shape"])
        sim = simulate_stack(**kwargs)
        arrays, names = list(sim.images), [f"{stack}-sim{i + 1}" for i in range(sim.n_exposures)]
        bias = sim.bias
    else:
        arrays, names = read_stack(spec.images, spec.extnum), list(spec.images)
        bias = read_bias(spec.bias, spec.extnum)
    summary = run_arrays(
        arrays, folder, gain=spec.gain, rnoise=spec.rnoise, bias=bias, requirements=req, names=names,
        replace_folder=True, plots=config.plots, keep_result=sim is not None,
    )
    values = {
        "path": folder,
        "stack": stack,
        "crmethod": req.crmethod,
        "n_files": len(summary.files),
        "files": summary.files,
        **summary.counts,
        "timings_s": {k: round(v, 4) for k, v in summary.timings.items()},
        "boundary_adu_at_x": {str(k): round(v, 3) for k, v in summary.boundary_at.items()},
    }
    if sim is not None:
        values.update(simulated_truth_scores(sim, summary.result))
        values["simulation_seed"] = int(sim.seed)
    meta = to_metadata(values)
    png = folder / "diagnostic_histogram2d.png"
    if png.exists():
        meta["diagnostic_diagram"] = png_markdown(png, "MM diagnostic diagram")
    context.log.info(
        "stack %s: MEDIANCR %d px (%s), %d files in %s", stack, summary.counts["mediancr_pixels"],
        req.crmethod, len(summary.files), folder,
    )
    return MaterializeResult(metadata=meta)


mmcosmic_assets = [mmcosmic_crmasks]

mmcosmic_job = define_asset_job(
    "mmcosmic_job",
    selection=AssetSelection.assets(mmcosmic_crmasks),
    description="Multi-exposure cosmic-ray masks (M.M.Cosmic) for one stack.",
)

__all__ = ["MMCosmicConfig", "mmcosmic_assets", "mmcosmic_crmasks", "mmcosmic_folder", "mmcosmic_job", "stack_partitions"]
