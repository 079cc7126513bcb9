"""A load generator for the loopback tests: one process sending GETs through the archive HTTP client.

``python -m astrid_pipeline_tests.archives.loadgen URL N RATE_ROOT INTERVAL_S BURST READY_FILE GO_FILE``

It builds an :class:`~astrid_pipeline.archives.http.HttpClient` whose rate
limit lives in ``RATE_ROOT`` (``INTERVAL_S`` between requests per host,
``BURST`` back to back; ``INTERVAL_S`` 0 = unlimited), touches ``READY_FILE``,
waits for ``GO_FILE`` (so several processes start together), then sends ``N``
GETs to ``URL`` one after the other. Used to check that limits hold across
processes (a rate here; a pool's concurrency with the loopback's
``max_in_flight``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    url, n, root, interval, burst, ready, go = argv
    from astrid_pipeline.archives.http import HttpClient, HttpPolicy
    from astrid_pipeline.archives.ratelimit import RateLimiter

    http = HttpClient(HttpPolicy(timeout_s=30.0, deadline_s=120.0, max_retries=0, min_interval_s=float(interval),
                                 rate_burst=int(burst)), rate_limiter=RateLimiter(root))
    Path(ready).touch()
    give_up = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > give_up:
            return 2
        time.sleep(0.002)
    for _ in range(int(n)):
        http.get_text(url)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
