"""M.M.Cosmic side by side with numina-crmasks on the same three exposures.

Makes three 1024x1024 exposures (sky ~100 ADU, stars up to 30 000 ADU, read
noise 3.4 ADU, gain 1, random cosmic rays on ~2 % of the pixels of each
exposure, and ~300 deliberate hits on the same pixels in 2 of the 3
exposures), writes them as FITS with one numina-crmasks parameter file, and
runs, in this process, one after the other:

* ours: ``astrid-crmasks params.yaml`` (our default ``crmethod: mmcosmic``;
  with ``--ours-crmethod mm_lacosmic`` the same method as numina);
* numina-crmasks 0.40.0 (optional ``bench`` peer) with ``crmethod:
  mm_lacosmic`` (numina needs an auxiliary method), ``interactive: false``,
  ``maxplots: 0`` and the Agg backend.

Both read the FITS files and write their full set of products; the wall
time of each whole run is measured (and its CPU time), each tool in a fresh
process of its own, so that its peak resident memory (``*_peak_rss_gb``) is
its own. Like for like: unless ``--no-same-method``, ours also runs with
``crmethod: mm_lacosmic`` (numina's method) and ``speedup_same_method`` is
numina's wall time over that run's (``speedup`` compares our default method). Scores, from each
tool's ``crmasks.fits`` (MEDIANCR) and ``combined_mediancr.fits``:

* significant coincident pixels: hit in >= 2 exposures, and the hits raise
  the median by more than 5 sigma of one exposure's noise (sigma from the
  noise-free model); recall = fraction of them in MEDIANCR;
* residual pixels: combined_mediancr more than 5 sigma above the noise-free model;
* false pixels: MEDIANCR pixels farther than one pixel from any pixel hit in >= 2 exposures.

The last line printed is one JSON object.

Usage: python benchmarks/mmcosmic.py [--size 1024] [--seed 2026] [--ours-crmethod mmcosmic] [--skip-numina]
       [--no-same-method]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["MPLBACKEND"] = "Agg"

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401  (imported before timing, for both tools)
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from astropy.io import fits  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astrid_pipeline.science.mmcosmic.diagram import median_of_stack  # noqa: E402
from astrid_pipeline.science.mmcosmic.simulate import simulate_stack  # noqa: E402

NUMINA_REQUIREMENTS = {
    "crmethod": "mm_lacosmic",
    "use_auxmedian": False,
    "interactive": False,
    "flux_factor": "none",
    "flux_factor_regions": None,
    "apply_flux_factor_to": "simulated",
    "dilation": 0,
    "regions_to_be_skipped": None,
    "pixels_to_be_flagged_as_cr": None,
    "pixels_to_be_ignored_as_cr": None,
    "pixels_to_be_replaced_by_local_median": None,
    "verify_cr": False,
    "semiwindow": 15,
    "color_scale": "zscale",
    "maxplots": 0,
    "la_gain_apply": True,
    "la_sigclip": [5.0, 3.0],
    "la_sigfrac": [0.3, 0.3],
    "la_objlim": [5.0, 5.0],
    "la_satlevel": 65535.0,
    "la_niter": 4,
    "la_sepmed": True,
    "la_cleantype": "meanmask",
    "la_fsmode": "convolve",
    "la_psfmodel": "gaussxy",
    "la_psffwhm_x": 2.5,
    "la_psffwhm_y": 2.5,
    "la_psfsize": 11,
    "la_psfbeta": 4.765,
    "la_verbose": False,
    "la_padwidth": 10,
    "mm_cr_coincidences": 2,
    "mm_photon_distribution": "poisson",
    "mm_nbinom_shape": 10,
    "mm_synthetic": "median",
    "mm_hist2d_min_neighbors": 0,
    "mm_ydiag_max": 0,
    "mm_dilation": 1,
    "mm_xy_offsets": None,
    "mm_crosscorr_region": None,
    "mm_boundary_fit": "spline",
    "mm_knots_splfit": 5,
    "mm_fixed_points_in_boundary": None,
    "mm_nsimulations": 10,
    "mm_niter_boundary_extension": 5,
    "mm_weight_boundary_extension": 2,
    "mm_threshold_rnoise": 3.0,
    "mm_minimum_max2d_rnoise": 5.0,
    "mm_seed": 123456,
}


def make_data(folder: Path, size: int, seed: int):
    sim = simulate_stack(
        (size, size), 3, seed=seed, sky=100.0, star_peak_max=30000.0, gain=1.0, rnoise=3.4, bias=0.0,
        cr_fraction=0.02, n_coincident=300, n_coincident_exposures=2,
    )
    names = []
    for i, img in enumerate(sim.images):
        p = folder / f"exposure_{i + 1}.fits"
        fits.PrimaryHDU(img).writeto(p, overwrite=True)
        names.append(str(p))
    return sim, names


def write_params(path: Path, images, crmethod: str) -> Path:
    data = {"images": list(images), "extnum": 0, "gain": 1.0, "rnoise": 3.4, "bias": 0.0,
            "requirements": dict(NUMINA_REQUIREMENTS, crmethod=crmethod)}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def scores(sim, outdir: Path) -> dict:
    mask = fits.getdata(outdir / "crmasks.fits", "MEDIANCR").astype(bool)
    mediancr = fits.getdata(outdir / "combined_mediancr.fits").astype(np.float64)
    sig = sim.noise_sigma().astype(np.float64)
    images = sim.images.astype(np.float32)
    raise_ = median_of_stack(images) - median_of_stack(images - sim.cosmic_rays)
    hit2 = sim.hit_count() >= 2
    significant = hit2 & (raise_ > 5.0 * sig)
    near = ndimage.binary_dilation(hit2, structure=np.ones((3, 3), bool))
    return {
        "recall_significant": float(mask[significant].mean()),
        "residual_pixels": int((mediancr - sim.model > 5.0 * sig).sum()),
        "false_pixels": int((mask & ~near).sum()),
        "flagged_pixels": int(mask.sum()),
        "n_significant": int(significant.sum()),
    }


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: kilobytes


def run_child(tool: str, params: Path, outdir: Path) -> tuple[float, float, float]:
    """Run one tool in a fresh process: (wall s, CPU s, peak RSS GB) of that process."""
    import subprocess

    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", tool, str(params), str(outdir)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{tool} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r["wall_s"], r["cpu_s"], r["peak_rss_gb"]


def run_ours(params: Path, outdir: Path) -> tuple[float, float]:
    from astrid_pipeline.cli_crmasks import main
    # import the modules before the clock starts, as numina's are imported before its run
    import astrid_pipeline.science.mmcosmic.outputs  # noqa: F401
    import astrid_pipeline.science.mmcosmic.runner  # noqa: F401

    with contextlib.suppress(ImportError):
        import astroscrappy  # noqa: F401

    t0, c0 = time.perf_counter(), time.process_time()
    rc = main([str(params), "--output_dir", str(outdir), "--log-level", "WARNING"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if rc != 0:
        raise RuntimeError(f"astrid-crmasks failed with status {rc}")
    return wall, cpu


def run_numina(params: Path, outdir: Path) -> tuple[float, float]:
    from numina.array.crmasks.__main__ import main as numina_main

    argv = ["numina-crmasks", str(params), "--output_dir", str(outdir), "--log-level", "WARNING"]
    old_argv = sys.argv
    sys.argv = argv  # numina checks len(sys.argv)
    sink = io.StringIO()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(sink):
            numina_main(argv[1:])
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        sys.argv = old_argv
        matplotlib.pyplot.close("all")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        tool, params, outdir = argv[1], Path(argv[2]), Path(argv[3])
        wall, cpu = (run_ours if tool == "ours" else run_numina)(params, outdir)
        print(json.dumps({"wall_s": wall, "cpu_s": cpu, "peak_rss_gb": _peak_rss_gb()}))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--ours-crmethod", default="mmcosmic", choices=["mmcosmic", "mm_lacosmic"])
    ap.add_argument("--also-ours-lacosmic", action="store_true", help="also run ours with mm_lacosmic (extra keys)")
    ap.add_argument("--skip-numina", action="store_true")
    ap.add_argument("--no-same-method", action="store_true",
                    help="do not run ours with mm_lacosmic (no speedup_same_method)")
    ap.add_argument("--workdir", default="", help="keep the files here (default: a temporary folder)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-mmcosmic-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sim, images = make_data(work, args.size, args.seed)
        result: dict = {}
        p_ours = write_params(work / "params_ours.yaml", images, args.ours_crmethod)
        ours_s, ours_cpu, ours_rss = run_child("ours", p_ours, work / "ours")
        s = scores(sim, work / "ours")
        extra = {"ours_crmethod": args.ours_crmethod, "ours_cpu_s": round(ours_cpu, 3),
                 "ours_peak_rss_gb": round(ours_rss, 3),
                 "n_significant": s["n_significant"], "ours_flagged_pixels": s["flagged_pixels"]}
        la_s = None
        print(f"ours ({args.ours_crmethod}): {ours_s:.2f} s wall, {ours_cpu:.2f} s CPU, {s}", file=sys.stderr)
        if args.ours_crmethod == "mm_lacosmic":
            la_s = ours_s
        elif args.also_ours_lacosmic or not args.no_same_method:
            p2 = write_params(work / "params_ours_la.yaml", images, "mm_lacosmic")
            la_s, la_cpu, la_rss = run_child("ours", p2, work / "ours_la")
            s2 = scores(sim, work / "ours_la")
            extra.update({
                "ours_mm_lacosmic_s": round(la_s, 3), "ours_mm_lacosmic_cpu_s": round(la_cpu, 3),
                "ours_mm_lacosmic_peak_rss_gb": round(la_rss, 3),
                "ours_mm_lacosmic_recall_significant": round(s2["recall_significant"], 4),
                "ours_mm_lacosmic_residual_pixels": s2["residual_pixels"],
                "ours_mm_lacosmic_false_pixels": s2["false_pixels"],
            })
            print(f"ours (mm_lacosmic): {la_s:.2f} s wall, {la_cpu:.2f} s CPU, {s2}", file=sys.stderr)
        numina_s = numina_cpu = numina_rss = None
        sn = {"recall_significant": None, "residual_pixels": None, "false_pixels": None, "flagged_pixels": None}
        if not args.skip_numina:
            try:
                import numina  # noqa: F401
            except ImportError:
                print("numina is not installed (pip install numina==0.40.0): peer skipped", file=sys.stderr)
            else:
                p_num = write_params(work / "params_numina.yaml", images, "mm_lacosmic")
                numina_s, numina_cpu, numina_rss = run_child("numina", p_num, work / "numina")
                sn = scores(sim, work / "numina")
                print(f"numina (mm_lacosmic): {numina_s:.2f} s wall, {numina_cpu:.2f} s CPU, {sn}", file=sys.stderr)
        result = {
            "ours_s": round(ours_s, 3),
            "numina_s": None if numina_s is None else round(numina_s, 3),
            "speedup": None if numina_s is None else round(numina_s / ours_s, 2),
            "speedup_same_method": None if numina_s is None or la_s is None else round(numina_s / la_s, 2),
            "ours_recall_significant": round(s["recall_significant"], 4),
            "numina_recall_significant": (None if sn["recall_significant"] is None
                                          else round(sn["recall_significant"], 4)),
            "ours_residual_pixels": s["residual_pixels"],
            "numina_residual_pixels": sn["residual_pixels"],
            "ours_false_pixels": s["false_pixels"],
            "numina_false_pixels": sn["false_pixels"],
            **extra,
            "numina_cpu_s": None if numina_cpu is None else round(numina_cpu, 3),
            "numina_flagged_pixels": sn["flagged_pixels"],
            "numina_peak_rss_gb": None if numina_rss is None else round(numina_rss, 3),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
