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
from tests.kubefake import COLLECTION, Call, FakeKubeServer, hpa

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
    state.put("horizontalpodautoscalers", "prod", hpa("web"))
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
    # As the reconciler does: the object and its version come from the watch, never a get.
    (obj,) = use("list_scalers", "prod")[0]
    version = obj["metadata"]["resourceVersion"]
    obj = use("set_scaler_finalizers", "prod", "psc", ["surgecast.dev/hpa-floor"], version)
    use("patch_scaler_status", "prod", "psc", {"observedGeneration": 1})
    for kind in ("Deployment", "StatefulSet", "ReplicaSet"):
        target = {"apiVersion": "apps/v1", "kind": kind, "name": "web"}
        use("get_scale", "prod", target)
        use("set_scale", "prod", target, 3)
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    use("find_hpa", "prod", deployment, "web")
    use("find_hpa", "prod", deployment)
    use("set_hpa_min_replicas", "prod", "web", 4, {"surgecast.dev/min-replicas-before": "1"})
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


# -- the CRD schema against the spec reader --------------------------------------------------

CEL_SUBSET = re.compile(r"^[\w\s.'|&!=<>()\[\]-]+$")


def cel(rule: str, value: Any) -> bool:
    """Evaluate one of the CRD's CEL rules the way the API server would, for the small subset
    of CEL they use (``has``, ``matches``, comparisons, ``||``, ``&&``). Date-time fields are
    CEL timestamps, as in Kubernetes, so they compare as instants, not as strings."""
    assert CEL_SUBSET.match(rule), f"CEL beyond what this test evaluates: {rule}"
    python = re.sub(r"!has\(self\.(\w+)\)", r"('\1' not in self)", rule)
    python = re.sub(r"self\.matches\(('[^']*')\)", r"bool(re.search(\1, self))", python)
    python = re.sub(r"self\.(\w+)", r"self['\1']", python)
    python = python.replace("||", " or ").replace("&&", " and ")
    return bool(eval(python, {"re": re}, {"self": value}))  # noqa: S307 - our own CRD's rules


def as_cel(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with its date-time fields as datetimes (CEL timestamps)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: as_cel(props.get(k, {}), v) for k, v in value.items()}
    if schema.get("format") == "date-time" and isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def validate_with_cel(obj: dict[str, Any]) -> list[str]:
    """The CRD's OpenAPI schema and its CEL rules (what jsonschema alone cannot evaluate)."""
    import jsonschema

    from tests.test_deploy_manifests import crd_schema

    def rules(validator: Any, found: Any, instance: Any, schema: dict[str, Any]) -> Any:
        for entry in found:
            if not cel(entry["rule"], as_cel(schema, instance)):
                yield jsonschema.ValidationError(entry.get("message", entry["rule"]))

    validator_class = jsonschema.validators.extend(
        jsonschema.Draft4Validator, {"x-kubernetes-validations": rules}
    )
    validator = validator_class(crd_schema(), format_checker=jsonschema.FormatChecker())
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    )


def reader_problems(obj: dict[str, Any]) -> list[str]:
    from controller.spec import SpecError, parse_scaler

    obj = {**obj, "metadata": {**obj["metadata"], "uid": "u1", "generation": 1}}
    try:
        parse_scaler(obj)
    except SpecError as exc:
        return exc.problems
    return []


def edited(change: Any) -> dict[str, Any]:
    import copy

    from tests.test_deploy_manifests import example_scaler

    scaler = copy.deepcopy(example_scaler())
    change(scaler)
    return scaler


REFUSED_BY_THE_READER = [
    # A spec that the API server admits but the controller then refuses is only found out
    # from a status condition; kubectl apply should say so at once.
    ("step 0s", lambda s: s["spec"]["metric"].update(step="0s")),
    ("step units out of order", lambda s: s["spec"]["metric"].update(step="30s1m")),
    ("step unit twice", lambda s: s["spec"]["metric"].update(step="1m1m")),
    ("step empty", lambda s: s["spec"]["metric"].update(step="")),
    ("syncPeriod 0s", lambda s: s["spec"]["behavior"].update(syncPeriod="0s")),
    ("syncPeriod 30s1m", lambda s: s["spec"]["behavior"].update(syncPeriod="30s1m")),
    ("stabilization empty", lambda s: s["spec"]["behavior"].update(scaleDownStabilization="")),
    ("startupDelay 0s", lambda s: s["spec"].update(startupDelay="0s")),
    ("startupDelay 30s2m", lambda s: s["spec"].update(startupDelay="30s2m")),
    ("horizon 0h", lambda s: s["spec"].update(horizon="0h")),
    ("historyWindow 0d", lambda s: s["spec"]["retrain"].update(historyWindow="0d")),
    ("maxForecastAge 2h1d", lambda s: s["spec"]["retrain"].update(maxForecastAge="2h1d")),
    ("query of spaces", lambda s: s["spec"]["metric"].update(query="   ")),
    ("cron of four fields", lambda s: s["spec"]["retrain"].update(schedule="0 3 * *")),
    ("cron alias", lambda s: s["spec"]["retrain"].update(schedule="@daily")),
    (
        "override ends before it starts",
        lambda s: s["spec"]["overrides"][0].update(end="2026-11-30T00:00:00+08:00"),
    ),
    (
        "override ends as it starts, in another offset",
        lambda s: s["spec"]["overrides"][0].update(end="2026-11-30T16:00:00Z"),
    ),
    ("override min above its max", lambda s: s["spec"]["overrides"][0].update(maxReplicas=5)),
    (
        "event ends as it starts",
        lambda s: s["spec"]["events"][0].update(end=s["spec"]["events"][0]["start"]),
    ),
    ("min above max", lambda s: s["spec"].update(minReplicas=41)),
    ("kind with a space", lambda s: s["spec"]["scaleTargetRef"].update(kind="Deployment ")),
    ("apiVersion ending in /", lambda s: s["spec"]["scaleTargetRef"].update(apiVersion="apps/v1/")),
    ("apiVersion of a group only", lambda s: s["spec"]["scaleTargetRef"].update(apiVersion="apps")),
    ("apiVersion in capitals", lambda s: s["spec"]["scaleTargetRef"].update(apiVersion="Apps/V1")),
]


