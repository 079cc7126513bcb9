"""A loopback HTTP server with scripted answers, for fault injection and for counting what clients do.

Reusable outside the archive tests (``from astrid_pipeline_tests.archives.loopback import Loopback, Answer``):

* scripted answers per path: a list (consumed in order, the last repeats) or
  a callable ``(query) -> Answer`` (POST bodies arrive as ``query["__body__"]``);
* faults: a delay before answering, a body cut after N bytes, a body
  trickled block by block, a false or missing ``Content-Length``, an endless
  body, any header (``Location``, ``Content-Encoding``, ``Retry-After``);
* measurements: every request's path, query, headers and arrival time
  (``time.monotonic`` of the server process), and the largest number of
  requests in flight at once (:attr:`Loopback.max_in_flight`), so a test
  can check a concurrency limit (a Dagster pool) from several processes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator
from urllib.parse import parse_qs, urlsplit


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0          # wait before answering (a timeout when > the client's timeout)
    cut_after: int | None = None  # send Content-Length of the full body, then only this many bytes, then close
    #: "auto" = the body's length; None = no Content-Length (the body ends when the connection closes);
    #: anything else is sent as given (a lie: larger, smaller, not a number)
    length: object = "auto"
    #: blocks of the body produced lazily (an endless body); replaces ``body``; sent without a length
    stream: Callable[[], Iterator[bytes]] | None = None
    block_bytes: int = 1 << 16    # the body is written in blocks of this size ...
    block_delay_s: float = 0.0    # ... with this pause between them (a trickle)
    header_delay_s: float = 0.0   # pause after each header line (headers trickled: a slow-loris answer)


class Loopback:
    """Routes: path -> list of Answers (consumed in order; the last one repeats) or a callable(query)->Answer."""

    def __init__(self):
        self.routes: dict[str, object] = {}
        self.requests: list[tuple[str, dict]] = []
        self.headers: list[dict[str, str]] = []  # the request headers, in the order of ``requests``
        self.times: list[tuple[str, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        loop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                loop._handle(self, None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                loop._handle(self, self.rfile.read(n).decode("utf-8", "replace") if n else "")

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that hung up is part of the test
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ serving
    def _answer_for(self, path: str, query: dict) -> Answer:
        with self._lock:
            route = self.routes.get(path)
            if route is None:
                return Answer(404, b"<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
            if callable(route):
                pass
            else:
                return route[0] if len(route) == 1 else route.pop(0)
        return route(query)

    def _handle(self, handler: BaseHTTPRequestHandler, body: str | None) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if body is not None:
            query["__body__"] = body
        with self._lock:
            self.requests.append((parts.path, query))
            self.headers.append({k.lower(): v for k, v in handler.headers.items()})
            self.times.append((parts.path, time.monotonic()))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._respond(handler, self._answer_for(parts.path, query))
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(self, handler: BaseHTTPRequestHandler, ans: Answer) -> None:
        if ans.delay_s and self.stop.wait(ans.delay_s):
            return
        body = ans.body
        try:
            length = None if ans.stream is not None else (len(body) if ans.length == "auto" else ans.length)
            closing = ans.cut_after is not None or length is None or ans.length != "auto"
            headers = dict(ans.headers)
            if length is not None:
                headers["Content-Length"] = str(length)
            if closing:
                headers["Connection"] = "close"
            if ans.header_delay_s:
                lines = [f"HTTP/1.1 {ans.status} Slow", *(f"{k}: {v}" for k, v in headers.items()), ""]
                for line in lines:
                    handler.wfile.write(line.encode("latin-1") + b"\r\n")
                    handler.wfile.flush()
                    if self.stop.wait(ans.header_delay_s):
                        return
            else:
                handler.send_response(ans.status)
                for k, v in headers.items():
                    handler.send_header(k, v)
                handler.end_headers()
            blocks = ans.stream() if ans.stream is not None else self._blocks(
                body if ans.cut_after is None else body[:ans.cut_after], ans.block_bytes)
            for i, block in enumerate(blocks):
                if i and ans.block_delay_s and self.stop.wait(ans.block_delay_s):
                    break
                if self.stop.is_set():
                    break
                handler.wfile.write(block)
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            closing = True
        if closing:
            handler.close_connection = True

    @staticmethod
    def _blocks(body: bytes, size: int) -> Iterator[bytes]:
        for i in range(0, len(body), max(1, size)):
            yield body[i:i + size]

    # ------------------------------------------------------------------ measurements
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _ in self.requests if p == path)

    def arrivals(self, path: str | None = None) -> list[float]:
        """Arrival times (server monotonic clock, seconds) of the requests to ``path`` (all when None), sorted."""
        with self._lock:
            return sorted(t for p, t in self.times if path is None or p == path)

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def max_in_window(times: list[float], window_s: float) -> int:
    """The largest number of ``times`` inside any window of ``window_s`` seconds."""
    ts = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] < t - window_s:
            j += 1
        best = max(best, i - j + 1)
    return best
