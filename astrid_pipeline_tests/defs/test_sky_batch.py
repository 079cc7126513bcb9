"""The sky assets over a batch of regions: per-partition materializations and checks, failures that stay
local to their region, blocking checks, nothing stale after a failing re-run, one run per region at a time."""

from __future__ import annotations

import pytest

from astrid_pipeline.sky.table import SKY_ASSET_KEYS, SKY_STEPS

from astrid_pipeline_tests.dagster_helpers import check_results, materialized, run_sky

ALL_CHECKS = {(c.asset, c.name) for s in SKY_STEPS for c in s.checks}


def _write_catalog(path, entries):
    import yaml

    path.write_text(yaml.safe_dump({"regions": entries}))
    return path


@pytest.fixture()
def catalog_with_bad_region(tmp_path):
    """Two simulated regions around one whose science file (local folder) is not FITS."""
    bad = tmp_path / "local" / "broken"
    bad.mkdir(parents=True)
    (bad / "science.fits").write_text("<html>not a FITS file</html>")
    (bad / "reference.fits").write_text("<html>not a FITS file</html>")
    return _write_catalog(tmp_path / "regions.yaml", [
        {"name": "fieldA", "ra": 150.1, "dec": 2.2},
        {"name": "broken", "ra": 150.3, "dec": 2.4, "science_archive": "local", "reference_archive": "local",
         "local_root": str(tmp_path / "local")},
        {"name": "fieldC", "ra": 189.2, "dec": 62.2},
    ])


def test_batch_records_every_partition_and_check(data_root, catalog, instance):
    keys = ["fieldA", "ra150.3000_dec+2.4000"]
    result = run_sky(instance, keys)
    assert result.success
    mats = materialized(result)
    for asset in (*SKY_ASSET_KEYS, "observation_inventory"):
        assert mats.get(asset) == set(keys), asset
    checks = check_results(result)
    for key in keys:
        evaluated = {(a, c) for (a, c, p) in checks if p == key}
        # every check was evaluated for this region, except truth recovery where it cannot apply (it does here)
        assert evaluated == ALL_CHECKS
        assert checks[("aligned_reference", "alignment_residual", key)]
    for key in keys:  # the instance knows each partition separately
        assert key in instance.get_materialized_partitions(__import__("dagster").AssetKey("cutout_triplets"))


def test_failing_region_does_not_cost_the_others(data_root, instance, catalog_with_bad_region):
    keys = ["fieldA", "broken", "fieldC"]
    result = run_sky(instance, keys, catalog=catalog_with_bad_region)
    assert result.success  # a batch with one bad region still completes the others
    mats = materialized(result)
    for asset in SKY_ASSET_KEYS:
        assert mats[asset] == {"fieldA", "fieldC"}, asset
    checks = check_results(result)
    assert checks[("science_image", "inputs_valid", "broken")] is False
    # the failure names the file and the reason
    ev = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
          and e.event_specific_data.partition == "broken"][0]
    msg = str(ev.event_specific_data.metadata["error"].value)
    assert "science.fits" in msg and "FITS" in msg
    assert not (data_root / "sky" / "raw" / "broken").exists() or not any((data_root / "sky" / "raw" / "broken").iterdir())
    # alone, the same region fails its run, so the UI shows it red
    alone = run_sky(instance, ["broken"], catalog=catalog_with_bad_region)
    assert not alone.success


def test_blocking_check_stops_the_region(data_root, catalog, instance):
    # an impossible alignment bound makes alignment_residual fail: downstream products would be meaningless
    result = run_sky(instance, ["fieldA"], settings={"qa": {"max_residual_px": 0.0}})
    assert not result.success  # single-region run: the blocking check fails the run
    mats = materialized(result)
    assert mats.get("aligned_reference") == {"fieldA"}
    for asset in ("psf_models", "normalized_images", "zogy_difference", "candidate_catalog", "cutout_triplets"):
        assert asset not in mats, asset
    assert check_results(result)[("aligned_reference", "alignment_residual", "fieldA")] is False


def test_failing_rerun_leaves_nothing_stale(data_root, catalog, instance, monkeypatch):
    from astrid_pipeline.layout import DataLayout

    layout = DataLayout(data_root)
    assert run_sky(instance, ["fieldA"]).success
    cat, trip = layout.catalog("candidates", {"region": "fieldA"}), layout.triplets("fieldA")
    assert cat.exists() and trip.exists()

    from astrid_pipeline.sky import steps as sky

    def broken(*a, **k):
        raise RuntimeError("PSF step exploded")

    monkeypatch.setattr(sky, "measure_psfs", broken)
    result = run_sky(instance, ["fieldA"])
    assert not result.success
    # the new raw and aligned images are there; the old catalog and triplets are not left beside them
    assert layout.aligned_reference("fieldA").exists()
    assert not cat.exists() and not trip.exists()
    assert not layout.difference("fieldA", "zogy").exists()
    assert check_results(result)[("psf_models", "psf_from_stars", "fieldA")] is False


def test_two_runs_of_one_region_cannot_interleave(data_root, catalog, instance):
    from astrid_pipeline.layout import DataLayout
    from astrid_pipeline.sky.runner import region_lock

    with region_lock(DataLayout(data_root), "fieldA", owner="another run"):
        result = run_sky(instance, ["fieldA"])
    assert not result.success
    mats = materialized(result)
    assert not any(a in mats for a in SKY_ASSET_KEYS)
    ev = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert ev and "another run" in str(ev[0].event_specific_data.metadata["error"].value)


def test_metadata_stays_small(data_root, catalog, instance):
    result = run_sky(instance, ["fieldA"])
    assert result.success
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            md = e.event_specific_data.materialization.metadata
            size = sum(len(str(v.value)) for v in md.values())
            assert size < 80_000, (e.event_specific_data.materialization.asset_key, size)  # 50 kB PNG in base64
    cat = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
           and e.event_specific_data.materialization.asset_key.to_user_string() == "candidate_catalog"][0]
    md = cat.event_specific_data.materialization.metadata
    assert "dagster/column_schema" in md and "dagster/row_count" in md
    names = [c.name for c in md["dagster/column_schema"].value.columns]
    assert "snr" in names and "flags" in names


def test_subset_runs_only_the_selected_steps(data_root, catalog, instance):
    from dagster import AssetKey

    assert run_sky(instance, ["fieldA"]).success
    result = run_sky(instance, ["fieldA"], selection=[AssetKey("candidate_catalog"), AssetKey("cutout_triplets")])
    assert result.success
    mats = materialized(result)
    assert set(mats) == {"candidate_catalog", "cutout_triplets"}
