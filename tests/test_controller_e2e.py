"""The reconciler end to end: a real Prometheus, the real kubernetes client, a stateful fake
API server, and virtual time stepping through a morning peak of the portal's traffic.

Each test reconciles a PredictiveScaler once per virtual minute from 06:00 to 12:30 on a
Thursday (Shanghai time), after three working days of history in Prometheus. Pods in the
fake API are ready at once, so "before the peak" is judged with the startup delay the
scaler declares: replicas asked for at minute t serve from t + 3 min.
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from controller.kube import KubeClient, RetryPolicy
from controller.metrics import ControllerMetrics
from controller.prometheus import PrometheusClient
from controller.reconciler import Reconciler
from tests.kubefake import FakeKubeServer, Fault, hpa
from tests.prom_server import PromServer, prom  # noqa: F401 (the session fixture)

START = datetime(2026, 3, 4, 22, 0, tzinfo=UTC)  # Thursday 06:00 in Shanghai
MINUTES = 390
DELAY = timedelta(minutes=3)
QUERY = 'sum(rate(http_requests_total{service="portal"}[2m]))'
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "portal"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "portal"}}},
    "status": {"replicas": 1},
}
HPA = hpa("portal", max_replicas=20)


def scaler(url: str, mode: str, **spec: Any) -> dict[str, Any]:
    body = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "portal"},
        "minReplicas": 1,
        "maxReplicas": 20,
        "mode": mode,
        "metric": {"prometheusUrl": url, "query": QUERY, "step": "1m"},
        "capacityPerReplica": 1.0,
        "startupDelay": "3m",
        "quantile": 0.9,
        "horizon": "6h",
        "model": {
            "name": "seasonal_quantile",
            "params": {"country": "CN", "tz": "Asia/Shanghai"},
            "minBacktestScore": 0.0,
        },
        "retrain": {"historyWindow": "3d"},
        "behavior": {"syncPeriod": "1m"},
    }
    body.update(spec)
    return {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": "portal"},
        "spec": body,
    }


@pytest.fixture
def api():
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", DEPLOYMENT)
        yield server


def reconciler(server: FakeKubeServer, tmp_path) -> Reconciler:
    kube = KubeClient(
        server.api_client(), RetryPolicy(attempts=3), sleep=lambda _: None, rng=random.Random(0)
    )
    return Reconciler(
        kube,
        ControllerMetrics(),
        model_store=str(tmp_path / "models"),
        prometheus=lambda url: PrometheusClient(url, sleep=lambda _: None),
    )


def run(server: FakeKubeServer, rec: Reconciler, minutes: int = MINUTES) -> pd.DataFrame:
    """Reconcile the stored scaler once per virtual minute; one row per decision."""
    rows = []
    for n in range(minutes):
        now = START + timedelta(minutes=n)
        obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
        decision = rec.reconcile(obj, now)
        deployment = server.state.objects.get(("deployments", "gov", "portal"), {"spec": {}})
        deployment.setdefault("status", {})["replicas"] = deployment["spec"].get("replicas")
        rows.append(
            {
                "ds": pd.Timestamp(now).tz_localize(None),
                "replicas": decision.replicas if decision else None,
                "reason": decision.reason if decision else None,
                "spec_replicas": deployment["spec"].get("replicas"),
            }
        )
    return pd.DataFrame(rows)


def load_rps(prom: PromServer, ds: pd.Series) -> np.ndarray:  # noqa: F811
    return (prom.per_minute.reindex(ds).to_numpy() / 60.0).astype(float)


def test_scale_mode_scales_up_before_the_peak_and_back_down(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = reconciler(api, tmp_path)
    decisions = run(api, rec)

    replicas = decisions["spec_replicas"].to_numpy()
    assert replicas.min() >= 1 and replicas.max() <= 20
    load = load_rps(prom, decisions["ds"])
    # Pods asked for at t serve from t + 3 min: compare each minute's load with the
    # replicas that were in place three minutes earlier.
    ready = np.concatenate([np.full(3, replicas[0]), replicas[:-3]])
    covered = ready * 1.0 >= load
    # A reactive scaler sizing for the last complete minute's load gets pods 3 min later.
    reactive = np.ceil(np.concatenate([np.full(4, load[0]), load[:-4]]))
    assert covered.mean() >= 0.9, covered.mean()
    assert covered.mean() > (reactive >= load).mean() + 0.2
    peak_at = int(np.argmax(load))
    assert replicas[:peak_at].max() >= np.ceil(load[peak_at] * 0.9)
    rising = np.flatnonzero(load > 4)[0]  # the morning ramp crosses 4 rps here
    assert np.flatnonzero(replicas >= 5)[0] <= rising - 3  # 5 pods were asked for in time
    assert replicas[-30:].max() < replicas.max()  # and let go after the peak
    assert decisions["reason"].str.startswith("ScaleUp/ForecastPeak").any()

    patches = [c for c in api.state.calls("PATCH", "/deployments/portal/scale")]
    assert patches and all(set(c.body) == {"spec"} for c in patches)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["ModelTrained"]["status"] == "True"
    assert conditions["ScalingActive"]["status"] == "True"
    assert conditions["Fallback"]["status"] == "False"
    assert status["observedGeneration"] == 1
    assert status["model"]["name"] == "seasonal_quantile"
    assert status["desiredReplicas"] == replicas[-1]
    assert 1 <= len(status["recentDecisions"]) <= 5
    events = [c.body for c in api.state.calls("POST", "/events")]
    assert any(e["reason"] == "Scaled" for e in events)
    assert any(
        e["reason"] == "PredictiveScaled" and e["involvedObject"]["kind"] == "Deployment"
        for e in events
    )
    # Trained at the first reconcile, and again when the 03:00 UTC retrain schedule fired.
    assert sum(e["reason"] == "ModelTrained" for e in events) == 2
    versions = sorted(
        p.name for p in (tmp_path / "models" / "gov" / "portal").iterdir() if p.is_dir()
    )
    assert len(versions) == 2
    assert status["model"]["version"] == versions[-1]
    assert status["model"]["trainedAt"] == "2026-03-05T03:00:00Z"


def test_forecast_only_changes_nothing_but_status(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "ForecastOnly"))
    decisions = run(api, reconciler(api, tmp_path), minutes=150)
    assert not api.state.calls("PATCH", "/scale")
    assert api.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 1
    assert decisions["replicas"].max() >= 4  # it did decide to scale, and only recorded it
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    active = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "ForecastOnly")
    assert status["desiredReplicas"] == decisions["replicas"].iloc[-1]


def test_hpa_floor_moves_only_the_hpas_min_replicas(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put("horizontalpodautoscalers", "gov", HPA)
    api.state.put("predictivescalers", "gov", scaler(prom.url, "HPAFloor"))
    decisions = run(api, reconciler(api, tmp_path), minutes=200)
    assert not api.state.calls("PATCH", "/deployments/portal/scale")
    floors = [
        c.body["spec"]["minReplicas"]
        for c in api.state.calls("PATCH", "/horizontalpodautoscalers/portal")
    ]
    assert floors and max(floors) == decisions["replicas"].max()
    assert all(
        set(c.body["spec"]) == {"minReplicas"}
        for c in api.state.calls("PATCH", "/horizontalpodautoscalers")
    )
    assert api.state.get("horizontalpodautoscalers", "gov", "portal")["spec"]["maxReplicas"] == 20


def test_invalid_spec_sets_a_condition_and_one_event_and_recovers(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put(
        "predictivescalers", "gov", scaler(prom.url, "Scale", minReplicas=9, maxReplicas=3)
    )
    rec = reconciler(api, tmp_path)
    run(api, rec, minutes=3)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "greater than spec.maxReplicas" in ready["message"]
    warnings = [
        c.body for c in api.state.calls("POST", "/events") if c.body["reason"] == "InvalidSpec"
    ]
    assert len(warnings) == 1  # not one per reconcile
    assert not api.state.calls("PATCH", "/scale")

    api.state.update(
        "predictivescalers", "gov", "portal", {"spec": {"minReplicas": 1, "maxReplicas": 20}}
    )
    run(api, rec, minutes=2)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and status["observedGeneration"] == 2


def test_missing_target_and_unreachable_prometheus_are_reported(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler("http://127.0.0.1:9", "Scale"))
    rec = reconciler(api, tmp_path)
    decisions = run(api, rec, minutes=3)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Fallback"]["status"] == "True"
    assert "127.0.0.1:9" in conditions["Fallback"]["message"]
    assert (decisions["replicas"] == 1).all()  # no data: keep what is there, never guess
    reasons = [c.body["reason"] for c in api.state.calls("POST", "/events")]
    assert reasons.count("MetricUnavailable") == 1

    api.state.delete("deployments", "gov", "portal")
    run(api, rec, minutes=1)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound")


def test_scale_errors_are_retried_then_reported(api, prom, tmp_path) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale", minReplicas=4))
    api.state.faults.append(Fault("PATCH", "/scale", 503, times=2))
    run(api, reconciler(api, tmp_path), minutes=1)
    assert api.state.get("deployments", "gov", "portal")["spec"]["replicas"] >= 4  # retried
    api.state.faults.append(Fault("PATCH", "/scale", 500, times=100))
    api.state.update("predictivescalers", "gov", "portal", {"spec": {"minReplicas": 9}})
    run(api, reconciler(api, tmp_path), minutes=1)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    active = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "ScaleFailed")
