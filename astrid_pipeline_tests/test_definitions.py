"""The Definitions load, every asset has a group, kind and description, and the job resolves."""

from astrid_pipeline.definitions import defs


def test_definitions_load_and_job_resolves():
    job = defs.resolve_job_def("sky_branch_job")
    assert job.partitions_def is not None
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"science_image", "aligned_reference", "zogy_difference", "candidate_catalog", "cutout_triplets"} <= keys
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.group_name and node.group_name != "default", key
        assert node.description, key
        assert node.kinds, key
        assert node.owners, key
    checks = {c.name for c in graph.asset_check_keys}
    assert {"alignment_residual", "scorr_unit_variance", "injected_transient_recovery"} <= checks
