"""The controller's HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz``.

A plain threaded HTTP server from the standard library: the controller has no web
framework to keep patched. Other pages (the review UI) register extra routes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Route = Callable[[str], tuple[int, str, bytes]]
"""A handler: the request path with query in, (status, content type, body) out."""


class ControllerHTTPServer:
    """Serves probes and metrics on ``host:port`` in a daemon thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        host: str = "0.0.0.0",
        port: int = 8080,
    ) -> None:
        self.routes: dict[str, Route] = {
            "/metrics": lambda _: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda _: _probe(healthy()),
            "/readyz": lambda _: _probe(ready()),
        }
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                path = self.path.split("?", 1)[0]
                route = routes.get(path) or routes.get(path.rstrip("/"))
                status, content_type, body = (
                    route(self.path) if route else (404, "text/plain", b"not found\n")
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # probes every few seconds would drown the JSON logs

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> ControllerHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _probe(result: tuple[bool, str]) -> tuple[int, str, bytes]:
    ok, message = result
    return (200 if ok else 503), "text/plain; charset=utf-8", (message + "\n").encode()
