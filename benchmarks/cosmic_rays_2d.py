"""Single-image cosmic-ray detection: our network vs astroscrappy, deepCR and Cosmic-CoNN on one held-out image.

Builds a 2048x2048 test exposure with :func:`simulate_field` from a seed no
training run uses (default 2027; the shipped weights were trained on seed 1
and tested on 9000001): faint 3-8 sigma hits, charge spreading, spots,
tracks and worms, undersampled to broad PSFs, saturated stars with bleed
trails. Then, in this process, one after the other:

* ours: the shipped weights (``astrid_pipeline/ml/weights``) or ``--checkpoint``,
  full-frame tiled inference (normalisation included in the time);
* astroscrappy 1.3 with its defaults (sigclip 4.5, sigfrac 0.3, objlim 5),
  given the true gain, read noise and saturation;
* deepCR's ``ACS-WFC`` model and Cosmic-CoNN's ``ground_imaging`` model
  (optional ``bench`` peers; skipped with a note if not installed), on the
  image in electrons, as their documentation asks.

Torch runs with ``--threads`` threads (default 2); the wall time of each
detector is measured around the call only. Scores, on all pixels: TPR at
0.01 % FPR (a network's probability map gives a curve; astroscrappy's single
mask gives one operating point, joined to (0,0) and (1,1)), and purity at
95 % TPR, under the attention-CR paper's protocol (truth and every output
dilated 3x3; ``*_pixel`` keys give the undilated numbers).

The last line printed is one JSON object.

``--family DIR`` (the folder ``python -m astrid_pipeline.science.cosmic_rays.family``
trained into) compares every trained family member instead, in one run:
on the simulated test split of ``DIR/training_set.h5`` (fields from a seed
training never saw), on the real GMOS-S frame of ``../shared/realdata``
(truth: the pixels of its two documented cosmic-ray boxes that stand 5
sigma of its VAR plane above a 7x7 median of the frame; every other pixel is
a negative), and by the wall time of a full 2048x2048 frame next to
astroscrappy's on the same frame (the best of ``--repeats`` calls each, with
the process CPU seconds of that call; the 1-minute load average before and
after the timings is printed, since on a shared machine they are noisy). It prints the Markdown table (the
attention-CR paper's columns: TPR at 0.01 % and 0.1 % FPR, purity at 95 %
TPR, F1, IoU, FDR at threshold 0.5; 3x3-dilated protocol; plus each member's
training: optimizer steps, epochs and CPU seconds spent, from its
``model.json``) and picks the model to ship: the highest test-split TPR at 0.1 % FPR among those no slower than
astroscrappy on 2048x2048 with ``--threads`` threads.

Usage: python benchmarks/cosmic_rays_2d.py [--size 2048] [--seed 2027] [--threads 2] [--checkpoint PATH] [--skip-peers]
       python benchmarks/cosmic_rays_2d.py --family data/training/cr2d_family [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astrid_pipeline.ml import metrics as M  # noqa: E402
from astrid_pipeline.science.cosmic_rays.simulate import CRSimConfig, simulate_field  # noqa: E402


def _scores(score, truth, binary=False):
    out = {}
    for proto in ("dilated", "pixel"):
        s, t = M.apply_protocol(score, truth, proto)
        c = M.mask_curve([s], t, [0.0]) if binary else M.score_curve(s, t)
        out[proto] = {"tpr_at_1e-4": c.tpr_at_fpr(1e-4), "purity_at_95": c.purity_at_tpr(0.95)}
        if binary:
            out[proto]["purity_at_95"] = float("nan") if c.tpr[0] < 0.95 else float(c.precision[0])
            out[proto]["operating_point"] = {"tpr": float(c.tpr[0]), "fpr": float(c.fpr[0])}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="--family: timed calls per detector (the best is kept)")
    ap.add_argument("--family", default="", help="compare the models trained by astrid_pipeline.science.cosmic_rays.family in DIR")
    args = ap.parse_args(argv)
    if args.family:
        return family_comparison(args)

    import torch

    torch.set_num_threads(args.threads)
    from astrid_pipeline.ml.checkpoint import SHIPPED, load_checkpoint
    from astrid_pipeline.ml.inference import predict_probability
    from astrid_pipeline.science.cosmic_rays.lacosmic import lacosmic_mask

    t0 = time.perf_counter()
    cfg = CRSimConfig(image_size=args.size, spectral_fraction=0.0, cr_density=600.0, galaxy_density=600.0)
    f = simulate_field(np.random.default_rng(args.seed), cfg)
    truth = f.cr_mask
    print(f"test image {args.size}x{args.size}: {truth.sum()} CR pixels ({truth.mean():.4%}), {len(f.hits)} hits "
          f"({sum(h['faint'] for h in f.hits)} at 3-8 sigma), {f.saturated.sum()} saturated pixels, "
          f"FWHM {f.fwhm:.2f} px, gain {f.gain:.2f}, sky {f.sky:.0f} ADU; built in {time.perf_counter() - t0:.1f} s",
          flush=True)
    res: dict[str, dict] = {}
    times: dict[str, float | None] = {}

    ck = Path(args.checkpoint) if args.checkpoint else SHIPPED
    model, spec, _ = load_checkpoint(ck)
    t = time.perf_counter()
    prob = predict_probability(model, f.image, threads=args.threads)
    times["ours"] = time.perf_counter() - t
    res["ours"] = _scores(prob, truth)
    print(f"ours ({spec.name}, {ck.name}): {times['ours']:.2f} s {res['ours']}", flush=True)

    t = time.perf_counter()
    la = lacosmic_mask(f.image, gain=f.gain, read_noise=f.read_noise, saturation=f.saturation)
    times["astroscrappy"] = time.perf_counter() - t
    res["astroscrappy"] = _scores(la, truth, binary=True)
    print(f"astroscrappy (defaults): {times['astroscrappy']:.2f} s {res['astroscrappy']}", flush=True)

    electrons = f.image.astype(np.float64) * f.gain
    for name in ("deepcr", "cosmicconn"):
        times[name] = None
        res[name] = {"dilated": {"tpr_at_1e-4": None, "purity_at_95": None}}
        if args.skip_peers:
            continue
        try:
            if name == "deepcr":
                from deepCR import deepCR

                mdl = deepCR(mask="ACS-WFC", device="CPU")
                t = time.perf_counter()
                p = mdl.clean(electrons.astype(np.float32), threshold=0.5, inpaint=False, binary=False,
                              segment=True, patch=1024, n_jobs=1)
            else:
                import logging

                from cosmic_conn import init_model

                logging.disable(logging.WARNING)
                mdl = init_model("ground_imaging")
                t = time.perf_counter()
                p = mdl.detect_cr(electrons.astype(np.float32), ret_numpy=True)
            times[name] = time.perf_counter() - t
            p = np.asarray(p, dtype=np.float32)
            res[name] = _scores(p, truth)
            print(f"{name}: {times[name]:.2f} s {res[name]}", flush=True)
        except Exception as exc:  # noqa: BLE001 - an optional peer that cannot run is reported, not fatal
            print(f"{name}: not run ({type(exc).__name__}: {exc})", flush=True)

    def r(v, n=4):
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else round(float(v), n)

    out = {
        "ours_s": r(times["ours"], 2), "astroscrappy_s": r(times["astroscrappy"], 2),
        "deepcr_s": r(times["deepcr"], 2), "cosmicconn_s": r(times["cosmicconn"], 2),
        "ours_tpr_at_1e-4": r(res["ours"]["dilated"]["tpr_at_1e-4"]),
        "astroscrappy_tpr_at_1e-4": r(res["astroscrappy"]["dilated"]["tpr_at_1e-4"]),
        "deepcr_tpr_at_1e-4": r(res["deepcr"]["dilated"]["tpr_at_1e-4"]),
        "cosmicconn_tpr_at_1e-4": r(res["cosmicconn"]["dilated"]["tpr_at_1e-4"]),
        "ours_purity_at_95": r(res["ours"]["dilated"]["purity_at_95"]),
        "astroscrappy_purity_at_95": r(res["astroscrappy"]["dilated"]["purity_at_95"]),
        "protocol": "dilated3x3",
        "ours_tpr_at_1e-4_pixel": r(res["ours"]["pixel"]["tpr_at_1e-4"]),
        "astroscrappy_tpr_at_1e-4_pixel": r(res["astroscrappy"]["pixel"]["tpr_at_1e-4"]),
        "size": args.size, "seed": args.seed, "threads": args.threads, "model": spec.name,
    }
    print(json.dumps(out))
    return 0


GMOS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "cosmic_rays" / "gmos_spectrum_two_crs.fits"
GMOS_BOXES = [(slice(41, 72), slice(142, 161)), (slice(117, 147), slice(35, 43))]
# the SCI plane is already in electrons (its VAR plane = SCI + 18.0 e^2 = SCI + 4.24^2, fitted): astroscrappy
# gets gain 1 and the read noise in electrons (the detector's own gain, 1.933 e-/ADU, was applied upstream)
GMOS_GAIN, GMOS_READ_NOISE_E = 1.0, 4.24


def gmos_frame():
    """(image ADU, truth mask) of the real GMOS-S frame with its two cosmic rays (see the module docstring)."""
    from astropy.io import fits
    from scipy.ndimage import median_filter

    with fits.open(GMOS) as h:
        sci = np.array(h["SCI"].data, np.float64)
        var = np.array(h["VAR"].data, np.float64)
    model = median_filter(sci, size=7, mode="nearest")
    truth = np.zeros(sci.shape, bool)
    for b in GMOS_BOXES:
        truth[b] = (sci[b] - model[b]) > 5.0 * np.sqrt(np.clip(var[b], 1e-12, None))
    return sci, truth


def _paper_row(rows, name, protocol="dilated"):
    r = next(r for r in rows if r["method"] == name and r["protocol"] == protocol)
    return {k: r[k] for k in ("tpr_at_1e-4", "tpr_at_1e-3", "purity_at_95", "f1", "iou", "fdr")}


def _best_time(fn, repeats: int) -> tuple[float, float]:
    """(wall s, process CPU s) of the fastest of ``repeats`` calls of ``fn()``."""
    best = (float("inf"), float("nan"))
    for _ in range(max(1, repeats)):
        t, c = time.perf_counter(), time.process_time()
        fn()
        w = time.perf_counter() - t
        if w < best[0]:
            best = (w, time.process_time() - c)
    return best


def _training(ck: Path) -> dict:
    """Steps, epochs and CPU seconds a family member trained for (its ``model.json``); empty if absent."""
    card = ck.with_suffix(".json")
    try:
        d = json.loads(card.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {k: d.get(k) for k in ("steps_done", "epochs_done", "cpu_s", "best_epoch", "stop_reason")}


def family_comparison(args) -> int:
    import torch

    from astrid_pipeline.ml.checkpoint import SHIPPED, load_checkpoint
    from astrid_pipeline.ml.inference import predict_probability
    from astrid_pipeline.science.cosmic_rays.evaluate import evaluate_masks, evaluate_scores, evaluate_test_split
    from astrid_pipeline.science.cosmic_rays.lacosmic import DEFAULT_SIGCLIPS, lacosmic_mask, sigclip_sweep

    torch.set_num_threads(args.threads)
    fam = Path(args.family)
    data = fam / "training_set.h5"
    cks = {p.parent.name: p for p in sorted(fam.glob("*/model.pt"))}
    if SHIPPED.exists():
        cks["shipped"] = SHIPPED
    if not cks or not data.exists():
        print(f"no trained models or no training_set.h5 under {fam}: run python -m astrid_pipeline.science.cosmic_rays.family first")
        return 2
    t0 = time.perf_counter()
    ev = evaluate_test_split(data, {k: str(v) for k, v in cks.items()}, threads=args.threads)
    print(f"test split: {ev['n_test_fields']} fields, {ev['cr_pixels']} CR pixels ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    table = {name: {"test": _paper_row(ev["rows"], name)} for name in list(cks) + ["lacosmic"]}
    have_gmos = GMOS.exists()
    if have_gmos:
        img, truth = gmos_frame()
        for name, ck in cks.items():
            model, _, _ = load_checkpoint(ck)
            rows, _ = evaluate_scores(name, predict_probability(model, img, threads=args.threads), truth)
            table[name]["gmos"] = _paper_row(rows, name)
        sweep = sigclip_sweep(img, DEFAULT_SIGCLIPS, gain=GMOS_GAIN, read_noise=GMOS_READ_NOISE_E / GMOS_GAIN)
        rows, _ = evaluate_masks("lacosmic", sweep, DEFAULT_SIGCLIPS, truth, 4.5)
        table["lacosmic"]["gmos"] = _paper_row(rows, "lacosmic")
        print(f"GMOS frame: {int(truth.sum())} CR pixels in the two boxes", flush=True)
    else:
        print(f"GMOS frame not found at {GMOS}: real-frame columns left empty", flush=True)
    cfg = CRSimConfig(image_size=args.size, spectral_fraction=0.0, cr_density=600.0, galaxy_density=600.0)
    f = simulate_field(np.random.default_rng(args.seed), cfg)
    load_before = os.getloadavg()[0]
    t_la, c_la = _best_time(lambda: lacosmic_mask(f.image, gain=f.gain, read_noise=f.read_noise,
                                                  saturation=f.saturation), args.repeats)
    table["lacosmic"]["seconds"], table["lacosmic"]["cpu_seconds"] = t_la, c_la
    params = {}
    for name, ck in cks.items():
        model, spec, _ = load_checkpoint(ck)
        params[name] = (spec.name, int(sum(p.numel() for p in model.parameters())))
        w, c = _best_time(lambda: predict_probability(model, f.image, threads=args.threads), args.repeats)
        table[name]["seconds"], table[name]["cpu_seconds"] = w, c
        table[name]["training"] = _training(ck)
        print(f"{name} ({spec.name}): {w:.2f} s wall ({c:.2f} CPU s) on {args.size}^2, "
              f"{w / t_la:.2f}x astroscrappy", flush=True)
    load_after = os.getloadavg()[0]
    print(f"astroscrappy (defaults): {t_la:.2f} s wall ({c_la:.2f} CPU s) on {args.size}^2; best of {args.repeats}; "
          f"1-min load average {load_before:.2f} before, {load_after:.2f} after the timings "
          f"on {os.cpu_count()} CPUs", flush=True)
    eligible = [n for n in cks if n != "shipped" and table[n]["seconds"] <= t_la]
    winner = max(eligible, key=lambda n: table[n]["test"]["tpr_at_1e-3"]) if eligible else None

    def pct(v):
        return "-" if v is None or not np.isfinite(v) else f"{100 * v:.2f}"

    def num(v):
        return "-" if v is None or not np.isfinite(v) else f"{v:.4f}"

    head = ("| model | parameters | trained (steps / epochs / CPU s) | data | TPR at 0.01% FPR | TPR at 0.1% FPR | "
            f"purity at 95% TPR | F1 | IoU | FDR | s on {args.size}² ({args.threads} threads) | vs astroscrappy |")
    lines = [head, "|" + "---|" * 12]
    for name in list(cks) + ["lacosmic"]:
        label = "astroscrappy (L.A.Cosmic)" if name == "lacosmic" else (f"**{name}**" if name == winner else name)
        p = "-" if name == "lacosmic" else f"{params[name][1]:,}"
        tr = table[name].get("training") or {}
        trained = (f"{tr['steps_done']} / {tr['epochs_done']} / {tr['cpu_s']:.0f}"
                   if tr.get("steps_done") is not None and tr.get("cpu_s") is not None else "-")
        for where in ("test", "gmos"):
            r = table[name].get(where)
            if r is None:
                continue
            first = where == "test"
            sec = f"{table[name]['seconds']:.2f} | {table[name]['seconds'] / t_la:.2f}x" if first else " | "
            lines.append(f"| {label if first else ''} | {p if first else ''} | {trained if first else ''} | "
                         f"{'simulated test split' if where == 'test' else 'GMOS-S frame'} | {pct(r['tpr_at_1e-4'])} | "
                         f"{pct(r['tpr_at_1e-3'])} | {pct(r['purity_at_95'])} | {num(r['f1'])} | {num(r['iou'])} | "
                         f"{num(r['fdr'])} | {sec} |")
    print("\n".join(lines))
    print(f"ships: {winner} (highest test TPR at 0.1% FPR among models no slower than astroscrappy, "
          f"{t_la:.2f} s)" if winner else "ships: none is as fast as astroscrappy")
    if winner and "shipped" in table:
        w_t, s_t = table[winner]["test"]["tpr_at_1e-3"], table["shipped"]["test"]["tpr_at_1e-3"]
        print(f"shipped weights ({SHIPPED.name}): test TPR at 0.1% FPR {100 * s_t:.2f} % vs {winner} {100 * w_t:.2f} %: "
              + ("replacing them needs a new real-frame calibration (science/cosmic_rays/calibration.py)"
                 if w_t > s_t else "keep the shipped weights"))

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else (round(v, 5) if isinstance(v, float) else v)

    print(json.dumps({"winner": winner, "astroscrappy_s": round(t_la, 3), "threads": args.threads, "size": args.size,
                      "repeats": args.repeats, "load_avg_1min": [round(load_before, 2), round(load_after, 2)],
                      "gmos": have_gmos, "models": clean(table)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
