"""Single-exposure CR masking runs only where it applies; the model is fixed by configuration and named."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.science.cosmic_rays.applicability import cr_masking_applies, header_cues


def _headers(path, n=2):
    with fits.open(path) as h:
        return [x.header.copy() for x in h[:n]]


# --------------------------------------------------------------------------- real headers
def test_decam_science_is_a_single_exposure_and_the_reference_is_resampled(realdata):
    d = realdata / "differencing"
    ok, why = cr_masking_applies(_headers(d / "decam_science_obs04a.fits"), "decam_science_obs04a.fits")
    assert ok, why
    ok, why = cr_masking_applies(_headers(d / "decam_reference_obs18a.fits"), "decam_reference_obs18a.fits")
    assert not ok and "SWarp" in why


def test_gmos_mosaic_timestamp_keyword_is_not_a_mosaic(realdata):
    hdrs = _headers(realdata / "cosmic_rays" / "gmos_spectrum_two_crs.fits")
    assert "MOSAIC" in hdrs[0]  # GMOS's CCD-tiling time stamp, a keyword *named* like a product type
    assert cr_masking_applies(hdrs, "gmos_spectrum_two_crs.fits")[0]


def test_hst_raw_drizzle_switch_is_not_a_drizzled_product(realdata):
    hdrs = _headers(realdata / "ramps" / "hst_wfc3ir_ima.fits")
    assert hdrs[0]["DRIZCORR"] == "PERFORM" and hdrs[1]["NCOMBINE"] == 1
    assert cr_masking_applies(hdrs, "ibxx01abq_ima.fits")[0]


@pytest.mark.parametrize("rel, cue", [("wcs/galactic_center_2mass_k_tan.fits", "mosaic"),
                                      ("wcs/ned_poss1_m1.fits", "plate")])
def test_montage_mosaic_and_plate_scan_are_skipped(realdata, rel, cue):
    ok, why = cr_masking_applies(_headers(realdata / rel, 1), rel)
    assert not ok and cue in why.lower()


def test_simulated_survey_frames_apply(small_pair):
    assert cr_masking_applies(small_pair.science[0].header, "sim:science")[0]


# --------------------------------------------------------------------------- co-add cues on a real header
@pytest.mark.parametrize("cards, name, cue", [
    ({"NCOMBINE": 3}, "x.fits", "NCOMBINE=3"),
    ({"NDRIZIM": 4}, "x.fits", "NDRIZIM"),
    ({"D001VER": "WDRIZZLE 3.4", "D001DATA": "a_flt.fits[sci,1]"}, "x.fits", "drizzle keywords"),
    ({"S_RESAMP": "COMPLETE"}, "x.fits", "S_RESAMP"),
    ({"PRODTYPE": "coadd"}, "x.fits", "co-added"),
    ({"ARCHIVE": "skyview"}, "x.fits", "SkyView"),
    ({}, "jw02736-o001_t001_nircam_clear-f200w_i2d.fits", "i2d"),
    ({}, "hst_10188_10_acs_wfc_f814w_drc.fits", "drc"),
    ({}, "rings.v3.skycell.1784.059.stk.r.unconv.fits", "stacked"),
    ({}, "rings.v3.skycell.1784.059.wrp.r.56000_12345.fits", "resampled"),
    ({}, "skv6724208473423_1.fits", "SkyView"),
])
def test_coadd_cues_on_the_real_decam_header(realdata, cards, name, cue):
    hdr = fits.getheader(realdata / "differencing" / "decam_science_obs04a.fits")
    for k, v in cards.items():
        hdr[k] = v
    ok, why = cr_masking_applies(hdr, name)
    assert not ok and cue in why, why


def test_configuration_overrides_the_header(realdata):
    d = realdata / "differencing"
    ref = _headers(d / "decam_reference_obs18a.fits")
    sci = _headers(d / "decam_science_obs04a.fits")
    ok, why = cr_masking_applies(ref, "ref.fits", {"cosmic_rays": "force"})
    assert ok and "forced" in why and "SWarp" in why  # the ignored cue is still said
    assert not cr_masking_applies(sci, "sci.fits", setting="skip")[0]
    # the image's own option wins over the step setting
    assert cr_masking_applies(sci, "sci.fits", {"cosmic_rays": "auto"}, setting="skip")[0]
    assert header_cues(sci, "sci.fits") == []


def test_bad_mode_is_a_named_error():
    from astrid_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="cosmic_rays='sometimes'"):
        cr_masking_applies({}, "x.fits", {"cosmic_rays": "sometimes"})


# --------------------------------------------------------------------------- the step: skip, model choice, torch
def _decam_layout(tmp_path, realdata, science="decam_science_obs04a.fits", reference="decam_reference_obs18a.fits"):
    from astrid_pipeline.archives.local import LocalFolderArchive
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.regions import Region
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky
    from astrid_pipeline_tests.conftest import copy_pair

    d = realdata / "differencing"
    arch = copy_pair(tmp_path / "archive", "decam", d / science, d / reference)
    layout = DataLayout(tmp_path / "data")
    sky.acquire(layout, "decam", LocalFolderArchive(arch).fetch_pair(Region("decam", 318.108, -66.016)))
    return layout


def test_resampled_science_image_gets_an_all_zero_mask_with_the_reason(tmp_path, realdata):
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    # the SWarp-resampled epoch as the science image
    layout = _decam_layout(tmp_path, realdata, "decam_reference_obs18a.fits", "decam_science_obs04a.fits")
    res = sky.cosmic_ray_mask(layout, "decam")
    assert res.metadata["skipped"] and "SWarp" in res.metadata["reason"] and res.metadata["n_cr_pixels"] == 0
    with fits.open(res.paths["cosmic_ray_mask"]) as h:
        assert h[0].header["CRSKIP"] is True and "SWarp" in h[0].header["CRREASON"]
        assert h[0].data.shape == (256, 256) and not h[0].data.any()
        assert h[0].header["CRMETHOD"] == "skipped"
    # the downstream reader needs no special case
    assert not products.read_cr_mask(layout, "decam", (256, 256)).any()
    # forced by the image option, it runs
    forced = sky.cosmic_ray_mask(layout, "decam", image_options={"cosmic_rays": "force"})
    assert not forced.metadata["skipped"] and "forced" in forced.metadata["reason"]


def test_decam_science_mask_names_the_shipped_model_and_finds_no_false_group(tmp_path, realdata):
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS, file_sha256
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    layout = _decam_layout(tmp_path, realdata)
    res = sky.cosmic_ray_mask(layout, "decam")
    sha = file_sha256(SHIPPED_WEIGHTS)
    assert res.metadata["method"] == "model" and res.metadata["model_sha256"] == sha
    assert res.metadata["threshold_source"].startswith("model card")
    # DECam science holds no real CR above 6 sigma (every sharp feature is a star of both epochs)
    assert res.metadata["n_cr_groups"] == 0
    with fits.open(res.paths["cosmic_ray_mask"]) as h:
        hdr = h[0].header
        assert hdr["CRMDSHA"] == sha[:16] and "shipped" in hdr["CRMODEL"] and hdr["CRSKIP"] is False
        assert hdr["CRTHRESH"] == res.metadata["threshold"] and "BUNIT" in hdr


def test_trained_model_in_the_data_root_does_not_change_the_default_mask(tmp_path, realdata, tiny_model):
    from astrid_pipeline.ml.weights_path import SHIPPED_WEIGHTS
    from astrid_pipeline.science.cosmic_rays.masks import CosmicRayMaskSettings
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    layout = _decam_layout(tmp_path, realdata)
    first = sky.cosmic_ray_mask(layout, "decam")
    with fits.open(first.paths["cosmic_ray_mask"]) as h:
        mask1, hdr1 = h[0].data.copy(), h[0].header.copy()
    # a first `astrid run` trained a model into the data root
    trained = layout.model_dir("cr2d_deepcr") / "model.pt"
    trained.parent.mkdir(parents=True)
    shutil.copy(tiny_model[0] / "model.pt", trained)
    from astrid_pipeline.science.cosmic_rays.masks import CosmicRayMaskSettings, resolve_checkpoint

    assert str(resolve_checkpoint(CosmicRayMaskSettings())[0]) == str(SHIPPED_WEIGHTS)
    second = sky.cosmic_ray_mask(layout, "decam")
    with fits.open(second.paths["cosmic_ray_mask"]) as h:
        assert np.array_equal(h[0].data, mask1)
        assert h[0].header["CRMDSHA"] == hdr1["CRMDSHA"] and h[0].header["CRMODEL"] == hdr1["CRMODEL"]
    # only when configured does the trained model run, and the header says which
    third = sky.cosmic_ray_mask(layout, "decam", settings=CosmicRayMaskSettings(model_source="trained"))
    assert third.metadata["checkpoint"] == str(trained)
    with fits.open(third.paths["cosmic_ray_mask"]) as h:
        assert h[0].header["CRMDSHA"] != hdr1["CRMDSHA"] and "trained" in h[0].header["CRMODEL"]


def test_without_torch_auto_falls_back_and_a_configured_model_fails(tmp_path, realdata, monkeypatch, caplog):
    from astrid_pipeline.science.cosmic_rays import masks
    from astrid_pipeline.science.cosmic_rays.masks import CosmicRayMaskSettings, CRModelUnavailableError
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    monkeypatch.setattr(masks, "torch_available", lambda: False)
    layout = _decam_layout(tmp_path, realdata)
    with caplog.at_level(logging.WARNING):
        res = sky.cosmic_ray_mask(layout, "decam")
    assert res.metadata["method"] == "lacosmic" and "torch is not installed" in res.metadata["model_note"]
    assert "falling back to L.A.Cosmic" in caplog.text
    # L.A.Cosmic on the sky-subtracted DECam frame: the pedestal restores the sky its noise model needs
    assert res.metadata["pedestal"] > 3000 and res.metadata["n_cr_groups"] <= 1
    for s in (CosmicRayMaskSettings(method="model"), CosmicRayMaskSettings(model_source="path", checkpoint="x.pt")):
        with pytest.raises(CRModelUnavailableError, match="torch is not installed"):
            sky.cosmic_ray_mask(layout, "decam", settings=s)


def test_missing_trained_model_is_a_named_error(tmp_path, realdata):
    from astrid_pipeline.science.cosmic_rays.masks import CosmicRayMaskSettings, CRModelUnavailableError
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    layout = _decam_layout(tmp_path, realdata)
    with pytest.raises(CRModelUnavailableError, match="materialize cr_model"):
        sky.cosmic_ray_mask(layout, "decam", settings=CosmicRayMaskSettings(model_source="trained"))


@pytest.mark.parametrize("kw, match", [({"method": "nn"}, "method"), ({"model_source": "latest"}, "model_source"),
                                       ({"model_source": "path"}, "needs checkpoint"),
                                       ({"threshold": 1.5}, "threshold"), ({"applicability": "never"}, "applicability")])
def test_bad_settings_are_named(kw, match):
    from astrid_pipeline.errors import ConfigError
    from astrid_pipeline.science.cosmic_rays.masks import CosmicRayMaskSettings

    with pytest.raises(ConfigError, match=match):
        CosmicRayMaskSettings(**kw).validate()
