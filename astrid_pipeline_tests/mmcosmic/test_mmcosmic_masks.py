"""Masks, combinations and the whole flow on small stacks with known answers."""

import numpy as np
import pytest

from astrid_pipeline.science.mmcosmic import Requirements, compute_crmasks, simulate_stack
from astrid_pipeline.science.mmcosmic.combine import all_combinations, combine, replace_by_local_median
from astrid_pipeline.science.mmcosmic.masks import (
    classify_groups,
    combine_codes,
    dilate,
    global_dilation,
    keep_groups_with,
    mm_detect,
)
from astrid_pipeline.science.mmcosmic.registration import auto_flux_factors, crosscorr_offset, shift_image

MM = Requirements(crmethod="mmcosmic", mm_nsimulations=6, mm_seed=5)


def flat_stack(shape=(64, 64), sky=100.0, n=3, seed=0, rnoise=3.4):
    rng = np.random.default_rng(seed)
    return (rng.poisson(sky, (n,) + shape) + rng.normal(0, rnoise, (n,) + shape)).astype(np.float32)


# ---------------------------------------------------------------------------- mask helpers
def test_dilate_and_keep_groups():
    m = np.zeros((7, 7), bool)
    m[3, 3] = True
    d = dilate(m, 1)
    assert d.sum() == 9 and d[2:5, 2:5].all()
    assert dilate(m, 2).sum() == 25
    groups = np.zeros((7, 7), bool)
    groups[0, 0:2] = True  # group A
    groups[5:7, 5] = True  # group B
    strong = np.zeros((7, 7), bool)
    strong[6, 5] = True
    kept = keep_groups_with(groups, strong)
    assert not kept[0, 0:2].any() and kept[5:7, 5].all()


def test_mm_detect_threshold_max2d_and_regrouping():
    x = np.full((5, 5), 100.0)
    y = np.zeros((5, 5))
    y[2, 2] = 80.0  # above the boundary (50) and the threshold
    y[0, 0] = 60.0  # above the boundary but max2d too low
    max2d = np.full((5, 5), 200.0)
    max2d[0, 0] = 10.0
    flat = lambda v: np.full(np.shape(v), 50.0)  # noqa: E731
    f = mm_detect(x, y, max2d, flat, threshold=10.2, min_max2d=17.0)
    assert f.sum() == 1 and f[2, 2]
    f1 = mm_detect(x, y, max2d, flat, threshold=10.2, min_max2d=17.0, dilation=1)
    assert f1.sum() == 9 and f1[1:4, 1:4].all()
    allowed = np.ones((5, 5), bool)
    allowed[2, 2] = False
    f2 = mm_detect(x, y, max2d, flat, threshold=10.2, min_max2d=17.0, dilation=1, allowed=allowed)
    assert f2.sum() == 8 and not f2[2, 2]


def test_codes_dilation_and_categories():
    mm = np.zeros((9, 9), bool)
    aux = np.zeros((9, 9), bool)
    mm[1, 1] = aux[1, 1] = True  # group 1: both -> any4
    aux[1, 6] = True  # group 2: aux only -> only3
    mm[6, 1] = mm[6, 2] = True  # group 3: mm only -> only2
    mm[6, 6] = True
    aux[6, 7] = True  # group 4: mm + aux pixels, none both -> other
    code = combine_codes(mm, aux)
    assert code[1, 1] == 4 and code[1, 6] == 3 and code[6, 1] == 2 and code[6, 7] == 3
    g = global_dilation(code, 1)
    assert g[0, 0] == 1 and g[1, 1] == 4 and (g > 0).sum() > (code > 0).sum()
    labels, cats = classify_groups(code)
    name_of = {}
    for name, groups in cats.items():
        for gr in groups:
            name_of[gr] = name
    assert name_of[labels[1, 1]] == "any4"
    assert name_of[labels[1, 6]] == "only3"
    assert name_of[labels[6, 1]] == "only2"
    assert name_of[labels[6, 6]] == "other"


# ---------------------------------------------------------------------------- combinations
def _tiny():
    # 3 exposures of a 2x2 image
    stack = np.array(
        [
            [[10, 20], [30, 40]],
            [[12, 200], [33, 400]],
            [[14, 210], [36, 41]],
        ],
        dtype=np.float32,
    )
    masks = {
        "MEDIANCR": np.array([[0, 1], [0, 0]], bool),
        "MEANCRT": np.array([[0, 1], [0, 1]], bool),
        "CRMASK1": np.array([[0, 0], [0, 0]], bool),
        "CRMASK2": np.array([[0, 1], [1, 1]], bool),
        "CRMASK3": np.array([[0, 1], [1, 0]], bool),
        "MEANCR": np.array([[1, 0], [0, 0]], bool),
    }
    return stack, masks


