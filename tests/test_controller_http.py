"""The controller's probes and metrics over real HTTP on loopback."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from controller.http import ControllerHTTPServer
from controller.metrics import ControllerMetrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
