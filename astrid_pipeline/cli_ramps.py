"""``astrid-ramps``: ramp simulation and anomaly detection outside Dagster.

    astrid-ramps detect RAMP.fits|RAMP.h5 -o OUT [--detector ID] [--exposure N] [--integration I]
                 [--sigma 4.0] [--methods jumps,rtn,snowballs] [--read-noise DN] [--gain E_PER_DN]
    astrid-ramps simulate -o OUT [--config creator_config.yaml] [--detector ID] [--exposure N]

``detect`` reads a plain FITS cube, a JWST ``*_uncal.fits``, an HST WFC3/IR
``*_ima.fits`` or an HDF5 ramp and writes the same products as the pipeline
under ``OUT`` (``detector/<id>/<exposure>/mask.h5``, ``detections.json``,
``preview.png`` and ``catalogs/ramp_events/...``). ``simulate`` writes one
simulated exposure to ``OUT`` (an HDF5 file). Exit status 2 on bad input,
with the reason on stderr and no product written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def _default_detector_key(path: Path) -> str:
    stem = path.name.split(".")[0]
    key = re.sub(r"[^A-Za-z0-9_.+\-]", "_", stem).strip("._") or "ramp"
    return key if key[0].isalnum() else "r" + key


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="astrid-ramps", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="find cosmic rays, RTN and snowballs in a ramp")
    d.add_argument("ramp", type=Path, help="FITS (cube, JWST uncal, HST IMA) or HDF5 ramp")
    d.add_argument("-o", "--output", type=Path, required=True, help="output data root")
    d.add_argument("--detector", default=None, help="detector key for the outputs (default: from the file name)")
    d.add_argument("--exposure", default="000", help="exposure key for the outputs (default 000)")
    d.add_argument("--integration", type=int, default=0, help="integration to analyse (0-based)")
    d.add_argument("--sigma", type=float, default=4.0, help="jump threshold in sigma (one-sided)")
    d.add_argument("--methods", default="jumps,rtn,snowballs", help="comma-separated: jumps, rtn, snowballs")
    d.add_argument("--read-noise", type=float, default=None, help="per-read noise in the data unit (default: estimated)")
    d.add_argument("--gain", type=float, default=None, help="e- per data unit (default: from the file, else 1)")
    d.add_argument("--workers", type=int, default=1, help="threads over row blocks")
    d.add_argument("--no-preview", action="store_true", help="do not write preview.png")

    s = sub.add_parser("simulate", help="simulate one exposure into an HDF5 ramp")
    s.add_argument("-o", "--output", type=Path, required=True, help="HDF5 file to write")
    s.add_argument("--config", type=Path, default=None, help="YAML with ohana's creator-config keys")
    s.add_argument("--detector", default=None, help="detector ID from the gain library (default: the first)")
    s.add_argument("--exposure", type=int, default=0, help="exposure index")
    return p


def main(argv=None) -> int:
    from astrid_pipeline.errors import AstridError

    args = _parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        return _detect(args)
    except AstridError as exc:
        print(f"astrid-ramps: error: {exc}", file=sys.stderr)
        return 2


def _simulate(args) -> int:
    from astrid_pipeline.science.ramps.config import load_simulation_config
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    cfg = load_simulation_config(args.config)
    det = args.detector or cfg.detectors[0]
    plan = simulate_exposure(cfg, det, args.exposure, args.output)
    counts = {k: int((plan.events["type"] == k).sum()) for k in ("cosmic_ray", "telegraph_noise", "snowball")}
    print(json.dumps({"path": str(args.output), "detector": det, "exposure": args.exposure, "injected": counts}))
    return 0


def _detect(args) -> int:
    from astrid_pipeline.layout import DataLayout, safe_key
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.outputs import write_products
    from astrid_pipeline.science.ramps.readers import open_ramp
    from astrid_pipeline.errors import ConfigError

    detector = args.detector or _default_detector_key(args.ramp)
    try:
        safe_key(detector)
        safe_key(args.exposure)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    cfg = DetectionConfig(
        sigma_threshold=args.sigma, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        read_noise_dn=args.read_noise, gain=args.gain, workers=args.workers,
    )
    with open_ramp(args.ramp) as src:
        result = detect_ramp(src, cfg, integration=args.integration)
    layout = DataLayout(args.output.expanduser().resolve())
    paths = write_products(result, layout, detector, args.exposure,
                           attrs={"input": str(args.ramp)}, preview=not args.no_preview)
    print(json.dumps({
        "input": str(args.ramp), "layout": result.source_layout, "counts": result.counts(),
        "read_noise": round(result.read_noise, 4), "unit": result.unit,
        **{k: str(v) for k, v in paths.items()},
    }))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