def test_each_combination_hand_computed():
    stack, masks = _tiny()
    c = all_combinations(stack, k=2, masks=masks)
    np.testing.assert_allclose(c["mean"].image, [[12, 430 / 3], [33, 481 / 3]], rtol=1e-6)
    np.testing.assert_array_equal(c["median"].image, [[12, 200], [33, 41]])
    np.testing.assert_array_equal(c["min"].image, [[10, 20], [30, 40]])
    # mediancr: median with the MEDIANCR pixel (0,1) replaced by the minimum
    np.testing.assert_array_equal(c["mediancr"].image, [[12, 20], [33, 41]])
    np.testing.assert_array_equal(c["mediancr"].map, [[3, 1], [3, 3]])
    assert c["mediancr"].variance[0, 1] == 0
    assert c["mediancr"].variance[0, 0] == pytest.approx(4.0)  # var(10, 12, 14), ddof=1
    # meancrt: mean with MEANCRT pixels replaced by mediancr
    np.testing.assert_allclose(c["meancrt"].image, [[12, 20], [33, 41]], rtol=1e-6)
    np.testing.assert_array_equal(c["meancrt"].map, [[3, 1], [3, 1]])
    # meancr: per-exposure masks
    #  (0,0): none masked -> 12; (0,1): only exposure 1 left -> 20;
    #  (1,0): exposure 1 left -> 30; (1,1): exposures 1 and 3 -> (40 + 41) / 2
    np.testing.assert_allclose(c["meancr"].image, [[12, 20], [30, 40.5]], rtol=1e-6)
    np.testing.assert_array_equal(c["meancr"].map, [[3, 1], [1, 2]])
    assert c["meancr"].variance[1, 1] == pytest.approx(0.5)
    # meancr2: meancr with MEANCR pixel (0,0) replaced by the minimum
    np.testing.assert_allclose(c["meancr2"].image, [[10, 20], [30, 40.5]], rtol=1e-6)
    assert c["meancr2"].map[0, 0] == 1
    for comb in c.values():
        assert comb.image.dtype == np.float32 and comb.variance.dtype == np.float32 and comb.map.dtype == np.int16


def test_meancr_without_data_takes_the_minimum_or_auxclean():
    stack, masks = _tiny()
    masks = dict(masks)
    for i in (1, 2, 3):
        masks[f"CRMASK{i}"] = np.array([[1, 0], [0, 0]], bool)
    c = combine(stack, "meancr", k=2, masks=masks)
    assert c.image[0, 0] == 10 and c.map[0, 0] == 0
    aux = np.full((2, 2), 11.5, np.float32)
    c2 = combine(stack, "meancr", k=2, masks=masks, auxclean=aux, use_auxmedian=True)
    assert c2.image[0, 0] == pytest.approx(11.5)
    c3 = combine(stack, "mediancr", k=2, masks=masks, auxclean=aux, use_auxmedian=True)
    assert c3.image[0, 1] == pytest.approx(11.5)


def test_replace_by_local_median():
    img = np.arange(25, dtype=np.float32).reshape(5, 5)
    img[2, 2] = 1000.0
    out = replace_by_local_median(img, [(3, 3, 3, 3)])  # FITS (3, 3) = python [2, 2]
    assert out[2, 2] == pytest.approx(np.median([6, 7, 8, 11, 13, 16, 17, 18]))
    assert out[0, 0] == img[0, 0]


# ---------------------------------------------------------------------------- the whole flow
def test_coincident_hit_in_two_of_three_is_found_at_its_pixels():
    stack = flat_stack(seed=1)
    hit = [(20, 30), (20, 31), (21, 31)]  # (row, col)
    for r, c in hit:
        stack[0, r, c] += 400.0
        stack[1, r, c] += 350.0
    res = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=MM)
    m = res.masks["MEDIANCR"]
    for r, c in hit:
        assert m[r, c], (r, c)
        # the combined median takes the minimum (the clean exposure) there
        assert res.combinations["mediancr"].image[r, c] == pytest.approx(stack[2, r, c])
        assert res.combinations["mediancr"].map[r, c] == 1
    # with mm_dilation=1 the neighbours are flagged too, but nothing far away
    assert m[19:23, 29:33].sum() >= 9
    far = m.copy()
    far[15:27, 25:37] = False
    assert far.sum() <= 9  # at most one noise group elsewhere
    # the single-exposure masks: exposures 1 and 2 masked at the hit, exposure 3 not
    for r, c in hit:
        assert res.masks["CRMASK1"][r, c] and res.masks["CRMASK2"][r, c] and not res.masks["CRMASK3"][r, c]
        assert res.combinations["meancr"].image[r, c] == pytest.approx(stack[2, r, c])


