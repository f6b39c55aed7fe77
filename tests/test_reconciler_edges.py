"""Edge cases of one reconcile, each found by a reproduction and fixed: what the batched
reads of a cycle know, the clock stepping back, problems that recur, a model replaced by
one without a score, metrics of a load no longer known, and a spec the reader chokes on.

Same world as ``tests/test_faults.py``: the real ``kubernetes`` client against the fake
API server, the real Prometheus behind the fault-injecting proxy, virtual time.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from controller import reconciler as reconciler_module
from controller.reconciler import Reconciler
from tests import kubefake
from tests import prom_server as promfake
from tests.kubefake import FakeKubeServer
from tests.prom_server import (
    FaultProxy,
    prom,  # noqa: F401 (the session fixture)
)
from tests.test_controller_e2e import DEPLOYMENT, QUERY, scaler
from tests.test_faults import BEGIN, api, condition, proxy, reconciler  # noqa: F401

FAST = {"model": {"name": "last_value", "minBacktestScore": 0.0}, "outlook": {"enabled": False}}


def put_scaler(server: FakeKubeServer, url: str, name: str = "portal", **spec: Any) -> None:
    body = scaler(url, "Scale", **{**FAST, **spec})
    body["metadata"]["name"] = name
    server.state.put("predictivescalers", "gov", body)


def stored(server: FakeKubeServer, name: str = "portal") -> dict[str, Any]:
    return copy.deepcopy(server.state.get("predictivescalers", "gov", name))


def events(server: FakeKubeServer, reason: str) -> list[dict[str, Any]]:
    return [c.body for c in server.state.calls("POST", "/events") if c.body["reason"] == reason]


def cycle(server: FakeKubeServer, rec: Reconciler, now: datetime, names: list[str]) -> None:
    """What the runner does each sync period: one batched read, then each reconcile."""
    objs = [stored(server, name) for name in names]
    rec.prefetch(objs, now)
    for obj in objs:
        rec.reconcile(obj, now)


def test_a_prometheus_the_batch_found_down_is_not_asked_again_by_each_scaler(
    api,  # noqa: F811
    proxy: FaultProxy,  # noqa: F811
    tmp_path,
) -> None:
    names = [f"s{i}" for i in range(4)]
    for i, name in enumerate(names):
        put_scaler(
            api,
            proxy.url,
            name,
            metric={"prometheusUrl": proxy.url, "query": f"{QUERY} * {i + 1}", "step": "1m"},
        )
    rec = reconciler(api, tmp_path)
    proxy.faults.append(promfake.Fault(503, times=10_000))
    objs = [stored(api, name) for name in names]
    rec.prefetch(objs, BEGIN)
    asked = len(proxy.requests)
    for obj in objs:
        rec.reconcile(obj, BEGIN)
    assert len(proxy.requests) == asked  # the cycle already knew: no retries per scaler
    for name in names:
        fallback = condition(stored(api, name)["status"], "Fallback")
        assert fallback["status"] == "True" and "503" in fallback["message"], fallback
    assert len(events(api, "MetricUnavailable")) == len(names)  # each scaler still says so


def test_a_prometheus_url_ending_in_a_slash_reads_the_batched_load(
    api,  # noqa: F811
    proxy: FaultProxy,  # noqa: F811
    tmp_path,
) -> None:
    url = proxy.url + "/"
    put_scaler(api, url, metric={"prometheusUrl": url, "query": QUERY, "step": "1m"})
    rec = reconciler(api, tmp_path)
    cycle(api, rec, BEGIN, ["portal"])  # warm: the model
    now = BEGIN + timedelta(minutes=1)
    rec.prefetch([stored(api)], now)
    asked = len(proxy.requests)
    decision = rec.reconcile(stored(api), now)
    assert decision is not None and decision.observed_load is not None
    assert proxy.requests[asked:] == []  # the batch's answer was used


def test_after_the_clock_steps_back_scale_down_waits_only_the_stabilisation_window(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    put_scaler(api, prom.url)
    rec = reconciler(api, tmp_path)
    for minute in range(3):
        rec.reconcile(stored(api), BEGIN + timedelta(minutes=minute))  # the morning rise
    high = api.state.get("deployments", "gov", "portal")["spec"]["replicas"]
    back = BEGIN - timedelta(hours=2)  # NTP steps the clock back to the quiet early hours
    decisions = [rec.reconcile(stored(api), back + timedelta(minutes=m)) for m in range(7)]
    last = decisions[-1]
    assert last is not None and last.replicas < high, (high, last)  # after 5 min, not 2 h
    assert "Hold/Stabilizing" not in last.clamps


def delete_target(server: FakeKubeServer) -> None:
    server.state.delete("deployments", "gov", "portal")


def restore_target(server: FakeKubeServer) -> None:
    server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))


def break_spec(server: FakeKubeServer) -> None:
    server.state.update("predictivescalers", "gov", "portal", {"spec": {"maxReplicas": 0}})


def fix_spec(server: FakeKubeServer) -> None:
    server.state.update("predictivescalers", "gov", "portal", {"spec": {"maxReplicas": 20}})


def fail_scale_writes(server: FakeKubeServer) -> None:
    server.state.update("deployments", "gov", "portal", {"spec": {"replicas": 1}})  # needs a write
    server.state.faults.append(kubefake.Fault("PATCH", "/scale", 500, times=10_000))


def allow_scale_writes(server: FakeKubeServer) -> None:
    server.state.faults.clear()


PROBLEMS = {
    "target deleted": (delete_target, restore_target, "TargetNotFound"),
    "spec invalid": (break_spec, fix_spec, "InvalidSpec"),
    "scale write refused": (fail_scale_writes, allow_scale_writes, "ScaleFailed"),
}


@pytest.mark.parametrize(("cause", "cure", "reason"), PROBLEMS.values(), ids=PROBLEMS.keys())
def test_a_problem_that_comes_back_after_clearing_gets_a_new_event(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
    cause: Callable[[FakeKubeServer], None],
    cure: Callable[[FakeKubeServer], None],
    reason: str,
) -> None:
    put_scaler(api, prom.url, minReplicas=18)  # the same decision, so the same message, each time
    rec = reconciler(api, tmp_path)
    minutes = iter(range(100))

    def twice() -> None:
        for _ in range(2):
            rec.reconcile(stored(api), BEGIN + timedelta(minutes=next(minutes)))

    twice()
    cause(api)
    twice()
    assert len(events(api, reason)) == 1  # once, not every minute
    cure(api)
    twice()
    assert condition(stored(api)["status"], "Ready")["status"] == "True"
    cause(api)
    twice()
    assert len(events(api, reason)) == 2  # a recurrence is news again


def test_a_model_without_a_backtest_score_does_not_show_the_previous_one(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    put_scaler(api, prom.url)
    rec = reconciler(api, tmp_path)
    rec.reconcile(stored(api), BEGIN)
    assert "backtestScore" in stored(api)["status"]["model"]
    # Retrained on a history too short to backtest: the new model has no score.
    api.state.update(
        "predictivescalers", "gov", "portal", {"spec": {"retrain": {"historyWindow": "3h"}}}
    )
    rec.reconcile(stored(api), BEGIN + timedelta(minutes=1))
    model = stored(api)["status"]["model"]
    assert rec.states["gov/portal"].model.backtest_score is None
    assert model["version"] == rec.states["gov/portal"].model.version
    assert "backtestScore" not in model, model


def test_a_load_no_longer_known_leaves_the_metrics(
    api,  # noqa: F811
    proxy: FaultProxy,  # noqa: F811
    tmp_path,
) -> None:
    put_scaler(api, proxy.url)
    rec = reconciler(api, tmp_path)

    def gauge(name: str) -> float | None:
        return rec.metrics.registry.get_sample_value(name, {"namespace": "gov", "name": "portal"})

    decision = rec.reconcile(stored(api), BEGIN)
    assert decision is not None and gauge("surgecast_observed_load") == decision.observed_load
    proxy.faults.append(promfake.Fault(503, times=10_000))
    decision = rec.reconcile(stored(api), BEGIN + timedelta(minutes=1))
    assert decision is not None and decision.observed_load is None
    assert gauge("surgecast_observed_load") is None  # not the last load seen
    assert gauge("surgecast_forecast_error_ratio") is None
    assert gauge("surgecast_predicted_load") == decision.forecast_peak


def test_a_spec_the_reader_chokes_on_is_reported_as_invalid_not_raised(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    put_scaler(api, prom.url)
    put_scaler(api, prom.url, name="sound")
    real = reconciler_module.parse_scaler

    def choking(obj: dict[str, Any]) -> Any:
        """The spec reader with a bug: it fails on one object with a plain TypeError."""
        if obj["metadata"]["name"] == "portal":
            raise TypeError("'<' not supported between instances of 'str' and 'int'")
        return real(obj)

    monkeypatch.setattr(reconciler_module, "parse_scaler", choking)
    rec = reconciler(api, tmp_path)
    for minute in range(3):
        cycle(api, rec, BEGIN + timedelta(minutes=minute), ["portal", "sound"])  # never raises
    ready = condition(stored(api)["status"], "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "TypeError" in ready["message"]
    assert len(events(api, "InvalidSpec")) == 1
    assert condition(stored(api, "sound")["status"], "Ready")["status"] == "True"
