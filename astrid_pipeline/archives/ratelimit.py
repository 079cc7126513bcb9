"""A request-rate limit per host that holds across processes: a token bucket in a file.

Dagster's multiprocess executor (and Celery/Dask workers on one machine, or on
machines sharing the data root) run many archive steps at once, each in its
own process. A limiter in process memory lets each of them send the full rate
(three processes sent 7.8 requests/s against 2/s configured). Here the bucket
of each host lives in ``<root>/<host>.json`` (``root`` is
``<cache root>/.ratelimit``), read and updated under an exclusive
``fcntl.flock``, so every process using the same cache root shares one
bucket per host.

The bucket (Tanenbaum's token bucket, as in RFC 2697's committed burst):
``rate = 1 / interval_s`` tokens per second, at most ``burst`` tokens. A
request takes one token; when none is left, it reserves the next one (the
count goes negative) and sleeps until that token is due, outside the lock, so
waiting processes queue in the order they arrived and nobody polls. Over any
window of ``T`` seconds at most ``burst + T / interval_s`` requests start.

Dagster pools limit how many archive steps run at once; this limits how fast
they ask. Plain Python: no Dagster here.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from astrid_pipeline.archives.errors import ArchiveConfigError

log = logging.getLogger(__name__)

#: state files larger than this are not ours (or corrupt): the bucket restarts full
_MAX_STATE_BYTES = 4096


def default_root() -> Path:
    """Where buckets live when no cache root is given: ``$ASTRID_ARCHIVE_CACHE/.ratelimit`` or a per-user temp dir."""
    env = os.environ.get("ASTRID_ARCHIVE_CACHE")
    if env:
        return Path(env) / ".ratelimit"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"astrid-ratelimit-{uid}"


def _file_name(host: str) -> str:
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in host.lower())[:200]
    return f"{safe or 'host'}.json"


class RateLimiter:
    """Per-host token buckets shared by every process that uses the same ``root`` folder.

    ``clock`` is wall time (``time.time``: the one clock all processes share);
    ``sleep`` is injectable so tests can record waits instead of sleeping them.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep):
        self.root = Path(root) if root is not None else default_root()
        self.clock, self.sleep = clock, sleep
        self.waits: list[tuple[str, float]] = []
        self._local = threading.Lock()  # only guards ``waits``; the file lock does the real work

    def path_for(self, host: str) -> Path:
        return self.root / _file_name(host)

    def acquire(self, host: str, interval_s: float, burst: int = 1) -> float:
        """Take one token for ``host`` (waiting for it if needed); returns the seconds waited."""
        if interval_s <= 0 or not host:
            return 0.0
        burst = max(1, int(burst))
        wait = self._reserve(host, float(interval_s), burst)
        if wait > 0:
            with self._local:
                self.waits.append((host, wait))
            log.debug("rate limit: waiting %.3f s before the next request to %s", wait, host)
            self.sleep(wait)
        return wait

    def _reserve(self, host: str, interval_s: float, burst: int) -> float:
        import fcntl

        path = self.path_for(host)
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise ArchiveConfigError(f"{path}: cannot open the shared rate-limit file ({exc.strerror or exc}); "
                                     "the cache root must be writable") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                raise ArchiveConfigError(f"{path}: cannot lock the shared rate-limit file ({exc.strerror or exc}); "
                                         "put the cache root on a filesystem with flock") from exc
            now = self.clock()
            tokens, updated = self._read(fd, burst, now)
            tokens = min(float(burst), tokens + max(0.0, now - updated) / interval_s)
            tokens -= 1.0
            wait = max(0.0, -tokens * interval_s)
            state = json.dumps({"tokens": tokens, "updated": now, "interval_s": interval_s, "burst": burst}).encode()
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, state)
            return wait
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def _read(fd: int, burst: int, now: float) -> tuple[float, float]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, _MAX_STATE_BYTES + 1)
        if not raw or len(raw) > _MAX_STATE_BYTES:
            return float(burst), now
        try:
            doc = json.loads(raw)
            tokens, updated = float(doc["tokens"]), float(doc["updated"])
        except (ValueError, KeyError, TypeError):
            return float(burst), now  # a corrupt file (a killed writer): start with a full bucket
        if not (tokens == tokens and updated == updated):  # NaN
            return float(burst), now
        # a clock that jumped back must not stall everyone: never trust an update from the future
        return max(-1e6, min(tokens, float(burst))), min(updated, now)