def test_single_hit_does_not_reach_mediancr_but_is_masked_in_its_exposure():
    stack = flat_stack(seed=2)
    stack[1, 40, 10] += 600.0
    res = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=MM)
    assert not res.masks["MEDIANCR"][40, 10]
    assert res.masks["CRMASK2"][40, 10] and not res.masks["CRMASK1"][40, 10]
    assert res.masks["MEANCRT"][40, 10]
    mean_clean = (stack[0, 40, 10] + stack[2, 40, 10]) / 2
    assert res.combinations["meancr"].image[40, 10] == pytest.approx(mean_clean, rel=1e-5)


def test_bias_is_subtracted_consistently():
    stack = flat_stack(seed=3)
    stack[0, 10, 10] += 500
    stack[2, 10, 10] += 450
    a = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, bias=0.0, requirements=MM)
    b = compute_crmasks(list(stack + 1000.0), gain=1.0, rnoise=3.4, bias=1000.0, requirements=MM)
    for name in a.masks:
        np.testing.assert_array_equal(a.masks[name], b.masks[name], err_msg=name)
    for name in a.combinations:
        np.testing.assert_allclose(a.combinations[name].image, b.combinations[name].image, atol=1e-3)
    assert a.masks["MEDIANCR"][10, 10]
    # a bias frame (2-D) works the same way
    frame = np.full(stack.shape[1:], 1000.0, np.float32)
    c = compute_crmasks(list(stack + 1000.0), gain=1.0, rnoise=3.4, bias=frame, requirements=MM)
    np.testing.assert_array_equal(a.masks["MEDIANCR"], c.masks["MEDIANCR"])


def test_user_lists_flag_ignore_skip_and_replace():
    stack = flat_stack(seed=4)
    stack[0, 30, 30] += 500
    stack[1, 30, 30] += 500  # a real coincident hit
    stack[0, 50, 50] += 500
    stack[2, 50, 50] += 500  # another, inside a skipped region
    req = Requirements(
        crmethod="mmcosmic", mm_nsimulations=4, mm_seed=1, mm_dilation=0,
        pixels_to_be_flagged_as_cr=((5, 6),),  # FITS X=5, Y=6 -> [5, 4]
        pixels_to_be_ignored_as_cr=((31, 31),),  # the hit at [30, 30]
        regions_to_be_skipped=((45, 55, 45, 55),),
        pixels_to_be_replaced_by_local_median=((11, 11, 3, 3),),
    )
    control = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=Requirements(
        crmethod="mmcosmic", mm_nsimulations=4, mm_seed=1, mm_dilation=0))
    assert control.masks["MEDIANCR"][30, 30] and control.masks["MEDIANCR"][50, 50]
    assert not control.masks["MEDIANCR"][5, 4]
    res = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=req)
    m = res.masks["MEDIANCR"]
    assert m[5, 4]
    assert not m[30, 30]
    assert not res.masks["MEANCRT"][30, 30]
    assert not m[44:55, 44:55].any()
    med = res.combinations["median"].image
    window = np.delete(med[9:12, 9:12].ravel(), 4)
    assert med[10, 10] == pytest.approx(np.median(window))


def test_flux_factors_and_offsets_are_recovered():
    sim = simulate_stack((96, 96), 3, seed=9, n_coincident=0, cr_fraction=0.0, sky=200.0)
    base = sim.images.astype(np.float64)
    scaled = base * np.array([0.8, 1.0, 1.2])[:, None, None]
    from astrid_pipeline.science.mmcosmic.diagram import median_of_stack

    f = auto_flux_factors(scaled, median_of_stack(scaled), gain=1.0, rnoise=3.4)
    np.testing.assert_allclose(f, [0.8, 1.0, 1.2], rtol=0.03)
    ref = sim.model.astype(np.float64)
    moved = shift_image(ref, 2.4, -1.3)
    dx, dy = crosscorr_offset(ref, moved)
    assert dx == pytest.approx(2.4, abs=0.2) and dy == pytest.approx(-1.3, abs=0.2)


