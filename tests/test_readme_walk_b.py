"""README promises that no other test held the controller to: a deleted target is reported
once and scaling resumes when it is back; a SQLite decision log locked by another writer is
ridden out like one that is down; and the Lease stays renewed through a long batch."""

from __future__ import annotations

import copy
import sqlite3
import time

from controller.decisions import DecisionLog
from controller.kube import KubeClient, RetryPolicy
from controller.leader import LeaderElector
from controller.runner import Controller
from tests.kubefake import FakeKubeServer
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, api, scaler  # noqa: F401
from tests.test_controller_runner import FAST, paced, wait_for
from tests.test_reconciler_decision_log import (
    KEY,
    PEAK,
    events,
    logged,
    reconcile,
    replicas,
    set_replicas,
    with_log,
)


def ready(server) -> tuple[str, str]:
    status = server.state.get("predictivescalers", "gov", "portal")["status"]
    condition = next(c for c in status["conditions"] if c["type"] == "Ready")
    return condition["status"], condition["reason"]


def test_a_deleted_target_is_reported_once_and_scaled_again_when_it_is_back(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}"))
    reconcile(api, rec, 0)
    needed = replicas(api)
    assert needed > 1  # the peak needs more than the one replica it starts with

    api.state.delete("deployments", "gov", "portal")
    for minute in (1, 2, 3):
        reconcile(api, rec, minute)
        assert ready(api) == ("False", "TargetNotFound")
    assert len(events(api, "TargetNotFound")) == 1  # one Event, not one a minute

    api.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))  # back, at 1 replica
    reconcile(api, rec, 4)
    assert ready(api) == ("True", "Reconciled")
    assert replicas(api) >= needed  # scaling resumed without a restart


def test_a_decision_log_locked_by_another_writer_does_not_stop_scaling(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    path = tmp_path / "decisions.db"
    log = DecisionLog(f"sqlite:///{path}")
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, log)
    reconcile(api, rec, 0)
    needed = replicas(api)

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock, and reads too
    try:
        set_replicas(api, 1)  # scaled down by hand: the next decision scales up
        for minute in (1, 2):
            reconcile(api, rec, minute)
            assert replicas(api) >= needed  # applied although it could not be recorded
            condition = logged(api)
            assert (condition["status"], condition["reason"]) == (
                "False",
                "DecisionLogUnavailable",
            )
        assert len(events(api, "DecisionLogUnavailable")) == 1
    finally:
        other.execute("ROLLBACK")
        other.close()

    reconcile(api, rec, 3)
    assert logged(api)["status"] == "True"
    records = log.list(KEY, since=PEAK)
    assert len(records) == 4 and all(r.applied for r in records)  # the locked minutes too


def test_a_long_batch_with_three_sync_periods_keeps_the_lease_renewed() -> None:
    """README: only the Lease holder acts, and a leader stops only when it cannot renew.
    The scheduler's threads ran the election beside the cycles; with three sync periods, a
    long batch (a Prometheus that hangs, 5 tries of 10 s) held one thread and the other
    cycles and the urgent job each blocked one more waiting for it, so the election had no
    thread: the leader's renew deadline passed mid-batch, it stopped scaling, and the
    standby took over, for every batch of the outage."""
    with FakeKubeServer() as server:
        for i, period in enumerate(("1s", "2s", "3s")):
            deployment = copy.deepcopy(DEPLOYMENT)
            deployment["metadata"]["name"] = f"app{i}"
            server.state.put("deployments", "gov", deployment)
            body = scaler("http://127.0.0.1:9", "Scale", behavior={"syncPeriod": period})
            body["metadata"]["name"] = f"s{i}"
            body["spec"]["scaleTargetRef"]["name"] = f"app{i}"
            server.state.put("predictivescalers", "gov", body)
        kube = KubeClient(server.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
        # each batch outlasts the 1 s renew deadline
        reconciler = paced(kube, during=lambda key: time.sleep(2.5))
        elector = LeaderElector(kube, "gov", "surgecast-controller", "a", FAST)
        one = Controller(kube, reconciler, elector, watch_timeout=2).start()
        try:
            wait_for(elector.is_leader)
            lapsed = []
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                if not elector.is_leader():
                    lapsed.append(time.monotonic())
                time.sleep(0.05)
        finally:
            one.stop()
    assert lapsed == [], f"not leading for {len(lapsed) * 0.05:.1f} s of 8"


def test_while_a_batch_runs_an_idle_urgent_job_does_not_wait_for_it(caplog) -> None:
    """The urgent job, with nothing to do, waited every second for the batch under way, so
    the scheduler logged a WARNING each second ("skipped: maximum number of running
    instances reached") all through every batch longer than a second, as a large fleet's
    are, and one of its threads was taken for nothing."""
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", copy.deepcopy(DEPLOYMENT))
        server.state.put(
            "predictivescalers",
            "gov",
            scaler("http://127.0.0.1:9", "Scale", behavior={"syncPeriod": "1m"}),
        )
        kube = KubeClient(server.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
        reconciler = paced(kube)
        elector = LeaderElector(kube, "gov", "surgecast-controller", "a", FAST)
        one = Controller(kube, reconciler, elector, watch_timeout=2).start()
        try:
            wait_for(lambda: bool(server.state.calls("PATCH", "/status")))
            wait_for(lambda: not one.urgent and not reconciler.jobs)  # the failed training too
            time.sleep(1)
            with caplog.at_level("WARNING", logger="apscheduler"), one._reconciling:
                time.sleep(4)  # a cycle's batch of a large fleet, or one waiting on Prometheus
        finally:
            one.stop()
    noise = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
    assert noise == []
