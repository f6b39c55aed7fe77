"""An ``HPAFloor`` scaler gives the HPA back the ``minReplicas`` it had when it is deleted
or leaves the mode (a finalizer), against the stateful fake API server with the real
``kubernetes`` client: deleted at a peak, it used to leave the HPA's floor raised for good."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from controller.reconciler import HPA_FLOOR_FINALIZER, HPA_MIN_BEFORE, Reconciler
from tests.kubefake import FakeKubeServer
from tests.prom_server import PromServer, prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, HPA, START, reconciler, scaler

FAST = {"model": {"name": "last_value", "minBacktestScore": 0.0}, "outlook": {"enabled": False}}
KEY = ("predictivescalers", "gov", "portal")


@pytest.fixture
def floored(prom: PromServer, tmp_path) -> Any:  # noqa: F811
    """An HPA at minReplicas 2 and an HPAFloor scaler whose own minimum is 5, reconciled
    once: the HPA's floor is raised."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        hpa = {**HPA, "spec": {**HPA["spec"], "minReplicas": 2}}
        server.state.put("horizontalpodautoscalers", "gov", copy.deepcopy(hpa))
        server.state.put(
            "predictivescalers", "gov", scaler(prom.url, "HPAFloor", minReplicas=5, **FAST)
        )
        rec = reconciler(server, tmp_path)
        reconcile(server, rec, 0)
        yield server, rec


def reconcile(server: FakeKubeServer, rec: Reconciler, minute: int) -> None:
    obj = copy.deepcopy(server.state.objects[KEY])
    rec.reconcile(obj, START + timedelta(hours=3, minutes=minute))


def hpa_of(server: FakeKubeServer) -> tuple[int, dict[str, str]]:
    hpa = server.state.get("horizontalpodautoscalers", "gov", "portal")
    return hpa["spec"]["minReplicas"], hpa["metadata"].get("annotations") or {}


def test_the_first_raise_records_the_hpas_floor_and_the_scaler_holds_a_finalizer(
    floored,
) -> None:
    server, _ = floored
    low, annotations = hpa_of(server)
    assert low >= 5 and annotations == {HPA_MIN_BEFORE: "2"}
    assert server.state.objects[KEY]["metadata"]["finalizers"] == [HPA_FLOOR_FINALIZER]


def test_a_deleted_scaler_gives_the_hpa_its_floor_back_then_goes(floored) -> None:
    server, rec = floored
    server.state.delete(*KEY)
    assert server.state.objects[KEY]["metadata"]["deletionTimestamp"]  # held by the finalizer
    reconcile(server, rec, 1)
    assert KEY not in server.state.objects
    assert hpa_of(server) == (2, {})


def test_leaving_the_mode_gives_the_floor_back_and_lets_go(floored) -> None:
    server, rec = floored
    server.state.update(*KEY, {"spec": {"mode": "ForecastOnly"}})
    reconcile(server, rec, 1)
    assert hpa_of(server) == (2, {})
    assert not server.state.objects[KEY]["metadata"]["finalizers"]
    server.state.delete(*KEY)  # nothing holds it now
    assert KEY not in server.state.objects


def test_a_scaler_deleted_with_an_unreadable_spec_is_not_held_forever(floored) -> None:
    server, rec = floored
    server.state.update(*KEY, {"spec": {"minReplicas": 9, "maxReplicas": 3}})
    server.state.delete(*KEY)
    reconcile(server, rec, 1)
    assert KEY not in server.state.objects
    warnings = [c.body for c in server.state.calls("POST", "/events")]
    (left,) = [w for w in warnings if w["reason"] == "FloorNotRestored"]
    assert "greater than spec.maxReplicas" in left["message"]


def test_a_finalizer_write_on_a_stale_object_is_refused_and_tried_again(floored) -> None:
    server, rec = floored
    stale = copy.deepcopy(server.state.objects[KEY])
    server.state.update(*KEY, {"spec": {"mode": "ForecastOnly"}})
    server.state.update(*KEY, {"metadata": {"labels": {"team": "pensions"}}})  # changed since
    stale["spec"]["mode"] = "ForecastOnly"
    rec.reconcile(stale, START + timedelta(hours=3, minutes=1))
    assert server.state.objects[KEY]["metadata"]["finalizers"] == [HPA_FLOOR_FINALIZER]
    reasons = [c.body["reason"] for c in server.state.calls("POST", "/events")]
    assert "FinalizerFailed" in reasons
    reconcile(server, rec, 2)  # the fresh object
    assert not server.state.objects[KEY]["metadata"]["finalizers"]
    assert hpa_of(server) == (2, {})
