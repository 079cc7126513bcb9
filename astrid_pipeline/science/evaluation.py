"""Recovery of injected transients: match candidates to a truth table.

A truth row is recovered when a candidate of the same sign lies within
``radius`` pixels of it. Clean candidates (no flags) that match no truth
row are false positives; flagged candidates are artifacts reported as such
and are not counted as false positives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from astrid_pipeline.science.stars import match_positions


@dataclass
class RecoverySummary:
    injected: int
    recovered: int
    expected_detectable: int  # truth rows with expected S/N >= the limit
    recovered_detectable: int
    recovered_clean: int  # recovered by an unflagged candidate
    false_positives: int  # clean candidates matching no truth row
    n_candidates: int
    n_clean: int
    snr_limit: float

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def completeness(self) -> float:
        return self.recovered_detectable / self.expected_detectable if self.expected_detectable else float("nan")


def match_truth(candidates: pd.DataFrame, truth: pd.DataFrame, radius: float = 3.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (truth with ``recovered``/``candidate_id``/``recovered_clean``, candidates with ``truth_id``/``label``)."""
    truth = truth.copy()
    cands = candidates.copy()
    truth["recovered"] = False
    truth["recovered_clean"] = False
    truth["candidate_id"] = -1
    truth["measured_snr"] = np.nan
    cands["truth_id"] = ""
    cands["label"] = np.where(cands["flags"] == 0, "bogus", "artifact") if len(cands) else []
    if len(truth) == 0 or len(cands) == 0:
        return truth, cands
    for sign in (1, -1):
        ti = np.nonzero(truth["sign"].values == sign)[0]
        ci = np.nonzero(cands["sign"].values == sign)[0]
        if len(ti) == 0 or len(ci) == 0:
            continue
        # prefer clean candidates: match them first, then the flagged ones
        order = ci[np.argsort(cands["flags"].values[ci] != 0, kind="stable")]
        remaining = list(range(len(ti)))
        for group in (order[cands["flags"].values[order] == 0], order[cands["flags"].values[order] != 0]):
            if len(group) == 0 or not remaining:
                continue
            rem = np.array(remaining)
            a, b, _ = match_positions(truth["x"].values[ti[rem]], truth["y"].values[ti[rem]],
                                      cands["x"].values[group], cands["y"].values[group], radius)
            for ia, ib in zip(a, b):
                t = ti[rem[ia]]
                c = group[ib]
                truth.iloc[t, truth.columns.get_loc("recovered")] = True
                truth.iloc[t, truth.columns.get_loc("recovered_clean")] = bool(cands["flags"].values[c] == 0)
                truth.iloc[t, truth.columns.get_loc("candidate_id")] = int(cands["candidate_id"].values[c])
                truth.iloc[t, truth.columns.get_loc("measured_snr")] = float(cands["snr"].values[c])
                cands.iloc[c, cands.columns.get_loc("truth_id")] = str(truth["transient_id"].values[t])
                cands.iloc[c, cands.columns.get_loc("label")] = str(truth["type"].values[t])
            matched = {rem[ia] for ia in a}
            remaining = [r for r in remaining if r not in matched]
    return truth, cands


def label_cosmic_rays(cands: pd.DataFrame, cosmic_rays: pd.DataFrame, radius: float = 3.0) -> pd.DataFrame:
    """Label unmatched candidates that sit on a simulated cosmic-ray hit as ``cosmic_ray``."""
    if len(cands) == 0 or cosmic_rays is None or len(cosmic_rays) == 0:
        return cands
    cands = cands.copy()
    free = np.nonzero(cands["truth_id"].values == "")[0]
    # a track is listed by its start, so the search radius includes the longest track
    a, b, _ = match_positions(cands["x"].values[free], cands["y"].values[free], cosmic_rays["x"].values,
                              cosmic_rays["y"].values, radius + float(np.nanmax(cosmic_rays["length_px"])))
    for ia in a:
        cands.iloc[free[ia], cands.columns.get_loc("label")] = "cosmic_ray"
    return cands


def recovery_summary(truth_matched: pd.DataFrame, cands_labelled: pd.DataFrame, snr_limit: float = 5.0) -> RecoverySummary:
    det = truth_matched["expected_snr"].values >= snr_limit if len(truth_matched) else np.array([], bool)
    clean = cands_labelled["flags"].values == 0 if len(cands_labelled) else np.array([], bool)
    fp = int((clean & (cands_labelled["truth_id"].values == "")).sum()) if len(cands_labelled) else 0
    return RecoverySummary(
        injected=int(len(truth_matched)),
        recovered=int(truth_matched["recovered"].sum()) if len(truth_matched) else 0,
        expected_detectable=int(det.sum()),
        recovered_detectable=int(truth_matched["recovered"].values[det].sum()) if len(truth_matched) else 0,
        recovered_clean=int(truth_matched["recovered_clean"].sum()) if len(truth_matched) else 0,
        false_positives=fp,
        n_candidates=int(len(cands_labelled)),
        n_clean=int(clean.sum()),
        snr_limit=float(snr_limit),
    )
