"""The sky branch with CR masks: cosmic rays are masked before differencing and do not become candidates."""

import numpy as np
import pytest
from astropy.io import fits

from astrid_pipeline.io.parquet_io import read_partitioned


@pytest.fixture(scope="module")
def masked_region(tmp_path_factory, small_pair):
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky
    from astrid_pipeline_tests.conftest import run_sky_steps, sim_archive_pair

    layout = DataLayout(tmp_path_factory.mktemp("data_cr"))
    region = "M101"
    sky.acquire(layout, region, sim_archive_pair(small_pair))
    res = sky.cosmic_ray_mask(layout, region, method="lacosmic")
    run_sky_steps(layout, region, until="classic")
    cand = sky.candidates(layout, region)
    return layout, region, res, cand


def test_mask_file_and_metadata(masked_region, small_pair):
    layout, region, res, _ = masked_region
    path = res.paths["cosmic_ray_mask"]
    assert path == layout.root / "sky" / "crmask" / f"{region}.fits"
    with fits.open(path) as h:
        mask = h[0].data.astype(bool)
        assert h[0].header["CRMETHOD"] == "lacosmic" and h[0].header["CRNPIX"] == mask.sum()
    assert res.metadata["method"] == "lacosmic" and 0 < res.metadata["n_cr_pixels"] < 0.01 * mask.size
    # most simulated hits are covered by the mask
    crs = small_pair.cosmic_rays
    hit = [mask[max(0, int(y) - 1):int(y) + 2, max(0, int(x) - 1):int(x) + 2].any() for x, y in zip(crs["x"], crs["y"])]
    assert np.mean(hit) > 0.6


def test_cosmic_rays_are_not_candidates_with_the_mask(masked_region, processed_region):
    layout, region, _, cand = masked_region
    with_mask = read_partitioned(layout.root, "candidates", {"region": region})
    base_layout, base_region = processed_region
    without = read_partitioned(base_layout.root, "candidates", {"region": base_region})
    n_cr_with = int((with_mask["label"] == "cosmic_ray").sum())
    n_cr_without = int((without["label"] == "cosmic_ray").sum())
    assert n_cr_without > 0 and n_cr_with <= 0.3 * n_cr_without
    # no clean cosmic-ray candidate, and the injected transients are still found
    assert not (with_mask["clean"] & (with_mask["label"] == "cosmic_ray")).any()
    assert cand.metadata["completeness_snr_ge_6"] >= 0.95


def test_mask_of_wrong_shape_is_a_named_error(masked_region, tmp_path):
    from astrid_pipeline.errors import InputFileError
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    layout, region, _, _ = masked_region
    other = DataLayout(tmp_path)
    import shutil

    for src in (layout.raw_image(region, "science"), layout.aligned_reference(region)):
        dst = other.root / src.relative_to(layout.root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    p = other.cosmic_ray_mask(region)
    p.parent.mkdir(parents=True)
    fits.PrimaryHDU(np.zeros((5, 5), np.uint8)).writeto(p)
    with pytest.raises(InputFileError, match="CR mask shape"):
        products.read_pair_inputs(other, region)


def test_shipped_model_mask_removes_cosmic_ray_candidates(tmp_path, small_pair, processed_region):
    from astrid_pipeline.archives.base import ArchivePair
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.ml.checkpoint import SHIPPED
    from astrid_pipeline.sky import products, runner
    from astrid_pipeline.sky import steps as sky

    if not SHIPPED.exists():
        pytest.skip("no shipped weights")
    layout = DataLayout(tmp_path / "data")
    region = "M101"
    sky.acquire(layout, region, ArchivePair(small_pair.science, small_pair.reference, "sim:science", "sim:reference",
                                            small_pair.truth, small_pair.cosmic_rays, {"archive": "simulated"}))
    res = sky.cosmic_ray_mask(layout, region, checkpoint=str(SHIPPED))
    assert res.metadata["method"] == "model"
    with fits.open(res.paths["cosmic_ray_mask"]) as h:
        assert "PROB" in h and h[0].header["CRMETHOD"] == "model"
    for step in (sky.align, sky.measure_psfs, sky.normalize, sky.zogy, sky.classic):
        step(layout, region)
    cand = sky.candidates(layout, region)
    cands = read_partitioned(layout.root, "candidates", {"region": region})
    base = read_partitioned(processed_region[0].root, "candidates", {"region": processed_region[1]})
    assert (cands["label"] == "cosmic_ray").sum() <= 0.3 * (base["label"] == "cosmic_ray").sum()
    assert cand.metadata["completeness_snr_ge_6"] >= 0.95
