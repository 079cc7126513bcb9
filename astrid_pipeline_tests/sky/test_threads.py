"""Thread counts: settings beat the environment beat the automatic choice; OpenMP limits apply and are undone."""

from __future__ import annotations

import numpy as np
import pytest

from astrid_pipeline.science import threads


@pytest.fixture(autouse=True)
def _reset():
    yield
    threads.configure(None)


def test_precedence(monkeypatch):
    monkeypatch.delenv("ASTRID_THREADS", raising=False)
    monkeypatch.delenv("ASTRID_FFT_WORKERS", raising=False)
    monkeypatch.delenv("ASTRID_TORCH_THREADS", raising=False)
    auto = threads.fft_workers()
    assert 1 <= auto <= threads.cpu_count()
    monkeypatch.setenv("ASTRID_THREADS", "3")
    assert threads.fft_workers() == 3 and threads.torch_threads() == 3 and threads.openmp_threads() == 3
    monkeypatch.setenv("ASTRID_FFT_WORKERS", "2")
    assert threads.fft_workers() == 2
    threads.configure(threads.ThreadSettings(torch=1, fft=5))
    assert threads.fft_workers() == 5 and threads.torch_threads() == 1
    monkeypatch.setenv("ASTRID_TORCH_THREADS", "not a number")
    threads.configure(None)
    assert threads.torch_threads() == 3  # a bad value is ignored, the next name is used


def test_free_cores_follows_the_load(monkeypatch):
    monkeypatch.setattr(threads, "cpu_count", lambda: 4)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.0, 0.0, 0.0))  # only this process
    assert threads.free_cores() == 4
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.2, 0.0, 0.0))
    assert threads.free_cores() == 2
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert threads.free_cores() == 1


def test_openmp_limit_applies_and_restores():
    astroscrappy = pytest.importorskip("astroscrappy")
    libs = threads._openmp_runtimes()
    if not libs:
        pytest.skip("no OpenMP runtime is loaded in this process")
    before = [lib.omp_get_max_threads() for lib in libs]
    with threads.openmp_limit(1) as n:
        assert n == 1
        assert all(lib.omp_get_max_threads() == 1 for lib in libs)
        rng = np.random.default_rng(0)
        img = rng.normal(100, 5, (64, 64)).astype(np.float32)
        img[30, 30] += 2000
        mask, _ = astroscrappy.detect_cosmics(img, readnoise=5.0, gain=1.0)
        assert mask[30, 30]
    assert [lib.omp_get_max_threads() for lib in libs] == before
