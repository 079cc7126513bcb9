"""``astrid-ramps``: ramp simulation, anomaly detection and the 3D U-Net outside Dagster.

    astrid-ramps detect RAMP -o ROOT [--detector ID] [--exposure N] [--integration I] [--model PATH|shipped]
                 [--config detection.yaml] [--groupdq] [--no-preview] [--<any detection setting> VALUE ...]
    astrid-ramps predict --model PATH|shipped --input RAMP --output DIR [same settings]      (ohana-predict)
    astrid-ramps simulate -o OUT.h5 [--config creator_config.yaml | --preset nircam] [--detector ID] [--exposure N]
    astrid-ramps create-training --config creator_config.yaml --start_index 0 --end_index 0 [--output_dir DIR]
                                                                                            (ohana-create-training)
    astrid-ramps train --config creator_config.yaml --epochs 20 --batch_size 2 --output_dir ./trained_models
                                                                                            (ohana-train)
    astrid-ramps evaluate --model PATH|shipped --presets h2rg,nircam --output DIR
    astrid-ramps presets

``detect`` reads a plain FITS cube, a JWST ``*_uncal.fits``, an HST WFC3/IR
``*_ima.fits`` or an HDF5 ramp and writes the pipeline's products under the
data root ``ROOT`` (``detector/<id>/<exposure>/mask.h5``, ``prediction_mask.npy``,
``detections.json``, ``preview.png``, ``groupdq.fits`` with ``--groupdq``,
and ``catalogs/ramp_events/...``); ``predict`` writes the same files
straight into ``DIR`` (ohana's ``prediction_outputs/``). Every field of the
detection settings (:class:`~astrid_pipeline.science.ramps.config.DetectionConfig`)
and of the U-Net merge (:class:`~astrid_pipeline.ml.ramps.hybrid.HybridConfig`)
is a flag of the same name (``--rtn_min_transitions 3`` or
``--rtn-min-transitions 3``); ``--config`` reads them from a YAML file
first. ``train``'s flags are the fields of
:class:`~astrid_pipeline.ml.ramps.train.UNetTrainConfig`. Exit status 2 on bad
input, with the reason on stderr (one line; the traceback only with ``--debug``)
and no product written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
from pathlib import Path

COMMANDS = ("detect", "predict", "simulate", "create-training", "train", "evaluate", "presets")


# ----------------------------------------------------------------------------
# flags from configuration dataclasses (each setting declared once, on the science side)
# ----------------------------------------------------------------------------

def _strip_optional(t):
    if typing.get_origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return t, False


def _none_or(conv):
    def parse(text: str):
        if text.strip().lower() in ("none", "null", ""):
            return None
        return conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def _comma_list(conv):
    def parse(text: str):
        return tuple(conv(v.strip()) for v in text.split(",") if v.strip())

    parse.__name__ = f"comma-separated {getattr(conv, '__name__', 'values')}"
    return parse


def add_config_flags(parser, cls, *, aliases: dict | None = None, skip: tuple = (), title: str | None = None):
    """One flag per field of the dataclass ``cls`` (``--name`` and ``--name-with-dashes``), default None
    (unset flags leave the config file's or the dataclass's value)."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or f"{cls.__name__} settings")
    for f in dataclasses.fields(cls):
        if f.name in skip or dataclasses.is_dataclass(hints[f.name]):
            continue
        t, optional = _strip_optional(hints[f.name])
        names = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        names += list((aliases or {}).get(f.name, ()))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        desc = f.metadata.get("description", "")
        kw: dict = {"dest": f.name, "default": None}
        if t is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(t) is tuple:
            args = typing.get_args(t)
            item = args[0] if args else str
            if len(args) == 2 and args[1] is Ellipsis:
                kw["type"] = _comma_list(item)
                kw["metavar"] = "A,B,..."
            else:
                kw["type"] = item
                kw["nargs"] = len(args)
        else:
            kw["type"] = _none_or(t) if optional else t
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(*names, help=f"{desc} (default: {shown})", **kw)


def config_from_args(cls, args, base: dict | None = None):
    """An instance of ``cls`` from ``base`` (e.g. a YAML's values) overridden by the flags that were given."""
    values = dict(base or {})
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls.from_dict(values) if hasattr(cls, "from_dict") else cls(**values)


# ----------------------------------------------------------------------------

