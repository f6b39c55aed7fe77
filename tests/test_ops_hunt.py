"""Bugs found by hunting through what a platform engineer installs and watches (deploy/,
the metrics, the probes' server), each reproduced first, then fixed."""

from __future__ import annotations

import time

from controller.metrics import ControllerMetrics

REASONS = (
    "ScaleUp/ForecastPeak",
    "ScaleDown/ForecastPeak",
    "Hold/ForecastPeak",
    "Hold/ReactiveFloor",
    "FallbackReactive/ForecastMissing",
)


def test_forgetting_every_scaler_of_a_large_fleet_is_quick() -> None:
    # A leader that loses the lease forgets every scaler's series (controller.runner); found
    # by collecting all of a counter's series, each scaler's cost grew with the fleet: 1,000
    # scalers took close to a minute, the election job blocked all along.
    metrics = ControllerMetrics()
    scalers = [("prod", f"web-{n}") for n in range(1000)]
    for namespace, name in scalers:
        for reason in REASONS:
            metrics.decisions.labels(namespace, name, reason).inc()
        metrics.errors.labels(namespace, name, "MetricUnavailable").inc()
        metrics.desired_replicas.labels(namespace, name).set(3)
    started = time.perf_counter()
    for namespace, name in scalers:
        metrics.forget(namespace, name)
    assert time.perf_counter() - started < 5  # was about 50 s
    assert [m for m in metrics.registry.collect() if m.name == "surgecast_decisions"][
        0
    ].samples == []


def test_forget_removes_only_that_scalers_counter_series_however_they_were_labelled() -> None:
    metrics = ControllerMetrics()
    metrics.decisions.labels(namespace="prod", name="web", reason="Hold/ForecastPeak").inc()
    metrics.decisions.labels("prod", "web", "ScaleUp/ForecastPeak").inc()
    metrics.decisions.labels("prod", "web-2", "ScaleUp/ForecastPeak").inc()
    metrics.errors.labels("prod", "web", "ScaleFailed").inc()
    metrics.forget("prod", "web")
    metrics.forget("prod", "web")  # twice: nothing left to remove, no error
    value = metrics.registry.get_sample_value
    assert (
        value(
            "surgecast_decisions_total",
            {"namespace": "prod", "name": "web", "reason": "Hold/ForecastPeak"},
        )
        is None
    )
    assert (
        value(
            "surgecast_reconcile_errors_total",
            {"namespace": "prod", "name": "web", "kind": "ScaleFailed"},
        )
        is None
    )
    assert (
        value(
            "surgecast_decisions_total",
            {"namespace": "prod", "name": "web-2", "reason": "ScaleUp/ForecastPeak"},
        )
        == 1
    )
    metrics.decisions.labels("prod", "web", "Hold/ForecastPeak").inc()  # created again: from 0
    assert (
        value(
            "surgecast_decisions_total",
            {"namespace": "prod", "name": "web", "reason": "Hold/ForecastPeak"},
        )
        == 1
    )
    metrics.forget("prod", "web")
    assert (
        value(
            "surgecast_decisions_total",
            {"namespace": "prod", "name": "web", "reason": "Hold/ForecastPeak"},
        )
        is None
    )
