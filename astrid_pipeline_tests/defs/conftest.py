"""Fixtures for tests that run the Dagster definitions in process on small simulated regions."""

from __future__ import annotations

import pytest

from astrid_pipeline_tests.dagster_helpers import check_results, materialized, run_sky  # noqa: F401


@pytest.fixture()
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("ASTRID_DATA_ROOT", str(root))
    return root


@pytest.fixture()
def catalog(tmp_path, monkeypatch):
    """A region catalog with two small fields (set as $ASTRID_REGION_CATALOG)."""
    import yaml

    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump({"regions": [{"name": "fieldA", "ra": 150.1, "dec": 2.2},
                                                {"name": "fieldC", "ra": 189.2, "dec": 62.2}]}))
    monkeypatch.setenv("ASTRID_REGION_CATALOG", str(path))
    return path


@pytest.fixture()
def instance():
    from dagster import DagsterInstance

    with DagsterInstance.ephemeral() as inst:
        yield inst
