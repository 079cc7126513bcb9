"""Markers of the orchestration tests (registered here so the project's pytest config stays untouched)."""


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the web UI in chromium (skipped when chromium is absent)")
    config.addinivalue_line("markers", "dask: runs on a dask.distributed LocalCluster")
