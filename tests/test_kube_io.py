"""controller.kube and controller.leader through the real kubernetes client and a fake API."""

from __future__ import annotations

import random
import socket
import threading
from datetime import UTC, datetime, timedelta

import pytest

from controller.kube import KubeClient, KubeError, RetryPolicy, api_client
from controller.leader import LeaderElector, LeaderSettings
from tests.kubefake import FakeKubeServer, Fault

T0 = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
    "status": {"replicas": 3},
}
TARGET = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


@pytest.fixture
def api():
    with FakeKubeServer() as server:
        server.state.put("deployments", "prod", DEPLOYMENT)
        sleeps: list[float] = []
        kube = KubeClient(
            server.api_client(), RetryPolicy(attempts=4), sleep=sleeps.append, rng=random.Random(0)
        )
        yield server, kube, sleeps


def test_scale_subresource_read_and_patch(api) -> None:
    server, kube, _ = api
    assert kube.get_scale("prod", TARGET).spec_replicas == 3
    scaled = kube.set_scale("prod", TARGET, 7)
    assert scaled.spec_replicas == 7 and scaled.selector == "app=web"
    assert server.state.get("deployments", "prod", "web")["spec"]["replicas"] == 7
    (patch,) = server.state.calls("PATCH")
    assert patch.path == "/apis/apps/v1/namespaces/prod/deployments/web/scale"
    assert patch.body == {"spec": {"replicas": 7}}


def test_passing_failures_are_retried_with_backoff(api) -> None:
    server, kube, sleeps = api
    server.state.faults.append(Fault("PATCH", "/scale", 503, times=2))
    server.state.faults.append(Fault("GET", "/scale", 429, times=1, retry_after=7))
    assert kube.set_scale("prod", TARGET, 5).spec_replicas == 5
    assert kube.get_scale("prod", TARGET).spec_replicas == 5
    assert len(server.state.calls("PATCH")) == 3 and len(sleeps) == 3
    assert sleeps[-1] == 7  # the server's Retry-After wins over a shorter backoff


def test_a_conflict_on_a_patch_is_retried_on_the_object_as_it_now_is(api) -> None:
    server, kube, _ = api
    server.state.faults.append(Fault("PATCH", "/scale", 409, times=1))
    assert kube.set_scale("prod", TARGET, 6).spec_replicas == 6
    assert [c.status for c in server.state.calls("PATCH")] == [409, 200]


def test_lasting_and_permanent_failures_raise_clear_errors(api) -> None:
    server, kube, sleeps = api
    server.state.faults.append(Fault("PATCH", "/scale", 500, times=10))
    with pytest.raises(KubeError, match="scale Deployment prod/web to 5: 500 InternalError"):
        kube.set_scale("prod", TARGET, 5)
    assert len(server.state.calls("PATCH")) == 4
    with pytest.raises(KubeError) as missing:
        kube.get_scale("prod", {**TARGET, "name": "gone"})
    assert missing.value.not_found and 'deployments "gone" not found' in str(missing.value)


def test_events_are_created_about_the_object(api) -> None:
    server, kube, _ = api
    scaler = {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": "psc", "namespace": "prod", "uid": "u1"},
    }
    kube.emit_event(scaler, "Normal", "ScaledUp", "3 → 7 ahead of the 09:45 peak", T0)
    (event,) = [c.body for c in server.state.calls("POST", "/events")]
    assert event["involvedObject"] == {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "name": "psc",
        "namespace": "prod",
        "uid": "u1",
    }
    assert (event["type"], event["reason"], event["source"]["component"]) == (
        "Normal",
        "ScaledUp",
        "surgecast-controller",
    )


def test_only_one_leader_and_the_old_one_stops_first(api) -> None:
    server, _, _ = api
    settings = LeaderSettings(
        lease_duration=timedelta(seconds=15), renew_deadline=timedelta(seconds=10)
    )
    elapsed = 0.0  # both electors' monotonic clock, stepped with the wall time

    def elector(identity: str) -> LeaderElector:
        kube = KubeClient(server.api_client(), RetryPolicy(attempts=1), sleep=lambda s: None)
        return LeaderElector(
            kube, "surgecast-system", "surgecast-controller", identity, settings, lambda: elapsed
        )

    def at(seconds: float) -> datetime:
        nonlocal elapsed
        elapsed = seconds
        return T0 + timedelta(seconds=seconds)

    a, b = elector("a"), elector("b")
    assert a.tick(at(0)) is True
    assert b.tick(at(1)) is False
    for s in range(2, 30, 2):  # a keeps renewing: b never takes over
        now = at(s)
        assert a.tick(now) is True and b.tick(now) is False
    # a's API access breaks: it stops acting after the renew deadline ...
    server.state.faults.append(Fault("PUT", "/leases/", 503, times=100))
    server.state.faults.append(Fault("GET", "/leases/", 503, times=100))
    last_renewal = 28
    assert a.tick(at(last_renewal + 9)) is True
    assert a.tick(at(last_renewal + 10)) is False
    server.state.faults.clear()
    # ... and b takes over only once the record went unchanged for a lease duration
    assert b.tick(at(last_renewal + 12)) is False
    assert b.tick(at(last_renewal + 27)) is True
    assert a.tick(at(last_renewal + 28)) is False
    lease = server.state.get("leases", "surgecast-system", "surgecast-controller")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


def test_lost_race_on_the_lease_is_a_conflict_not_a_crash(api) -> None:
    server, _, _ = api
    settings = LeaderSettings()
    kube = KubeClient(server.api_client(), RetryPolicy(attempts=1), sleep=lambda s: None)
    a = LeaderElector(kube, "ns", "lease", "a", settings)
    assert a.tick(T0)
    stale = kube.get_lease("ns", "lease")
    assert a.tick(T0 + timedelta(seconds=2))  # renews: stale's resourceVersion is now old
    stale["spec"]["holderIdentity"] = "intruder"
    with pytest.raises(KubeError) as conflict:
        kube.replace_lease("ns", stale)
    assert conflict.value.conflict
    a.release(T0 + timedelta(seconds=3))
    b = LeaderElector(kube, "ns", "lease", "b", settings)
    assert b.tick(T0 + timedelta(seconds=4))  # a released: b need not wait


def test_a_watch_that_goes_silent_times_out_instead_of_hanging() -> None:
    """An API server (or a load balancer in front of it) that stops sending on an open
    watch without closing it: the watch ends with a timeout after its own timeoutSeconds
    plus the request timeout, so the runner lists again; before, it waited forever and
    spec changes were never seen while /healthz said all was well."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    release = threading.Event()

    def silent_server() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            release.wait(60)  # no data, no FIN, no RST

    threading.Thread(target=silent_server, daemon=True).start()
    host = f"http://127.0.0.1:{listener.getsockname()[1]}"
    kube = KubeClient(api_client(host=host), RetryPolicy(attempts=1, timeout=0.5))
    outcome: list[BaseException | None] = []

    def watch() -> None:
        try:
            list(kube.watch_scalers(None, "1", timeout_seconds=1))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects whatever ends it
            outcome.append(exc)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    watcher.join(30)
    release.set()
    listener.close()
    assert outcome, "the watch of a silent server never returned"
    assert isinstance(outcome[0], KubeError)
    assert (outcome[0].status, outcome[0].reason) == (0, "Timeout")
