"""The capacity outlook through the reconciler: a ``CapacityAtRisk`` condition, one Warning
Event and the shortfall metrics for a filing deadline five days ahead that ``maxReplicas``
cannot carry, cleared when max is raised.

The fake API is the end-to-end tests' (:mod:`tests.kubefake`). Prometheus is replaced by
a client answering from the synthetic portal's history in memory: what is under test here
is the outlook, and five weeks of 15-second scrapes would make a real Prometheus backfill
far slower than the test.
"""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from controller.kube import KubeClient, RetryPolicy
from controller.metrics import ControllerMetrics
from controller.outlook import QUARTER_COLUMNS, Ratings
from controller.prometheus import Duration, PrometheusClient, PrometheusUnavailable
from controller.reconciler import Reconciler
from tests.kubefake import FakeKubeServer
from tests.test_controller_e2e import DEPLOYMENT, QUERY
from tests.test_outlook import NOW, ZONE, deadline_windows, portal

pytestmark = pytest.mark.slow
STEP = "10min"


class MemoryPrometheus(PrometheusClient):
    """A Prometheus whose only series is ``history`` (requests per second per interval)."""

    def __init__(self, url: str, history: pd.Series) -> None:
        super().__init__(url)
        self.history = history

    def instant(self, query: str, at: datetime | None = None) -> float | None:
        stamp = naive_utc(at).floor(STEP)
        value = self.history.get(stamp - pd.Timedelta(STEP))
        return None if value is None else float(value)

    def range(self, query: str, start: datetime, end: datetime, step: Duration) -> pd.Series:
        grid = pd.date_range(naive_utc(start), naive_utc(end), freq=pd.Timedelta(step))
        return self.history.reindex(grid)


def naive_utc(moment: datetime | None) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def scaler(max_replicas: int) -> dict[str, Any]:
    events = [
        {"name": w.name, "start": w.start.isoformat(), "end": w.end.isoformat()}
        for w in deadline_windows()
    ]
    return {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": "portal"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "portal"},
            "minReplicas": 1,
            "maxReplicas": max_replicas,
            "mode": "ForecastOnly",
            "metric": {"prometheusUrl": "http://prometheus:9090", "query": QUERY, "step": "10m"},
            "capacityPerReplica": 1.25,
            "quantile": 0.9,
            "model": {
                "name": "gradient_boosting",
                # trained for a week of steps ahead, so the event is learnt that far out
                "params": {"country": "CN", "tz": ZONE, "max_horizon": 7 * 144},
                "minBacktestScore": 0.0,
            },
            "retrain": {"historyWindow": "35d"},
            "events": events,
            "feed": {"public": True},
        },
    }


@pytest.fixture
def api():
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", DEPLOYMENT)
        yield server


def reconcile(server: FakeKubeServer, rec: Reconciler, minutes: int) -> dict[str, Any]:
    obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
    rec.reconcile(obj, NOW + timedelta(minutes=minutes))
    return server.state.get("predictivescalers", "gov", "portal")["status"]


def condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "CapacityAtRisk")


def events(server: FakeKubeServer, reason: str) -> list[dict[str, Any]]:
    return [c.body for c in server.state.calls("POST", "/events") if c.body["reason"] == reason]


def gauge(metrics: ControllerMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"namespace": "gov", "name": "portal"})


