"""Faults injected around a running reconciler, each asserting the safe outcome.

Safe means: the replica count stays within min/max and never below what the load it can see
needs; a blind controller (load unknown) never scales down; a degraded scaler says so with
a condition and a Warning Event; and when the fault clears it recovers without a restart.

Prometheus faults come from a loopback proxy in front of the real, backfilled Prometheus;
API faults from the stateful fake API server; both are reached through the real clients.
Every scenario reconciles the Thursday morning rise minute by minute: warm for 15 minutes,
under the fault for 20, then 15 more after it clears.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from controller.kube import KubeClient, RetryPolicy
from controller.metrics import ControllerMetrics
from controller.policy import needed_replicas
from controller.prometheus import PrometheusClient
from controller.reconciler import Reconciler
from tests import kubefake
from tests import prom_server as promfake
from tests.kubefake import FakeKubeServer
from tests.prom_server import FaultProxy, PromServer
from tests.test_controller_e2e import DEPLOYMENT, START, scaler

BEGIN = START + timedelta(hours=2)  # Thursday 08:00 in Shanghai, the rise to the peak
WARM, FAULTY, AFTER = 15, 20, 15
MIN, MAX = 2, 20


def vector(value: str, series: int = 1) -> bytes:
    result = [
        {"metric": {"pod": f"p{i}"}, "value": [BEGIN.timestamp(), value]} for i in range(series)
    ]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


@dataclass
class Run:
    """Per minute: the count set on the target, the load the controller saw (None: blind),
    the scaler's status after the reconcile; and every Event's reason."""

    replicas: list[int]
    decided: list[int | None]
    seen: list[float | None]
    statuses: list[dict[str, Any]]
    events: list[str]


@pytest.fixture
def api() -> Iterator[FakeKubeServer]:
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        yield server


@pytest.fixture
def proxy(prom: PromServer) -> Iterator[FaultProxy]:
    server = FaultProxy(prom.url)
    yield server
    server.close()


RETRY = RetryPolicy(attempts=2, base=0.001, cap=0.01, timeout=0.5)
"""Short enough that a fault's 0.7-second delay times out."""

PATIENT = RetryPolicy(attempts=2, base=0.001, cap=0.01, timeout=10)
"""For tests that inject no delay: a busy CI machine took over 0.5 s to answer twelve
scalers' three-day ranges, and the test saw a timeout nobody meant."""


def reconciler(
    api: FakeKubeServer, tmp_path, prometheus: Any = None, retry: RetryPolicy = RETRY
) -> Reconciler:
    kube = KubeClient(api.api_client(), retry, sleep=lambda _: None, rng=random.Random(0))
    return Reconciler(
        kube,
        ControllerMetrics(),
        model_store=str(tmp_path / "models"),
        prometheus=prometheus
        or (lambda url: PrometheusClient(url, retry=retry, sleep=lambda _: None)),
    )


def drive(
    api: FakeKubeServer,
    proxy: FaultProxy,
    prom: PromServer,
    tmp_path,
    prom_fault: promfake.Fault | None = None,
    api_fault: kubefake.Fault | None = None,
    rec: Reconciler | None = None,
) -> Run:
    """Warm up, inject the faults for ``FAULTY`` minutes, clear them, go on."""
    api.state.put(
        "predictivescalers",
        "gov",
        scaler(proxy.url, "Scale", minReplicas=MIN, maxReplicas=MAX, capacityPerReplica=2.0),
    )
    rec = rec or reconciler(api, tmp_path)
    replicas, decided, seen, statuses = [], [], [], []
    for n in range(WARM + FAULTY + AFTER):
        if n == WARM:
            if prom_fault is not None:
                proxy.faults.append(prom_fault)
            if api_fault is not None:
                api.state.faults.append(api_fault)
        if n == WARM + FAULTY:
            proxy.faults.clear()
            api.state.faults.clear()
        now = BEGIN + timedelta(minutes=n)
        obj = copy.deepcopy(api.state.get("predictivescalers", "gov", "portal"))
        decision = rec.reconcile(obj, now)  # must never raise
        deployment = api.state.get("deployments", "gov", "portal")
        deployment.setdefault("status", {})["replicas"] = deployment["spec"]["replicas"]
        replicas.append(deployment["spec"]["replicas"])
        decided.append(decision.replicas if decision else None)
        seen.append(decision.observed_load if decision else None)
        status = api.state.get("predictivescalers", "gov", "portal").get("status") or {}
        statuses.append(copy.deepcopy(status))
    events = [c.body["reason"] for c in api.state.calls("POST", "/events")]
    return Run(replicas, decided, seen, statuses, events)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def assert_safe(run: Run) -> None:
    """Within the bounds; never below what the load it saw needs; blind, never down.

    Judged on what the controller decided (a write the API refuses cannot count against
    it) and on what the target got.
    """
    assert all(MIN <= r <= MAX for r in run.replicas), run.replicas
    for n, (replicas, load) in enumerate(zip(run.decided, run.seen, strict=True)):
        if replicas is None:
            continue  # no decision: the target could not be read
        assert MIN <= replicas <= MAX
        if load is not None:
            assert replicas >= min(needed_replicas(load, 2.0), MAX), (n, replicas, load)
        elif n > 0:
            assert replicas >= run.replicas[n - 1], (n, run.replicas)


