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


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' estimate from cumulative ``(le, count)`` buckets: linear within the bucket
    the rank falls in, and the highest finite bound when it falls in ``+Inf``."""
    rank = q * buckets[-1][1]
    low, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return low
            return low + (bound - low) * (rank - below) / (count - below)
        low, below = bound, count
    raise AssertionError("unreachable: +Inf holds every observation")


def test_reconcile_latency_is_measured_through_an_api_outage() -> None:
    # The dashboard's "Reconcile duration" p99 said 10 s while each reconcile waited out
    # 5 tries of 10 s at one failing API call: the buckets stopped at 10 s.
    from controller.kube import RetryPolicy

    policy = RetryPolicy()
    backoff = sum(min(policy.cap, policy.base * 2**n) for n in range(policy.attempts - 1))
    one_failing_call = policy.attempts * policy.timeout + backoff
    metrics = ControllerMetrics()
    for _ in range(100):
        metrics.reconcile_seconds.observe(one_failing_call)
    (family,) = [
        m for m in metrics.registry.collect() if m.name == "surgecast_reconcile_duration_seconds"
    ]
    buckets = [
        (float(s.labels["le"]), s.value) for s in family.samples if s.name.endswith("_bucket")
    ]
    assert histogram_quantile(0.99, buckets) >= one_failing_call