def test_a_deadline_max_cannot_carry_is_flagged_days_ahead_and_clears_when_max_is_raised(
    api: FakeKubeServer, tmp_path
) -> None:
    history, _ = portal(STEP)
    series = history.set_index("ds")["y"]
    metrics = ControllerMetrics()
    kube = KubeClient(
        api.api_client(), RetryPolicy(attempts=3), sleep=lambda _: None, rng=random.Random(0)
    )
    rec = Reconciler(
        kube,
        metrics,
        model_store=str(tmp_path / "models"),
        prometheus=lambda url: MemoryPrometheus(url, series),
    )
    api.state.put("predictivescalers", "gov", scaler(max_replicas=10))

    status = reconcile(api, rec, 0)
    at_risk = condition(status)
    assert (at_risk["status"], at_risk["reason"]) == ("True", "ForecastExceedsMax")
    assert at_risk["message"].startswith("2026-11-20 ")
    assert "(Asia/Shanghai), in 5d " in at_risk["message"]
    (warning,) = events(api, "CapacityAtRisk")
    assert warning["type"] == "Warning" and warning["message"] == at_risk["message"]
    assert "replicas short" in warning["message"] and "forecast q0.9 peak" in warning["message"]
    outlook = status["outlook"]
    first = pd.Timestamp(outlook["firstRiskAt"]).tz_convert(ZONE)
    assert first.date().isoformat() == "2026-11-20" and 8 <= first.hour <= 10
    assert outlook["hoursAtRisk"] >= 3 and outlook["maxShortfallReplicas"] >= 3
    shortfall = gauge(metrics, "surgecast_projected_shortfall_replicas")
    assert shortfall == outlook["maxShortfallReplicas"]
    ahead = gauge(metrics, "surgecast_projected_shortfall_ahead_seconds")
    assert ahead == (first - pd.Timestamp(NOW)).total_seconds()
    ratings = Ratings.from_status(outlook)
    deadline = [r for s, r, _ in ratings.hours(NOW) if s.tz_convert(ZONE).day == 20]
    assert deadline[10] == "busy" and deadline[3] == "quiet"
    assert "expected" not in outlook  # no numbers unless feed.showNumbers

    # The same risk at the next reconciles: no second Event, the same outlook in status.
    for minute in (1, 2):
        assert reconcile(api, rec, minute)["outlook"] == outlook
    assert len(events(api, "CapacityAtRisk")) == 1

    # A forecast hovering at the bound (the hourly outlook dipping below it and back, the
    # spec unchanged) flips the condition but sends one Warning and one Normal Event only.
    state = rec.states["gov/portal"]
    risky = state.outlook
    peaks = ["peak", *QUARTER_COLUMNS]
    calm = replace(risky, hours=risky.hours.assign(**(risky.hours[peaks] / 100)))
    for minute, outlook_now, expected in (
        (3, calm, "False"),
        (4, risky, "True"),
        (5, calm, "False"),
    ):
        state.outlook = outlook_now
        assert condition(reconcile(api, rec, minute))["status"] == expected
    state.outlook = risky
    assert condition(reconcile(api, rec, 6))["status"] == "True"
    assert len(events(api, "CapacityAtRisk")) == 1
    assert len(events(api, "CapacityRiskCleared")) == 1

    # Raising max (a new generation: the model is retrained) clears it at once, and says so.
    api.state.update("predictivescalers", "gov", "portal", {"spec": {"maxReplicas": 20}})
    status = reconcile(api, rec, 7)
    cleared = condition(status)
    assert (cleared["status"], cleared["reason"]) == ("False", "WithinCapacity")
    assert cleared["lastTransitionTime"] == "2026-11-14T16:07:00Z"
    assert status["outlook"]["hoursAtRisk"] == 0 and "firstRiskAt" not in status["outlook"]
    first_note, note = events(api, "CapacityRiskCleared")
    assert first_note["type"] == note["type"] == "Normal"
    assert gauge(metrics, "surgecast_projected_shortfall_replicas") == 0
    assert gauge(metrics, "surgecast_projected_shortfall_ahead_seconds") is None


