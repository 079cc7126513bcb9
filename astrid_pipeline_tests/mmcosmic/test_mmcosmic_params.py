"""numina-crmasks parameter files: accepted as they are, bad values refused by name."""

from pathlib import Path

import pytest
import yaml

from astrid_pipeline.errors import ConfigError
from astrid_pipeline.science.mmcosmic import ParameterError, UnsupportedMethodError, load_config, parse_config
from astrid_pipeline.science.mmcosmic.params import DEFAULT_WEIGHT_FIXED_POINTS, parse_requirements

EXAMPLE1 = Path(__file__).parent / "data" / "params_example1.yaml"  # verbatim from numina's documentation


def example(**req_changes) -> dict:
    data = yaml.safe_load(EXAMPLE1.read_text())
    data["requirements"].update(req_changes)
    return data


def test_numina_example_is_refused_only_for_its_pycosmic_method():
    with pytest.raises(UnsupportedMethodError) as e:
        load_config(EXAMPLE1)
    assert "PyCosmic" in str(e.value) and "mm_pycosmic" in str(e.value)
    assert isinstance(e.value, ConfigError)
    with pytest.raises(UnsupportedMethodError, match="PyCosmic"):
        parse_config(example(crmethod="pycosmic"))
    # numina's network methods run this project's CR networks (aux_ml); their dc_/nn_ parameters are used
    r = parse_config(example(crmethod="mm_deepcr")).requirements
    assert r.aux_method == "deepcr" and r.uses_mm and "dc_mask" in dict(r.aux_params)
    assert parse_config(example(crmethod="conn")).requirements.aux_method == "conn"
    with pytest.raises(ParameterError, match="use_auxmedian"):
        parse_config(example(crmethod="mm_conn", use_auxmedian=True))


def test_numina_example_with_lacosmic_is_accepted_with_its_values():
    cfg = parse_config(example(crmethod="mm_lacosmic"), base_dir=EXAMPLE1.parent)
    r = cfg.requirements
    assert cfg.gain == 1.0 and cfg.rnoise == 3.4 and cfg.bias == 0.0 and cfg.extnum == 0
    assert [Path(p).name for p in cfg.images] == ["fake_1a.fits", "fake_2a.fits", "fake_3a.fits"]
    assert r.crmethod == "mm_lacosmic" and r.aux_method == "lacosmic" and r.uses_mm
    assert r.la_sigclip == (5.0, 3.0) and r.la_sigfrac == (0.3, 0.3) and r.la_objlim == (5.0, 5.0)
    assert r.la_psfmodel == "gaussxy" and r.la_psfsize == 11 and r.la_padwidth == 10
    assert r.mm_cr_coincidences == 2 and r.mm_knots_splfit == 5 and r.mm_nsimulations == 10
    assert r.mm_niter_boundary_extension == 5 and r.mm_weight_boundary_extension == 2.0
    assert r.mm_threshold_rnoise == 3.0 and r.mm_minimum_max2d_rnoise == 5.0 and r.mm_seed == 123456
    assert r.mm_fixed_points_in_boundary == () and r.mm_xy_offsets is None and r.mm_crosscorr_region is None
    assert r.flux_factor is None and r.apply_flux_factor_to == "simulated"
    assert r.interactive is True  # accepted; never prompts
    assert "pc_sigma_det" in r.ignored and "nn_model" in r.ignored and "dc_mask" in r.ignored


