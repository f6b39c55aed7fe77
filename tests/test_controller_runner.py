"""The controller process: watch, jobs per scaler, spec changes, deletion, 410 Gone, and
leader election with two instances on one fake API server, in real (short) time."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller import runner
from controller.http import ControllerHTTPServer
from controller.kube import KubeClient, RetryPolicy
from controller.leader import LeaderElector, LeaderSettings
from controller.metrics import ControllerMetrics
from controller.prometheus import PrometheusClient
from controller.reconciler import Reconciler
from controller.runner import Controller, _key
from controller.spec import SpecError, parse_scaler
from tests.kubefake import FakeKubeServer
from tests.test_controller_e2e import DEPLOYMENT, HPA, scaler
from tests.test_leader import Monotonic

FAST = LeaderSettings(
    lease_duration=timedelta(seconds=1.5),
    renew_deadline=timedelta(seconds=1.0),
    retry_period=timedelta(seconds=0.2),
)


def controller(server: FakeKubeServer, identity: str, tmp_path) -> Controller:
    kube = KubeClient(
        server.api_client(agent=identity), RetryPolicy(attempts=2), sleep=lambda _: None
    )
    reconciler = Reconciler(
        kube,
        ControllerMetrics(),
        model_store=str(tmp_path / identity),
        prometheus=lambda url: PrometheusClient(url, sleep=lambda _: None, rng=random.Random(0)),
    )
    elector = LeaderElector(kube, "surgecast-system", "surgecast-controller", identity, FAST)
    made = Controller(kube, reconciler, elector, namespace=None, watch_timeout=2)
    made.http = ControllerHTTPServer(
        reconciler.metrics.registry, made.healthy, made.ready, host="127.0.0.1", port=0
    )
    return made


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def status(server: FakeKubeServer) -> dict:
    return server.state.get("predictivescalers", "gov", "portal").get("status", {})


@pytest.fixture
def api():
    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", DEPLOYMENT)
        # Prometheus on a closed port: decisions fall back, which is all these tests need.
        server.state.put(
            "predictivescalers",
            "gov",
            scaler("http://127.0.0.1:9", "Scale", behavior={"syncPeriod": "1s"}),
        )
        yield server


def test_watch_reconciles_new_changed_and_deleted_scalers(api, tmp_path) -> None:
    one = controller(api, "one", tmp_path).start()
    try:
        wait_for(lambda: one.ready()[0] and "leader" in one.ready()[1])
        wait_for(lambda: status(api).get("observedGeneration") == 1)
        assert one.periods["gov/portal"] == 1.0  # reconciled by the 1 s cycle
        assert one.scheduler.get_job("cycle:1s") is not None

        api.state.update("predictivescalers", "gov", "portal", {"spec": {"minReplicas": 3}})
        wait_for(lambda: status(api).get("observedGeneration") == 2)
        wait_for(lambda: api.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 3)

        api.state.compact()  # the next watch request is too old: 410, then a fresh list
        api.state.update("predictivescalers", "gov", "portal", {"spec": {"minReplicas": 4}})
        wait_for(lambda: status(api).get("observedGeneration") == 3, seconds=15)

        api.state.delete("predictivescalers", "gov", "portal")
        wait_for(lambda: one.scheduler.get_job("cycle:1s") is None)
        assert "gov/portal" not in one.periods
        assert "gov/portal" not in one.reconciler.states
        assert one.healthy()[0]
    finally:
        one.stop()
    assert not one.healthy()[0]


def test_two_instances_never_act_at_once(api, tmp_path) -> None:
    a, b = controller(api, "a", tmp_path).start(), controller(api, "b", tmp_path).start()
    stopped_a = None
    try:
        wait_for(lambda: status(api).get("observedGeneration") == 1)
        time.sleep(2.5)
        leader = a if a.elector.is_leader() else b
        standby = b if leader is a else a
        assert not standby.elector.is_leader()
        leader.stop(release=False)  # a crash: the Lease is not handed over
        stopped_a = leader
        wait_for(standby.elector.is_leader, seconds=10)
        api.state.update("predictivescalers", "gov", "portal", {"spec": {"minReplicas": 5}})
        wait_for(lambda: api.state.get("deployments", "gov", "portal")["spec"]["replicas"] == 5)
    finally:
        for one in (a, b):
            if one is not stopped_a:
                one.stop()
    writes = [
        c
        for c in api.state.journal
        if (c.method == "PATCH" and "/leases/" not in c.path) or "/events" in c.path
    ]
    by_leader = [c.at for c in writes if c.agent == leader.elector.identity]
    by_standby = [c.at for c in writes if c.agent == standby.elector.identity]
    assert by_leader and by_standby
    assert max(by_leader) < min(by_standby)  # a gap between the two leaders, never an overlap


T0 = datetime(2026, 3, 5, 1, 0, 17, tzinfo=UTC)


@dataclass
class Paced(Reconciler):
    """The real reconciler, calling ``during(key)`` as each reconcile starts: what happens
    meanwhile (a slow reconcile, a deletion) happens there, without sleeping."""

    during: Callable[[str], None] = lambda key: None

    def reconcile(self, obj: dict[str, Any], now: datetime) -> Any:
        self.during(_key(obj))
        return super().reconcile(obj, now)


@pytest.fixture
def fleet():
    """Six scalers, each to scale its own Deployment from 1 to 3 replicas."""
    with FakeKubeServer() as server:
        for i in range(6):
            server.state.put("deployments", "gov", {**DEPLOYMENT, "metadata": {"name": f"app{i}"}})
            body = scaler("http://127.0.0.1:9", "Scale", minReplicas=3)
            body["metadata"]["name"] = f"s{i}"
            body["spec"]["scaleTargetRef"]["name"] = f"app{i}"
            server.state.put("predictivescalers", "gov", body)
        yield server


def paced(kube: KubeClient, during: Callable[[str], None] = lambda key: None) -> Paced:
    """The real reconciler on ``kube``, its Prometheus retries without sleeping."""
    return Paced(
        kube,
        ControllerMetrics(),
        prometheus=lambda url: PrometheusClient(url, sleep=lambda _: None, rng=random.Random(0)),
        during=during,
    )


def listed(server: FakeKubeServer, during: Callable[[str], None]) -> tuple[Controller, Monotonic]:
    """A leading controller that has listed the scalers, its jobs not started."""
    kube = KubeClient(server.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
    reconciler = paced(kube, during)
    clock = Monotonic()
    elector = LeaderElector(kube, "gov", "lease", "a", FAST, monotonic=clock)
    made = Controller(kube, reconciler, elector, clock=lambda: T0)
    made._replace_all(kube.list_scalers("gov")[0])
    assert elector.tick(T0)
    return made, clock


def scaled(server: FakeKubeServer) -> list[str]:
    return [c.path.split("/")[-2] for c in server.state.calls("PATCH", "/scale")]


def test_a_cycle_stops_scaling_when_leadership_lapses(fleet) -> None:
    def slow(key: str) -> None:  # each reconcile takes 0.4 s: the 1 s deadline passes in the 3rd
        clock.seconds += 0.4

    one, clock = listed(fleet, slow)
    _, count = one._reconcile_many(set(one.objects), "test")
    assert scaled(fleet) == ["app0", "app1", "app2"]
    assert count == 3


def test_a_scaler_deleted_during_a_cycle_is_not_reconciled_by_it(fleet) -> None:
    watch: list[threading.Thread] = []

    def delete_s2(key: str) -> None:  # while s0 reconciles, the watch delivers s2's deletion
        if key != "gov/s0":
            return
        gone = fleet.state.get("predictivescalers", "gov", "s2")
        fleet.state.delete("predictivescalers", "gov", "s2")
        watch.append(threading.Thread(target=one._on_event, args=("DELETED", gone)))
        watch[0].start()
        wait_for(lambda: "gov/s2" not in one.objects, seconds=2)

    one, _ = listed(fleet, delete_s2)
    _, count = one._reconcile_many(set(one.objects), "test")
    watch[0].join(timeout=2)
    assert scaled(fleet) == ["app0", "app1", "app3", "app4", "app5"]
    assert count == 5
    assert not fleet.state.calls(contains="/predictivescalers/s2")  # no status write
    assert not [
        obj
        for (plural, _, _), obj in fleet.state.objects.items()
        if plural == "events" and obj["involvedObject"]["name"] == "s2"
    ]
    assert "gov/s2" not in one.reconciler.states


def test_one_scaler_that_breaks_the_spec_reader_does_not_stop_the_watch(
    api, tmp_path, monkeypatch
) -> None:
    def reader_bug(obj: dict[str, Any]) -> Any:  # a spec the reader fails on unexpectedly
        if obj["metadata"]["name"].startswith("bad"):
            raise ValueError("could not convert string to float: 'high'")
        return parse_scaler(obj)

    monkeypatch.setattr(runner, "parse_scaler", reader_bug)
    bad = scaler("http://127.0.0.1:9", "Scale")
    bad["metadata"]["name"] = "bad"
    api.state.put("predictivescalers", "gov", bad)
    one = controller(api, "one", tmp_path)
    one.watch_timeout = 1  # stop() waits for the watch request to end
    one.start()
    try:
        wait_for(one.synced.is_set, seconds=3)  # the list went on past "bad"
        # "bad" is scheduled all the same, by its syncPeriod (1m) read without the reader.
        assert one.periods == {"gov/bad": 60.0, "gov/portal": 1.0}
        bad["metadata"]["name"] = "bad-later"
        api.state.put("predictivescalers", "gov", bad)
        good = scaler("http://127.0.0.1:9", "Scale")
        good["metadata"]["name"] = "later"
        api.state.put("predictivescalers", "gov", good)
        wait_for(lambda: "gov/later" in one.periods, seconds=3)  # the watch went on too
        assert one.periods["gov/bad-later"] == 60.0
        assert one.healthy()[0]
    finally:
        one.stop()


def test_a_scaler_deleted_and_created_again_while_unwatched_starts_afresh(fleet) -> None:
    # The watch was away while s0 was deleted and created again: the relist shows only the
    # new object, with the same name and a generation that started over.
    one, _ = listed(fleet, lambda key: None)
    one._reconcile_many({"gov/s0"}, "test")
    assert "gov/s0" in one.reconciler.states
    old = fleet.state.get("predictivescalers", "gov", "s0")
    fleet.state.delete("predictivescalers", "gov", "s0")
    fresh = {key: value for key, value in old.items() if key != "status"}
    fleet.state.put("predictivescalers", "gov", {**fresh, "metadata": {"name": "s0"}})
    one.urgent.clear()
    one._replace_all(one.kube.list_scalers("gov")[0])
    new = one.objects["gov/s0"]
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert _generation_of(new) == _generation_of(old)
    assert "gov/s0" not in one.reconciler.states  # the old object's model and history
    assert one.urgent == {"gov/s0"}  # reconciled at once, as any new scaler
    assert "status" not in new  # nothing carried over from the old object


def _generation_of(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["generation"])


def test_two_scalers_on_one_target_only_the_first_scales_it(fleet) -> None:
    # s3 (created later) and s4 (in shadow) point at app0 too: s3 would undo s0 every cycle.
    for name, mode, created in (
        ("s3", "Scale", "2026-11-21T00:00:00Z"),
        ("s4", "ForecastOnly", ""),
    ):
        obj = fleet.state.get("predictivescalers", "gov", name)
        obj["spec"]["scaleTargetRef"]["name"] = "app0"
        obj["spec"]["mode"] = mode
        obj["metadata"]["creationTimestamp"] = created or obj["metadata"]["creationTimestamp"]
    one, _ = listed(fleet, lambda key: None)
    one._reconcile_many(set(one.objects), "test")
    assert sorted(scaled(fleet)) == ["app0", "app1", "app2", "app5"]  # app0 once, by s0
    s3 = fleet.state.get("predictivescalers", "gov", "s3")["status"]
    (active,) = [c for c in s3["conditions"] if c["type"] == "ScalingActive"]
    assert (active["status"], active["reason"]) == ("False", "AmbiguousTarget")
    assert "Deployment app0 is also scaled by gov/s0" in active["message"]
    warned = [
        obj["involvedObject"]["name"]
        for (plural, _, _), obj in fleet.state.objects.items()
        if plural == "events" and obj["reason"] == "AmbiguousTarget"
    ]
    assert warned == ["s3"]
    # once s0 lets go of app0, s3 scales it (already at its minimum of 3: nothing to write)
    s0 = fleet.state.get("predictivescalers", "gov", "s0")
    s0["spec"]["scaleTargetRef"]["name"] = "app3"
    before = len(scaled(fleet))
    one._replace_all(one.kube.list_scalers("gov")[0])
    one._reconcile_many({"gov/s0", "gov/s3"}, "test")
    assert scaled(fleet)[before:] == ["app3"]
    s3 = fleet.state.get("predictivescalers", "gov", "s3")["status"]
    (active,) = [c for c in s3["conditions"] if c["type"] == "ScalingActive"]
    assert active["status"] == "True" and s3["desiredReplicas"] == 3


def test_losing_the_lease_drops_the_per_scaler_series(fleet) -> None:
    """A replica that lost the Lease stops exporting its scalers' last values: a standby's
    stale projected shortfall would keep an alert firing, and its desired replicas would
    be counted twice by a sum over the replicas."""
    one, clock = listed(fleet, lambda key: None)
    one._elect()
    one._reconcile_many(set(one.objects), "test")
    registry = one.reconciler.metrics.registry
    labels = {"namespace": "gov", "name": "s0"}
    assert registry.get_sample_value("surgecast_desired_replicas", labels) == 3

    kube = KubeClient(fleet.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
    other_clock = Monotonic()
    other = LeaderElector(kube, "gov", "lease", "b", FAST, monotonic=other_clock)
    assert not other.tick(T0)
    other_clock.seconds += 2  # the lease looks expired to "b", which takes it
    clock.seconds += 2  # and "a" has not renewed within its deadline
    assert other.tick(T0)
    one._elect()
    assert registry.get_sample_value("surgecast_leader") == 0
    assert registry.get_sample_value("surgecast_desired_replicas", labels) is None


def test_a_cycle_stops_at_the_next_scaler_when_the_controller_stops(fleet) -> None:
    def sigterm_during_s1(key: str) -> None:
        if key == "gov/s1":
            one._stopping.set()  # what stop() does first, from the signal handler's thread

    one, _ = listed(fleet, sigterm_during_s1)
    _, count = one._reconcile_many(set(one.objects), "test")
    assert scaled(fleet) == ["app0", "app1"]  # s1 finishes; the other four wait for the next leader
    assert count == 2


def test_stop_does_not_wait_for_an_idle_watch_to_time_out(api, tmp_path) -> None:
    """SIGTERM gives a pod 30 s; stop() waited for the watch request to end (60 s when
    nothing changes), so every rollout ended in a kill with the HTTP server still up."""
    one = controller(api, "one", tmp_path)
    one.watch_timeout = 30
    one.start()
    wait_for(lambda: one.ready()[0] and "leader" in one.ready()[1])
    time.sleep(0.5)  # the watch is now waiting for changes
    started = time.monotonic()
    one.stop()
    assert time.monotonic() - started < 10
    lease = api.state.get("leases", "surgecast-system", "surgecast-controller")
    assert not lease["spec"].get("holderIdentity")  # released on the way
    assert not one.healthy()[0]


def test_a_standby_keeps_the_urgent_scalers_for_when_it_leads(fleet) -> None:
    """A standby emptied the urgent set every second without reconciling it, so on taking
    over it reconciled new and changed scalers only at their next cycle (a whole syncPeriod
    after a failover, which may be minutes) instead of at once."""
    one, clock = listed(fleet, lambda key: None)
    kube = KubeClient(fleet.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None)
    other_clock = Monotonic()
    other = LeaderElector(kube, "gov", "lease", "b", FAST, monotonic=other_clock)
    assert not other.tick(T0)
    other_clock.seconds += 2
    assert other.tick(T0)  # "b" leads, "a" is a standby with every scaler still urgent
    clock.seconds += 2
    assert not one.elector.tick(T0)
    one.reconcile_urgent()
    assert scaled(fleet) == []
    clock.seconds += 2  # "b" is gone: its lease expires and "a" takes over
    assert one.elector.tick(T0)
    one.reconcile_urgent()
    assert sorted(scaled(fleet)) == [f"app{i}" for i in range(6)]


def test_a_batch_that_waited_for_another_reconciles_at_the_time_it_runs(fleet) -> None:
    """A batch read the clock before waiting for the one running: its decisions were stamped
    in the past, and the recommendations made since dropped as if the clock stepped back."""
    one, _ = listed(fleet, lambda key: None)
    times = [T0]
    one.clock = lambda: times[0]
    with one._reconciling:  # a long cycle is running
        waiting = threading.Thread(target=one._reconcile_many, args=({"gov/s0"}, "urgent"))
        waiting.start()
        time.sleep(0.3)  # the urgent batch is queued behind it
        times[0] = T0 + timedelta(seconds=40)  # and the cycle ends 40 s later
    waiting.join(timeout=10)
    decided = fleet.state.get("predictivescalers", "gov", "s0")["status"]["lastDecision"]
    assert decided["time"] == "2026-03-05T01:00:57Z"


def test_a_sub_second_sync_period_is_refused_and_not_scheduled() -> None:
    """An older CRD lets ``syncPeriod: 100ms`` through: refused by the reader, the scaler was
    still scheduled by the period it asked for, a cycle ten times a second."""
    obj = scaler("http://127.0.0.1:9", "Scale", behavior={"syncPeriod": "100ms"})
    obj["metadata"]["namespace"] = "gov"
    with pytest.raises(SpecError, match="shorter than 1s"):
        parse_scaler(obj)
    assert runner._sync_period("gov/portal", obj) == runner.DEFAULT_SYNC


@pytest.mark.slow
def test_a_deleted_hpa_floor_scaler_gives_the_floor_back_through_the_watch(tmp_path) -> None:
    """Deletion reaches the controller as a change (the deletionTimestamp): it restores the
    HPA's minReplicas, then the finalizer goes and with it the scaler."""
    with FakeKubeServer() as api:
        api.state.put("deployments", "gov", DEPLOYMENT)
        api.state.put("horizontalpodautoscalers", "gov", HPA)  # minReplicas 1
        body = scaler("http://127.0.0.1:9", "HPAFloor", minReplicas=3)
        body["spec"]["behavior"] = {"syncPeriod": "1s"}
        api.state.put("predictivescalers", "gov", body)
        one = controller(api, "one", tmp_path).start()
        try:
            hpa = lambda: api.state.get("horizontalpodautoscalers", "gov", "portal")  # noqa: E731
            wait_for(lambda: hpa()["spec"]["minReplicas"] == 3)
            api.state.delete("predictivescalers", "gov", "portal")
            wait_for(lambda: ("predictivescalers", "gov", "portal") not in api.state.objects)
            assert hpa()["spec"]["minReplicas"] == 1
            wait_for(lambda: "gov/portal" not in one.reconciler.states)
        finally:
            one.stop()