def test_turning_the_outlook_off_removes_it_from_status(api: FakeKubeServer) -> None:
    history, _ = portal(STEP)
    obj = scaler(max_replicas=10)
    obj["spec"]["model"] = {"name": "seasonal_quantile", "params": {"country": "CN", "tz": ZONE}}
    api.state.put("predictivescalers", "gov", obj)
    kube = KubeClient(api.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
    series = history.set_index("ds")["y"]
    rec = Reconciler(
        kube, ControllerMetrics(), prometheus=lambda url: MemoryPrometheus(url, series)
    )
    assert "ratings" in reconcile(api, rec, 0)["outlook"]
    api.state.update(
        "predictivescalers", "gov", "portal", {"spec": {"outlook": {"enabled": False}}}
    )
    status = reconcile(api, rec, 1)
    off = condition(status)
    assert (off["status"], off["reason"]) == ("False", "OutlookDisabled")
    assert "outlook" not in status


class FailingPrometheus(MemoryPrometheus):
    """:class:`MemoryPrometheus` that can go down: every request refused while ``down``."""

    down = False

    def instant(self, query: str, at: datetime | None = None) -> float | None:
        if self.down:
            raise PrometheusUnavailable("connection refused")
        return super().instant(query, at)

    def range(self, query: str, start: datetime, end: datetime, step: Duration) -> pd.Series:
        if self.down:
            raise PrometheusUnavailable("connection refused")
        return super().range(query, start, end, step)


def test_an_outlook_too_old_to_cover_the_days_ahead_claims_no_safety(api: FakeKubeServer) -> None:
    """With Prometheus down for days the hourly outlook could not be made again, and the one
    kept covered fewer hours ahead every hour (none after 7 days); finding no risk in it, the
    condition still said the forecast of the next 7 days fitted within the bounds."""
    history, _ = portal(STEP)
    obj = scaler(max_replicas=100)
    obj["spec"]["model"] = {"name": "seasonal_quantile", "params": {"country": "CN", "tz": ZONE}}
    api.state.put("predictivescalers", "gov", obj)
    kube = KubeClient(api.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
    prometheus = FailingPrometheus("http://prometheus:9090", history.set_index("ds")["y"])
    metrics = ControllerMetrics()
    rec = Reconciler(kube, metrics, prometheus=lambda url: prometheus)

    fresh = condition(reconcile(api, rec, 0))
    assert (fresh["status"], fresh["reason"]) == ("False", "WithinCapacity")
    # 7 days from the first whole hour, on the feed's clocks (the model's zone)
    assert "forecast up to 2026-11-22 00:00 (Asia/Shanghai) fits" in fresh["message"]
    assert gauge(metrics, "surgecast_projected_shortfall_replicas") == 0

    prometheus.down = True
    # One missed renewal is no reason to doubt it yet.
    assert condition(reconcile(api, rec, 150))["reason"] == "WithinCapacity"
    for minutes in (4 * 60, 8 * 24 * 60):
        status = reconcile(api, rec, minutes)
        stale = condition(status)
        assert (stale["status"], stale["reason"]) == ("Unknown", "OutlookStale"), stale
        assert stale["lastTransitionTime"] == "2026-11-14T20:00:00Z"
        assert "made at 2026-11-14T16:00:00Z" in stale["message"]
        assert "connection refused" in stale["message"]
        assert "not known" in stale["message"] and "fits" not in stale["message"]
        assert "hoursAtRisk" not in status["outlook"]
        assert gauge(metrics, "surgecast_projected_shortfall_replicas") is None
        assert gauge(metrics, "surgecast_projected_shortfall_ahead_seconds") is None

    # A risk still ahead in a stale outlook is worth its warning, with the outlook's age.
    state = rec.states["gov/portal"]
    peaks = ["peak", *QUARTER_COLUMNS]
    state.outlook = replace(
        state.outlook, hours=state.outlook.hours.assign(**(state.outlook.hours[peaks] * 100))
    )
    at_risk = condition(reconcile(api, rec, 5 * 60))
    assert (at_risk["status"], at_risk["reason"]) == ("True", "ForecastExceedsMax")
    assert "from an outlook made at 2026-11-14T16:00:00Z (5h ago)" in at_risk["message"]
    assert "connection refused" in at_risk["message"]
    reconcile(api, rec, 6 * 60)
    assert len(events(api, "CapacityAtRisk")) == 1  # once per day at risk, stale or not

    prometheus.down = False  # back: a new outlook, and the condition says so
    status = reconcile(api, rec, 7 * 60)
    back = condition(status)
    assert (back["status"], back["reason"]) == ("False", "WithinCapacity")
    assert "forecast up to 2026-11-22 07:00 (Asia/Shanghai) fits" in back["message"]
    assert status["outlook"]["hoursAtRisk"] == 0
    assert gauge(metrics, "surgecast_projected_shortfall_replicas") == 0