def _default_detector_key(path: Path) -> str:
    stem = path.name.split(".")[0]
    key = re.sub(r"[^A-Za-z0-9_.+\-]", "_", stem).strip("._") or "ramp"
    return key if key[0].isalnum() else "r" + key


def _detection_flags(p):
    from astrid_pipeline.ml.ramps.hybrid import HybridConfig
    from astrid_pipeline.science.ramps.config import DetectionConfig

    p.add_argument("--config", type=Path, default=None, help="YAML with detection settings (DetectionConfig fields)")
    p.add_argument("--integration", type=int, default=0, help="integration to analyse (0-based)")
    p.add_argument("--groupdq", action="store_true", help="also write groupdq.fits (JWST GROUPDQ/PIXELDQ of the flags)")
    p.add_argument("--no-preview", action="store_true", help="do not write preview.png")
    add_config_flags(p, DetectionConfig, aliases={"sigma_threshold": ["--sigma"], "read_noise_dn": ["--read-noise"]},
                     title="detection settings (DetectionConfig)")
    add_config_flags(p, HybridConfig, title="U-Net / rules merge (HybridConfig, with --model)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="astrid-ramps", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    debug = argparse.ArgumentParser(add_help=False)  # --debug after the command too (ohana-* put it there)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the Python traceback of an error")
    common = [debug]

    d = sub.add_parser("detect", parents=common,
                       help="find cosmic rays, RTN and snowballs in a ramp (products under a data root)")
    d.add_argument("ramp", type=Path, help="FITS (cube, JWST uncal, HST IMA) or HDF5 ramp")
    d.add_argument("-o", "--output", type=Path, required=True, help="output data root")
    d.add_argument("--detector", default=None, help="detector key for the outputs (default: from the file name)")
    d.add_argument("--exposure", default="000", help="exposure key for the outputs (default 000)")
    d.add_argument("--model", default=None, help="U-Net checkpoint (or 'shipped'): adds the U-Net and the hybrid")
    _detection_flags(d)

    pr = sub.add_parser("predict", parents=common,
                        help="ohana's predict: detection with an optional U-Net, products into one folder")
    pr.add_argument("--model", default=None, help="U-Net checkpoint (or 'shipped'); without it, the rules alone")
    pr.add_argument("--input", type=Path, required=True, help="ramp file (FITS or HDF5)")
    pr.add_argument("--output", type=Path, default=Path("prediction_outputs"), help="output folder (ohana's default)")
    _detection_flags(pr)

    s = sub.add_parser("simulate", parents=common, help="simulate one exposure into an HDF5 ramp")
    s.add_argument("-o", "--output", type=Path, required=True, help="HDF5 file to write")
    s.add_argument("--config", type=Path, default=None, help="YAML with ohana's creator-config keys")
    s.add_argument("--preset", default=None, help="detector preset (h2rg, roman, nircam) or a YAML path")
    s.add_argument("--detector", default=None, help="detector ID from the gain library (default: the first)")
    s.add_argument("--exposure", type=int, default=0, help="exposure index")
    s.add_argument("--seed", type=int, default=None, help="override the config's seed")

    c = sub.add_parser("create-training", parents=common,
                       help="ohana's create-training: simulated temporal patches for the U-Net")
    c.add_argument("--config", type=Path, default=None, help="creator config YAML (ohana's keys)")
    c.add_argument("--preset", default=None, help="detector preset instead of --config")
    c.add_argument("--start_index", "--start-index", type=int, default=0, help="first index (job arrays)")
    c.add_argument("--end_index", "--end-index", type=int, default=0, help="last index, inclusive")
    c.add_argument("--output_dir", "--output-dir", type=Path, default=None, help="folder (default: the config's output_dir)")
    c.add_argument("--t_max", "--t-max", type=int, default=32, help="time bins at most (longer ramps are binned)")

    t = sub.add_parser("train", parents=common,
                       help="ohana's train: the 3D U-Net on the patches of --config's output_dir")
    t.add_argument("--config", type=Path, default=None, help="creator config YAML (its output_dir holds the patches)")
    t.add_argument("--data_dir", "--data-dir", type=Path, default=None, help="patch folder (default: the config's output_dir)")
    t.add_argument("--output_dir", "--output-dir", type=Path, default=Path("trained_models"), help="where the model goes")
    t.add_argument("--max_steps", "--max-steps", type=int, default=0, help="stop after this many steps (0 = no limit)")
    from astrid_pipeline.ml.ramps.train import UNetTrainConfig

    add_config_flags(t, UNetTrainConfig, title="training settings (UNetTrainConfig)")

    e = sub.add_parser("evaluate", parents=common, help="rules, U-Net, hybrid and stcal on held-out seeds of presets")
    e.add_argument("--model", default="shipped", help="U-Net checkpoint or 'shipped' ('none' = rules and stcal only)")
    e.add_argument("--presets", default="h2rg,nircam", help="comma-separated preset names or YAML paths")
    e.add_argument("--output", type=Path, required=True, help="folder for evaluation_unet3d.json")
    from astrid_pipeline.ml.ramps.evaluate import EvaluationConfig

    add_config_flags(e, EvaluationConfig, title="evaluation settings (EvaluationConfig)")

    sub.add_parser("presets", parents=common, help="list the detector presets")
    return p


