"""Ramp anomaly detection: AstrID's detector against stcal's jump step on the same cube.

    python benchmarks/ramps.py [--size 1024] [--groups 20] [--big-size 2048] [--big-groups 100]
                               [--skip-big] [--stcal-cores 1,all]

1. Simulates a 1 x 20 x 1024 x 1024 ramp (our simulator: single-pixel spots
   and multi-pixel tracks with IPC over a wide range of S/N, RTN pixels,
   snowballs, reference-pixel drifts).
2. Runs AstrID's detector (reference pixels, jumps, RTN, snowballs) and
   stcal's ``detect_jumps_data`` (the JWST pipeline's two-point difference
   method, JWST default parameters) on the same cube. stcal gets the
   reference-corrected cube, the CDS read noise per pixel and saturation
   flags, as the JWST pipeline would give it; ``max_cores`` is passed as a
   string, and its fastest setting is kept.
3. Scores both per pixel-group against the truth (cosmic-ray deposits only for
   recall; RTN pixels and snowball areas are left out of the false flags of
   both), and our RTN and snowball calls per pixel / per event.
4. Simulates a 2048 x 2048 x 100-group cube to HDF5 and runs our detector on it
   alone in a fresh process, to report its time and peak memory.

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STCAL_DQ = {"GOOD": 0, "DO_NOT_USE": 1, "SATURATED": 2, "JUMP_DET": 4, "NO_GAIN_VALUE": 8,
            "REFERENCE_PIXEL": 2**31}


def bench_config(size: int, groups: int):
    from astrid_pipeline.science.ramps.config import SimulationConfig

    area = size * size
    return SimulationConfig(
        image_shape=(size, size), num_frames=groups, exp_time=10.0 * groups, gain_library={"BENCH_SCA": 1.0},
        num_exposure_events=1, num_baseline_exposures=0, patch_size=(min(256, size), min(256, size)), overlap=16,
        cosmic_ray_per_exp_range=(area // 300, area // 300), rtn_per_exp_range=(area // 500, area // 500),
        snowballs_per_exp_range=(4, 4), read_noise_range=(15.0, 15.0), gaussian_noise_range=(0.0, 0.0),
        dark_current_range=(0.01, 0.05), cosmic_ray_charge_range=(30.0, 8000.0), cosmic_ray_track_fraction=0.4,
        rtn_offset_range=(45.0, 250.0), rtn_period_range=(3.0, 12.0), rtn_duty_fraction_range=(0.2, 0.8),
        snowball_radius_range=(3.0, 8.0), snowball_halo_decay_scale_range=(2.0, 5.0), seed=20240,
    )


def run_stcal(cube_corr: np.ndarray, sat: np.ndarray, cds_noise: float, max_cores: str):
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    n, ny, nx = cube_corr.shape
    data = cube_corr[None].astype(np.float32)
    gdq = np.where(sat, STCAL_DQ["SATURATED"], 0).astype(np.uint8)[None]
    jd = JumpData(gain2d=np.ones((ny, nx), np.float32), rnoise2d=np.full((ny, nx), cds_noise, np.float32),
                  dqflags=STCAL_DQ)
    jd.init_arrays_from_arrays(data, gdq, np.zeros((ny, nx), np.uint32))
    jd.nframes = 1
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2
    # JWST defaults of the jump step: 4 sigma, four neighbours of 10-1000 sigma jumps flagged;
    # snowball flagging (expand_large_events) off, as in the anchor timing (~1.2 s here)
    jd.expand_large_events = False
    jd.max_cores = max_cores
    t0 = time.perf_counter()
    gdq_out, _pdq, _ncr = detect_jumps_data(jd)[:3]
    dt = time.perf_counter() - t0
    g, y, x = np.nonzero(gdq_out[0] & STCAL_DQ["JUMP_DET"])
    return dt, y, x, g


def big_child(path: str, out_json: str) -> None:
    """Run in a fresh process: detect on the HDF5 cube, report time and peak RSS."""
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.readers import open_ramp

    t0 = time.perf_counter()
    with open_ramp(path) as src:
        res = detect_ramp(src, DetectionConfig())
    dt = time.perf_counter() - t0
    # VmHWM of this process (ru_maxrss would carry the parent's high-water mark across exec)
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                rss_gb = int(line.split()[1]) * 1024 / 1e9
    Path(out_json).write_text(json.dumps({"ours_big_s": dt, "peak_rss_gb": rss_gb, "counts": res.counts()}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--big-size", type=int, default=2048)
    p.add_argument("--big-groups", type=int, default=100)
    p.add_argument("--skip-big", action="store_true")
    p.add_argument("--sigma", type=float, default=None, help="our jump threshold (default: DetectionConfig's)")
    p.add_argument("--stcal-cores", default="1,all", help="max_cores values to try (strings), fastest kept")
    p.add_argument("--big-child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.big_child:
        big_child(*a.big_child)
        return 0

    import pandas as pd

    from astrid_pipeline.science.ramps import metrics
    from astrid_pipeline.science.ramps.config import DetectionConfig
    from astrid_pipeline.science.ramps.detect import detect_ramp
    from astrid_pipeline.science.ramps.readers import ArrayRampSource
    from astrid_pipeline.science.ramps.refpix import ReferenceCorrector, science_mask
    from astrid_pipeline.science.ramps.simulate import simulate_exposure

    cfg = bench_config(a.size, a.groups)
    t0 = time.perf_counter()
    cube, plan = simulate_exposure(cfg, "BENCH_SCA", 0)
    print(f"simulated {cube.shape} in {time.perf_counter() - t0:.1f} s; noise/read {plan.noise_dn:.2f} DN", flush=True)
    b = cfg.refpix_border
    src = ArrayRampSource(cube, gain=plan.gain, saturation=cfg.saturation_dn, refpix=(b,) * 4,
                          num_outputs=cfg.num_outputs)
    shape = cfg.image_shape
    sci = science_mask(shape, src.refpix)
    n = cfg.num_frames

    dcfg = DetectionConfig() if a.sigma is None else DetectionConfig(sigma_threshold=a.sigma)
    # warm-up on a corner (imports, caches), then the timed run
    detect_ramp(ArrayRampSource(cube[:, :128, :128], gain=1.0, saturation=cfg.saturation_dn, refpix=(b, 0, b, 0)))
    ours_times = []
    for _ in range(2):
        t0 = time.perf_counter()
        res = detect_ramp(src, dcfg)
        ours_times.append(time.perf_counter() - t0)
    ours_s = min(ours_times)
    print(f"ours: {ours_s:.3f} s, counts {res.counts()}, read noise {res.read_noise:.2f} DN", flush=True)

    truth = pd.DataFrame(plan.events)
    types = truth["type"].to_numpy()
    is_cr_dep = types[plan.dep_event] == "cosmic_ray" if len(plan.dep_event) else np.zeros(0, bool)
    exclude = (plan.class_mask == 2) | (plan.class_mask == 3) | (res.mask == 2) | (res.mask == 3)
    sigma_d = math.sqrt(2) * plan.noise_dn

    def score(fy, fx, ff):
        return metrics.jump_scores(fy, fx, ff, plan.dep_y[is_cr_dep], plan.dep_x[is_cr_dep], plan.dep_frame[is_cr_dep],
                                   plan.dep_charge[is_cr_dep] / plan.gain, sigma_d, shape, n, sci, exclude=exclude)

    ours_sc = score(res.jumps["y"], res.jumps["x"], res.jumps["frame"])

    # stcal on the reference-corrected cube
    stcal = {"stcal_s": None, "stcal_recall_by_snr": None, "stcal_false_flag_rate": None}
    try:
        import stcal  # noqa: F401

        corr = src.read_rows(0, shape[0]).copy()
        sat = corr >= cfg.saturation_dn - 0.5
        ReferenceCorrector(src).correct(corr, 0)
        best = None
        per_cores = {}
        for mc in [c.strip() for c in a.stcal_cores.split(",") if c.strip()]:
            dt, y, x, g = run_stcal(corr, sat, sigma_d, mc)
            per_cores[mc] = round(dt, 3)
            print(f"stcal max_cores={mc!r}: {dt:.3f} s, {len(y)} jump flags", flush=True)
            if best is None or dt < best[0]:
                best = (dt, y, x, g)
        st_sc = score(best[1], best[2], best[3])
        stcal = {"stcal_s": round(best[0], 3), "stcal_s_by_max_cores": per_cores,
                 "stcal_recall_by_snr": st_sc["recall_by_snr"], "stcal_false_flag_rate": st_sc["false_flag_rate"]}
        del corr, sat
    except ImportError:
        print("stcal is not installed (pip install stcal, the 'bench' extra): skipping the peer", flush=True)

    rs = metrics.rtn_scores(res.mask == 2, truth, plan.noise_dn, plan.gain, sci)
    sb = metrics.snowball_scores(pd.DataFrame(res.events), truth)
    out = {
        "ours_s": round(ours_s, 3),
        "stcal_s": stcal["stcal_s"],
        "speedup": round(stcal["stcal_s"] / ours_s, 2) if stcal["stcal_s"] else None,
        "recall_by_snr": {k: (None if v is None else round(v, 4)) for k, v in ours_sc["recall_by_snr"].items()},
        "stcal_recall_by_snr": (None if stcal["stcal_recall_by_snr"] is None else
                                {k: (None if v is None else round(v, 4)) for k, v in stcal["stcal_recall_by_snr"].items()}),
        "false_flag_rate": float(f"{ours_sc['false_flag_rate']:.3g}"),
        "stcal_false_flag_rate": (None if stcal["stcal_false_flag_rate"] is None
                                  else float(f"{stcal['stcal_false_flag_rate']:.3g}")),
        "rtn_recall": None if rs["rtn_recall"] is None else round(rs["rtn_recall"], 4),
        "rtn_false_per_pixel": float(f"{rs['rtn_false_per_pixel']:.3g}"),
        "snowball_recall": sb["snowball_recall"],
        "false_snowballs": sb["false_snowballs"],
        "peak_rss_gb": None,
        "cube_gb": None,
        "cube": [1, n, *shape],
        "stcal_s_by_max_cores": stcal.get("stcal_s_by_max_cores"),
        "n_rtn_strong": rs["n_rtn_strong"],
        "n_snowballs": sb["n_snowballs"],
    }
    del cube, src, res

    if not a.skip_big:
        big = bench_config(a.big_size, a.big_groups)
        with tempfile.TemporaryDirectory(dir=os.environ.get("ASTRID_BENCH_TMP")) as tmp:
            path = Path(tmp) / "big_ramp.h5"
            t0 = time.perf_counter()
            simulate_exposure(big, "BENCH_SCA", 0, path)
            print(f"simulated {a.big_groups}x{a.big_size}^2 to HDF5 in {time.perf_counter() - t0:.1f} s", flush=True)
            rj = Path(tmp) / "big.json"
            subprocess.run([sys.executable, __file__, "--big-child", str(path), str(rj)], check=True)
            bigres = json.loads(rj.read_text())
        cube_gb = a.big_groups * a.big_size * a.big_size * 2 / 1e9  # uint16, as stored
        out.update({"peak_rss_gb": round(bigres["peak_rss_gb"], 3), "cube_gb": round(cube_gb, 3),
                    "big_cube": [1, a.big_groups, a.big_size, a.big_size], "ours_big_s": round(bigres["ours_big_s"], 2),
                    "peak_rss_over_cube": round(bigres["peak_rss_gb"] / cube_gb, 3)})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
