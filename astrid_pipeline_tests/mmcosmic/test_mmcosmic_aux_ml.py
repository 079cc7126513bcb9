"""The trained CR networks as M.M.Cosmic's auxiliary method (numina's deepcr / conn, mm_deepcr / mm_conn)."""

import numpy as np
import pytest
from scipy import ndimage

pytest.importorskip("torch")

from astrid_pipeline.science.mmcosmic import Requirements, simulate_stack  # noqa: E402
from astrid_pipeline.science.mmcosmic.auxiliary import lacosmic_peaks_tails  # noqa: E402
from astrid_pipeline.science.mmcosmic.aux_ml import (  # noqa: E402
    NetworkAuxSettings,
    clean_masked,
    network_aux,
    packaged_checkpoint,
)
from astrid_pipeline.science.mmcosmic.errors import ParameterError  # noqa: E402
from astrid_pipeline.science.mmcosmic.masks import keep_groups_with  # noqa: E402


@pytest.fixture(scope="module")
def stack():
    return simulate_stack((160, 160), 3, seed=3, gain=1.2, rnoise=3.4)


def _truth(st, i=0, nsigma=5.0):
    """Pixels of exposure ``i`` whose CR signal exceeds ``nsigma`` of that pixel's noise."""
    return st.cosmic_rays[i] > nsigma * st.noise_sigma()


@pytest.mark.parametrize("method", ["deepcr", "conn"])
def test_network_finds_single_exposure_crs_and_flags_little_else(stack, method):
    img = stack.images[0]
    bright = _truth(stack)
    near_cr = ndimage.binary_dilation(stack.cosmic_rays[0] > 0.5 * stack.noise_sigma(), iterations=1)
    r = network_aux(img, NetworkAuxSettings(method=method), gain=stack.gain, rnoise=stack.rnoise)
    recall = (r.mask & bright).sum() / bright.sum()
    purity = (r.mask & near_cr).sum() / max(r.mask.sum(), 1)
    assert recall >= 0.85, recall
    assert purity >= 0.9, purity
    # no bright star core is taken for a cosmic ray
    cores = [(int(round(y)), int(round(x))) for y, x, p in zip(stack.meta["star_y"], stack.meta["star_x"],
                                                                stack.meta["star_peak"]) if p > 2000]
    assert cores and not any(r.mask[c] for c in cores)
    assert r.info["method"] == method and len(r.info["sha256"]) == 64
    assert r.info["threshold_source"].startswith("model card")  # calibrated on real frames, for these weights


def test_network_beats_numina_default_lacosmic_on_the_same_exposure(stack):
    img = stack.images[1]
    bright = _truth(stack, 1)
    net = network_aux(img, gain=stack.gain, rnoise=stack.rnoise).mask
    la = lacosmic_peaks_tails(img, Requirements(), gain=stack.gain, rnoise=stack.rnoise).mask
    assert (net & bright).sum() > 1.5 * (la & bright).sum()


def test_deepcr_cleaning_restores_the_sky_and_conn_leaves_the_image(stack):
    img = stack.images[0]
    dc = network_aux(img, NetworkAuxSettings(method="deepcr"), gain=stack.gain, rnoise=stack.rnoise)
    hit = dc.mask & _truth(stack)
    sig = stack.noise_sigma()
    before = np.abs(img - stack.model)[hit] / sig[hit]
    after = np.abs(dc.cleaned - stack.model)[hit] / sig[hit]
    assert np.median(before) > 10 and np.median(after) < 2
    assert np.array_equal(dc.cleaned[~dc.mask], img[~dc.mask])
    cn = network_aux(img, NetworkAuxSettings(method="conn"), gain=stack.gain, rnoise=stack.rnoise)
    assert np.array_equal(cn.cleaned, img)  # numina's Cosmic-CoNN call does not inpaint either


def test_allowed_and_saturation_are_respected(stack):
    img = stack.images[0].copy()
    allowed = np.ones(img.shape, bool)
    allowed[:, :80] = False
    r = network_aux(img, gain=stack.gain, rnoise=stack.rnoise, allowed=allowed)
    assert r.mask.any() and not r.mask[:, :80].any()
    sat = float(np.percentile(img, 99.5))
    r2 = network_aux(img, gain=stack.gain, rnoise=stack.rnoise, satlevel=sat)
    assert not r2.mask[img >= sat].any()


def test_on_the_median_it_finds_the_coincident_hits_and_the_mm_threshold_keeps_them(stack):
    """mm_deepcr: on the median only hits shared by >= 2 exposures remain; the network finds them, and its
    groups hold a pixel above the median - minimum threshold, so the mm_ rule keeps them."""
    med = np.median(stack.images, axis=0)
    strong = (med - stack.images.min(axis=0)) > 3.0 * stack.rnoise
    r = network_aux(med, gain=stack.gain, rnoise=stack.rnoise)
    kept = keep_groups_with(r.mask, strong)
    sig = stack.noise_sigma()
    shared = (stack.cosmic_rays > 5.0 * sig).sum(axis=0) >= 2
    median_cr = shared & (med - stack.model > 5.0 * sig)  # what is still there in the median
    near = ndimage.binary_dilation(stack.hit_count(0.5 * stack.rnoise) >= 2, iterations=1)
    assert median_cr.sum() > 20
    assert (kept & median_cr).sum() / median_cr.sum() >= 0.8
    assert (kept & near).sum() / max(kept.sum(), 1) >= 0.9


