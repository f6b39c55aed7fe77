"""Many scalers in one cycle (:meth:`Reconciler.prefetch`, :meth:`Controller.cycle`): their
loads and histories are read from a real Prometheus in a few batched requests, every scaler
is reconciled, and a deleted scaler's cached history goes with it unless another scaler
reads the same series.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from controller.prometheus import PrometheusClient, PrometheusError, PrometheusUnavailable
from controller.reconciler import Reconciler
from tests.kubefake import FakeKubeServer
from tests.prom_server import FaultProxy, PromServer, prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, START, scaler
from tests.test_faults import PATIENT
from tests.test_faults import reconciler as fault_reconciler

SCALERS = 12


def reconciler(api: FakeKubeServer, tmp_path) -> Reconciler:
    return fault_reconciler(api, tmp_path, retry=PATIENT)


@pytest.fixture
def proxy(prom: PromServer) -> Iterator[FaultProxy]:  # noqa: F811
    server = FaultProxy(prom.url)
    yield server
    server.close()


@pytest.fixture
def fleet(proxy: FaultProxy) -> Iterator[FakeKubeServer]:
    """Twelve portals, each with its own query (the same traffic scaled by k)."""
    with FakeKubeServer() as server:
        for k in range(1, SCALERS + 1):
            name = f"portal-{k:02d}"
            server.state.put("deployments", "gov", {**DEPLOYMENT, "metadata": {"name": name}})
            body = scaler(proxy.url, "Scale", maxReplicas=20 * k, capacityPerReplica=1.0 * k)
            body["metadata"]["name"] = name
            body["spec"]["scaleTargetRef"]["name"] = name
            body["spec"]["metric"]["query"] += f" * {k}"
            server.state.put("predictivescalers", "gov", body)
        yield server


def cycle(api: FakeKubeServer, rec: Reconciler, minute: int, batched: bool = True) -> list:
    objs = [
        copy.deepcopy(obj)
        for (plural, _, _), obj in sorted(api.state.objects.items())
        if plural == "predictivescalers"
    ]
    now = START + timedelta(minutes=minute)
    if batched:
        rec.prefetch(objs, now)
    return [rec.reconcile(obj, now) for obj in objs]


def test_a_cycle_reads_prometheus_in_a_few_requests(fleet, proxy, tmp_path) -> None:
    rec = reconciler(fleet, tmp_path)
    first = cycle(fleet, rec, 0)
    assert all(d is not None and d.fallback is None for d in first)
    assert len(rec.cache) == SCALERS  # one series per query, the 3-day window each
    assert rec.cache.nbytes == SCALERS * 3 * 24 * 60 * 8  # 8 bytes a minute

    proxy.requests.clear()
    decisions = cycle(fleet, rec, 1)
    assert all(d is not None and d.observed_load is not None for d in decisions)
    # One instant request for every load, one range request for every history's tail.
    assert sorted(r["path"] for r in proxy.requests) == [
        "/api/v1/query",
        "/api/v1/query_range",
    ]

    proxy.requests.clear()
    alone = cycle(fleet, rec, 2, batched=False)  # what each reconcile asks on its own
    assert len(proxy.requests) == 2 * SCALERS
    loads = [d.observed_load for d in alone]
    assert loads == pytest.approx([loads[0] * k for k in range(1, SCALERS + 1)])


def test_batched_and_alone_decide_the_same(fleet, proxy, tmp_path) -> None:
    batched, alone = reconciler(fleet, tmp_path / "a"), reconciler(fleet, tmp_path / "b")
    for minute in range(0, 6):
        one = cycle(fleet, batched, minute)
        two = cycle(fleet, alone, minute, batched=False)
        assert [(d.replicas, d.observed_load, d.reason) for d in one] == [
            (d.replicas, d.observed_load, d.reason) for d in two
        ]


def test_forgetting_a_scaler_drops_its_series_unless_shared(fleet, proxy, tmp_path) -> None:
    twin = copy.deepcopy(fleet.state.get("predictivescalers", "gov", "portal-01"))
    twin["metadata"] = {"name": "portal-01-twin"}
    fleet.state.put("predictivescalers", "gov", twin)  # the same query as portal-01
    rec = reconciler(fleet, tmp_path)
    cycle(fleet, rec, 0)
    assert len(rec.cache) == SCALERS
    rec.forget("gov/portal-02")
    assert len(rec.cache) == SCALERS - 1
    rec.forget("gov/portal-01")  # its twin still reads that series
    assert len(rec.cache) == SCALERS - 1
    rec.forget("gov/portal-01-twin")
    assert len(rec.cache) == SCALERS - 2
    assert "gov/portal-01" not in rec.states


class HeldExecutor(Executor):
    """Holds every job until the test releases it: a pool whose workers are all busy."""

    def __init__(self) -> None:
        self.held: list[tuple[Future, Callable, tuple]] = []

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        self.held.append((future, fn, args))
        return future

    def release(self) -> None:
        for future, fn, args in self.held:
            future.set_result(fn(*args))
        self.held.clear()


def test_at_most_max_jobs_are_in_flight_and_the_rest_wait(fleet, proxy, tmp_path) -> None:
    rec = reconciler(fleet, tmp_path)
    rec.executor, rec.max_jobs = HeldExecutor(), 5
    first = cycle(fleet, rec, 0)
    assert rec.jobs == 5 and len(rec.executor.held) == 5
    assert all(d.fallback == "ForecastMissing" for d in first)  # reactive meanwhile
    assert list(rec.waiting) == [f"gov/portal-{k:02d}" for k in range(6, SCALERS + 1)]
    assert rec.take_waiting() == []  # no free slot
    cycle(fleet, rec, 1)
    assert len(rec.executor.held) == 5  # no slot: nobody else submitted
    rec.executor.release()
    cycle(fleet, rec, 2)  # five collected, five more submitted
    assert rec.jobs == 5
    rec.executor.release()
    cycle(fleet, rec, 3)
    assert rec.jobs == 2
    rec.executor.release()
    decisions = cycle(fleet, rec, 4)
    assert rec.jobs == 0
    assert all(d.fallback is None for d in decisions)  # every scaler has its model


def test_a_finished_job_calls_back_and_its_slot_goes_to_the_first_waiting(
    fleet,
    proxy,
    tmp_path,
) -> None:
    """What lets the runner hand a slot on at once rather than at the next cycle."""
    rec = reconciler(fleet, tmp_path)
    finished: list[str] = []
    rec.executor, rec.max_jobs, rec.job_done = HeldExecutor(), 1, finished.append
    cycle(fleet, rec, 0)
    assert rec.jobs == 1 and len(rec.waiting) == SCALERS - 1
    rec.executor.release()
    assert finished == ["gov/portal-01"]
    assert rec.take_waiting() == []  # the slot is free once the result is installed
    obj = copy.deepcopy(fleet.state.get("predictivescalers", "gov", "portal-01"))
    rec.reconcile(obj, START + timedelta(seconds=5))
    assert rec.jobs == 0 and rec.states["gov/portal-01"].model is not None
    assert rec.take_waiting() == ["gov/portal-02"]


def test_each_query_keeps_the_history_window_of_its_own_scalers(fleet, proxy, tmp_path) -> None:
    # The longest window of any scaler on the Prometheus was pulled and kept for all.
    short = fleet.state.get("predictivescalers", "gov", "portal-01")
    short["spec"]["retrain"] = {"historyWindow": "1d"}
    fleet.state.put("predictivescalers", "gov", short)
    rec = reconciler(fleet, tmp_path)
    cycle(fleet, rec, 0)
    assert rec.cache.nbytes == ((SCALERS - 1) * 3 + 1) * 24 * 60 * 8


class SlowBackfills(PrometheusClient):
    """Answers short ranges, times out on a day or more: a new scaler's first pull of
    weeks from a slow long-term store."""

    def range_many(
        self, queries: Sequence[str], start: datetime, end: datetime, step: Any
    ) -> list[pd.Series | PrometheusError]:
        if end - start >= timedelta(days=1):
            return [PrometheusUnavailable("Timeout: read timed out")] * len(queries)
        return super().range_many(queries, start, end, step)


def test_a_new_scalers_failed_backfill_blinds_only_that_scaler(fleet, proxy, tmp_path) -> None:
    rec = reconciler(fleet, tmp_path)
    cycle(fleet, rec, 0)
    rec.clients[proxy.url] = SlowBackfills(proxy.url, retry=PATIENT, sleep=lambda _: None)
    newcomer = copy.deepcopy(fleet.state.get("predictivescalers", "gov", "portal-01"))
    newcomer["metadata"] = {"name": "portal-new"}
    newcomer["spec"]["metric"]["query"] += " * 100"
    fleet.state.put("predictivescalers", "gov", newcomer)

    loads = [d.observed_load for d in cycle(fleet, rec, 1)]
    assert loads.count(None) == 1  # the newcomer only: the others' loads were answered
    assert rec.states["gov/portal-new"].metric_error == "Timeout: read timed out"
    assert all(
        rec.states[f"gov/portal-{k:02d}"].metric_error is None for k in range(1, SCALERS + 1)
    )