@pytest.mark.parametrize(
    "change", [c for _, c in REFUSED_BY_THE_READER], ids=[n for n, _ in REFUSED_BY_THE_READER]
)
def test_what_the_spec_reader_refuses_the_crd_refuses_too(change) -> None:
    scaler = edited(change)
    assert reader_problems(scaler) != []
    assert validate_with_cel(scaler) != []


ACCEPTED_BY_BOTH = [
    ("the example", lambda s: None),
    ("step 1h30m", lambda s: s["spec"]["metric"].update(step="1h30m")),
    (  # 28d of 500 ms steps is more points than a scaler may fit (spec.MAX_HISTORY_POINTS)
        "step 500ms",
        lambda s: (
            s["spec"]["metric"].update(step="500ms"),
            s["spec"]["retrain"].update(historyWindow="3d"),
        ),
    ),
    ("step 90s", lambda s: s["spec"]["metric"].update(step="90s")),
    ("startupDelay auto", lambda s: s["spec"].update(startupDelay="auto")),
    (
        "a Rollout",
        lambda s: s["spec"]["scaleTargetRef"].update(
            apiVersion="argoproj.io/v1alpha1", kind="Rollout"
        ),
    ),
    (
        "the core group",
        lambda s: s["spec"]["scaleTargetRef"].update(apiVersion="v1", kind="ReplicationController"),
    ),
    ("startupDelay 0m45s", lambda s: s["spec"].update(startupDelay="0m45s")),
    ("syncPeriod 1m30s", lambda s: s["spec"]["behavior"].update(syncPeriod="1m30s")),
    # The HPA's own "scale down at once".
    ("stabilization 0s", lambda s: s["spec"]["behavior"].update(scaleDownStabilization="0s")),
    ("horizon 1d12h", lambda s: s["spec"].update(horizon="1d12h")),
    ("cron on weekdays", lambda s: s["spec"]["retrain"].update(schedule="*/30 2-4 * * mon-fri")),
    ("one-letter Prometheus host", lambda s: s["spec"]["metric"].update(prometheusUrl="http://p")),
    (
        "override with only a max",
        lambda s: s["spec"]["overrides"][0].update(minReplicas=None, maxReplicas=3),
    ),
    (
        "override ending later the same instant's day, another offset",
        lambda s: s["spec"]["overrides"][0].update(end="2026-11-30T16:00:01Z"),
    ),
]


@pytest.mark.parametrize(
    "change", [c for _, c in ACCEPTED_BY_BOTH], ids=[n for n, _ in ACCEPTED_BY_BOTH]
)
def test_what_the_spec_reader_accepts_the_crd_admits(change) -> None:
    scaler = edited(change)
    for override in scaler["spec"].get("overrides", []):
        for key in [k for k, v in override.items() if v is None]:
            del override[key]
    assert reader_problems(scaler) == []
    assert validate_with_cel(scaler) == []


# -- the image --------------------------------------------------------------------------------


def dockerfile_runs() -> list[str]:
    """The RUN commands of deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return [line[4:] for line in text.splitlines() if line.startswith("RUN ")]


def runtime_closure() -> set[str]:
    """The distributions ``pip install .`` brings in: the project's dependencies, theirs,
    and so on (as the installed metadata declares them)."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        key = (norm(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.distribution(req.name).requires or []:
            sub = Requirement(line)
            extras = {"", *req.extras}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return {name for name, _ in seen}


def test_the_image_installs_the_runtime_dependencies_pinned_and_no_dev_tools() -> None:
    pip = [run for run in dockerfile_runs() if "pip install" in run]
    # -r would install every line of the lock: pytest, mypy, selenium, debugpy, jupyter...
    assert not any(re.search(r"(-r|--requirement)[ =]requirements\.lock", run) for run in pip)
    assert any(re.search(r"(-c|--constraint)[ =]requirements\.lock\b.*\s\.$", run) for run in pip)
    lock = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (DEPLOY.parent / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    assert runtime_closure() <= lock  # so every package in the image is at a locked version


def test_the_image_runs_as_the_user_the_pod_asks_for() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+):(\d+)$", text, re.MULTILINE)
    (deployment,) = [d for d in manifests("controller.yaml") if d["kind"] == "Deployment"]
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    assert (int(user[0]), int(user[1])) == (context["runAsUser"], context["runAsGroup"])
    container, _ = controller_manifests()
    exposed = set(re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE)[0].split())
    assert {str(p["containerPort"]) for p in container["ports"]} <= exposed


def test_the_two_replicas_do_not_share_a_node_or_a_disruption() -> None:
    # A standby on the leader's node goes down with it; a drain evicting both at once leaves
    # nothing to scale. Spread them over nodes, and let a drain take one at a time.
    docs = manifests("controller.yaml")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert any(
        c["topologyKey"] == "kubernetes.io/hostname"
        and c["labelSelector"]["matchLabels"].items() <= labels.items()
        for c in spread
    )
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert budget["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"].get("maxUnavailable") == 1 or budget["spec"].get("minAvailable") == 1