def main(argv=None) -> int:
    import logging

    from astrid_pipeline.cli import run_reporting_errors

    logging.basicConfig(level=logging.INFO, format="astrid-ramps: %(message)s", stream=sys.stderr)
    args = _parser().parse_args(argv)
    command = {"simulate": _simulate, "detect": _detect, "predict": _predict, "create-training": _create_training,
               "train": _train, "evaluate": _evaluate, "presets": _presets}[args.command]
    return run_reporting_errors("astrid-ramps", lambda: command(args), getattr(args, "debug", False))


def _ohana(command: str, argv=None) -> int:
    return main([command, *(sys.argv[1:] if argv is None else argv)])


def ohana_create_training(argv=None) -> int:
    """``ohana-create-training``: the same as ``astrid-ramps create-training``."""
    return _ohana("create-training", argv)


def ohana_train(argv=None) -> int:
    """``ohana-train``: the same as ``astrid-ramps train``."""
    return _ohana("train", argv)


def ohana_predict(argv=None) -> int:
    """``ohana-predict``: the same as ``astrid-ramps predict``."""
    return _ohana("predict", argv)


def _writable_place(path: Path, *, folder: bool) -> Path:
    """Refuse an output that cannot be written before any work is done: a folder where a file must go (or a
    file where a folder must go), or a file among its parent folders. :class:`~astrid_pipeline.errors.OutputError`
    names the path."""
    from astrid_pipeline.errors import OutputError

    p = Path(path).expanduser()
    if folder and p.exists() and not p.is_dir():
        raise OutputError(p, "it is a file; an output folder is needed here")
    if not folder and p.is_dir():
        raise OutputError(p, "it is a folder; give the name of the file to write")
    blocker = next((q for q in p.parents if q.exists() and not q.is_dir()), None)
    if blocker is not None:
        raise OutputError(p, f"{blocker} is a file where a folder must be")
    return p


def _print(obj) -> None:
    print(json.dumps(obj, default=str))


def _sim_config(args):
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.presets import simulation_config_path
    from astrid_pipeline.science.ramps.config import load_simulation_config

    if args.config is not None and getattr(args, "preset", None):
        raise ConfigError("give --config or --preset, not both")
    path = args.config if args.config is not None else simulation_config_path(getattr(args, "preset", None))
    return load_simulation_config(path, seed=getattr(args, "seed", None))


def _simulate(args) -> int:
    from astrid_pipeline.ml.ramps.tasks import run_simulation

    _writable_place(args.output, folder=False)
    cfg = _sim_config(args)
    det = args.detector or cfg.detectors[0]
    run = run_simulation(cfg, det, args.exposure, args.output)
    _print({"path": str(args.output), "detector": det, "exposure": args.exposure, "injected": run.metadata["injected"],
            "preset": cfg.preset})
    return 0


def _model_path(value):
    if value is None or str(value).lower() == "none":
        return None
    if str(value) == "shipped":
        from astrid_pipeline.ml.ramps import SHIPPED_WEIGHTS

        return SHIPPED_WEIGHTS
    path = Path(value).expanduser()
    if not path.is_file():  # before any detection is run
        from astrid_pipeline.errors import ConfigError

        raise ConfigError(f"--model {path}: {'is a folder, not' if path.is_dir() else 'no such'} checkpoint file")
    return path


