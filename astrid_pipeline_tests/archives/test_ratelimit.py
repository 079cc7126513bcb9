"""The request-rate limit holds across processes (a token bucket in a file under the cache root)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from astrid_pipeline.archives.errors import ArchiveConfigError
from astrid_pipeline.archives.http import HttpClient, HttpPolicy
from astrid_pipeline.archives.ratelimit import RateLimiter
from astrid_pipeline_tests.archives.loopback import Answer, max_in_window

PROJECT = Path(__file__).resolve().parents[2]


class FakeTime:
    """One clock shared by several limiters (several processes); sleeping advances it."""

    def __init__(self, t0: float = 1000.0):
        self.now = t0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_bucket_allows_its_burst_then_spaces_requests(tmp_path):
    t = FakeTime()
    lim = RateLimiter(tmp_path, clock=t.clock, sleep=t.sleep)
    waits = [lim.acquire("mast.stsci.edu", 0.5, burst=3) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]  # the burst goes at once
    assert waits[3:] == pytest.approx([0.5, 0.5, 0.5])  # then one per interval
    t.now += 10.0  # idle: the bucket refills to its burst, no more
    assert [lim.acquire("mast.stsci.edu", 0.5, burst=3) for _ in range(4)] == pytest.approx([0, 0, 0, 0.5])


def test_limiters_on_one_folder_share_one_bucket_per_host(tmp_path):
    """Two limiters (two processes) on one cache root: the second waits for the first's requests."""
    t = FakeTime()
    a = RateLimiter(tmp_path, clock=t.clock, sleep=lambda s: t.slept.append(s))  # sleeps recorded, clock still
    b = RateLimiter(tmp_path, clock=t.clock, sleep=lambda s: t.slept.append(s))
    assert a.acquire("ps1images.stsci.edu", 1.0) == 0.0
    # b reserves the next free slot, then the one after: waits grow because nobody slept yet
    assert b.acquire("ps1images.stsci.edu", 1.0) == pytest.approx(1.0)
    assert a.acquire("ps1images.stsci.edu", 1.0) == pytest.approx(2.0)
    assert b.acquire("skyview.gsfc.nasa.gov", 1.0) == 0.0  # other hosts have their own bucket
    separate = RateLimiter(tmp_path / "elsewhere", clock=t.clock, sleep=t.sleep)
    assert separate.acquire("ps1images.stsci.edu", 1.0) == 0.0  # another cache root is another bucket
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["ps1images.stsci.edu.json",
                                                               "skyview.gsfc.nasa.gov.json"]


def test_a_corrupt_bucket_file_restarts_full_and_is_rewritten(tmp_path):
    t = FakeTime()
    lim = RateLimiter(tmp_path, clock=t.clock, sleep=t.sleep)
    lim.path_for("h.example").write_bytes(b"{\"tokens\": ")  # a writer killed mid-write
    assert lim.acquire("h.example", 2.0) == 0.0
    assert lim.acquire("h.example", 2.0) == pytest.approx(2.0)
    lim.path_for("h.example").write_bytes(b"x" * 10000)  # not ours
    assert lim.acquire("h.example", 2.0) == 0.0


def test_an_unusable_rate_limit_folder_is_a_named_error(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    lim = RateLimiter(blocker / ".ratelimit")
    with pytest.raises(ArchiveConfigError, match=r"cache/\.ratelimit/h\.example\.json: cannot open the shared"):
        lim.acquire("h.example", 1.0)


def test_the_router_puts_the_buckets_under_the_cache_root(tmp_path):
    from astrid_pipeline.archives.select import ArchiveRouter, ArchiveSettings

    router = ArchiveRouter(ArchiveSettings(kind="ps1", cache_root=str(tmp_path / "cache")))
    assert router.http.rate_limiter.root == tmp_path / "cache" / ".ratelimit"


def _start_workers(loopback, tmp_path, n_procs, n_requests, interval, burst, path="/q"):
    root, ready, go = tmp_path / "rate", tmp_path / "ready", tmp_path / "go"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-m", "astrid_pipeline_tests.archives.loadgen",
                               loopback.url + path, str(n_requests), str(root), str(interval), str(burst),
                               str(ready / str(i)), str(go)], cwd=PROJECT)
             for i in range(n_procs)]
    try:
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < n_procs:  # every process imported and built its client
            assert all(p.poll() is None for p in procs), "a load generator died at start"
            assert time.monotonic() < deadline, "load generators did not start"
            time.sleep(0.01)
        go.touch()  # all start together: a per-process limit would let each send its burst at once
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return codes


def test_three_processes_never_exceed_the_configured_rate(loopback, tmp_path):
    """3 processes x 3 requests at 2/s (burst 2) against one loopback host: the server counts arrival times."""
    rate, burst = 2.0, 2
    loopback.routes["/q"] = [Answer(200, b"ok")]
    codes = _start_workers(loopback, tmp_path, n_procs=3, n_requests=3, interval=1 / rate, burst=burst)
    assert codes == [0, 0, 0]
    times = loopback.arrivals("/q")
    assert len(times) == 9
    # over any window of T seconds at most burst + rate*T requests arrived (0.3 s of slack for a process
    # descheduled between its token and its request on a busy machine); a per-process limiter lets
    # 3 x burst = 6 arrive together, which no slack below 1 s admits
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i] + 0.3), (i, j, times)
    assert max_in_window(times, 0.05) <= burst


def test_loopback_counts_requests_in_flight_at_once(loopback):
    """The helper for pool tests: requests held 0.3 s by the server, 4 sent from 4 threads at once."""
    loopback.routes["/slow"] = [Answer(200, b"ok", delay_s=0.3)]
    http = HttpClient(HttpPolicy(min_interval_s=0.0, max_retries=0), rate_limiter=RateLimiter())
    barrier = threading.Barrier(4)

    def one():
        barrier.wait()
        http.get_text(loopback.url + "/slow")

    threads = [threading.Thread(target=one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # the server thread counts a request as done just after the client has its answer: give it a moment
    deadline = time.monotonic() + 5.0
    while loopback.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert loopback.count("/slow") == 4 and loopback.max_in_flight == 4 and loopback.in_flight == 0
    http.get_text(loopback.url + "/slow")  # one more, alone: the maximum stays what it was
    assert loopback.max_in_flight == 4
