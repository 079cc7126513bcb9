"""Loopback HTTP server with scripted answers (fault injection), a fast HTTP policy, the `live` marker."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ASTRID_LIVE") == "1":
        return
    skip = pytest.mark.skip(reason="needs the real network: set ASTRID_LIVE=1 to run")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0          # wait before answering (a timeout when > the client's timeout)
    cut_after: int | None = None  # send Content-Length of the full body, then only this many bytes, then close


class Loopback:
    """Routes: path -> list of Answers (consumed in order; the last one repeats) or a callable(query)->Answer."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        self.requests: list[tuple[str, dict]] = []
        self.stop = threading.Event()
        loop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                loop.requests.append((parts.path, query))
                route = loop.routes.get(parts.path)
                if route is None:
                    ans = Answer(404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
                elif callable(route):
                    ans = route(query)
                else:
                    ans = route[0] if len(route) == 1 else route.pop(0)
                if ans.delay_s and loop.stop.wait(ans.delay_s):
                    return
                body = ans.body
                try:
                    self.send_response(ans.status)
                    for k, v in ans.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    if ans.cut_after is not None:
                        self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body if ans.cut_after is None else body[:ans.cut_after])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if ans.cut_after is not None:
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def loopback():
    srv = Loopback()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def fast_http():
    """An HttpClient that records its backoffs instead of sleeping them (no wall-clock waits in tests)."""
    import random

    from astrid_pipeline.archives.http import HostRateLimiter, HttpClient, HttpPolicy

    def make(**kw):
        slept: list[float] = []
        policy = HttpPolicy(**{"timeout_s": 5.0, "max_retries": 3, "backoff_base_s": 0.5, "min_interval_s": 0.0,
                               **kw})
        client = HttpClient(policy, rate_limiter=HostRateLimiter(sleep=slept.append), sleep=slept.append,
                            rng=random.Random(0))
        client.slept = slept
        return client

    return make