def test_flux_factor_original_rescales_the_combinations():
    stack = flat_stack(seed=6, sky=200.0)
    req = Requirements(crmethod="mmcosmic", mm_nsimulations=3, flux_factor=(0.5, 1.0, 2.0), apply_flux_factor_to="original")
    scaled = stack * np.array([0.5, 1.0, 2.0], np.float32)[:, None, None]
    res = compute_crmasks(list(scaled), gain=1.0, rnoise=3.4, requirements=req)
    np.testing.assert_allclose(res.combinations["mean"].image, stack.mean(axis=0), rtol=1e-4)
    np.testing.assert_array_equal(res.flux_factors, [0.5, 1.0, 2.0])


def test_same_seed_same_masks_and_simulated_stack():
    a = simulate_stack((64, 64), 3, seed=12, n_coincident=5)
    b = simulate_stack((64, 64), 3, seed=12, n_coincident=5)
    c = simulate_stack((64, 64), 3, seed=13, n_coincident=5)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    # each deliberate hit is in exactly 2 exposures at its core pixel
    for (r, cc), which in zip(a.coincident, a.coincident_exposures):
        hit = a.cosmic_rays[:, r, cc] > 0
        assert hit[which].all()
    ra = compute_crmasks(list(a.images), gain=1.0, rnoise=3.4, requirements=MM)
    rb = compute_crmasks(list(b.images), gain=1.0, rnoise=3.4, requirements=MM)
    np.testing.assert_array_equal(ra.masks["MEDIANCR"], rb.masks["MEDIANCR"])
    np.testing.assert_array_equal(ra.boundary.coefs, rb.boundary.coefs)


def test_simulated_stack_hits_are_recovered():
    sim = simulate_stack((128, 128), 3, seed=21, n_coincident=15)
    res = compute_crmasks(list(sim.images), gain=sim.gain, rnoise=sim.rnoise, requirements=MM)
    from astrid_pipeline.science.mmcosmic.stacks import simulated_truth_scores

    s = simulated_truth_scores(sim, res)
    assert s["significant_coincident_pixels"] > 20
    assert s["recall_significant"] >= 0.95
    assert s["residual_pixels"] <= 0.1 * s["significant_coincident_pixels"]


def test_lacosmic_auxiliary_finds_a_residual_and_combines_with_mm():
    pytest.importorskip("astroscrappy")
    stack = flat_stack(seed=7, shape=(80, 80))
    # a sharp coincident hit: found by both methods
    stack[0, 20, 20] += 900
    stack[1, 20, 20] += 900
    req = Requirements(crmethod="mm_lacosmic", mm_nsimulations=3, mm_seed=2)
    res = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=req)
    assert res.masks["MEDIANCR"][20, 20]
    assert res.code[20, 20] == 4  # found by both methods
    assert res.auxclean[20, 20] < 200  # the cleaned median has no CR there
    # numina's way: the auxiliary method also on the mean and on every exposure
    full = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=Requirements(
        crmethod="mm_lacosmic", mm_nsimulations=3, mm_seed=2, aux_targets="all"))
    assert full.masks["CRMASK1"][20, 20] and full.masks["CRMASK2"][20, 20] and not full.masks["CRMASK3"][20, 20]
    assert full.masks["MEANCRT"].sum() >= res.masks["MEANCRT"].sum()
    only_aux = Requirements(crmethod="lacosmic")
    res2 = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=only_aux)
    assert res2.boundary is None and res2.masks["MEDIANCR"][20, 20] and res2.code[20, 20] == 3


@pytest.mark.parametrize(
    "options",
    [
        {"mm_photon_distribution": "nbinom", "mm_nbinom_shape": 1000.0},
        {"mm_synthetic": "single"},
        {"mm_boundary_fit": "piecewise", "mm_fixed_points_in_boundary": ((0, 60, 1), (1000, 200, 1))},
        {"mm_fixed_points_in_boundary": ((100, 70, 10000.0),)},
        {"mm_xy_offsets": ((0.2, -0.1), (0.0, 0.0), (-0.3, 0.1))},
        {"mm_crosscorr_region": (5, 60, 5, 60)},
        {"flux_factor": "auto"},
        {"flux_factor": 1.0, "apply_flux_factor_to": "original"},
        {"mm_xbinning": "asinh"},
        {"mm_xbinning": "linear"},
        {"mm_hist2d_min_neighbors": 2},
        {"dilation": 1},
    ],
)
def test_every_option_runs_and_still_finds_the_hit(options):
    stack = flat_stack(seed=8)
    stack[0, 32, 40] += 600
    stack[2, 32, 40] += 650
    req = Requirements(**{"crmethod": "mmcosmic", "mm_nsimulations": 3, "mm_seed": 4, **options})
    res = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=req)
    assert res.masks["MEDIANCR"][32, 40]
    if options.get("mm_xbinning") != "linear" and not options.get("mm_hist2d_min_neighbors"):
        # (numina's 100 linear bins are 0.6 ADU wide on a flat 64x64 field and each holds a handful
        # of pixels, so its boundary is low there; dropping isolated histogram bins lowers it too)
        assert res.masks["MEDIANCR"].sum() < 0.01 * stack[0].size + 30
    assert set(res.combinations) == {"mean", "median", "min", "mediancr", "meancrt", "meancr", "meancr2"}


