"""``astrid-crmasks params.yaml [--output_dir D] [--crmasks FILE]``: numina-crmasks parameter files, our M.M.Cosmic.

Reads a numina-crmasks YAML parameter file (top-level ``images``, ``extnum``,
``gain``, ``rnoise``, ``bias`` and the ``requirements`` block), computes the
cosmic-ray masks and writes numina's output files into ``--output_dir``
(default: the current directory). Never prompts, never opens a window.

``--crmasks FILE`` reuses the masks of a ``crmasks.fits`` written earlier, as
numina-crmasks does: nothing is recomputed, the same combinations are made
with those masks, and only the ``combined_*.fits`` files are written.

When the seeing varies across the stack by more than ``seeing_tolerance``
(default 20 %) a warning is logged (and written in the headers and in
``diagnostic_seeing.csv``); ``psf_match: true`` in ``requirements`` matches
the exposures to the worst seeing first.

Exit status: 0 on success, 2 for a bad parameter file, 1 for unusable input
files; the message names the parameter or the file (one line on stderr, the
traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from astrid_pipeline.errors import AstridError, ConfigError

log = logging.getLogger("astrid.crmasks")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="astrid-crmasks",
        description=(
            "Cosmic rays hitting the same pixel in several exposures (M.M.Cosmic), "
            "from a numina-crmasks parameter file; writes numina's output files."
        ),
    )
    p.add_argument("inputyaml", help="numina-crmasks YAML parameter file")
    p.add_argument("--output_dir", default=".", help="output directory (created if missing; default: .)")
    p.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="logging level (default INFO)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG diagnostics")
    p.add_argument("--crmasks", default=None,
                   help="crmasks.fits written earlier: apply its masks (no recomputation), write the combinations")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(level=args.log_level, format="%(message)s", stream=sys.stderr)
    from astrid_pipeline.cli import run_reporting_errors
    from astrid_pipeline.science.mmcosmic import load_config, run_config

    t0 = time.perf_counter()
    return run_reporting_errors("astrid-crmasks", lambda: _run(args, load_config, run_config, t0), args.debug,
                                exit_codes={ConfigError: 2, AstridError: 1, OSError: 1, Exception: 1})


def _run(args, load_config, run_config, t0) -> int:
    """Load the parameter file, compute and write the masks, log the counts (errors: see :func:`main`)."""
    config = load_config(args.inputyaml)
    req = config.requirements
    if req.interactive or req.verify_cr:
        log.info("interactive/verify_cr requested: this tool never prompts; running non-interactively")
    if req.ignored:
        log.info("ignoring parameters of methods not used here: %s", ", ".join(req.ignored))
    log.info("crmethod=%s, %d images, output_dir=%s", req.crmethod, len(config.images), args.output_dir)
    if args.crmasks and not os.path.isfile(args.crmasks):
        raise ConfigError(f"--crmasks {args.crmasks}: file not found")
    summary = run_config(config, args.output_dir, plots=not args.no_plots, crmasks=args.crmasks)
    c = summary.counts
    if summary.reused_masks:
        log.info("using the masks of %s (not recomputed): MEDIANCR %d px; MEANCRT %d; MEANCR %d",
                 summary.reused_masks, c["mediancr_pixels"], c["meancrt_pixels"], c["meancr_pixels"])
    else:
        log.info(
            "MEDIANCR %d px (M.M. only %d, Aux only %d, both %d); MEANCRT %d; MEANCR %d",
            c["mediancr_pixels"], c["mm_only_pixels"], c["aux_only_pixels"], c["both_pixels"],
            c["meancrt_pixels"], c["meancr_pixels"],
        )
    if summary.seeing.get("seeing_warning"):
        log.warning("WARNING: %s", summary.seeing["seeing_warning"])
    log.info("wrote %d files to %s in %.2f s", len(summary.files), args.output_dir, time.perf_counter() - t0)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
