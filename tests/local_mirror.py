"""A real HTTP server on 127.0.0.1, in a thread, that plays a dataset mirror (good, broken or slow)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Cut:
    """Announce the full Content-Length, send the first ``keep`` bytes, then close (or hang if ``hang``)."""

    body: bytes
    keep: int
    hang: bool = False


@dataclass
class Stream:
    """No Content-Length: send ``body`` in pieces of ``piece`` bytes, ``delay_s`` apart, then (if
    ``endless``) ``filler`` again and again until the client hangs up or the mirror closes."""

    body: bytes
    piece: int = 1 << 16
    delay_s: float = 0.0
    endless: bool = False
    filler: bytes = bytes(1 << 16)


class LocalMirror:
    """Routes are URL paths mapped to bytes (200), an int (that HTTP status), a :class:`Cut` or a
    :class:`Stream`."""

    def __init__(self, chunk_delay_s: float = 0.0) -> None:
        self.routes: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        self.release = threading.Event()
        self.chunk_delay_s = chunk_delay_s
        self.streamed = 0  # bytes of endless padding sent
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.hits[self.path] += 1
                route = mirror.routes.get(self.path, 404)
                if isinstance(route, int):
                    self.send_error(route)
                    return
                if isinstance(route, Stream):
                    self._stream(route)
                    return
                body, keep, hang = (
                    (route.body, route.keep, route.hang)
                    if isinstance(route, Cut)
                    else (route, len(route), False)
                )
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(0, keep, 1 << 16):
                    self.wfile.write(body[i : min(keep, i + (1 << 16))])
                    if mirror.chunk_delay_s:
                        time.sleep(mirror.chunk_delay_s)
                self.wfile.flush()
                if hang:
                    mirror.release.wait(30)
                self.close_connection = True

            def _stream(self, route: Stream) -> None:
                self.send_response(200)
                self.end_headers()  # no Content-Length: the body ends when the connection does
                self.close_connection = True
                try:
                    for i in range(0, len(route.body), route.piece):
                        if mirror.release.is_set():
                            return
                        self.wfile.write(route.body[i : i + route.piece])
                        self.wfile.flush()
                        time.sleep(route.delay_s)
                    while route.endless and not mirror.release.is_set():
                        self.wfile.write(route.filler)
                        mirror.streamed += len(route.filler)
                except OSError:  # the client hung up: what we want it to do
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{prefix.strip('/')}/"

    def __enter__(self) -> LocalMirror:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
