"""The sky branch after the triplets: every candidate scored once, scores reach the alerts, ds9 file beside."""

import numpy as np
import pytest

from astrid_pipeline.io.parquet_io import read_partitioned
from astrid_pipeline.ml.realbogus.dataset import REAL_TYPES
from astrid_pipeline.sky import alert_steps
from astrid_pipeline.sky.settings import SkySettings
from astrid_pipeline.sky.table import STEP_BY_NAME


@pytest.fixture(scope="module")
def scored(processed_region):
    layout, region = processed_region
    res = alert_steps.scores(layout, region)
    return layout, region, res


def test_every_candidate_is_scored_once_and_the_reals_score_high(scored):
    layout, region, res = scored
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    sc = read_partitioned(layout.root, "candidate_scores", {"region": region})
    assert sorted(sc["candidate_id"]) == sorted(cands["candidate_id"])
    assert sc["candid"].is_unique and np.isfinite(sc["rb"]).all()
    m = cands.merge(sc, on="candidate_id")
    real = m[m["label"].isin(REAL_TYPES)]
    artifacts = m[m["label"] == "artifact"]
    assert len(real) >= 3 and real["rb"].median() > res.metadata["threshold"]
    assert (artifacts["rb"] < res.metadata["threshold"]).mean() > 0.8
    # the candidate catalog is not rewritten by the scoring step: one writer per product
    assert "rb" not in cands.columns
    outcome = STEP_BY_NAME["scores"].checks[0].evaluate(res, SkySettings())
    assert outcome.passed and outcome.metadata["scored_fraction"] == 1.0


def test_ds9_region_file_lives_outside_the_parquet_dataset(scored):
    layout, region, res = scored
    reg = res.paths["ds9_regions"]
    assert reg.exists() and "catalogs" not in reg.parts
    text = reg.read_text()
    assert text.startswith("# Region file format: DS9") and "rb=" in text


def test_alert_packets_carry_the_scores_and_read_with_stock_fastavro(scored):
    import fastavro

    layout, region, _ = scored
    res = alert_steps.alerts(layout, region)
    sc = read_partitioned(layout.root, "candidate_scores", {"region": region}).set_index("candidate_id")
    with open(res.paths["alert_packets"], "rb") as fh:
        records = list(fastavro.reader(fh))
    assert len(records) == len(sc) == res.metadata["n_alerts"] == res.metadata["n_expected"]
    by_candid = {int(c): float(r) for c, r in zip(sc["candid"], sc["rb"])}
    for rec in records:
        assert rec["candidate"]["rb"] == pytest.approx(by_candid[rec["candid"]], rel=1e-6)
        assert rec["cutoutScience"]["stampData"][:2] == b"\x1f\x8b"  # gzipped FITS
    outcome = STEP_BY_NAME["alerts"].checks[0].evaluate(res, SkySettings())
    assert outcome.passed
