"""The controller's Prometheus metrics, in one registry so tests can read them directly.

Names follow Prometheus conventions (base units, ``_total`` for counters). Labels are the
scaler's ``namespace`` and ``name``; nothing with unbounded cardinality is a label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCALER = ("namespace", "name")


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
        self.decisions = Counter(
            "surgecast_decisions_total",
            "Decisions made, by reason code.",
            (*SCALER, "reason"),
            registry=r,
        )
        self.errors = Counter(
            "surgecast_reconcile_errors_total",
            "Reconcile errors, by kind.",
            (*SCALER, "kind"),
            registry=r,
        )
        self.reconcile_seconds = Histogram(
            "surgecast_reconcile_duration_seconds",
            "Time spent in one reconcile.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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
        for counter, label in ((self.decisions, "reason"), (self.errors, "kind")):
            for value in _values_of(counter, label, namespace, name):
                counter.remove(namespace, name, value)
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


def _values_of(counter: Counter, label: str, namespace: str, name: str) -> set[str]:
    """The values ``label`` takes in the series of ``counter`` about one scaler."""
    return {
        sample.labels[label]
        for family in counter.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name
    }