def _detection_configs(args):
    from astrid_pipeline.ml.ramps.hybrid import HybridConfig
    from astrid_pipeline.science.ramps.config import DetectionConfig, read_yaml_mapping

    base = read_yaml_mapping(args.config) if args.config is not None else {}
    det_keys = {f.name for f in dataclasses.fields(DetectionConfig)}
    hyb_keys = {f.name for f in dataclasses.fields(HybridConfig)}
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.io.safe_yaml import clip

    unknown = sorted(set(base) - det_keys - hyb_keys)
    if unknown:
        raise ConfigError(f"{args.config}: unknown detection config keys: {clip(', '.join(map(str, unknown)))}")
    for cls, keys in ((DetectionConfig, det_keys), (HybridConfig, hyb_keys)):
        if base:  # the file's own values first, so an error in them names the file
            try:
                config_from_args(cls, argparse.Namespace(), {k: v for k, v in base.items() if k in keys})
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{args.config}: {clip(str(exc), 300)}") from None
    det = config_from_args(DetectionConfig, args, {k: v for k, v in base.items() if k in det_keys})
    hyb = config_from_args(HybridConfig, args, {k: v for k, v in base.items() if k in hyb_keys})
    return det, hyb


def _detect(args) -> int:
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.io.parquet_io import partition_dir
    from astrid_pipeline.layout import DataLayout, safe_key
    from astrid_pipeline.ml.ramps.tasks import run_detection
    from astrid_pipeline.science.ramps.outputs import EVENTS_TABLE

    detector = args.detector or _default_detector_key(args.ramp)
    try:
        safe_key(detector)
        safe_key(args.exposure)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    det, hyb = _detection_configs(args)
    _writable_place(args.output, folder=True)
    layout = DataLayout(args.output.expanduser().resolve())
    run = run_detection(
        det, args.ramp, layout.detector_dir(detector, args.exposure), model_path=_model_path(args.model), hybrid=hyb,
        events_path=partition_dir(layout.root, EVENTS_TABLE, {"detector": detector, "exposure": args.exposure})
        / "part-0.parquet", integration=args.integration, preview=not args.no_preview, groupdq=args.groupdq,
        title=f"{detector} / {args.exposure}")
    _print(run.metadata)
    return 0


def _predict(args) -> int:
    from astrid_pipeline.ml.ramps.tasks import run_detection

    det, hyb = _detection_configs(args)
    out = _writable_place(args.output, folder=True).resolve()
    run = run_detection(det, args.input, out, model_path=_model_path(args.model), hybrid=hyb,
                        events_path=out / "events.parquet", integration=args.integration,
                        preview=not args.no_preview, groupdq=args.groupdq, title=args.input.name)
    _print(run.metadata)
    return 0


def _create_training(args) -> int:
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.ml.ramps.patches import build_training_set

    cfg = _sim_config(args)
    out = args.output_dir or (Path(cfg.output_dir) if cfg.output_dir else None)
    if out is None:
        raise ConfigError("no output folder: give --output_dir or set output_dir in the config")
    _writable_place(out, folder=True)
    res = build_training_set(cfg, args.start_index, args.end_index, out, t_max=args.t_max)
    _print(res.metadata)
    return 0


def _train(args) -> int:
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.ml.ramps.train import UNetTrainConfig, train_unet

    data = args.data_dir
    if data is None and args.config is not None:
        from astrid_pipeline.science.ramps.config import load_simulation_config

        cfg = load_simulation_config(args.config)
        data = Path(cfg.output_dir) if cfg.output_dir else None
    if data is None:
        raise ConfigError("no training data: give --data_dir or a --config whose output_dir holds the patches")
    if not Path(data).expanduser().is_dir():  # before torch is imported
        raise ConfigError(f"training data {data}: no such folder of patches (make them with create-training)")
    tcfg = config_from_args(UNetTrainConfig, args)
    _writable_place(args.output_dir, folder=True)
    res = train_unet(tcfg, data, args.output_dir, max_steps=args.max_steps)
    _print(res.metadata)
    return 0


def _evaluate(args) -> int:
    from astrid_pipeline.ml.ramps.evaluate import EvaluationConfig, evaluate_models
    from astrid_pipeline.presets import simulation_config_path

    presets = {}
    for name in [v.strip() for v in args.presets.split(",") if v.strip()]:
        presets[Path(name).stem if name.endswith((".yaml", ".yml")) else name] = simulation_config_path(name)
    ecfg = config_from_args(EvaluationConfig, args)
    _writable_place(args.output, folder=True)
    res = evaluate_models(ecfg, presets, _model_path(args.model), args.output)
    _print({"json": str(res.json_path), **res.metadata})
    return 0


def _presets(args) -> int:
    from astrid_pipeline.presets import preset_names, simulation_config_path

    _print({name: str(simulation_config_path(name)) for name in preset_names()})
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
