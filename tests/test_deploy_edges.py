"""deploy/ against the code that runs under it: RBAC against every API call the controller
makes, the CRD schema against the spec reader, the Deployment against the CLI.

RBAC is checked as the API server's authorizer would: every request the real ``kubernetes``
client sends to the fake API server (``tests/kubefake.py``) is turned into its request
attributes (verb, API group, resource, subresource, namespace, name) and must be allowed by
``deploy/rbac.yaml``; and every grant there must be used by some request, or it is more
than least privilege.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kube import KubeClient
from controller.leader import LeaderElector
from tests.kubefake import COLLECTION, Call, FakeKubeServer

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
T0 = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)
LEASE_NAMESPACE = "surgecast-system"

VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def attributes(call: Call) -> tuple[str, str, str, str | None, str | None]:
    """(verb, API group, resource[/subresource], namespace, name) of one request."""
    path = call.path.split("?")[0]
    match = COLLECTION.match(path)
    assert match, path
    resource = match["plural"] + (f"/{match['sub']}" if match["sub"] else "")
    if call.method == "WATCH":
        verb = "watch"
    elif call.method == "GET":
        verb = "get" if match["name"] else "list"
    else:
        verb = VERBS[call.method]
    return verb, match["group"] or "", resource, match["ns"], match["name"]


def grants() -> Iterator[tuple[dict[str, Any], str | None]]:
    """Each rule the controller's ServiceAccount is bound to, with the namespace it holds
    in (None: every namespace, through a ClusterRoleBinding)."""
    docs = manifests("rbac.yaml")
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        assert {"kind": "ServiceAccount", "name": "surgecast-controller"}.items() <= (
            binding["subjects"][0].items()
        )
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role_ns = namespace if ref["kind"] == "Role" else None
        for rule in roles[(ref["kind"], role_ns, ref["name"])]["rules"]:
            yield rule, namespace


def allowing(request: tuple[str, str, str, str | None, str | None]) -> list[tuple[str, ...]]:
    """The (group, resource, verb) grants that allow ``request``; empty when it is denied."""
    verb, group, resource, namespace, name = request
    found = []
    for rule, bound_ns in grants():
        if bound_ns is not None and namespace != bound_ns:
            continue
        names = rule.get("resourceNames")
        if names is not None and name not in names:
            continue  # a rule naming objects never allows create, list or watch
        if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
            found.append((group, resource, verb))
    return found


def every_api_call(server: FakeKubeServer) -> set[str]:
    """Make every call of :class:`KubeClient` and :class:`LeaderElector` against ``server``;
    return the names of the KubeClient methods used."""
    state = server.state
    selector = {"matchLabels": {"app": "web"}}
    for plural, kind in (
        ("deployments", "Deployment"),
        ("statefulsets", "StatefulSet"),
        ("replicasets", "ReplicaSet"),
    ):
        state.put(
            plural,
            "prod",
            {
                "apiVersion": "apps/v1",
                "kind": kind,
                "metadata": {"name": "web"},
                "spec": {"replicas": 2, "selector": selector},
                "status": {"replicas": 2},
            },
        )
    state.put(
        "horizontalpodautoscalers",
        "prod",
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
            },
        },
    )
    state.put(
        "pods",
        "prod",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
        },
    )
    scaler = {
        "apiVersion": "surgecast.dev/v1alpha1",
        "kind": "PredictiveScaler",
        "metadata": {"name": "psc"},
        "spec": {},
    }
    state.put("predictivescalers", "prod", scaler)

    kube = KubeClient(server.api_client(), sleep=lambda _: None)
    used = set()

    def use(method: str, *args: Any, **kwargs: Any) -> Any:
        used.add(method)
        return getattr(kube, method)(*args, **kwargs)

    for namespace in (None, "prod"):
        _, version = use("list_scalers", namespace)
        state.update("predictivescalers", "prod", "psc", {"spec": {"mode": "Scale"}})
        for _ in use("watch_scalers", namespace, str(int(version)), timeout_seconds=1):
            break
    obj = use("get_scaler", "prod", "psc")
    use("patch_scaler_status", "prod", "psc", {"observedGeneration": 1})
    for kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        target = {"apiVersion": "apps/v1", "kind": kind, "name": "web"}
        use("get_scale", "prod", target)
        use("set_scale", "prod", target, 3)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    use("find_hpa", "prod", deployment, "web")
    use("find_hpa", "prod", deployment)
    use("set_hpa_min_replicas", "prod", "web", 4)
    use("pod_startup_seconds", "prod", "app=web")
    use("emit_event", obj, "Normal", "Scaled", "scaled", T0)

    # The Lease methods, as the election calls them: create, renew, release.
    for method in ("get_lease", "create_lease", "replace_lease"):
        used.add(method)
    elector = LeaderElector(kube, LEASE_NAMESPACE, "surgecast-controller", "pod-a")
    assert elector.tick(T0) and elector.tick(T0)
    elector.release(T0)
    return used


@pytest.fixture(scope="module")
def requests() -> list[Call]:
    with FakeKubeServer() as server:
        used = every_api_call(server)
        public = {
            name
            for name, member in inspect.getmembers(KubeClient, inspect.isfunction)
            if not name.startswith("_") and name not in ("call", "call_custom")
        }
        assert used == public, "a KubeClient method is not exercised here: add it"
        journal = list(server.state.journal)
    failed = [(c.method, c.path, c.status) for c in journal if c.status >= 400]
    assert failed == [
        (
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}"
            "/leases/surgecast-controller",
            404,
        )
    ]  # no Lease yet: it is created
    return journal


def test_every_api_call_of_the_controller_is_allowed_by_its_rbac(requests) -> None:
    denied = sorted({attributes(call) for call in requests if not allowing(attributes(call))})
    assert denied == [], denied


def test_rbac_grants_nothing_the_controller_does_not_use(requests) -> None:
    used = {grant for call in requests for grant in allowing(attributes(call))}
    granted = {
        (group, resource, verb)
        for rule, _ in grants()
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert sorted(granted - used) == []


def test_the_leader_lease_lives_where_the_controller_looks_for_it() -> None:
    (deployment,) = [d for d in manifests("controller.yaml") if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--lease-namespace={LEASE_NAMESPACE}" in args
    assert not any(re.match(r"--lease-name(=|$)", arg) for arg in args)  # the default name


def controller_manifests() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The controller's container and its Services."""
    docs = manifests("controller.yaml")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container, [d for d in docs if d["kind"] == "Service"]


def option(args: list[str], name: str, default: str | None = None) -> str | None:
    for arg in args:
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return default


def test_the_public_feed_is_served_and_has_a_service_of_its_own() -> None:
    # README: `--feed-port` serves /feeds/NS/NAME on its own port, so that it can be exposed
    # publicly without /metrics and /ui; without it in the manifests there is no feed.
    container, services = controller_manifests()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    feed_port = option(container["args"], "--feed-port")
    assert feed_port is not None, "the Deployment does not start the feed"
    assert ports["feed"] == int(feed_port)
    assert ports["http"] == int(option(container["args"], "--port", "8080") or 0)
    (feed,) = [s for s in services if any(p["targetPort"] == "feed" for p in s["spec"]["ports"])]
    assert [p["targetPort"] for p in feed["spec"]["ports"]] == ["feed"]  # not /metrics, /ui
    # A ServiceMonitor scraping port "http" of the controller's Services must not pick it up.
    assert [p["name"] for p in feed["spec"]["ports"]] != ["http"]
    for service in services:
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, port
