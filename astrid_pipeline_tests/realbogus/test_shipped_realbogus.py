"""The shipped real/bogus weights: an unseen seed, the real DECam pair through the sky branch, survey-style stamps."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

from astrid_pipeline.ml.realbogus.score import SHIPPED, load_realbogus, score_triplets

pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped real/bogus weights")


@pytest.fixture(scope="module")
def shipped():
    return load_realbogus(SHIPPED)


def test_shipped_weights_load_weights_only_and_are_small(shipped):
    model, payload = shipped
    assert SHIPPED.stat().st_size < 600_000 and 0.3 < payload["threshold"] < 0.99
    assert payload["types"] == ["supernova", "variable", "nova", "asteroid", "asteroid_trailed"]


def test_unseen_seed_regions_are_separated(shipped, tmp_path):
    from astrid_pipeline.ml.realbogus.evaluate import evaluate_realbogus
    from astrid_pipeline.ml.realbogus.dataset import load_triplet_set
    from astrid_pipeline.sky.triplet_set import TripletSetConfig, build_triplet_training_set
    from astrid_pipeline.sky.chain import run_sky_chain

    build_triplet_training_set(TripletSetConfig(n_regions=3, seed=4242, val_fraction=0.0, test_fraction=1.0),
                               tmp_path / "unseen.h5", run_sky_chain)
    x, t = load_triplet_set(tmp_path / "unseen.h5", exclude_near_real_px=8.0)
    ev = evaluate_realbogus(shipped[0], x, t, threshold=shipped[1]["threshold"])
    assert ev["n_real"] >= 10 and ev["n_bogus"] >= 30
    assert ev["auc"] > 0.95 and ev["tpr_at_threshold"] > 0.8 and ev["fpr_at_threshold"] < 0.1


def test_real_decam_pair_through_the_sky_branch(shipped, realdata):
    """Only the real brightening at (129, 128) passes; the PSF-change residual of the bright star does not."""
    from astropy.io import fits

    from astrid_pipeline.archives.base import ArchivePair
    from astrid_pipeline.sky.chain import run_sky_chain

    d = realdata / "differencing"
    pair = ArchivePair(fits.open(d / "decam_science_obs04a.fits"), fits.open(d / "decam_reference_obs18a.fits"),
                       "decam_science_obs04a.fits", "decam_reference_obs18a.fits")
    with tempfile.TemporaryDirectory() as work:
        prod = run_sky_chain(pair, "decam", work)
    c = prod.candidates
    rb, _ = score_triplets(shipped[0], prod.triplets, c["sign"].to_numpy())
    thr = shipped[1]["threshold"]
    transient = np.hypot(c["x"] - 129, c["y"] - 128).to_numpy() < 2
    star = np.hypot(c["x"] - 60, c["y"] - 181).to_numpy() < 12
    assert transient.sum() == 1 and rb[transient][0] >= thr
    assert (rb[star] < thr).all()


def test_survey_style_stamps_rank_the_real_change_above_the_artifact(shipped, realdata):
    """Science and template in raw counts with sky, SFFT's difference: cut-outs as a survey sends them."""
    from astropy.io import fits

    from astrid_pipeline.science.cutouts import make_triplets

    d = realdata / "differencing"
    sci = fits.getdata(d / "decam_science_obs04a.fits").astype(float)
    ref = fits.getdata(d / "decam_reference_obs18a.fits").astype(float)
    dif = fits.getdata(d / "decam_sfft_final_difference.fits").astype(float)
    blank = np.random.default_rng(0).integers(35, 220, (10, 2))
    xs = [129, 60, *blank[:, 0]]
    ys = [128, 181, *blank[:, 1]]
    trip, _ = make_triplets(sci, ref, dif, xs, ys, 63)
    rb, _ = score_triplets(shipped[0], trip)
    assert rb[0] > 0.5 > rb[1] and rb[0] - rb[1] > 0.3  # the real change over the PSF-change residual
    assert np.median(rb[2:]) < 0.1  # random blank positions are bogus
