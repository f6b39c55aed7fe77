"""More bugs found by hunting through the reconciler and the spec reader, each reproduced
against the stateful fake API server (and the real Prometheus where a load is needed) with
the real ``kubernetes`` client, then fixed."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from controller.modelling import ModelResult
from tests.kubefake import FakeKubeServer
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, START, reconciler, scaler

FAST = {"model": {"name": "last_value", "minBacktestScore": 0.0}, "outlook": {"enabled": False}}


def scaling_active(server: FakeKubeServer) -> dict[str, Any]:
    status = server.state.get("predictivescalers", "gov", "portal")["status"]
    return next(c for c in status["conditions"] if c["type"] == "ScalingActive")


def replicas(server: FakeKubeServer) -> int:
    return int(server.state.get("deployments", "gov", "portal")["spec"]["replicas"])


def put_idle(server: FakeKubeServer, url: str, start_replicas: int, **spec: Any) -> None:
    """A Scale-mode scaler whose load is 0 (``vector(0)``) on a Deployment at
    ``start_replicas``."""
    server.state.put(
        "deployments",
        "gov",
        {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": start_replicas}},
    )
    body = scaler(url, "Scale", **{**FAST, **spec})
    body["spec"]["metric"]["query"] = "vector(0)"
    body["spec"]["behavior"]["scaleDownStabilization"] = "0s"
    server.state.put("predictivescalers", "gov", body)


def idle_scaler(
    server: FakeKubeServer, url: str, tmp_path, start_replicas: int, **spec: Any
) -> Callable[..., None]:
    """:func:`put_idle`, and a function that reconciles it at START + minutes with a
    reconciler of its own (``restart``: a new one, as a restarted controller)."""
    put_idle(server, url, start_replicas, **spec)
    recs = [reconciler(server, tmp_path)]

    def reconcile(minute: int, restart: bool = False) -> None:
        if restart:
            recs[0] = reconciler(server, tmp_path)
        obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
        recs[0].reconcile(obj, START + timedelta(minutes=minute))

    return reconcile


def window(start: int, end: int, **bounds: int) -> dict[str, Any]:
    """An override from START + ``start`` to START + ``end`` minutes."""
    return {
        "name": "night",
        "start": (START + timedelta(minutes=start)).isoformat(),
        "end": (START + timedelta(minutes=end)).isoformat(),
        **bounds,
    }


def test_a_window_allowing_zero_scales_back_up_to_the_minimum_when_it_ends(
    prom,  # noqa: F811
    tmp_path,
) -> None:
    """Scaled to 0 by its own decision in a window with minReplicas 0, the target was then
    taken for one scaled to zero by hand (the spec's minReplicas 2 > 0): ScalingDisabled at
    once, and for good after the window, at 0 replicas with a minimum of 2."""
    with FakeKubeServer() as server:
        reconcile = idle_scaler(
            server, prom.url, tmp_path, 2, minReplicas=2, overrides=[window(-60, 5, minReplicas=0)]
        )
        for minute in range(4):
            reconcile(minute)
            assert replicas(server) == 0
            assert scaling_active(server)["status"] == "True", scaling_active(server)
        reconcile(6)  # the window is over: back to the spec's minimum
        assert replicas(server) == 2
        assert scaling_active(server)["reason"] == "Scale"
        posted = [c.body["reason"] for c in server.state.calls("POST", "/events")]
        assert "ScalingDisabled" not in posted


def test_a_zero_of_its_own_is_known_to_a_restarted_controller(prom, tmp_path) -> None:  # noqa: F811
    with FakeKubeServer() as server:
        reconcile = idle_scaler(
            server, prom.url, tmp_path, 2, minReplicas=2, overrides=[window(-60, 5, minReplicas=0)]
        )
        reconcile(0)
        assert replicas(server) == 0
        reconcile(6, restart=True)  # the status remembers what the new process did not see
        assert replicas(server) == 2


def test_a_zero_set_by_hand_is_judged_against_the_minimum_in_force(prom, tmp_path) -> None:  # noqa: F811
    """At 0 by hand while the minimum in force is 0 (a window), the scaler scales as it
    would with minReplicas 0; at 0 by hand while a window raises the minimum, it leaves it
    and says which window to wait for (not "set minReplicas 0", which it already is)."""
    with FakeKubeServer() as server:
        reconcile = idle_scaler(
            server,
            prom.url,
            tmp_path,
            0,
            minReplicas=2,
            overrides=[window(-60, 5, minReplicas=0), window(600, 700, minReplicas=1)],
        )
        reconcile(0)
        assert scaling_active(server)["status"] == "True"
        assert replicas(server) == 0
        server.state.update("deployments", "gov", "portal", {"spec": {"replicas": 3}})
        reconcile(1)
        assert replicas(server) == 0  # the idle load asks for none
    with FakeKubeServer() as server:
        reconcile = idle_scaler(
            server,
            prom.url,
            tmp_path,
            0,
            minReplicas=0,
            overrides=[{**window(-60, 60, minReplicas=3), "name": "filing-day"}],
        )
        reconcile(0)
        assert replicas(server) == 0
        active = scaling_active(server)
        assert (active["status"], active["reason"]) == ("False", "ScalingDisabled"), active
        assert "filing-day sets the minimum to 3" in active["message"]
        reconcile(61)  # the window is over: the minimum is 0 again, and the scaler scales
        assert scaling_active(server)["status"] == "True"


class NaNForecasts(Executor):
    """Runs model jobs at once, then blanks some of the forecast (NaN), as a model that
    gave no number for some steps does."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        result: ModelResult = fn(*args, **kwargs)
        upper = result.forecast.upper.copy()
        upper[len(upper) // 2] = np.nan
        future: Future[Any] = Future()
        future.set_result(replace(result, forecast=replace(result.forecast, upper=upper)))
        return future


def test_the_fake_api_server_refuses_nan_as_the_api_server_does() -> None:
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        api = client.AppsV1Api(server.api_client())
        with pytest.raises(client.ApiException) as refused:
            api.patch_namespaced_deployment("portal", "gov", {"metadata": {"x": float("inf")}})
        assert refused.value.status == 400
        assert json.loads(refused.value.body)["reason"] == "BadRequest"
        assert [c.status for c in server.state.calls("PATCH")] == [400]


def test_a_nan_in_the_forecast_is_never_sent_as_its_peak(prom, tmp_path) -> None:  # noqa: F811
    """argmax takes NaN for the largest value: the status patch carried a NaN peak, which
    the API server refuses (JSON has no NaN), so no status was written at any reconcile."""
    with FakeKubeServer() as server:
        put_idle(server, prom.url, 1)
        rec = reconciler(server, tmp_path)
        rec.executor = NaNForecasts()
        obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
        rec.reconcile(obj, START)
        assert [c.status for c in server.state.calls("PATCH", "/status")] == [200]
        shown = server.state.get("predictivescalers", "gov", "portal")["status"]["forecast"]
        upper = rec.states["gov/portal"].forecast.upper
        assert shown["peak"] == round(float(np.nanmax(upper)), 3)
        # Nothing left to show: the forecast is in status without a peak, not the last one.
        state = rec.states["gov/portal"]
        state.forecast = replace(state.forecast, upper=np.full(len(upper), np.nan))
        obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
        rec.reconcile(obj, START + timedelta(minutes=1))
        assert {c.status for c in server.state.calls("PATCH", "/status")} == {200}
        shown = server.state.get("predictivescalers", "gov", "portal")["status"]["forecast"]
        assert "peak" not in shown and "peakAt" not in shown and "generatedAt" in shown


def test_a_load_of_zero_reports_the_forecast_error(prom, tmp_path) -> None:  # noqa: F811
    """The error was computed only for a truthy load: an idle service whose forecast
    expected 5 had no forecast error at all (the gauge cleared), not -100 %."""
    with FakeKubeServer() as server:
        put_idle(server, prom.url, 1)
        rec = reconciler(server, tmp_path)
        rec.reconcile(copy.deepcopy(server.state.get("predictivescalers", "gov", "portal")), START)
        state = rec.states["gov/portal"]
        assert state.forecast is not None
        state.forecast = replace(state.forecast, median=np.full(len(state.forecast.times), 5.0))
        obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
        rec.reconcile(obj, START + timedelta(minutes=1))
        labels = {"namespace": "gov", "name": "portal"}
        value = rec.metrics.registry.get_sample_value
        assert value("surgecast_observed_load", labels) == 0.0
        assert value("surgecast_forecast_error_ratio", labels) == -1.0


def test_an_edited_retrain_schedule_is_followed_at_once(prom, tmp_path) -> None:  # noqa: F811
    """The next firing was kept from the old schedule: made hourly on a Wednesday, a
    weekly (Sunday) schedule still waited for Sunday before its next retrain."""
    with FakeKubeServer() as server:
        put_idle(server, prom.url, 1, retrain={"historyWindow": "3d", "schedule": "0 3 * * 0"})
        rec = reconciler(server, tmp_path)

        def version(minute: int) -> str:
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            rec.reconcile(obj, START + timedelta(minutes=minute))
            status = server.state.get("predictivescalers", "gov", "portal")["status"]
            return str(status["model"]["version"])

        version(0)
        server.state.update(
            "predictivescalers", "gov", "portal", {"spec": {"retrain": {"schedule": "30 * * * *"}}}
        )
        edited = version(1)  # the edit retrains, as any spec change does
        assert version(29) == edited
        assert version(31) != edited  # 22:30 UTC: the hourly schedule fired


def test_a_restarted_controller_keeps_the_recent_decisions_in_status(
    prom,  # noqa: F811
    tmp_path,
) -> None:
    """The recent decisions were kept only in memory: the first decision of a restarted
    (or newly elected) controller replaced the five in status with itself alone."""
    with FakeKubeServer() as server:
        reconcile = idle_scaler(server, prom.url, tmp_path, 3, minReplicas=1)
        earlier = [
            {"time": f"2026-03-04T21:5{n}:00Z", "replicas": 3, "from": 2, "reason": f"R{n}"}
            for n in range(6)
        ]
        server.state.update(
            "predictivescalers",
            "gov",
            "portal",
            {"status": {"lastDecision": earlier[0], "recentDecisions": earlier}},
        )
        reconcile(0)  # the idle load: 3 -> 1
        recent = server.state.get("predictivescalers", "gov", "portal")["status"]["recentDecisions"]
        assert [d["reason"] for d in recent] == ["ScaleDown/ForecastPeak", "R0", "R1", "R2", "R3"]
