"""One sky region end to end, ours against a peer chain, at 1024² and 2048² (4096² with ``--big``).

    .venv/bin/python benchmarks/region.py [--sizes 1024 2048] [--big] [--peer-big] [--seed 0] [--skip-peer] [--keep]

For each size a simulated pair (``science.skysim.simulate_pair``: stars, galaxies, injected transients and
cosmic rays in the science exposure) is made and written to a temporary folder (the simulation is not
timed). Then, each in a fresh process so that its peak RSS is its own:

- ours: every sky step (acquisition with the noise model, cosmic-ray mask, alignment, PSFs, normalisation,
  ZOGY, classic difference, candidates, triplets with their preview) through the pipeline's own loop
  (``sky.runner.run_region``), per-step seconds as the runner times them (``total_s`` sums those nine
  steps, issue #15's chain; with ``--alert-steps`` the alert steps the table now also holds, real/bogus
  ``scores`` and ``alerts``, run and are timed too, added in ``total_s_with_alert_steps``); once with the
  cosmic-ray mask (the default settings: the simulated science image is a single exposure, so masking
  applies) and, at 2048² (every size with ``--no-mask-run``), once with masking skipped (image option
  ``cosmic_rays=skip``);
- peer: ``reproject.reproject_interp`` (bicubic) of the reference onto the science WCS, a median
  background subtracted from both, and SFFT's numpy backend (``sfft.CustomizedPacket``,
  ``BACKEND_4SUBTRACT='Numpy'``, kernel half-width 2 x FWHM as in ``benchmarks/differencing.py``, with a
  spatially constant kernel and background, ``KerPolyOrder=BGPolyOrder=0``: the model ZOGY itself makes, and
  SFFT's cheapest one (its default order 2 took 5.3 GB at 1024² and would need ~20 GB at 2048²); its numba
  kernels are compiled on a 256² cut first, untimed; its address space is capped at ``--peer-memory-gb``,
  so it fails rather than exhausting the shared machine). The peer stops at the difference image: it has no
  noise model, CR mask, PSF, S_corr, candidates or cutouts, so the speed-up is a lower bound.

Floors, measured on this machine in the same run (one process, the thread count ours uses):
``fft_s`` one real FFT pair (rfft2 + irfft2) of the padded ZOGY size; ``interp_s`` one bicubic resampling
of one image (``ndimage.map_coordinates``, prefiltered); ``io_s`` writing and reading one float32 image
as FITS; ``cnn_s`` the network's multiply-adds over the image at the measured single-thread GEMM rate.
Each step's floor is its irreducible work in those units (see :func:`step_floors`); ``floor_total_s`` is
their sum. Recovery at the physical limit (completeness of S/N >= 6 injections and clean false candidates
per 10^6 pixels, from the candidates step) is reported beside the times.

With ``--big`` the last line also gives ``zogy_scaling_over_nlogn``: the ZOGY step's 4096²/2048² time ratio
over the n log n ratio (4.36; issue #15 asks for at most 1.2), and ``zogy_alone``: the same for
``zogy_difference`` by itself, best of 3 interleaved runs (less exposed to the load).

Temporary folders are removed at the end (also on failure; ``--keep`` keeps them). Timings taken while
other work shares the machine are noisy: the load (``os.getloadavg``) is printed, and ours/peer ratios
come from the same run. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

STEP_ORDER = ("acquire", "cosmic_ray_mask", "align", "psf", "normalize", "zogy", "classic", "candidates", "triplets")


def log(msg: str) -> None:
    print(f"[region] {msg}", file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: kilobytes


# --------------------------------------------------------------------------- children
def child_simulate(folder: Path, size: int, seed: int) -> dict:
    from astrid_pipeline.science.skysim import SurveyConfig, simulate_pair

    cfg = SurveyConfig(shape=(size, size), seed=seed)
    t0 = time.perf_counter()
    pair = simulate_pair(150.1192, 2.2058, "bench", cfg)
    folder.mkdir(parents=True, exist_ok=True)
    pair.science.writeto(folder / "science.fits", overwrite=True)
    pair.reference.writeto(folder / "reference.fits", overwrite=True)
    pair.truth.to_parquet(folder / "truth.parquet")
    if pair.cosmic_rays is not None:
        pair.cosmic_rays.to_parquet(folder / "cosmic_rays.parquet")
    return {"simulation_s": time.perf_counter() - t0, "n_injected": int(len(pair.truth))}


def _load_pair(folder: Path, options: dict | None = None):
    import pandas as pd
    from astropy.io import fits

    from astrid_pipeline.archives.base import ArchivePair

    crp = folder / "cosmic_rays.parquet"
    return ArchivePair(fits.open(folder / "science.fits"), fits.open(folder / "reference.fits"),
                       "sim:science", "sim:reference", pd.read_parquet(folder / "truth.parquet"),
                       pd.read_parquet(crp) if crp.exists() else None, {"archive": "simulated"},
                       image_options=options or {})


def child_ours(folder: Path, work: Path, mask: bool, alert_steps: bool = False) -> dict:
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.regions import Region
    from astrid_pipeline.science import threads
    from astrid_pipeline.sky import runner
    from astrid_pipeline.sky.settings import SkySettings
    from astrid_pipeline.sky.table import SKY_STEPS

    pair = _load_pair(folder, None if mask else {"science": {"cosmic_rays": "skip"}})
    layout = DataLayout(work)
    region = Region("bench", float("nan"), float("nan"))
    steps, meta, failed, rss = {}, {}, [], {}
    t0 = time.perf_counter()
    steps_run = [s for s in SKY_STEPS if alert_steps or s.name in STEP_ORDER]
    for ev in runner.run_region(layout, region, SkySettings(), steps_run, fetch_pair=lambda: pair, owner="bench"):
        if ev.kind == "materialized":
            steps[ev.step.name] = round(ev.seconds, 3)
            rss[ev.step.name] = round(peak_rss_gb(), 3)
            meta[ev.step.name] = ev.result.metadata
        elif ev.kind == "failed":
            failed.append(f"{ev.step.name}: {ev.message}")
        elif ev.kind == "check" and not ev.outcome.passed:
            failed.append(f"check {ev.check.name}: {ev.outcome.description}")
    wall = time.perf_counter() - t0
    cand = meta.get("candidates", {})
    core = {k: v for k, v in steps.items() if k in STEP_ORDER}
    return {"steps": steps, "total_s": round(sum(core.values()), 3),
            "total_s_with_alert_steps": round(sum(steps.values()), 3), "loop_wall_s": round(wall, 3),
            "peak_rss_gb": round(max(v for k, v in rss.items() if k in STEP_ORDER), 3),
            "peak_rss_gb_after_step": rss, "failures": failed,
            "torch_threads": threads.torch_threads(), "fft_workers": threads.fft_workers(),
            "cr_method": meta.get("cosmic_ray_mask", {}).get("method"),
            "completeness_snr_ge_6": cand.get("completeness_snr_ge_6"),
            "false_per_mpix": cand.get("false_per_mpix"), "n_candidates": cand.get("n_candidates"),
            "noise_S_corr_holdout": meta.get("zogy", {}).get("noise_S_corr_holdout"),
            "alignment_rms_px": meta.get("align", {}).get("residual_rms")}


def _sfft(work: Path, R: np.ndarray, N: np.ndarray, hw: int, threads: int) -> np.ndarray:
    from astropy.io import fits
    from sfft.CustomizedPacket import Customized_Packet

    names = [str(work / n) for n in ("ref.fits", "sci.fits", "mref.fits", "msci.fits", "diff.fits")]
    for p in names:
        Path(p).unlink(missing_ok=True)
    fr, fs, fmr, fms, fd = names
    fits.PrimaryHDU(R).writeto(fr)
    fits.PrimaryHDU(N).writeto(fs)
    fits.PrimaryHDU(np.nan_to_num(R)).writeto(fmr)
    fits.PrimaryHDU(np.nan_to_num(N)).writeto(fms)
    Customized_Packet.CP(FITS_REF=fr, FITS_SCI=fs, FITS_mREF=fmr, FITS_mSCI=fms, ForceConv="REF", GKerHW=hw,
                         FITS_DIFF=fd, KerPolyOrder=0, BGPolyOrder=0, BACKEND_4SUBTRACT="Numpy",
                         NUM_CPU_THREADS_4SUBTRACT=threads, VERBOSE_LEVEL=0)
    return fits.getdata(fd)


def child_peer(folder: Path, work: Path, memory_gb: float) -> dict:
    from astropy.io import fits
    from astropy.wcs import WCS
    from reproject import reproject_interp

    from astrid_pipeline.science import threads

    if memory_gb > 0:
        cap = int(memory_gb * 1e9)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    work.mkdir(parents=True, exist_ok=True)
    n_threads = threads.fft_workers()
    sci_hdr = fits.getheader(folder / "science.fits")
    fwhm = float(sci_hdr.get("FWHM", sci_hdr.get("SEEING", 3.0)) or 3.0)
    hw = int(np.ceil(2 * fwhm))
    # numba compilation of SFFT's kernels, untimed, on a small cut
    rng = np.random.default_rng(0)
    cut = rng.normal(0, 1, (256, 256))
    _sfft(work, cut, cut + rng.normal(0, 1, cut.shape), hw, n_threads)
    t = {}
    t0 = time.perf_counter()
    with fits.open(folder / "science.fits") as hs, fits.open(folder / "reference.fits") as hr:
        N = np.asarray(hs[0].data, np.float64)
        wn = WCS(hs[0].header).celestial
        Rin = np.asarray(hr[0].data, np.float64)
        wr = WCS(hr[0].header).celestial
    t["read_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    R, foot = reproject_interp((Rin, wr), wn, shape_out=N.shape, order="bicubic")
    R[foot == 0] = np.nan
    t["reproject_interp_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    N = N - np.nanmedian(N)
    R = R - np.nanmedian(R)
    t["background_s"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    D = _sfft(work, R, N, hw, n_threads)
    t["sfft_numpy_s"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    return {"steps": {k: round(v, 3) for k, v in t.items()}, "total_s": round(total, 3),
            "peak_rss_gb": round(peak_rss_gb(), 3), "threads": n_threads,
            "difference_finite": bool(np.isfinite(D).any())}


def child_floors(size: int) -> dict:
    """Unit costs on this machine: FFT pair, one bicubic resampling, FITS write+read, network multiply-adds."""
    import scipy.fft as sfft
    from astropy.io import fits
    from scipy import ndimage

    from astrid_pipeline.science import threads

    workers = threads.fft_workers()
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (size, size))
    n = sfft.next_fast_len(size + 64, real=True)
    pad = np.zeros((n, n))
    pad[:size, :size] = img

    def best(fn, k=3):
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    fft_s = best(lambda: sfft.irfft2(sfft.rfft2(pad, workers=workers), s=pad.shape, workers=workers))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.array([yy + 0.3, xx + 0.7])
    interp_s = best(lambda: ndimage.map_coordinates(img, coords, order=3, mode="constant", cval=np.nan), 2)
    coords = yy = xx = None  # (memory)
    tmp = Path(tempfile.mkdtemp(prefix="astrid-region-floor-"))
    try:
        f32 = img.astype(np.float32)

        def io():
            p = tmp / "x.fits"
            fits.PrimaryHDU(f32).writeto(p, overwrite=True)
            with fits.open(p) as h:
                np.asarray(h[0].data).sum()

        io_s = best(io)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    import torch

    from astrid_pipeline.ml.checkpoint import load_checkpoint
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS

    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    b = torch.randn(512, 4096)
    gemm_s = best(lambda: a @ b)
    gemm_macs_per_s = 512 * 512 * 4096 / gemm_s
    model = load_checkpoint(SHIPPED_WEIGHTS)
    model = model[0] if isinstance(model, tuple) else model
    macs = 0.0
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            k = m.kernel_size[0] * m.kernel_size[1]
            macs += m.in_channels * m.out_channels * k / m.groups * 4.0 ** (-_level(model, m))
    cnn_s = macs * size * size / gemm_macs_per_s
    return {"fft_s": fft_s, "fft_len": n, "interp_s": interp_s, "io_s": io_s, "cnn_s": cnn_s,
            "network_macs_per_pixel": round(macs, 1), "gemm_gmacs_per_s": round(gemm_macs_per_s / 1e9, 2),
            "fft_workers": workers}


def child_zogy_scaling() -> dict:
    """``zogy_difference`` alone (Gaussian PSFs, white noise, source-noise variances, astrometric noise) at 2048²
    and 4096², best of 3 interleaved runs each: the step's own scaling, less exposed to the machine's load."""
    from astrid_pipeline.science.zogy import zogy_difference

    yy, xx = np.mgrid[-15:16, -15:16]
    pn, pr = np.exp(-(xx**2 + yy**2) / (2 * 1.4**2)), np.exp(-(xx**2 + yy**2) / (2 * 1.0**2))
    rng = np.random.default_rng(0)
    data = {n: (rng.normal(0, 1, (n, n)).astype(np.float32), rng.normal(0, 1, (n, n)).astype(np.float32))
            for n in (2048, 4096)}
    best = {n: float("inf") for n in data}
    for _ in range(3):
        for n, (a, b) in data.items():
            var = np.ones_like(a)
            t0 = time.perf_counter()
            zogy_difference(a, b, pn, pr, 1.0, 1.0, var_n=var, var_r=var, astrometric_sigma=(0.05, 0.05))
            best[n] = min(best[n], time.perf_counter() - t0)
    nlogn = (4096.0 ** 2 * np.log(4096.0 ** 2)) / (2048.0 ** 2 * np.log(2048.0 ** 2))
    ratio = best[4096] / best[2048]
    return {"zogy_2048_s": round(best[2048], 3), "zogy_4096_s": round(best[4096], 3), "ratio": round(ratio, 2),
            "nlogn_ratio": round(nlogn, 2), "ratio_over_nlogn": round(ratio / nlogn, 2),
            "peak_rss_gb": round(peak_rss_gb(), 3)}


def _level(model, module) -> int:
    """Resolution level of a convolution in a U-Net (0 = full resolution; each Down halves both axes)."""
    for i, d in enumerate(getattr(model, "downs", [])):
        if any(m is module for m in d.modules()):
            return i + 1
    ups = list(getattr(model, "ups", []))
    depth = len(ups)
    for j, u in enumerate(ups):
        if module is u.up:
            return depth - j  # the transposed conv runs at the coarser level's resolution
        if any(m is module for m in u.modules()):
            return depth - j - 1
    return 0


def step_floors(f: dict, mask: bool = True) -> dict:
    """Irreducible work per step, in the measured units (FITS image round trips, FFT pairs, interpolations)."""
    io, fft = f["io_s"], f["fft_s"]
    floors = {
        "acquire": 4 * io,  # read two inputs, write two products (image + error map each: counted once)
        "cosmic_ray_mask": (f["cnn_s"] + 2 * io) if mask else io,  # the network over the image, read + write
        "align": f["interp_s"] + 3 * io,  # one resampling; read two images, write one
        "psf": 2 * io,  # read both images (the stamps are tiny)
        "normalize": 4 * io,  # read two, write two
        "zogy": 4 * fft + 7 * io,  # D, S, S_corr: 4 transform pairs; read 2, write 5 planes
        "classic": 1 * fft + 3 * io,  # one convolution; read 2, write 1
        "candidates": 6 * io,  # read S_corr, D, flux, error, classic, reference
        "triplets": 3 * io,  # read N, R, D
    }
    return {k: round(v, 4) for k, v in floors.items()}


# --------------------------------------------------------------------------- driver
def _run_child(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_size(size: int, tmp: Path, args) -> dict:
    folder = tmp / f"pair{size}"
    sim = _run_child(["simulate", str(folder), str(size), str(args.seed)], 1800)
    log(f"{size}²: simulated in {sim['simulation_s']:.1f} s (not timed)")
    floors = _run_child(["floors", str(size)], 600)
    out: dict = {"size": size}
    alerts = "1" if args.alert_steps else "0"
    ours = _run_child(["ours", str(folder), str(tmp / f"ours{size}"), "1", alerts], 1800)
    shutil.rmtree(tmp / f"ours{size}", ignore_errors=True)
    log(f"{size}²: ours {ours['total_s']:.2f} s {ours['steps']} peak RSS {ours['peak_rss_gb']:.2f} GB"
        f" {ours['peak_rss_gb_after_step']} failures {ours['failures']}")
    sf = step_floors(floors, True)
    out.update(steps=ours["steps"], total_s_with_alert_steps=ours["total_s_with_alert_steps"], floors=sf,
               floor_total_s=round(sum(sf.values()), 3),
               total_s=ours["total_s"], peak_rss_gb=ours["peak_rss_gb"], loop_wall_s=ours["loop_wall_s"],
               peak_rss_gb_after_step=ours["peak_rss_gb_after_step"],
               unit_costs={k: (round(v, 4) if isinstance(v, float) else v) for k, v in floors.items()},
               threads={"torch": ours["torch_threads"], "fft": ours["fft_workers"]},
               recovery={k: ours[k] for k in ("completeness_snr_ge_6", "false_per_mpix", "n_candidates",
                                              "noise_S_corr_holdout", "alignment_rms_px")},
               cr_method=ours["cr_method"], failures=ours["failures"])
    if args.no_mask_run or size == 2048:
        nm = _run_child(["ours", str(folder), str(tmp / f"nomask{size}"), "0", alerts], 1800)
        shutil.rmtree(tmp / f"nomask{size}", ignore_errors=True)
        log(f"{size}²: ours without CR mask {nm['total_s']:.2f} s {nm['steps']}")
        out.update(total_s_no_mask=nm["total_s"], steps_no_mask=nm["steps"], peak_rss_gb_no_mask=nm["peak_rss_gb"])
    out.update(peer_total_s=None, speedup=None)
    if not args.skip_peer and (size <= 2048 or args.peer_big):
        try:
            peer = _run_child(["peer", str(folder), str(tmp / f"peer{size}"), str(args.peer_memory_gb)], 3600)
        except RuntimeError as exc:
            log(f"{size}²: peer failed: {exc}")
        else:
            out.update(peer_steps=peer["steps"], peer_total_s=peer["total_s"], peer_peak_rss_gb=peer["peak_rss_gb"],
                       speedup=round(peer["total_s"] / ours["total_s"], 2))
            log(f"{size}²: peer {peer['total_s']:.2f} s {peer['steps']}: speed-up {out['speedup']}x")
        shutil.rmtree(tmp / f"peer{size}", ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        kind, rest = argv[1], argv[2:]
        if kind == "simulate":
            res = child_simulate(Path(rest[0]), int(rest[1]), int(rest[2]))
        elif kind == "ours":
            res = child_ours(Path(rest[0]), Path(rest[1]), rest[2] == "1", rest[3] == "1")
        elif kind == "peer":
            res = child_peer(Path(rest[0]), Path(rest[1]), float(rest[2]))
        elif kind == "floors":
            res = child_floors(int(rest[0]))
        elif kind == "zogy_scaling":
            res = child_zogy_scaling()
        else:
            raise SystemExit(f"unknown child {kind}")
        print(json.dumps(res))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--big", action="store_true", help="also 4096² (a few minutes; the peer only with --peer-big)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-peer", action="store_true")
    ap.add_argument("--alert-steps", action="store_true",
                    help="also run and time the table's alert steps (real/bogus scores, alert packets)")
    ap.add_argument("--peer-big", action="store_true", help="run the peer at 4096² too (needs ~14 GB)")
    ap.add_argument("--no-mask-run", action="store_true", help="also run without the CR mask at every size "
                                                              "(always done at 2048²)")
    ap.add_argument("--peer-memory-gb", type=float, default=12.0,
                    help="address-space cap of the peer process (0 = none)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args(argv)
    sizes = list(dict.fromkeys(args.sizes + ([4096] if args.big else [])))
    load0 = os.getloadavg()
    log(f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} on {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="astrid-region-"))
    results = {}
    try:
        for size in sizes:
            results[str(size)] = run_size(size, tmp, args)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    r2 = results.get("2048", {})
    summary = {"sizes": results, "load_average": [round(x, 2) for x in os.getloadavg()],
               "load_average_start": [round(x, 2) for x in load0], "cpus": os.cpu_count(),
               "total_s_2048": r2.get("total_s"), "total_s_2048_no_mask": r2.get("total_s_no_mask"),
               "peer_total_s_2048": r2.get("peer_total_s"), "speedup_2048": r2.get("speedup"),
               "peak_rss_gb_2048": r2.get("peak_rss_gb"), "recovery_2048": r2.get("recovery")}
    if "4096" in results and "2048" in results:
        nlogn = (4096.0 ** 2 * np.log(4096.0 ** 2)) / (2048.0 ** 2 * np.log(2048.0 ** 2))
        summary["scaling_4096_over_2048"] = round(results["4096"]["total_s"] / r2["total_s"], 2)
        summary["zogy_scaling_4096_over_2048"] = round(results["4096"]["steps"]["zogy"] / r2["steps"]["zogy"], 2)
        summary["zogy_scaling_over_nlogn"] = round(summary["zogy_scaling_4096_over_2048"] / nlogn, 2)
        summary["peak_rss_gb_4096"] = results["4096"]["peak_rss_gb"]
        zs = _run_child(["zogy_scaling"], 1800)
        log(f"ZOGY alone: {zs}")
        summary["zogy_alone"] = zs
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
