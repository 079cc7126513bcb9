"""notebooks/catalogs.ipynb executes (nbclient) against products of an in-process materialization,
and its summary matches the catalogs on disk."""

import json
from pathlib import Path

import pytest
from dagster import DagsterInstance, MultiPartitionKey, materialize

from astrid_pipeline.defs.detector.assets import ramp_detections, register_exposures, simulated_ramp
from astrid_pipeline.defs.resources import StorageResource
from astrid_pipeline_tests.dagster_helpers import run_sky

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "catalogs.ipynb"
nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (dev extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (dev extra)")
pytest.importorskip("duckdb", reason="duckdb is not installed (dev extra)")


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    instance = DagsterInstance.ephemeral()
    assert run_sky(instance, ["M101", "COSMOS"], storage_root=root).success
    register_exposures(instance)
    assert materialize([simulated_ramp, ramp_detections], instance=instance,
                       resources={"storage": StorageResource(root=str(root))},
                       partition_key=MultiPartitionKey({"detector": "18248_SCA", "exposure": "001"})).success
    return root


def test_notebook_reads_the_catalogs(products, monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    monkeypatch.setenv("ASTRID_DATA_ROOT", str(products))  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
    line = next(l for l in text.splitlines() if l.startswith("SUMMARY "))
    summary = json.loads(line[len("SUMMARY "):])

    cands = pq.read_table(products / "catalogs" / "candidates", partitioning=None).to_pandas()
    events = pq.read_table(products / "catalogs" / "ramp_events", partitioning="hive").to_pandas()
    assert summary["n_candidates"] == len(cands) > 0
    assert summary["n_regions"] == 2
    assert summary["n_clean"] == int((cands["flags"] == 0).sum())
    assert summary["n_ramp_events"] == len(events) > 0
    assert summary["ramp_events_by_type"] == {k: int(v) for k, v in events["type"].value_counts().items()}
    assert summary["n_triplets"] == len(cands)  # one triplet per candidate
    # the plots were drawn: the triplet figure and the summary figure are in the outputs
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2