def test_crosscorr_region_outside_the_image_is_refused():
    from astrid_pipeline.science.mmcosmic import ParameterError

    with pytest.raises(ParameterError, match="mm_crosscorr_region"):
        compute_crmasks(list(flat_stack(seed=9)), gain=1.0, rnoise=3.4,
                        requirements=Requirements(crmethod="mmcosmic", mm_crosscorr_region=(1, 100, 1, 50)))


def test_windowed_tails_pass_matches_the_whole_frame():
    pytest.importorskip("astroscrappy")
    from astrid_pipeline.science.mmcosmic.auxiliary import lacosmic_peaks_tails, merge_peaks_tails

    rng = np.random.default_rng(3)
    img = (rng.poisson(100.0, (384, 384)) + rng.normal(0, 3.4, (384, 384))).astype(np.float32)
    for r, c in ((50, 60), (300, 200)):
        img[r, c] += 800
        img[r, c + 1] += 300
        img[r + 1, c] += 40  # a faint tail pixel
    req = Requirements(crmethod="mm_lacosmic")
    windowed = lacosmic_peaks_tails(img, req, gain=1.0, rnoise=3.4)
    whole = lacosmic_peaks_tails(img, req, gain=1.0, rnoise=3.4, max_tile_fraction=0.0)
    assert windowed.n_tails_windows > 0 and whole.n_tails_windows == 0
    np.testing.assert_array_equal(windowed.mask, whole.mask)
    assert windowed.mask[50, 60] and windowed.mask[300, 200]
    # tails survive only when they touch a peak
    peaks = np.zeros((5, 5), bool)
    tails = np.zeros((5, 5), bool)
    peaks[1, 1] = True
    tails[1, 2] = tails[4, 4] = True
    merged = merge_peaks_tails(peaks, tails)
    assert merged[1, 1] and merged[1, 2] and not merged[4, 4]


def test_local_veto_keeps_raised_medians_and_drops_low_minimum_outliers():
    from astrid_pipeline.science.mmcosmic.masks import ring_median, stands_above_neighbours

    img = np.arange(49, dtype=float).reshape(7, 7)
    # ring of (3, 3): rows 1..5, cols 1..5 without the centre -> median of those 24 values
    ring = np.delete(img[1:6, 1:6].ravel(), 12)
    assert ring_median(img, np.array([3]), np.array([3]))[0] == pytest.approx(np.median(ring))
    median2d = np.full((9, 9), 100.0)
    median2d[4, 4] = 160.0  # raised by cosmic rays in most exposures
    cand = np.zeros((9, 9), bool)
    cand[4, 4] = cand[1, 7] = True  # (1, 7): a candidate whose median is at the local level
    keep = stands_above_neighbours(median2d, cand, 3.0, gain=1.0, rnoise=3.4)
    assert keep[4, 4] and not keep[1, 7]
    # in the whole flow: a pixel with one very low exposure has a large median - minimum, but is not flagged
    stack = flat_stack(seed=10)
    stack[0, 12, 12] -= 60.0  # the minimum comes out ~6 sigma low
    stack[1, 12, 12] += 20.0
    on = compute_crmasks(list(stack), gain=1.0, rnoise=3.4, requirements=MM)
    off = compute_crmasks(list(stack), gain=1.0, rnoise=3.4,
                          requirements=Requirements(crmethod="mmcosmic", mm_nsimulations=6, mm_seed=5, mm_local_sigma=0.0))
    assert off.masks["MEDIANCR"][12, 12] and not on.masks["MEDIANCR"][12, 12]


def test_fewer_expected_false_pixels_per_bin_raise_the_crosses():
    from astrid_pipeline.science.mmcosmic import boundary as B

    lam = np.full((3, 150, 150), 100.0)
    edges = B.x_bin_edges(lam[0], 3, "linear")
    sim = B.simulate_diagram(lam, gain=1.0, rnoise=3.4, k=2, x_edges=edges, nsimulations=10, seed=1, threads=1)
    y1 = B.red_crosses(sim, expected_per_bin=1.0)[1]
    y03 = B.red_crosses(sim, expected_per_bin=0.3)[1]
    assert np.all(y03 > y1)
