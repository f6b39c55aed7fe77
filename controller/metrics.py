"""The controller's Prometheus metrics, in one registry so tests can read them directly.

Names follow Prometheus conventions (base units, ``_total`` for counters). Labels are the
scaler's ``namespace`` and ``name``; nothing with unbounded cardinality is a label.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Self

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCALER = ("namespace", "name")


class ScalerCounter(Counter):
    """A counter labelled ``namespace``, ``name`` and one more label (a reason, a kind) that
    remembers which values each scaler used, so that :meth:`forget` removes one scaler's
    series without looking at every other scaler's.

    Found by collecting all the counter's series instead, forgetting one scaler among 1,000
    took 50 ms, and a leader losing the lease forgets all of them: close to a minute.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._used: dict[tuple[str, str], set[str]] = {}
        self._used_lock = threading.Lock()

    def labels(self, *labelvalues: object, **labelkwargs: object) -> Self:
        child = super().labels(*labelvalues, **labelkwargs)
        names = (*SCALER, self._labelnames[-1])
        namespace, name, value = labelvalues or tuple(labelkwargs[n] for n in names)
        with self._used_lock:
            self._used.setdefault((str(namespace), str(name)), set()).add(str(value))
        return child

    def forget(self, namespace: str, name: str) -> None:
        """Remove every series of the scaler ``namespace/name``."""
        with self._used_lock:
            values = self._used.pop((namespace, name), set())
        for value in values:
            try:
                self.remove(namespace, name, value)
            except KeyError:  # removed meanwhile (older clients raise, newer ones do not)
                pass


@dataclass
class ControllerMetrics:
    """Every metric the controller exports; one instance per process (or per test)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.predicted_load = Gauge(
            "surgecast_predicted_load",
            "Forecast upper quantile of the request rate over the decision window.",
            SCALER,
            registry=r,
        )
        self.observed_load = Gauge(
            "surgecast_observed_load",
            "Request rate observed at the last reconcile.",
            SCALER,
            registry=r,
        )
        self.desired_replicas = Gauge(
            "surgecast_desired_replicas",
            "Replicas the last decision asked for.",
            SCALER,
            registry=r,
        )
        self.current_replicas = Gauge(
            "surgecast_current_replicas",
            "Replicas of the target at the last reconcile.",
            SCALER,
            registry=r,
        )
        self.forecast_error = Gauge(
            "surgecast_forecast_error_ratio",
            "(observed - forecast median) / forecast median at the last reconcile.",
            SCALER,
            registry=r,
        )
        self.model_age = Gauge(
            "surgecast_model_age_seconds",
            "Seconds since the scaler's model was trained.",
            SCALER,
            registry=r,
        )
        self.fallback = Gauge(
            "surgecast_fallback",
            "1 while the scaler decides reactively (no usable forecast).",
            SCALER,
            registry=r,
        )
        self.projected_shortfall = Gauge(
            "surgecast_projected_shortfall_replicas",
            "Most replicas missing in any coming hour of the capacity outlook (0: none).",
            SCALER,
            registry=r,
        )
        self.projected_shortfall_ahead = Gauge(
            "surgecast_projected_shortfall_ahead_seconds",
            "Seconds until the first hour the outlook finds short of replicas (absent: none).",
            SCALER,
            registry=r,
        )
        self.decisions = ScalerCounter(
            "surgecast_decisions_total",
            "Decisions made, by reason code.",
            (*SCALER, "reason"),
            registry=r,
        )
        self.errors = ScalerCounter(
            "surgecast_reconcile_errors_total",
            "Reconcile errors, by kind.",
            (*SCALER, "kind"),
            registry=r,
        )
        # Up to minutes: one API call the server keeps failing takes 5 tries of 10 s
        # (controller.kube.RetryPolicy), and a histogram_quantile() landing past the last
        # bucket reports that bucket's bound, so an outage read as "10 s" at most.
        self.reconcile_seconds = Histogram(
            "surgecast_reconcile_duration_seconds",
            "Time spent in one reconcile.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "surgecast_cycle_duration_seconds",
            "Time to reconcile every scaler of one sync period, batched reads included.",
            ("period",),
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 60, 120),
            registry=r,
        )
        self.cycle_scalers = Gauge(
            "surgecast_cycle_scalers",
            "Scalers reconciled by the last cycle of each sync period.",
            ("period",),
            registry=r,
        )
        self.cycle_overruns = Counter(
            "surgecast_cycle_overruns_total",
            "Cycles that took longer than their sync period (the next one was late).",
            ("period",),
            registry=r,
        )
        self.model_jobs = Gauge(
            "surgecast_model_jobs_running",
            "Model jobs (train, refit) submitted and not yet collected.",
            registry=r,
        )
        self.history_bytes = Gauge(
            "surgecast_history_cache_bytes",
            "Bytes of request-rate history held in memory for all scalers (8 per step).",
            registry=r,
        )
        self.decision_log_backlog = Gauge(
            "surgecast_decision_log_backlog",
            "Decisions and applied marks held in memory until the decision log is back.",
            registry=r,
        )
        self.decision_log_dropped = Counter(
            "surgecast_decision_log_dropped",
            "Decisions lost because the decision log stayed down longer than the backlog holds.",
            registry=r,
        )
        self.leader = Gauge(
            "surgecast_leader", "1 while this instance holds the leader Lease.", registry=r
        )

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted scaler's series so they do not linger at their last value.

        Its counters go too: kept, every scaler ever deleted would stay in each scrape (a
        scaler per preview environment adds up), and one created again under the same name
        starts from zero, which ``rate()`` reads as the counter reset it is.
        """
        self.decisions.forget(namespace, name)
        self.errors.forget(namespace, name)
        for metric in (
            self.predicted_load,
            self.observed_load,
            self.desired_replicas,
            self.current_replicas,
            self.forecast_error,
            self.model_age,
            self.fallback,
            self.projected_shortfall,
            self.projected_shortfall_ahead,
        ):
            self.clear(metric, namespace, name)

    @staticmethod
    def clear(gauge: Gauge, namespace: str, name: str) -> None:
        """Remove one scaler's series of ``gauge``: absent means there is nothing to report."""
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass
