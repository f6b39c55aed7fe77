"""Bugs found by hunting through the reconciler and the Kubernetes I/O, each reproduced
against the stateful fake API server with the real ``kubernetes`` client, then fixed."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from controller._cli_controller import _retention
from controller.cli import app
from controller.kube import KubeClient, RetryPolicy
from tests.kubefake import FakeKubeServer
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, HPA, QUERY, START, reconciler, scaler

FAST = {"model": {"name": "last_value", "minBacktestScore": 0.0}, "outlook": {"enabled": False}}


@pytest.fixture
def server() -> Iterator[FakeKubeServer]:
    with FakeKubeServer() as made:
        yield made


def kube_of(server: FakeKubeServer) -> KubeClient:
    return KubeClient(
        server.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None, rng=random.Random(0)
    )


def pod(name: str, app: str, ready_at: str, restarts: int = 0) -> dict[str, Any]:
    """A running, ready pod created at 2026-11-20T00:00:00Z (the fake's creation time)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}],
            "containerStatuses": [
                {
                    "name": "app",
                    "image": "app",
                    "imageID": "",
                    "ready": True,
                    "restartCount": restarts,
                }
            ],
        },
    }


def test_startup_times_skip_restarted_pods_and_a_scale_without_a_selector(server) -> None:
    server.state.put("pods", "gov", pod("web-1", "web", "2026-11-20T00:00:40Z"))
    # Crashed and restarted three days later: Ready moved then, not when it first started.
    server.state.put("pods", "gov", pod("web-2", "web", "2026-11-23T10:00:00Z", restarts=3))
    server.state.put("pods", "gov", pod("db-1", "db", "2026-11-20T00:20:00Z"))
    kube = kube_of(server)
    assert kube.pod_startup_seconds("gov", "app=web") == [40.0]
    asked = len(server.state.calls("GET", "/pods"))
    # A custom resource whose scale subresource has no selector: an empty label selector
    # would list every pod in the namespace (the database's 20 minutes among them).
    assert kube.pod_startup_seconds("gov", "") == []
    assert len(server.state.calls("GET", "/pods")) == asked  # not even asked


