"""The controller's probes and metrics over real HTTP on loopback."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from controller.feed import FeedServer
from controller.http import REQUEST_TIMEOUT, ControllerHTTPServer
from controller.metrics import ControllerMetrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def healthy_server(**options: Any) -> ControllerHTTPServer:
    """A server whose probes both say ok, on a free port, not yet started."""
    return ControllerHTTPServer(
        ControllerMetrics().registry,
        healthy=lambda: (True, "ok"),
        ready=lambda: (True, "ok"),
        port=0,
        **options,
    )


@pytest.fixture
def served():
    metrics = ControllerMetrics()
    state = {"ready": (False, "waiting for the first list of PredictiveScalers")}
    server = ControllerHTTPServer(
        metrics.registry,
        healthy=lambda: (True, "ok"),
        ready=lambda: state["ready"],
        host="127.0.0.1",
        port=0,
    ).start()
    yield server, metrics, state
    server.stop()


def test_probes_follow_the_controller_state(served) -> None:
    server, _, state = served
    assert get(server.port, "/healthz") == (200, "ok\n")
    assert get(server.port, "/readyz") == (503, "waiting for the first list of PredictiveScalers\n")
    state["ready"] = (True, "ok")
    assert get(server.port, "/readyz") == (200, "ok\n")
    assert get(server.port, "/nope")[0] == 404


def test_metrics_are_exported_and_forgotten(served) -> None:
    server, metrics, _ = served
    metrics.desired_replicas.labels("prod", "pension").set(12)
    metrics.decisions.labels("prod", "pension", "ScaleUp/ForecastPeak").inc()
    status, body = get(server.port, "/metrics")
    assert status == 200
    assert 'surgecast_desired_replicas{name="pension",namespace="prod"} 12.0' in body
    assert (
        'surgecast_decisions_total{name="pension",namespace="prod",reason="ScaleUp/ForecastPeak"} 1.0'
        in body
    )
    metrics.forget("prod", "pension")
    assert "surgecast_desired_replicas{" not in get(server.port, "/metrics")[1]


def test_a_deleted_scalers_counters_leave_the_scrape_too(served) -> None:
    # Kept, every scaler ever deleted (one per preview environment, say) would stay in
    # every scrape until the controller restarts.
    server, metrics, _ = served
    for namespace in ("pr-1", "pr-2"):
        metrics.decisions.labels(namespace, "web", "ScaleUp/ForecastPeak").inc()
        metrics.decisions.labels(namespace, "web", "Hold/WithinTolerance").inc()
        metrics.errors.labels(namespace, "web", "MetricUnavailable").inc()
    metrics.forget("pr-1", "web")
    body = get(server.port, "/metrics")[1]
    assert 'namespace="pr-1"' not in body
    assert body.count('namespace="pr-2"') == 6  # _total and _created of each, kept
    metrics.decisions.labels("pr-1", "web", "ScaleUp/ForecastPeak").inc()  # created again
    assert (
        metrics.registry.get_sample_value(
            "surgecast_decisions_total",
            {"namespace": "pr-1", "name": "web", "reason": "ScaleUp/ForecastPeak"},
        )
        == 1
    )


def closed_within(port: int, seconds: float, sent: bytes = b"") -> bool:
    """Whether the server closes a connection that sent ``sent`` and then nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(sent)
        try:
            return sock.recv(1024) == b""
        except TimeoutError:
            return False


def test_a_silent_connection_is_closed_and_does_not_hold_a_thread() -> None:
    # Each connection is served by a thread; without a timeout a client that connects and
    # stays silent keeps it for ever, and enough of them exhaust the process's threads.
    server = healthy_server(host="127.0.0.1", request_timeout=0.3).start()
    try:
        before = threading.active_count()
        assert closed_within(server.port, 3, b"")
        assert closed_within(server.port, 3, b"GET /heal")
        deadline = time.monotonic() + 3
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before
        assert get(server.port, "/healthz") == (200, "ok\n")  # served as before
    finally:
        server.stop()


def test_the_public_feed_server_closes_silent_connections_too() -> None:
    feed = FeedServer(lambda key: None, host="127.0.0.1", port=0).start()
    try:
        assert feed.server.RequestHandlerClass.timeout == REQUEST_TIMEOUT
    finally:
        feed.stop()


def test_a_client_that_goes_away_is_logged_not_a_traceback_on_stderr(capfd, caplog) -> None:
    # A scrape or probe that times out, or a feed reader closing the page, resets the
    # connection while the answer is written; the standard library prints a traceback to
    # stderr then, in the middle of the controller's JSON log lines.
    server = healthy_server(host="127.0.0.1")
    served = threading.Event()

    def big(_: str) -> tuple[int, str, bytes]:
        time.sleep(0.2)  # the client is gone by the time the answer is written
        served.set()
        return 200, "text/plain", b"x" * 4_000_000

    server.routes["/big"] = big
    server.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="surgecast.http"):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(b"GET /big HTTP/1.0\r\n\r\n")
            sock.close()  # with linger 0: a reset
            assert served.wait(5)
            deadline = time.monotonic() + 5
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.05)
        assert "Traceback" not in capfd.readouterr().err
        assert [r.levelname for r in caplog.records] == ["DEBUG"]
        assert get(server.port, "/healthz") == (200, "ok\n")
    finally:
        server.stop()


@pytest.mark.skipif(not socket.has_dualstack_ipv6(), reason="no IPv6 on this machine")
def test_the_default_address_is_reachable_over_ipv6_and_ipv4() -> None:
    # On an IPv6-only cluster the kubelet probes the pod's IPv6 address: a server bound to
    # IPv4's 0.0.0.0 alone fails every probe, and the pod is restarted for ever.
    server = healthy_server().start()
    try:
        for host in ("127.0.0.1", "[::1]"):
            with urllib.request.urlopen(f"http://{host}:{server.port}/healthz", timeout=5) as r:
                assert r.status == 200
    finally:
        server.stop()
