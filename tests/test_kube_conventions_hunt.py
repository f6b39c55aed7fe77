"""Kubernetes API conventions a platform engineer expects of the controller's API calls:
scale targets found by API discovery, Lease times in the API's MicroTime format, Events
the API server accepts. Each test drives the real client against ``tests/kubefake.py``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.kube import KubeClient, KubeError, RetryPolicy
from controller.leader import LeaderElector
from controller.spec import SpecError, parse_scaler
from tests.kubefake import FakeKubeServer, Fault

T0 = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)


@pytest.fixture()
def server():
    with FakeKubeServer() as running:
        yield running


def kube_client(server: FakeKubeServer) -> KubeClient:
    return KubeClient(server.api_client(), sleep=lambda _: None)


def workload(api_version: str, kind: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": replicas},
    }


def paths(server: FakeKubeServer) -> list[str]:
    return [c.path for c in server.state.journal]


# -- scale targets by API discovery -----------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural"),
    [("Policy", "policies"), ("Proxy", "proxies"), ("Cactus", "cacti"), ("Pool", "workerpools")],
)
def test_a_custom_target_is_scaled_under_the_plural_its_crd_chose(server, kind, plural) -> None:
    # kind + "s" made policys, proxys, cactuss and pools: paths that do not exist (404,
    # TargetNotFound for a workload that is there)
    server.state.serve("example.com/v1", plural, kind)
    server.state.put(plural, "prod", workload("example.com/v1", kind))
    kube = kube_client(server)
    target = {"apiVersion": "example.com/v1", "kind": kind, "name": "web"}
    scale = kube.get_scale("prod", target)
    assert (scale.spec_replicas, scale.selector) == (2, "app=web")
    assert kube.set_scale("prod", target, 5).spec_replicas == 5
    assert server.state.get(plural, "prod", "web")["spec"]["replicas"] == 5
    scale_path = f"/apis/example.com/v1/namespaces/prod/{plural}/web/scale"
    # discovery once; the second call uses what it learnt
    assert paths(server) == ["/apis/example.com/v1", scale_path, scale_path]


def test_a_crd_installed_after_a_failed_lookup_is_found_without_a_restart(server) -> None:
    kube = kube_client(server)
    target = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "web"}
    with pytest.raises(KubeError) as missing:
        kube.get_scale("prod", target)
    assert missing.value.not_found
    assert "does not serve argoproj.io/v1alpha1" in str(missing.value)
    assert "CustomResourceDefinition of Rollout installed" in str(missing.value)

    server.state.serve("argoproj.io/v1alpha1", "rollouts", "Rollout")
    server.state.put("rollouts", "prod", workload("argoproj.io/v1alpha1", "Rollout", 3))
    assert kube.get_scale("prod", target).spec_replicas == 3


def test_a_scale_subresource_added_to_a_crd_later_is_found(server) -> None:
    server.state.serve("example.com/v1", "widgets", "Widget", scale=False)
    server.state.put("widgets", "prod", workload("example.com/v1", "Widget"))
    kube = kube_client(server)
    target = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "web"}
    with pytest.raises(KubeError) as refused:
        kube.get_scale("prod", target)
    assert refused.value.not_found
    assert "Widget (widgets in example.com/v1) has no scale subresource" in str(refused.value)
    assert not server.state.calls(contains="/scale")  # never sent to a path that is not there

    server.state.serve("example.com/v1", "widgets", "Widget", scale=True)
    assert kube.get_scale("prod", target).spec_replicas == 2


def test_a_kind_of_the_apps_group_without_a_scale_subresource_is_named_so(server) -> None:
    kube = kube_client(server)
    with pytest.raises(KubeError, match=r"DaemonSet \(daemonsets in apps/v1\) has no scale"):
        kube.get_scale("prod", {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web"})


def test_a_cluster_scoped_kind_is_no_scale_target(server) -> None:
    server.state.serve("example.com/v1", "fleets", "Fleet", namespaced=False)
    kube = kube_client(server)
    with pytest.raises(KubeError, match="is cluster-scoped"):
        kube.get_scale("prod", {"apiVersion": "example.com/v1", "kind": "Fleet", "name": "web"})


def test_apiversion_v1_is_the_core_group(server) -> None:
    # "v1" went to /apis//v1/..., a 404 for a Deployment that exists; a ReplicationController
    # (the core group's one kind with a scale subresource) could not be scaled at all
    server.state.put("replicationcontrollers", "prod", workload("v1", "ReplicationController"))
    kube = kube_client(server)
    target = {"apiVersion": "v1", "kind": "ReplicationController", "name": "web"}
    assert kube.get_scale("prod", target).spec_replicas == 2
    kube.set_scale("prod", target, 4)
    assert server.state.get("replicationcontrollers", "prod", "web")["spec"]["replicas"] == 4
    assert server.state.calls("PATCH") and all(
        c.path == "/api/v1/namespaces/prod/replicationcontrollers/web/scale"
        for c in server.state.calls("PATCH")
    )
    with pytest.raises(KubeError) as wrong:
        kube.get_scale("prod", {"apiVersion": "v1", "kind": "Deployment", "name": "web"})
    assert wrong.value.not_found
    assert "v1 serves no kind Deployment to scale" in str(wrong.value)
    assert "ReplicationController" in str(wrong.value)


# -- Leases -----------------------------------------------------------------------------------


def test_a_lease_stamped_on_a_whole_second_is_written_and_renewed(server) -> None:
    # The client wrote 09:41:00.000000 as 09:41:00+00:00, which the API server does not read
    # as a MicroTime (400): acquired on a whole second, a leader could not renew.
    clock = iter(range(100))
    elector = LeaderElector(
        kube_client(server), "ns", "lease", "a", monotonic=lambda: float(next(clock))
    )
    assert elector.tick(T0)
    assert elector.tick(T0 + timedelta(seconds=2))
    assert elector.error is None
    spec = server.state.get("leases", "ns", "lease")["spec"]
    assert spec["acquireTime"] == "2026-11-20T09:41:00.000000+00:00"
    assert spec["renewTime"] == "2026-11-20T09:41:02.000000+00:00"
    assert [c.status for c in server.state.journal] == [404, 201, 200, 200]
    elector.release(T0 + timedelta(seconds=3))
    assert server.state.get("leases", "ns", "lease")["spec"].get("holderIdentity") is None


# -- Events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a" * 253, "a" * 235 + "-" + "b" * 17, "web.v2." + "c" * 240])
def test_an_event_about_an_object_with_a_long_name_is_accepted(server, name) -> None:
    # name + ".<time><random>" passed 253 characters for an object named with more than
    # 232: the API server refused the Event (422), so kubectl describe showed nothing
    kube = kube_client(server)
    involved = {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": name, "namespace": "prod", "uid": "u-1"},
    }
    kube.emit_event(involved, "Normal", "Scaled", "2 → 3 replicas", T0)
    kube.emit_event(involved, "Normal", "Scaled", "3 → 4 replicas", T0)
    events = [obj for (plural, _, _), obj in server.state.objects.items() if plural == "events"]
    assert len(events) == 2
    for event in events:
        event_name = event["metadata"]["name"]
        assert len(event_name) <= 253
        assert re.fullmatch(
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", event_name
        )
        assert event["involvedObject"]["name"] == name


# -- scaleTargetRef.apiVersion ----------------------------------------------------------------


def scaler_with_target(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "prod", "name": "web", "uid": "u-1", "generation": 1},
        "spec": {
            "scaleTargetRef": target,
            "maxReplicas": 5,
            "metric": {"prometheusUrl": "http://prom:9090", "query": "sum(rate(x[1m]))"},
            "capacityPerReplica": 50,
        },
    }


@pytest.mark.parametrize(
    "api_version", ["apps", "apps/v1/", "/v1", "Apps/V1", "apps/v1/extra", "v2", "apps/1"]
)
def test_an_apiversion_that_names_no_group_version_is_a_spec_problem(api_version) -> None:
    # "apps/v1/" was read as group "apps/v1" of version "", "apps" as version "apps" of the
    # core group: paths that do not exist, reported as a target not found
    target = {"apiVersion": api_version, "kind": "Deployment", "name": "web"}
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler_with_target(target))
    assert caught.value.problems == [
        f"spec.scaleTargetRef.apiVersion: {api_version!r} is not a group/version such as"
        " apps/v1 or argoproj.io/v1alpha1 (or v1, the core group)"
    ]


@pytest.mark.parametrize(
    "api_version",
    ["apps/v1", "v1", "argoproj.io/v1alpha1", "apps.kruise.io/v1beta1", "x.io/stable"],
)
def test_every_form_of_apiversion_kubernetes_takes_is_read(api_version) -> None:
    target = {"apiVersion": api_version, "kind": "Deployment", "name": "web"}
    assert parse_scaler(scaler_with_target(target)).target["apiVersion"] == api_version
    no_version = parse_scaler(scaler_with_target({"kind": "Deployment", "name": "web"}))
    assert no_version.target == {"kind": "Deployment", "name": "web"}  # apps/v1, the default


def test_discovery_cut_off_or_refused_for_a_while_is_retried(server) -> None:
    # Discovery's body is read raw; read outside the retry loop, a connection dropped
    # mid-answer raised urllib3's ProtocolError out of the reconcile instead of a retry.
    server.state.serve("example.com/v1", "policies", "Policy")
    server.state.put("policies", "prod", workload("example.com/v1", "Policy"))
    server.state.faults += [
        Fault("GET", "/apis/example.com/v1", 200, truncate=True),
        Fault("GET", "/apis/example.com/v1", 503),
    ]
    kube = kube_client(server)
    target = {"apiVersion": "example.com/v1", "kind": "Policy", "name": "web"}
    assert kube.get_scale("prod", target).spec_replicas == 2
    assert [c.status for c in server.state.calls("GET")] == [200, 503, 200, 200]


def test_discovery_cut_off_for_good_is_a_kube_error(server) -> None:
    server.state.faults.append(Fault("GET", "/apis/example.com/v1", 200, truncate=True, times=9))
    kube = KubeClient(server.api_client(), RetryPolicy(attempts=2), sleep=lambda _: None)
    with pytest.raises(KubeError) as caught:
        kube.get_scale("prod", {"apiVersion": "example.com/v1", "kind": "Policy", "name": "web"})
    assert caught.value.reason == "Unreachable"
    assert caught.value.action == "discover example.com/v1"


def test_a_crd_deleted_after_discovery_is_named_as_gone(server) -> None:
    server.state.serve("example.com/v1", "policies", "Policy")
    server.state.put("policies", "prod", workload("example.com/v1", "Policy"))
    kube = kube_client(server)
    target = {"apiVersion": "example.com/v1", "kind": "Policy", "name": "web"}
    assert kube.get_scale("prod", target).spec_replicas == 2

    server.state.delete("policies", "prod", "web")  # a workload deleted: not found, as said
    with pytest.raises(KubeError, match='policies "web" not found'):
        kube.get_scale("prod", target)
    # The CRD deleted (with its objects): the 404 of the scale path said "not found", as if
    # the workload alone were missing; discovery, asked again, says what is gone.
    server.state.put("policies", "prod", workload("example.com/v1", "Policy"))
    assert kube.get_scale("prod", target).spec_replicas == 2
    del server.state.resources["example.com/v1"]
    server.state.delete("policies", "prod", "web")
    with pytest.raises(KubeError, match="does not serve example.com/v1"):
        kube.set_scale("prod", target, 3)


@pytest.mark.parametrize(
    "kind", ["Deployment ", " Rollout", "Stateful Set", "apps/Deployment", "9Lives"]
)
def test_a_kind_no_api_group_could_serve_is_a_spec_problem(kind) -> None:
    # "Deployment " (a space copied along) went to discovery and came back, every reconcile,
    # as "apps/v1 serves no kind Deployment  to scale", the space invisible
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler_with_target({"kind": kind, "name": "web"}))
    assert caught.value.problems == [
        f"spec.scaleTargetRef.kind: {kind!r} is not a kind such as Deployment or Rollout"
    ]


@pytest.mark.parametrize("kind", ["Deployment", "ReplicationController", "Rollout", "X", "Kind-2"])
def test_kinds_as_kubernetes_names_them_are_read(kind) -> None:
    assert parse_scaler(scaler_with_target({"kind": kind, "name": "web"})).target["kind"] == kind