def test_hpa_floor_never_asks_the_hpa_for_fewer_than_one_replica(prom, tmp_path) -> None:  # noqa: F811
    """spec.minReplicas may be 0, an HPA's may not: at a quiet night's 0 replicas the floor
    is 1, where asking for 0 got a 422 every cycle and left the peak's floor in place."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put(
            "horizontalpodautoscalers", "gov", {**HPA, "spec": {**HPA["spec"], "minReplicas": 6}}
        )
        quiet = {"prometheusUrl": prom.url, "query": "vector(0)", "step": "1m"}
        body = scaler(prom.url, "HPAFloor", minReplicas=0, metric=quiet, **FAST)
        body["spec"]["behavior"]["scaleDownStabilization"] = "0s"
        server.state.put("predictivescalers", "gov", body)
        rec = reconciler(server, tmp_path)
        for minute in range(3):
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            decision = rec.reconcile(obj, START + timedelta(days=1, minutes=minute))
            assert decision is not None and decision.replicas == 0, decision
        hpa = server.state.get("horizontalpodautoscalers", "gov", "portal")
        assert hpa["spec"]["minReplicas"] == 1
        status = server.state.get("predictivescalers", "gov", "portal")["status"]
        active = next(c for c in status["conditions"] if c["type"] == "ScalingActive")
        assert (active["status"], active["reason"]) == ("True", "HPAFloor"), active


def scaling_active(server: FakeKubeServer) -> dict[str, Any]:
    status = server.state.get("predictivescalers", "gov", "portal")["status"]
    return next(c for c in status["conditions"] if c["type"] == "ScalingActive")


def blind_scale_scaler(
    server: FakeKubeServer, tmp_path, min_replicas: int
) -> Callable[[int], None]:
    """A Scale-mode scaler whose Prometheus is a closed port (the reactive floor alone would
    ask for ``min_replicas``), and a function that reconciles it at START + minutes."""
    server.state.put(
        "predictivescalers",
        "gov",
        scaler("http://127.0.0.1:9", "Scale", minReplicas=min_replicas, **FAST),
    )
    rec = reconciler(server, tmp_path)

    def reconcile(minute: int) -> None:
        obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
        rec.reconcile(obj, START + timedelta(minutes=minute))

    return reconcile


def test_a_target_scaled_to_zero_by_hand_is_left_there_as_the_hpa_does(tmp_path) -> None:
    with FakeKubeServer() as server:
        server.state.put(
            "deployments", "gov", {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 0}}
        )
        reconcile = blind_scale_scaler(server, tmp_path, min_replicas=2)
        for minute in range(3):
            reconcile(minute)
        assert not server.state.calls("PATCH", "/scale")
        active = scaling_active(server)
        assert (active["status"], active["reason"]) == ("False", "ScalingDisabled"), active
        posted = [c.body["reason"] for c in server.state.calls("POST", "/events")]
        assert posted.count("ScalingDisabled") == 1
        # Scaled up by hand again: the scaler takes over once more.
        server.state.update("deployments", "gov", "portal", {"spec": {"replicas": 1}})
        reconcile(3)
        assert server.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 2
        assert scaling_active(server)["status"] == "True"


class Deferred(Executor):
    """Model jobs wait until :meth:`run_all`, as they would for a busy worker pool."""

    def __init__(self) -> None:
        self.queued: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self.queued.append((future, fn, args))
        return future

    def run_all(self) -> None:
        for future, fn, args in self.queued:
            if future.set_running_or_notify_cancel():
                future.set_result(fn(*args))
        self.queued.clear()


def test_a_new_query_does_not_scale_on_the_old_querys_forecast(prom, tmp_path) -> None:  # noqa: F811
    """Pointed at another series, the scaler used the old one's forecast (and would have
    installed a model job's result learnt from it) until a new model was trained, or for
    maxForecastAge (26 h) if training on the new series failed."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put("predictivescalers", "gov", scaler(prom.url, "Scale", **FAST))
        rec = reconciler(server, tmp_path)
        jobs = Deferred()
        rec.executor = jobs
        now = START + timedelta(hours=3)

        def reconcile(minute: int) -> Any:
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            return rec.reconcile(obj, now + timedelta(minutes=minute))

        reconcile(0)
        jobs.run_all()
        busy = reconcile(1)
        assert busy is not None and busy.reason.endswith("ForecastPeak") and busy.replicas > 5
        # Another service's requests, a fifth of this one's: a refit on the old query is
        # queued, then the spec changes before it runs.
        rec.refresh = timedelta(minutes=1)
        reconcile(2)
        quiet = {"prometheusUrl": prom.url, "query": f"{QUERY} / 5", "step": "1m"}
        server.state.update("predictivescalers", "gov", "portal", {"spec": {"metric": quiet}})
        jobs.run_all()  # the refit of the old query finishes
        decision = reconcile(3)
        assert decision is not None
        assert decision.fallback == "ForecastMissing", decision  # not the old forecast
        status = server.state.get("predictivescalers", "gov", "portal")["status"]
        assert "forecast" not in status  # nor its peak in `kubectl get psc`
        jobs.run_all()  # the model of the new query
        decision = reconcile(4)
        assert decision is not None and decision.fallback is None, decision
        assert decision.forecast_peak is not None and busy.forecast_peak is not None
        assert decision.forecast_peak < busy.forecast_peak / 3  # learnt from the new query


def test_a_spec_fixed_after_a_failed_training_is_trained_at_once(prom, tmp_path) -> None:  # noqa: F811
    """A failed job waits JOB_RETRY (5 min) before the next; the user following the error's
    advice is no reason to wait, nor to keep showing the error meanwhile."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        short = scaler(prom.url, "Scale", retrain={"historyWindow": "1h"}, **FAST)
        server.state.put("predictivescalers", "gov", short)
        rec = reconciler(server, tmp_path)
        now = START + timedelta(hours=3)

        def reconcile(minute: int) -> Any:
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            return rec.reconcile(obj, now + timedelta(minutes=minute))

        reconcile(0)
        assert "make the window longer" in (rec.states["gov/portal"].training_error or "")
        server.state.update(
            "predictivescalers", "gov", "portal", {"spec": {"retrain": {"historyWindow": "3d"}}}
        )
        decision = reconcile(1)  # the spec change is reconciled at once
        assert decision is not None and decision.fallback is None, decision
        status = server.state.get("predictivescalers", "gov", "portal")["status"]
        trained = next(c for c in status["conditions"] if c["type"] == "ModelTrained")
        assert trained["status"] == "True", trained


def test_a_training_failure_retried_is_one_warning_not_one_per_retry(prom, tmp_path) -> None:  # noqa: F811
    """A mistyped query fails every JOB_RETRY with the cutoff time in its message: each
    retry sent a ModelTrainingFailed and a FallbackReactive Warning, 576 a day."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        typo = {"prometheusUrl": prom.url, "query": QUERY.replace("portal", "portl"), "step": "1m"}
        server.state.put("predictivescalers", "gov", scaler(prom.url, "Scale", metric=typo, **FAST))
        rec = reconciler(server, tmp_path)
        now = START + timedelta(hours=3)
        for minute in range(16):  # four tries, each with another cutoff
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            rec.reconcile(obj, now + timedelta(minutes=minute))
        reasons = [c.body["reason"] for c in server.state.calls("POST", "/events")]
        assert reasons.count("ModelTrainingFailed") == 1, reasons
        assert reasons.count("FallbackReactive") == 1, reasons
        status = server.state.get("predictivescalers", "gov", "portal")["status"]
        fallback = next(c for c in status["conditions"] if c["type"] == "Fallback")
        assert "check spec.metric.query" in fallback["message"]  # the condition still says why