INSTANT = "/api/v1/query"
EMPTY = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'
PROMETHEUS_FAULTS = {
    "down (503)": (promfake.Fault(503, times=10_000), "MetricUnavailable"),
    "slow (answers after the timeout)": (
        promfake.Fault(200, times=10_000, delay=0.7),
        "MetricUnavailable",
    ),
    "empty result": (promfake.Fault(200, times=10_000, body=EMPTY, path=INSTANT), "LoadUnknown"),
    "NaN": (promfake.Fault(200, times=10_000, body=vector("NaN"), path=INSTANT), "LoadUnknown"),
    "a vector for a range query": (
        promfake.Fault(200, times=10_000, body=vector("5"), path="/api/v1/query_range"),
        "MetricUnavailable",
    ),
    "several series": (
        promfake.Fault(200, times=10_000, body=vector("5", series=5000)),
        "MetricUnavailable",
    ),
    "not JSON": (
        promfake.Fault(200, times=10_000, body=b"<html>bad gateway</html>"),
        "MetricUnavailable",
    ),
}
"""Fault → the Warning Event that must say so. Every one leaves the load unknown."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "event"), PROMETHEUS_FAULTS.values(), ids=PROMETHEUS_FAULTS.keys()
)
def test_prometheus_faults_fail_safe_and_recover(api, proxy, prom, tmp_path, fault, event) -> None:
    run = drive(api, proxy, prom, tmp_path, prom_fault=fault)
    assert_safe(run)
    assert all(load is None for load in run.seen[WARM : WARM + FAULTY])  # blind throughout
    degraded = condition(run.statuses[WARM + FAULTY - 1], "Fallback")
    assert (degraded["status"], degraded["reason"]) == ("True", "LoadUnknown"), degraded
    assert run.events.count(event) == 1  # said once, not every minute
    recovered = condition(run.statuses[-1], "Fallback")
    assert (recovered["status"], recovered["reason"]) == ("False", "ForecastInUse")


def test_an_absurd_load_is_capped_at_max(api, proxy, prom, tmp_path) -> None:
    run = drive(
        api,
        proxy,
        prom,
        tmp_path,
        promfake.Fault(200, times=10_000, body=vector("1e300"), path=INSTANT),
    )
    assert_safe(run)
    assert run.replicas[WARM + 1 : WARM + FAULTY] == [MAX] * (FAULTY - 1)


def ready_reason(run: Run, n: int) -> tuple[str, str]:
    ready = condition(run.statuses[n], "Ready")
    return ready.get("status", ""), ready.get("reason", "")


API_FAULTS = {
    "scale read times out": (
        kubefake.Fault("GET", "/scale", 200, times=10_000, delay=0.7),
        "TargetUnreadable",
    ),
    "scale read 500": (kubefake.Fault("GET", "/scale", 500, times=10_000), "TargetUnreadable"),
    "scale read 429 for good": (
        kubefake.Fault("GET", "/scale", 429, times=10_000, retry_after=1),
        "TargetUnreadable",
    ),
    "scale write 500": (kubefake.Fault("PATCH", "/scale", 500, times=10_000), "ScaleFailed"),
    "scale write 409": (kubefake.Fault("PATCH", "/scale", 409, times=10_000), "ScaleFailed"),
    "scale write 422": (kubefake.Fault("PATCH", "/scale", 422, times=10_000), "ScaleFailed"),
}
"""API fault for the whole faulty phase → the Warning Event (and condition reason)."""


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "reason"), API_FAULTS.values(), ids=API_FAULTS.keys())
def test_api_faults_are_reported_and_recovered_from(
    api, proxy, prom, tmp_path, fault, reason
) -> None:
    run = drive(api, proxy, prom, tmp_path, api_fault=fault)
    assert_safe(run)
    assert run.events.count(reason) == 1
    last_faulty = WARM + FAULTY - 1
    if reason == "ScaleFailed":
        active = condition(run.statuses[last_faulty], "ScalingActive")
        assert (active["status"], active["reason"]) == ("False", "ScaleFailed")
        assert len(set(run.replicas[WARM : last_faulty + 1])) == 1  # nothing changed meanwhile
    else:
        assert ready_reason(run, last_faulty) == ("False", reason)
    assert ready_reason(run, len(run.replicas) - 1)[0] == "True"
    active = condition(run.statuses[-1], "ScalingActive")
    assert active["status"] == "True"


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        kubefake.Fault("PATCH", "/status", 409, times=10_000),
        kubefake.Fault("PATCH", "/status", 500, times=10_000),
        kubefake.Fault("POST", "/events", 500, times=10_000),
        kubefake.Fault("POST", "/events", 403, times=10_000),
    ],
    ids=["status 409", "status 500", "events 500", "events 403"],
)
def test_status_and_event_write_failures_do_not_stop_scaling(
    api, proxy, prom, tmp_path, fault
) -> None:
    calm = drive(api, proxy, prom, tmp_path)
    api.state.objects.clear()
    api.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
    faulty = drive(api, proxy, prom, tmp_path / "again", api_fault=fault)
    assert_safe(faulty)
    assert faulty.replicas == calm.replicas  # the same decisions, status or no status


def reconcile_at(api: FakeKubeServer, rec: Reconciler, now) -> Any:
    obj = copy.deepcopy(api.state.get("predictivescalers", "gov", "portal"))
    decision = rec.reconcile(obj, now)
    deployment = api.state.get("deployments", "gov", "portal")
    deployment.setdefault("status", {})["replicas"] = deployment["spec"]["replicas"]
    return decision


@pytest.mark.slow
def test_clock_jumps_back_and_forward(api, prom, tmp_path) -> None:
    api.state.put(
        "predictivescalers", "gov", scaler(prom.url, "Scale", minReplicas=MIN, maxReplicas=MAX)
    )
    rec = reconciler(api, tmp_path)
    times = [BEGIN + timedelta(minutes=n) for n in range(10)]
    times += [BEGIN - timedelta(hours=2) + timedelta(minutes=n) for n in range(5)]  # NTP step back
    times += [BEGIN + timedelta(days=2, minutes=n) for n in range(5)]  # a suspended VM wakes
    decisions = [reconcile_at(api, rec, now) for now in times]
    assert all(d is not None and MIN <= d.replicas <= MAX for d in decisions)
    for d in decisions:
        if d.observed_load is not None:
            assert d.replicas >= min(needed_replicas(d.observed_load, 1.0), MAX)
    # Two days on, Prometheus has no data: blind, so nothing scales down, and it says so.
    late = decisions[-5:]
    assert all(d.replicas >= decisions[-6].replicas for d in late)
    status = api.state.get("predictivescalers", "gov", "portal")["status"]
    assert condition(status, "Fallback")["status"] == "True"


@pytest.mark.slow
def test_a_corrupt_stored_model_is_refused_and_retrained(api, prom, tmp_path) -> None:
    api.state.put(
        "predictivescalers", "gov", scaler(prom.url, "Scale", minReplicas=MIN, maxReplicas=MAX)
    )
    reconcile_at(api, reconciler(api, tmp_path), BEGIN)
    artefacts = sorted((tmp_path / "models").rglob("*.npz"))
    assert artefacts, "the first reconcile stores its model"
    artefacts[-1].write_bytes(artefacts[-1].read_bytes()[:100])  # truncated on disk

    decision = reconcile_at(api, reconciler(api, tmp_path), BEGIN + timedelta(minutes=1))
    assert decision is not None and decision.fallback is None  # retrained, forecasting again
    trained = [
        c.body for c in api.state.calls("POST", "/events") if c.body["reason"] == "ModelTrained"
    ]
    assert len(trained) == 2  # once per process: the restarted one did not trust the file
