"""Real/bogus on triplets: the shipped CNN against two simple peers, on a seed the training never saw.

The test set is :data:`astrid_pipeline.sky.realbogus_ship.SHIP_TEST_SET`
(100 simulated regions from seed 1001; training used seed 1) unless
``--test-set`` names one; without the file it is built first (about 5
CPU minutes). On the same triplets, in this process:

* ours: :func:`astrid_pipeline.ml.realbogus.score.score_triplets` with the
  shipped weights (or ``--model``), normalisation included in the time, with
  its default 8-orientation averaging and with one orientation;
* the pipeline's own rule (a candidate is real when its extraction flags are
  0: no dipole, no sharp core, no bad or saturated pixel, no edge), one
  operating point;
* S/N alone (score = |S_corr peak|), the classifier a threshold gives.

It prints the metrics of each (AUC, FPR at 95 % TPR, FNR at 1 % FPR), the
ratio of their FPR at 95 % TPR to ours, per-type recall and bogus rejection
at the operating threshold, the time per 1000 triplets against the floor
(the normalisation alone), and ends with one JSON line
``{"auc", "fpr_at_95tpr", "fnr_at_1fpr", "per_type_recall", "seconds_per_1000", ...}``.
Timings on a shared machine are noisy; the ratio is measured in one run.

Usage: python benchmarks/realbogus.py [--test-set PATH] [--model PATH] [--threads 1] [--work DIR]
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-set", default="", help="a triplet set (HDF5); default: build SHIP_TEST_SET")
    ap.add_argument("--work", default="data/training/realbogus", help="where a built test set is kept")
    ap.add_argument("--model", default="", help="real/bogus checkpoint (default: the shipped weights)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--near-real-px", type=float, default=8.0,
                    help="leave out bogus within this many px of a real candidate (second detections), as training")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from astrid_pipeline.ml.realbogus.evaluate import evaluate_scores, roc_metrics
    from astrid_pipeline.ml.realbogus.normalize import normalize_triplets
    from astrid_pipeline.ml.realbogus.score import SHIPPED, load_realbogus, score_triplets
    from astrid_pipeline.sky.realbogus_ship import SHIP_TEST_SET
    from astrid_pipeline.ml.realbogus.dataset import load_triplet_set
    from astrid_pipeline.sky.triplet_set import build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    path = Path(args.test_set) if args.test_set else Path(args.work) / "test_set.h5"
    if not path.exists():
        print(f"building the test set {path} (seed {SHIP_TEST_SET.seed}, {SHIP_TEST_SET.n_regions} regions)", flush=True)
        build_triplet_training_set(SHIP_TEST_SET, path, run_sky_chain)
    x, t = load_triplet_set(path, exclude_near_real_px=args.near_real_px)
    model, payload = load_realbogus(args.model or SHIPPED)
    train_seed = json.loads(payload.get("summary_json", "{}")).get("data", "")
    print(f"test set {path}: {len(t)} triplets ({int((t['label'] == 1).sum())} real, {int((t['label'] == 0).sum())} "
          f"bogus) from {t['region'].nunique()} regions; model {payload['path']} (trained on {train_seed})", flush=True)

    t0 = time.perf_counter()
    rb, tp = score_triplets(model, x, t["sign"].to_numpy(), threads=args.threads)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    normalize_triplets(x, t["sign"].to_numpy())
    t_norm = time.perf_counter() - t0
    t0 = time.perf_counter()
    rb1, _ = score_triplets(model, x, t["sign"].to_numpy(), threads=args.threads, tta=False)
    t_one = time.perf_counter() - t0
    ev = evaluate_scores(rb, tp, t, payload["types"], float(payload["threshold"]))
    y = t["label"].to_numpy() == 1
    snr = roc_metrics(np.abs(t["snr"].to_numpy(float)), y)
    one = roc_metrics(rb1, y)
    flags_ok = t["flags"].to_numpy() == 0
    rule = {"tpr": float(flags_ok[y].mean()), "fpr": float(flags_ok[~y].mean())}
    per1000 = 1000.0 * t_ours / len(t)
    print(f"ours: AUC {ev['auc']:.4f}  FPR@95%TPR {ev['fpr_at_95tpr']:.4f}  FNR@1%FPR {ev['fnr_at_1fpr']:.4f}  "
          f"(threshold {ev['threshold']:.3f}: TPR {ev['tpr_at_threshold']:.4f}, FPR {ev['fpr_at_threshold']:.4f})")
    print(f"ours, one orientation (no 8-fold averaging): AUC {one['auc']:.4f}  FPR@95%TPR {one['fpr_at_95tpr']:.4f}  "
          f"FNR@1%FPR {one['fnr_at_1fpr']:.4f}  in {1000 * t_one / len(t):.2f} s per 1000")
    print(f"S/N alone: AUC {snr['auc']:.4f}  FPR@95%TPR {snr['fpr_at_95tpr']:.4f}  FNR@1%FPR {snr['fnr_at_1fpr']:.4f}  "
          f"-> its FPR at 95% TPR is {snr['fpr_at_95tpr'] / max(ev['fpr_at_95tpr'], 1e-6):.1f}x ours")
    print(f"flags == 0 rule: TPR {rule['tpr']:.4f} at FPR {rule['fpr']:.4f}")
    for k, v in sorted(ev["per_type"].items()):
        print(f"  {k:17s} n={v['n']:5d}  " + (f"recall {v['recall']:.4f}" if "recall" in v else
                                              f"rejected {v['rejected']:.4f}"))
    for k, v in ev["recall_by_snr"].items():
        print(f"  real S/N {k:8s} n={v['n']:5d}  recall {v['recall']:.4f}")
    print(f"type head accuracy on reals {ev['type_accuracy']:.3f}; calibration ECE "
          f"{ev['calibration']['expected_calibration_error']:.3f}")
    print(f"time: {per1000:.2f} s per 1000 triplets on {args.threads} thread(s); floor (normalisation alone) "
          f"{1000 * t_norm / len(t):.2f} s per 1000 ({per1000 / max(1000 * t_norm / len(t), 1e-9):.1f}x)")

    def r(v):
        return round(float(v), 5)

    print(json.dumps({"auc": r(ev["auc"]), "fpr_at_95tpr": r(ev["fpr_at_95tpr"]), "fnr_at_1fpr": r(ev["fnr_at_1fpr"]),
                      "per_type_recall": {k: r(v) for k, v in ev["per_type_recall"].items()},
                      "seconds_per_1000": r(per1000), "n_test": int(len(t)), "test_seed": SHIP_TEST_SET.seed
                      if not args.test_set else None, "threshold": r(ev["threshold"]),
                      "snr_only_fpr_at_95tpr": r(snr["fpr_at_95tpr"]), "flags_rule_tpr": r(rule["tpr"]),
                      "flags_rule_fpr": r(rule["fpr"]), "one_view_fpr_at_95tpr": r(one["fpr_at_95tpr"]),
                      "one_view_seconds_per_1000": r(1000 * t_one / len(t)), "threads": args.threads}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
