"""Bugs found by hunting through the reconciler's outlook, target claims and model loading,
each reproduced against the stateful fake API server (and the real Prometheus where a load
is needed) with the real ``kubernetes`` client, then fixed."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from controller.decisions import DecisionLog
from controller.explain import explain
from controller.reconciler import Reconciler, shared_targets
from tests.kubefake import FakeKubeServer
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, HPA, START, reconciler, scaler

FAST = {"model": {"name": "last_value", "minBacktestScore": 0.0}, "outlook": {"enabled": False}}


def put_scaler(server: FakeKubeServer, url: str, name: str, created: str, **spec: Any) -> None:
    """A Scale-mode scaler of the Deployment whose load is 0: it scales to its minimum."""
    body = scaler(url, "Scale", **{**FAST, **spec})
    body["metadata"].update(name=name, creationTimestamp=created)
    body["spec"]["metric"]["query"] = "vector(0)"
    server.state.put("predictivescalers", "gov", body)


def condition(server: FakeKubeServer, name: str, kind: str) -> dict[str, Any]:
    status = server.state.get("predictivescalers", "gov", name)["status"]
    return next(c for c in status["conditions"] if c["type"] == kind)


def cycle(server: FakeKubeServer, rec: Reconciler, minute: int) -> None:
    """One runner batch: the claims from every stored scaler, then each reconciled."""
    objs = [copy.deepcopy(server.state.get("predictivescalers", "gov", n)) for n in ("a", "b")]
    rec.shared_targets = shared_targets(objs)
    for obj in objs:
        rec.reconcile(obj, START + timedelta(minutes=minute))


def test_an_invalid_scaler_claims_no_target_and_once_fixed_does_not_take_it_back(
    prom,  # noqa: F811
    tmp_path,
) -> None:
    """The older scaler of a target, its spec invalid, still counted as its owner: the valid
    newer one said AmbiguousTarget and nothing scaled the target at all."""
    with FakeKubeServer() as server:
        server.state.put(
            "deployments", "gov", {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 5}}
        )
        put_scaler(server, prom.url, "a", "2026-01-01T00:00:00Z", maxReplicas=0)
        put_scaler(server, prom.url, "b", "2026-02-01T00:00:00Z", minReplicas=3)
        rec = reconciler(server, tmp_path)
        cycle(server, rec, 0)
        assert (condition(server, "a", "Ready")["reason"]) == "InvalidSpec"
        invalid = condition(server, "a", "ScalingActive")
        assert (invalid["status"], invalid["reason"]) == ("False", "InvalidSpec")
        assert condition(server, "b", "ScalingActive")["status"] == "True"
        assert server.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 3

        # Fixed, the older one (minimum 1) does not take the target back from the one
        # scaling it.
        server.state.update("predictivescalers", "gov", "a", {"spec": {"maxReplicas": 20}})
        cycle(server, rec, 1)
        cycle(server, rec, 2)
        ambiguous = condition(server, "a", "ScalingActive")
        assert (ambiguous["status"], ambiguous["reason"]) == ("False", "AmbiguousTarget")
        assert "also scaled by gov/b" in ambiguous["message"]
        assert condition(server, "b", "ScalingActive")["status"] == "True"
        assert server.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 3


def test_with_no_claimant_holding_it_the_first_created_scales_the_target() -> None:
    """No status yet (a new pair, or scalers from before statuses said so): creation time
    decides, then the name, as before; a shadow (ForecastOnly) scaler claims nothing."""
    objs = []
    for name, created, mode in (
        ("c", "2026-01-02T00:00:00Z", "Scale"),
        ("b", "2026-01-01T00:00:00Z", "HPAFloor"),
        ("a", "2026-01-02T00:00:00Z", "Scale"),
        ("0", "2025-01-01T00:00:00Z", "ForecastOnly"),
    ):
        body = scaler("http://prometheus:9090", mode)
        body["metadata"].update(name=name, namespace="gov", creationTimestamp=created)
        objs.append(body)
    assert shared_targets(objs) == {"gov/a": "gov/b", "gov/c": "gov/b"}


def test_kinds_of_one_name_in_two_api_groups_are_two_targets() -> None:
    """OpenKruise's Advanced StatefulSet ``web`` and the native StatefulSet ``web`` kept
    beside it during a migration are two workloads: the claims keyed them by kind and name
    alone, and the second scaler was told AmbiguousTarget and scaled neither."""
    objs = []
    for name, api_version, created in (
        ("native", "apps/v1", "2026-01-01T00:00:00Z"),
        ("kruise", "apps.kruise.io/v1beta1", "2026-01-02T00:00:00Z"),
        ("default", None, "2026-01-03T00:00:00Z"),  # no apiVersion: apps/v1
    ):
        body = scaler("http://prometheus:9090", "Scale")
        body["metadata"].update(name=name, namespace="gov", creationTimestamp=created)
        body["spec"]["scaleTargetRef"] = {"kind": "StatefulSet", "name": "web"}
        if api_version:
            body["spec"]["scaleTargetRef"]["apiVersion"] = api_version
        objs.append(body)
    assert shared_targets(objs) == {"gov/default": "gov/native"}


def test_a_decision_left_to_an_hpa_says_so_in_the_log_and_its_account(tmp_path) -> None:
    """Left unapplied because an HPA scales the target too, the decision was told by
    ``surgecast decisions explain`` as "the change failed or the controller stopped before
    making it": the record had nothing saying why it was not applied."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put("horizontalpodautoscalers", "gov", copy.deepcopy(HPA))
        # Prometheus a closed port: the minimum of 3 alone asks for a change.
        body = scaler("http://127.0.0.1:9", "Scale", minReplicas=3, **FAST)
        server.state.put("predictivescalers", "gov", body)
        rec = reconciler(server, tmp_path)
        rec.decisions = DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}")
        for minute in range(2):
            obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
            rec.reconcile(obj, START + timedelta(minutes=minute))
        assert not server.state.calls("PATCH", "/scale")
        records = rec.decisions.list("gov/portal")
        rec.decisions.close()
    assert len(records) == 2 and not any(r.applied for r in records)
    for record in records:
        assert (record.not_applied or "").startswith(
            "ConflictingHPA: HPA portal also scales Deployment portal"
        )
        told = explain(record)
        assert "Not applied (ConflictingHPA): HPA portal also scales Deployment portal" in told
        assert "the controller stopped" not in told


def test_without_an_outlook_the_risk_is_unknown_not_absent(tmp_path) -> None:
    """No model yet (or its training failing for good): CapacityAtRisk was False, "not at
    risk", for a week nothing had looked at."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        body = scaler("http://127.0.0.1:9", "Scale", model=FAST["model"])  # outlook on
        server.state.put("predictivescalers", "gov", body)
        rec = reconciler(server, tmp_path)
        rec.reconcile(copy.deepcopy(server.state.get("predictivescalers", "gov", "portal")), START)
        risk = condition(server, "portal", "CapacityAtRisk")
    assert (risk["status"], risk["reason"]) == ("Unknown", "NoForecast")
    assert risk["message"].startswith("no history: ")