def test_examples_2_to_7_of_the_documentation():
    r = parse_config(example(crmethod="mmcosmic", mm_fixed_points_in_boundary=[[50, 60], [150, 80]])).requirements
    assert r.mm_fixed_points_in_boundary == ((50.0, 60.0, DEFAULT_WEIGHT_FIXED_POINTS), (150.0, 80.0, DEFAULT_WEIGHT_FIXED_POINTS))
    r = parse_config(example(crmethod="mmcosmic", mm_boundary_fit="piecewise",
                             mm_fixed_points_in_boundary=[[0, 30], [50, 60], [150, 80]])).requirements
    assert r.mm_boundary_fit == "piecewise" and len(r.mm_fixed_points_in_boundary) == 3
    r = parse_config(example(crmethod="mmcosmic", mm_photon_distribution="nbinom", mm_nbinom_shape=1000)).requirements
    assert r.mm_photon_distribution == "nbinom" and r.mm_nbinom_shape == 1000.0
    r = parse_config(example(crmethod="mmcosmic", mm_synthetic="single", mm_hist2d_min_neighbors=6)).requirements
    assert r.mm_synthetic == "single" and r.mm_hist2d_min_neighbors == 6
    r = parse_config(example(crmethod="mmcosmic", flux_factor="auto", flux_factor_regions=[[229, 274, 1, 1596]])).requirements
    assert r.flux_factor == "auto" and r.flux_factor_regions == ((229, 274, 1, 1596),)
    r = parse_config(example(crmethod="mmcosmic", flux_factor=[0.75, 1.01, 1.16])).requirements
    assert r.flux_factor == (0.75, 1.01, 1.16)
    r = parse_config(example(crmethod="mmcosmic", mm_crosscorr_region="[214:320, 651:733]")).requirements
    assert r.mm_crosscorr_region == (214, 320, 651, 733)
    r = parse_config(example(crmethod="mmcosmic", mm_xy_offsets=[[-0.46, 0.41], [0.0, -0.01], [0.48, -0.26]])).requirements
    assert r.mm_xy_offsets[2] == (0.48, -0.26)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"mm_cr_coincidences": 1}, "mm_cr_coincidences"),
        ({"mm_cr_coincidences": 3}, "mm_cr_coincidences"),  # not lower than 3 images
        ({"mm_hist2d_min_neighbors": 9}, "mm_hist2d_min_neighbors"),
        ({"mm_nsimulations": 0}, "mm_nsimulations"),
        ({"mm_knots_splfit": 1}, "mm_knots_splfit"),
        ({"mm_weight_boundary_extension": 0.5}, "mm_weight_boundary_extension"),
        ({"mm_boundary_fit": "cubic"}, "mm_boundary_fit"),
        ({"mm_boundary_fit": "piecewise"}, "mm_fixed_points_in_boundary"),
        ({"mm_photon_distribution": "gauss"}, "mm_photon_distribution"),
        ({"mm_nbinom_shape": -1}, "mm_nbinom_shape"),
        ({"la_psfsize": 10}, "la_psfsize"),
        ({"la_sigclip": [5.0, 3.0, 2.0]}, "la_sigclip"),
        ({"la_cleantype": "mean"}, "la_cleantype"),
        ({"flux_factor": [1.0, 1.0]}, "flux_factor"),
        ({"flux_factor": -2}, "flux_factor"),
        ({"apply_flux_factor_to": "both"}, "apply_flux_factor_to"),
        ({"dilation": -1}, "dilation"),
        ({"regions_to_be_skipped": [[10, 5, 1, 4]]}, "regions_to_be_skipped"),
        ({"pixels_to_be_replaced_by_local_median": [[3, 3, 2, 3]]}, "pixels_to_be_replaced_by_local_median"),
        ({"mm_xy_offsets": [[0, 0]]}, "mm_xy_offsets"),
        ({"mm_xy_offsets": [[0, 0]] * 3, "mm_crosscorr_region": [1, 50, 1, 50]}, "mm_xy_offsets"),
        ({"mm_crosscorr_region": [1, 5, 1, 5]}, "mm_crosscorr_region"),
        ({"use_auxmedian": "maybe"}, "use_auxmedian"),
        ({"crmethod": "magic"}, "crmethod"),
        ({"mm_seed": "abc"}, "mm_seed"),
        ({"unknown_knob": 3}, "unknown_knob"),
    ],
)
def test_invalid_values_are_named(changes, key):
    data = example(**{"crmethod": "mm_lacosmic", **changes})
    with pytest.raises(ParameterError) as e:
        parse_config(data)
    assert key in str(e.value)


@pytest.mark.parametrize(
    "top, key",
    [
        ({"gain": 0}, "gain"),
        ({"rnoise": -1}, "rnoise"),
        ({"images": ["a.fits", "b.fits"]}, "images"),
        ({"extnum": -1}, "extnum"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_top_level_values_are_named(top, key):
    data = example(crmethod="mmcosmic")
    data.update(top)
    with pytest.raises(ParameterError, match=key):
        parse_config(data)
    missing = example(crmethod="mmcosmic")
    del missing["rnoise"]
    with pytest.raises(ParameterError, match="rnoise"):
        parse_config(missing)


def test_requirements_alone_and_defaults():
    r = parse_requirements({})
    assert r.crmethod == "mm_lacosmic" and r.mm_xbinning == "quantile" and r.mm_nbins_xdiag == 10
    with pytest.raises(ParameterError, match="use_auxmedian"):
        parse_requirements({"crmethod": "mmcosmic", "use_auxmedian": True})
    assert parse_requirements({"mm_xbinning": "linear"}).mm_xbinning == "linear"