def test_settings_from_numina_requirements():
    s = NetworkAuxSettings.from_requirements("mm_deepcr", {"dc_mask": "ACS-WFC", "dc_threshold": 0.7})
    assert (s.method, s.threshold) == ("deepcr", 0.7)
    assert s.resolved_checkpoint() == packaged_checkpoint("deepcr")
    s = NetworkAuxSettings.from_requirements("conn", {"nn_model": "ground_imaging", "nn_threshold": "0.4"})
    assert (s.method, s.threshold) == ("conn", 0.4)
    with pytest.raises(ParameterError, match="nn_threshold"):
        NetworkAuxSettings.from_requirements("mm_conn", {"nn_threshold": 1.5})
    with pytest.raises(ParameterError, match="dc_mask"):
        NetworkAuxSettings.from_requirements("deepcr", {"dc_mask": "NIRCam"})
    with pytest.raises(ParameterError, match="crmethod"):
        NetworkAuxSettings.from_requirements("lacosmic", {})


def test_missing_checkpoint_and_bad_detector_values_are_named(stack, tmp_path):
    with pytest.raises(ParameterError, match="nn_checkpoint.*does not exist"):
        network_aux(stack.images[0], NetworkAuxSettings(method="conn", checkpoint=str(tmp_path / "none.pt")),
                    gain=1.0, rnoise=3.0)
    with pytest.raises(ParameterError, match="gain"):
        network_aux(stack.images[0], gain=0.0, rnoise=3.0)


def test_clean_masked_uses_only_unmasked_neighbours():
    img = np.full((9, 9), 10.0, np.float32)
    img[3:6, 3:6] = 1000.0  # a 3x3 hit: the 5x5 window of its centre holds 16 clean pixels
    m = img > 100
    out = clean_masked(img, m)
    assert np.allclose(out, 10.0)
    all_bad = clean_masked(img, np.ones_like(m))  # nothing usable anywhere: values kept
    assert np.array_equal(all_bad, img)


def test_gmos_real_crs_found_and_injected_hits_recovered(realdata):
    """The real GMOS-S frame (electrons, sky included): both real CRs, little else; bright hits injected into its noise."""
    from astropy.io import fits

    from astrid_pipeline.science.cosmic_rays.calibration import GMOS_CR_BOXES, CalibrationFrame, inject_bright_hits

    with fits.open(realdata / "cosmic_rays" / "gmos_spectrum_two_crs.fits") as h:
        sci = np.array(h["SCI"].data, np.float64)
        var = np.array(h["VAR"].data, np.float64)
    rn = 4.24  # electrons (README); the frame is in electrons: gain 1
    r = network_aux(sci, gain=1.0, rnoise=rn)
    boxes = np.zeros(sci.shape, bool)
    for b in GMOS_CR_BOXES:
        boxes[b] = True
        assert r.mask[b].sum() >= 30
    assert (r.mask & ~boxes).sum() <= 20
    frame = CalibrationFrame("gmos", sci, np.sqrt(np.clip(var, 1e-6, None)), boxes, None)
    img, hits = inject_bright_hits(frame, np.random.default_rng(7), 12)
    found = network_aux(img, gain=1.0, rnoise=rn).mask
    got = [(found & h["pixels"]).sum() >= 0.5 * h["pixels"].sum() for h in hits]
    assert len(hits) >= 8 and np.mean(got) >= 0.9


@pytest.mark.parametrize("crmethod", ["deepcr", "mm_deepcr", "conn", "mm_conn"])
def test_whole_flow_with_a_network_aux_finds_the_coincident_hits(stack, crmethod):
    """numina's deepcr / conn (the network alone on the median) and mm_deepcr / mm_conn (with M.M.Cosmic)
    through compute_crmasks: MEDIANCR holds the hits shared by two exposures, and little else."""
    from astrid_pipeline.science.mmcosmic import compute_crmasks, parse_requirements

    req = parse_requirements({"crmethod": crmethod, "mm_nsimulations": 4, "mm_seed": 5})
    res = compute_crmasks(list(stack.images), gain=stack.gain, rnoise=stack.rnoise, requirements=req,
                          with_combinations=False)
    sig = stack.noise_sigma()
    med = np.median(stack.images, axis=0)
    median_cr = ((stack.cosmic_rays > 5.0 * sig).sum(axis=0) >= 2) & (med - stack.model > 5.0 * sig)
    found = res.masks["MEDIANCR"]
    assert res.counts["aux_pixels"] > 0 and (res.counts["mm_pixels"] > 0) == crmethod.startswith("mm_")
    assert (found & median_cr).sum() / median_cr.sum() >= (0.95 if crmethod.startswith("mm_") else 0.85)
    near = ndimage.binary_dilation(stack.hit_count(0.5 * stack.rnoise) >= 2, iterations=2)
    assert (found & near).sum() / found.sum() >= 0.9
