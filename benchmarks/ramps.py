"""Ramp anomaly detection: AstrID's rules (and 3D U-Net) against stcal's jump step, per detector preset.

    python benchmarks/ramps.py --preset h2rg|nircam|roman|PATH.yaml [--seed N] [--size 1024] [--groups G]
                               [--big-size 2048] [--big-groups 100] [--skip-big] [--skip-unet] [--model PATH]
                               [--eval-size 384] [--stcal-cores 1,all] [--workers 1]

1. Simulates a 1 x G x size x size ramp with the preset's detector physics
   (G = the preset's groups unless ``--groups``; outputs with their own
   noise and offsets, 1/f noise, IPC, reference pixels) and the benchmark's
   event densities (one cosmic ray per 300 px, spots and tracks over S/N
   ~1 to hundreds; one RTN pixel per 500 px; 4 snowballs). ``--seed``
   replaces the preset's seed.
2. Runs AstrID's rules (reference pixels, read noise per output measured
   from the data, GLS jumps, RTN, snowballs) and stcal's
   ``detect_jumps_data`` (the JWST pipeline's two-point-difference method
   with the jump step's default parameters) on the same cube. stcal gets
   the reference-corrected cube (our correction, the JWST refpix algorithm),
   the saturation flags, the true gain and, as a JWST read-noise reference
   file would, the CDS noise of each output measured on the pixels the
   truth says are clean; ``max_cores`` is passed as a string and its fastest
   setting kept. Both are timed in this process, one after the other (take
   the ratio; other work on the machine slows both).
3. Scores both per pixel-group against the truth (cosmic-ray deposits for
   recall by S/N bin, S/N = charge / sigma of a group difference of the
   pixel's output; RTN pixels and snowball areas are left out of the false
   flags of both) and our RTN (recall over RTN pixels of amplitude >= 5
   sigma of the read noise switching >= 2 times, false per pixel) and
   snowballs (recall of cores >= 3 px, false count).
4. ``unet``: the held-out evaluation (:func:`astrid_pipeline.ml.ramps.evaluate.evaluate_models`,
   seed 900001 or ``--seed``, eval-size^2) of the rules, the shipped U-Net, the hybrid and
   stcal on this preset: per-class recall, precision, IoU, recall per S/N
   bin; plus the U-Net's time on the benchmark cube.
5. Simulates a 1 x big-groups x big-size^2 cube of the same preset to HDF5
   and runs the rules alone in a fresh process: time and peak RSS against
   the uint16 cube's size.

The last line printed is one JSON object with the figures and a ``targets``
summary (each issue #12 target: met or not).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench_config(preset: str, size: int, groups: int | None, seed: int | None):
    """The preset's physics at the benchmark's size and event densities."""
    from astrid_pipeline.presets import load_preset

    base = load_preset(preset)
    area = size * size
    det = base.detectors[0]
    n = groups or base.num_frames
    return base.replace(
        image_shape=(size, size), num_frames=n, exp_time=base.frame_time * n, gain_library={det: base.gain_library[det]},
        num_exposure_events=1, num_baseline_exposures=0, patch_size=(min(128, size),) * 2, overlap=16,
        cosmic_ray_per_exp_range=(area // 300,) * 2, rtn_per_exp_range=(area // 500,) * 2,
        snowballs_per_exp_range=(4, 4), seed=base.seed if seed is None else seed,
    )


def cds_noise_reference(corr: np.ndarray, clean: np.ndarray, col_output: np.ndarray) -> np.ndarray:
    """CDS noise (sigma of a group difference) per column, measured per output on truth-clean pixels:
    what a JWST read-noise reference file holds for stcal."""
    d = np.diff(corr.astype(np.float64), axis=0)
    out = np.zeros(corr.shape[2])
    for o in np.unique(col_output):
        dd = d[:, clean & (col_output == o)[None, :]]
        dd = dd - np.median(dd, axis=0)
        out[col_output == o] = 1.4826 * np.median(np.abs(dd))
    return out


def big_child(path: str, out_json: str, workers: int) -> None:
    """Run in a fresh process: detect on the HDF5 cube, report time and peak RSS."""
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.readers import open_ramp

    t0 = time.perf_counter()
    with open_ramp(path) as src:
        res = detect_ramp(src, DetectionConfig(workers=workers))
    dt = time.perf_counter() - t0
    rss_gb = None
    with open("/proc/self/status") as fh:  # VmHWM: this process's high-water mark
        for line in fh:
            if line.startswith("VmHWM:"):
                rss_gb = int(line.split()[1]) * 1024 / 1e9
    Path(out_json).write_text(json.dumps({"ours_big_s": dt, "peak_rss_gb": rss_gb, "counts": res.counts(),
                                          "skipped": res.skipped}))


def _r(d, nd=4):
    if d is None:
        return None
    return {k: (None if v is None else round(v, nd)) for k, v in d.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="h2rg", help="h2rg, roman, nircam or a simulation config YAML")
    p.add_argument("--seed", type=int, default=None, help="simulation seed (default: the preset's)")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--groups", type=int, default=None, help="groups (default: the preset's)")
    p.add_argument("--big-size", type=int, default=2048)
    p.add_argument("--big-groups", type=int, default=100)
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--skip-unet", action="store_true", help="no U-Net timing and no held-out evaluation")
    p.add_argument("--model", default=None, help="U-Net checkpoint (default: the shipped weights)")
    p.add_argument("--eval-size", type=int, default=384, help="frame side of the held-out U-Net evaluation")
    p.add_argument("--workers", type=int, default=1, help="our threads over row blocks")
    p.add_argument("--stcal-cores", default="1,all", help="max_cores values to try (strings), fastest kept")
    p.add_argument("--big-child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.big_child:
        big_child(a.big_child[0], a.big_child[1], int(a.big_child[2]))
        return 0


    from astrid_pipeline.presets import simulation_config_path
    from astrid_pipeline.science.ramps import metrics
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.readers import ArrayRampSource
    from astrid_pipeline.science.ramps.refpix import ReferenceCorrector, output_geometry, science_mask
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    preset_path = simulation_config_path(a.preset)
    cfg = bench_config(a.preset, a.size, a.groups, a.seed)
    det = cfg.detectors[0]
    t0 = time.perf_counter()
    cube, plan = simulate_exposure(cfg, det, 0)
    print(f"preset {cfg.preset} ({preset_path.name}), seed {cfg.seed}: simulated {cube.shape} in "
          f"{time.perf_counter() - t0:.1f} s; white noise/read per output {np.round(plan.amp_noise_dn, 2).tolist()} DN",
          flush=True)
    b = cfg.refpix_border
    src = ArrayRampSource(cube, gain=plan.gain, saturation=cfg.saturation_dn, refpix=(b,) * 4,
                          num_outputs=cfg.num_outputs)
    shape = cfg.image_shape
    sci = science_mask(shape, src.refpix)
    n = cfg.num_frames

    dcfg = DetectionConfig(workers=a.workers)
    # warm-up on a corner (imports, caches, the RTN threshold of this ramp length), then the timed runs
    detect_ramp(ArrayRampSource(cube[:, :128, :128], gain=plan.gain, saturation=cfg.saturation_dn, refpix=(b, 0, b, 0)),
                dcfg)
    ours_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        res = detect_ramp(src, dcfg)
        ours_times.append(time.perf_counter() - t0)
    ours_s = min(ours_times)
    print(f"ours: {ours_s:.3f} s, counts {res.counts()}, read noise per output "
          f"{res.meta['read_noise_per_output']} DN, GLS scale {res.meta['gls_z_scale_per_output']}", flush=True)
    sc = metrics.score_detection(res, plan, sci)

    stcal = {"stcal_s": None, "stcal_recall_by_snr": None, "stcal_false_flag_rate": None, "stcal_s_by_max_cores": None}
    try:
        from astrid_pipeline.science.ramps.peer_stcal import stcal_detect_jumps

        corr = src.read_rows(0, shape[0]).copy()
        sat = corr >= cfg.saturation_dn - 0.5
        ReferenceCorrector(src).correct(corr, 0)
        col_out = output_geometry(shape[1], cfg.num_outputs)[0]
        cds = cds_noise_reference(corr, (plan.class_mask == 0) & sci, col_out)
        best, per_cores = None, {}
        for mc in [c.strip() for c in a.stcal_cores.split(",") if c.strip()]:
            st = stcal_detect_jumps(corr, sat, np.broadcast_to(cds[None, :], shape), plan.gain, max_cores=mc)
            per_cores[mc] = round(st["seconds"], 3)
            print(f"stcal max_cores={mc!r}: {st['seconds']:.3f} s, {len(st['y'])} jump flags", flush=True)
            if best is None or st["seconds"] < best["seconds"]:
                best = st
        ss = metrics.score_jumps_against_truth(best["y"], best["x"], best["group"], plan, sci, sc["exclude"])
        stcal = {"stcal_s": round(best["seconds"], 3), "stcal_s_by_max_cores": per_cores,
                 "stcal_recall_by_snr": ss["recall_by_snr"], "stcal_false_flag_rate": ss["false_flag_rate"]}
        del corr, sat
    except ImportError:
        print("stcal is not installed (pip install stcal, the 'bench' extra): skipping the peer", flush=True)

    out = {
        "preset": cfg.preset,
        "seed": cfg.seed,
        "ours_s": round(ours_s, 3),
        "stcal_s": stcal["stcal_s"],
        "speedup": round(stcal["stcal_s"] / ours_s, 2) if stcal["stcal_s"] else None,
        "recall_by_snr": _r(sc["recall_by_snr"]),
        "stcal_recall_by_snr": _r(stcal["stcal_recall_by_snr"]),
        "false_flag_rate": float(f"{sc['false_flag_rate']:.3g}"),
        "stcal_false_flag_rate": (None if stcal["stcal_false_flag_rate"] is None
                                  else float(f"{stcal['stcal_false_flag_rate']:.3g}")),
        "rtn_recall": None if sc["rtn_recall"] is None else round(sc["rtn_recall"], 4),
        "rtn_false_per_pixel": float(f"{sc['rtn_false_per_pixel']:.3g}"),
        "snowball_recall": sc["snowball_recall"],
        "false_snowballs": sc["false_snowballs"],
        "peak_rss_gb": None,
        "cube_gb": None,
        "cube": [1, n, *shape],
        "stcal_s_by_max_cores": stcal["stcal_s_by_max_cores"],
        "n_rtn_strong": sc["n_rtn_strong"],
        "n_rtn_other_class": sc["n_rtn_other_class"],
        "n_snowballs": sc["n_snowballs"],
        "read_noise_per_output": res.meta["read_noise_per_output"],
        "unet": None,
    }

    if not a.skip_unet:
        from astrid_pipeline.ml.ramps import SHIPPED_WEIGHTS
        from astrid_pipeline.ml.ramps.evaluate import EvaluationConfig, evaluate_models
        from astrid_pipeline.ml.ramps.infer import load_unet, predict_ramp
        from astrid_pipeline.science.ramps.prepare import RampPrep

        model_path = Path(a.model) if a.model else SHIPPED_WEIGHTS
        model, _spec, _payload = load_unet(model_path)
        t0 = time.perf_counter()
        predict_ramp(RampPrep(src, 0, calibrate_gls=False), model)
        unet_s = time.perf_counter() - t0
        print(f"U-Net on the benchmark cube: {unet_s:.1f} s", flush=True)
        eval_seed = EvaluationConfig().seed if a.seed is None else a.seed
        ev = evaluate_models(EvaluationConfig(size=a.eval_size, seed=eval_seed), {cfg.preset: preset_path}, model_path)
        e = ev.metrics["presets"][cfg.preset]
        keep = ("recall", "precision", "iou", "recall_by_snr")
        out["unet"] = {
            "unet_s": round(unet_s, 2), "model": model_path.name, "eval_seed": e["seed"], "eval_shape": e["shape"],
            **{m: {c: {k: e[m][c][k] for k in keep} for c in ("cosmic_ray", "telegraph_noise", "snowball")}
               for m in ("rules", "unet", "hybrid", "stcal") if m in e and "cosmic_ray" in e[m]},
            "hybrid_minus_rules": e.get("hybrid_minus_rules"), "eval_seconds": e["seconds"],
        }
    del cube, src, res

    if not a.skip_big:
        big = bench_config(a.preset, a.big_size, a.big_groups, a.seed)
        with tempfile.TemporaryDirectory(dir=os.environ.get("ASTRID_BENCH_TMP")) as tmp:
            path = Path(tmp) / "big_ramp.h5"
            t0 = time.perf_counter()
            simulate_exposure(big, big.detectors[0], 0, path)
            print(f"simulated {a.big_groups}x{a.big_size}^2 to HDF5 in {time.perf_counter() - t0:.1f} s", flush=True)
            rj = Path(tmp) / "big.json"
            subprocess.run([sys.executable, __file__, "--big-child", str(path), str(rj), str(a.workers)], check=True)
            bigres = json.loads(rj.read_text())
        cube_gb = a.big_groups * a.big_size * a.big_size * 2 / 1e9  # uint16, as stored
        out.update({"peak_rss_gb": round(bigres["peak_rss_gb"], 3), "cube_gb": round(cube_gb, 3),
                    "big_cube": [1, a.big_groups, a.big_size, a.big_size], "ours_big_s": round(bigres["ours_big_s"], 2),
                    "peak_rss_over_cube": round(bigres["peak_rss_gb"] / cube_gb, 3)})

    st_rec = out["stcal_recall_by_snr"] or {}
    targets = {
        "jump_recall_ge_stcal_every_bin": (all((out["recall_by_snr"][k] or 0) >= (v or 0) for k, v in st_rec.items())
                                           if st_rec else None),
        "false_flag_rate_le_stcal": (out["false_flag_rate"] <= out["stcal_false_flag_rate"]
                                     if out["stcal_false_flag_rate"] is not None else None),
        "rtn_recall_ge_0.9": None if out["rtn_recall"] is None else out["rtn_recall"] >= 0.9,
        "rtn_false_le_1e-4": out["rtn_false_per_pixel"] <= 1e-4,
        "snowballs_all_found_none_false": (out["snowball_recall"] == 1.0 and out["false_snowballs"] == 0)
        if out["snowball_recall"] is not None else None,
        "speed_ge_3x_stcal": None if out["speedup"] is None else out["speedup"] >= 3,
        "peak_rss_le_1.5x_cube": None if out["peak_rss_gb"] is None else out["peak_rss_over_cube"] <= 1.5,
    }
    out["targets"] = targets
    print(json.dumps(out, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
