"""The controller's HTTP endpoints: ``/metrics``, ``/healthz``, ``/readyz`` and ``/ui``.

A plain threaded HTTP server from the standard library: the controller has no web
framework to keep patched. :class:`RouteServer` serves a table of routes;
:class:`ControllerHTTPServer` fills it with the probes and metrics, and other pages (the
review page, :func:`controller.review.review_route`) are added to its ``routes``.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("surgecast.http")

Route = Callable[[str], tuple[int, str, bytes]]
"""A handler: the request path with query in, (status, content type, body) out."""

REQUEST_TIMEOUT = 10.0
"""Seconds a connection may sit without sending or taking a byte before it is closed, and
the most it may take to send its request line and headers.

The standard library waits forever, and each connection holds a thread: a few thousand
clients that connect and stay silent (on the public feed port, anyone) would exhaust the
process's threads, and the controller's own jobs could then not start one. A wait for
each byte alone is not enough: a client sending its headers a byte every few seconds
(slowloris) held its thread for as long as it liked."""


class _HeadReader(io.RawIOBase):
    """A connection's reading side that waits for bytes only until ``deadline``
    (``time.monotonic``), however they trickle in; then ``TimeoutError``, which the
    standard library's handler answers by closing the connection."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        self._connection = connection
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request head took too long")
        self._connection.settimeout(left)
        return self._connection.recv_into(buffer)


class _HeadInTime(BaseHTTPRequestHandler):
    """A handler whose request line and headers must all arrive within ``timeout``
    seconds of the connection (see :data:`REQUEST_TIMEOUT`)."""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the socket stays open: this is only the standard reader
        deadline = time.monotonic() + (self.timeout or REQUEST_TIMEOUT)
        self.rfile = io.BufferedReader(_HeadReader(self.connection, deadline))

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:
            # The answer is written at the usual pace: a 20 MB review page to a slow
            # reader must not meet what is left of the head's deadline.
            self.connection.settimeout(self.timeout)


WRITE_CHUNK = 64 * 1024
"""Bytes of an answer handed to the socket at a time: each must go within the timeout."""


def write_body(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """Send ``body`` in :data:`WRITE_CHUNK` pieces.

    A socket's timeout bounds a whole ``sendall``, not a wait for progress: in one piece, a
    review page (5-20 MB) to a reader slower than 2 MB/s (a VPN, ``kubectl port-forward``)
    was cut off after :data:`REQUEST_TIMEOUT` seconds, the browser left with half of
    plotly.js and no chart. In pieces, only a reader that takes no piece for that long is.
    """
    with memoryview(body) as view:
        for start in range(0, len(view), WRITE_CHUNK):
            handler.wfile.write(view[start : start + WRITE_CHUNK])


class _Server(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose failures go to the log, not as a bare traceback to stderr
    (the controller's logs are JSON lines)."""

    daemon_threads = True
    # socketserver's default backlog is 5 connections waiting to be accepted: in a burst
    # (readers of the public feed, a load balancer's checks among them) the kernel dropped
    # the rest, and their clients waited 1 to 7 s to try again, past a probe's timeout.
    request_queue_size = socket.SOMAXCONN

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            # The client went away or stalled (a scrape or probe timing out, a reader of the
            # feed closing the page): routine, and nothing to do about it.
            log.debug("client %s: %s", client_address[0], error)
        else:
            log.exception("request from %s failed", client_address[0])


class _DualStackServer(_Server):
    """Listens on every IPv6 and IPv4 address: on an IPv6-only cluster, pods (and so the
    kubelet's probes and Prometheus' scrapes) reach each other over IPv6 alone."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _listen(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server on ``host:port``; ``0.0.0.0`` means every address, IPv6 included where the
    kernel has it (binding to IPv4's only would leave an IPv6-only pod unreachable)."""
    if host == "0.0.0.0" and socket.has_dualstack_ipv6():
        try:
            return _DualStackServer(("::", port), handler)
        except OSError:
            pass  # IPv6 switched off in this pod: IPv4 alone, then
    return _Server((host, port), handler)


class ThreadedServer:
    """A stdlib HTTP server run in a daemon thread: the lifecycle the controller's servers
    share. ``port=0`` picks a free port (see :attr:`port`); host ``0.0.0.0`` listens on
    every IPv4 and IPv6 address (see :func:`_listen`); a connection idle for
    ``request_timeout`` seconds, or still sending its request head after that long, is
    closed (:data:`REQUEST_TIMEOUT`)."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        host: str,
        port: int,
        name: str,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        timed = type(handler.__name__, (_HeadInTime, handler), {"timeout": request_timeout})
        self.server = _listen(host, port, timed)
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class RouteServer(ThreadedServer):
    """Serves ``routes`` (path without query → handler) on ``host:port`` in a daemon thread.

    ``port=0`` picks a free port (see :attr:`port`). Routes may be added until
    :meth:`start`; a route that raises answers 500 and is logged, and the server goes on.
    """

    def __init__(
        self,
        routes: dict[str, Route],
        host: str = "0.0.0.0",
        port: int = 8080,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.routes = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                self._answer(with_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                # RFC 9110 asks every server for HEAD as well as GET; uptime checkers and
                # `curl -I` send it, and got 501 Unsupported method from every endpoint.
                self._answer(with_body=False)

            def _answer(self, with_body: bool) -> None:
                status, content_type, body = _answer(routes, self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    write_body(self, body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # probes every few seconds would drown the JSON logs

        super().__init__(Handler, host, port, "http", request_timeout)


class ControllerHTTPServer(RouteServer):
    """The controller's probes and metrics."""

    def __init__(
        self,
        registry: CollectorRegistry,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        host: str = "0.0.0.0",
        port: int = 8080,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        routes: dict[str, Route] = {
            "/metrics": lambda _: (200, CONTENT_TYPE_LATEST, generate_latest(registry)),
            "/healthz": lambda _: _probe(healthy()),
            "/readyz": lambda _: _probe(ready()),
        }
        super().__init__(routes, host, port, request_timeout)


def _answer(routes: dict[str, Route], target: str) -> tuple[int, str, bytes]:
    """The response to ``GET target`` (a path with query)."""
    path = target.split("?", 1)[0]
    route = routes.get(path) or routes.get(path.rstrip("/"))
    if route is None:
        return 404, "text/plain", b"not found\n"
    try:
        return route(target)
    except Exception:  # one broken page must not take the probes or the process down
        log.exception("GET %s failed", path)
        return 500, "text/plain", b"internal error: see the controller's log\n"


def _probe(result: tuple[bool, str]) -> tuple[int, str, bytes]:
    ok, message = result
    return (200 if ok else 503), "text/plain; charset=utf-8", (message + "\n").encode()