@pytest.mark.parametrize("zero", ["0", "0s", "0d", "0h0m"])
def test_a_zero_decision_retention_keeps_the_log_in_any_spelling(zero: str) -> None:
    """Only "0" meant keep-all: "0d" became a retention of no time at all, and the hourly
    prune deleted every decision in the log."""
    assert _retention(zero) is None
    assert _retention("30d") == timedelta(days=30)
    with pytest.raises(ValueError):
        _retention("a month")


def test_controller_run_refuses_a_refresh_of_no_time() -> None:
    """A refresh of 0s made the forecast stale at once: a refit of every scaler's model at
    every reconcile, keeping every model worker busy."""
    result = CliRunner().invoke(app, ["controller", "run", "--refresh", "0s"])
    assert result.exit_code == 2
    assert "--refresh" in result.output and "positive" in result.output


def test_the_event_on_the_target_names_its_uid_so_kubectl_describe_shows_it(tmp_path) -> None:
    """``kubectl describe deployment`` lists the Events whose involvedObject.uid is the
    Deployment's; sent with an empty uid, PredictiveScaled never showed there."""
    with FakeKubeServer() as server:
        deployment = server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put(
            "predictivescalers", "gov", scaler("http://127.0.0.1:9", "Scale", minReplicas=3, **FAST)
        )
        rec = reconciler(server, tmp_path)
        rec.reconcile(copy.deepcopy(server.state.get("predictivescalers", "gov", "portal")), START)
        assert server.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 3
        (on_target,) = [
            c.body
            for c in server.state.calls("POST", "/events")
            if c.body["reason"] == "PredictiveScaled"
        ]
        assert on_target["involvedObject"]["uid"] == deployment["metadata"]["uid"]
        assert on_target["involvedObject"]["kind"] == "Deployment"


def test_an_hpa_on_the_target_of_a_scale_mode_scaler_is_reported_and_left_in_charge(
    tmp_path,
) -> None:
    """A Scale-mode scaler and an HPA on one Deployment undid each other's changes every
    cycle, with a Normal "Scaled" Event each time and nothing saying why."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put("horizontalpodautoscalers", "gov", copy.deepcopy(HPA))
        reconcile = blind_scale_scaler(server, tmp_path, min_replicas=3)
        for minute in range(3):
            reconcile(minute)
            # the HPA sets its own count between our cycles
            server.state.update(
                "deployments", "gov", "portal", {"spec": {"replicas": 1 + minute % 2}}
            )
        assert not server.state.calls("PATCH", "/scale")
        active = scaling_active(server)
        assert (active["status"], active["reason"]) == ("False", "ConflictingHPA"), active
        assert "HPA portal also scales Deployment portal" in active["message"]
        reasons = [c.body["reason"] for c in server.state.calls("POST", "/events")]
        assert reasons.count("ConflictingHPA") == 1 and "Scaled" not in reasons
        # The HPA deleted: the scaler takes over.
        server.state.delete("horizontalpodautoscalers", "gov", "portal")
        reconcile(3)
        assert server.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 3
        assert scaling_active(server)["status"] == "True"


def test_a_failed_retraining_is_not_reported_as_trained(prom, tmp_path) -> None:  # noqa: F811
    """After a spec edit whose training failed, ModelTrained stayed True/Trained with the
    old model's version under the new observedGeneration: nothing said the edit failed."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put("predictivescalers", "gov", scaler(prom.url, "Scale", **FAST))
        rec = reconciler(server, tmp_path)
        now = START + timedelta(hours=3)

        def trained(minute: int) -> dict[str, Any]:
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            rec.reconcile(obj, now + timedelta(minutes=minute))
            status = server.state.get("predictivescalers", "gov", "portal")["status"]
            return next(c for c in status["conditions"] if c["type"] == "ModelTrained")

        assert trained(0)["status"] == "True"
        version = rec.states["gov/portal"].model.version
        server.state.update(
            "predictivescalers", "gov", "portal", {"spec": {"retrain": {"historyWindow": "1h"}}}
        )
        condition = trained(1)
        assert (condition["status"], condition["reason"]) == ("False", "TrainingFailed")
        assert "make the window longer" in condition["message"]
        assert version in condition["message"]  # the model still in use
