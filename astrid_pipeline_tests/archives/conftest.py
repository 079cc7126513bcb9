"""Loopback HTTP server with scripted answers (fault injection), a fast HTTP policy, the `live` marker."""

from __future__ import annotations

import os

import pytest

from astrid_pipeline_tests.archives.loopback import Answer, Loopback  # noqa: F401  (re-exported for the tests)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ASTRID_LIVE") == "1":
        return
    skip = pytest.mark.skip(reason="needs the real network: set ASTRID_LIVE=1 to run")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def loopback():
    srv = Loopback()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def fast_http(tmp_path_factory):
    """An HttpClient that records its backoffs and rate-limit waits instead of sleeping them.

    Its rate-limit buckets live in a fresh temporary folder (no wall-clock waits in tests).
    """
    import random

    from astrid_pipeline.archives.http import HttpClient, HttpPolicy
    from astrid_pipeline.archives.ratelimit import RateLimiter

    def make(**kw):
        slept: list[float] = []
        policy = HttpPolicy(**{"timeout_s": 5.0, "deadline_s": 30.0, "max_retries": 3, "backoff_base_s": 0.5,
                               "min_interval_s": 0.0, **kw})
        limiter = RateLimiter(tmp_path_factory.mktemp("ratelimit"), sleep=slept.append)
        client = HttpClient(policy, rate_limiter=limiter, sleep=slept.append, rng=random.Random(0))
        client.slept = slept
        return client

    return make
