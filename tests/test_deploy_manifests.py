"""The files in deploy/: valid Kubernetes objects, a structural CRD, least privilege, hardening.

Built-in kinds are checked against the Kubernetes 1.31 OpenAPI schemas that the
kubernetes-validate package ships (offline, like ``kubectl apply --dry-run=client``);
PredictiveScalers are checked against our own CRD schema.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S_VERSION = "1.31"


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((DEPLOY / "crd.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_scaler(obj: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(crd_schema(), format_checker=jsonschema.FormatChecker())
    return sorted(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    )


def example_scaler() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "example-predictivescaler.yaml").read_text())


@pytest.mark.parametrize(
    ("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"]
)
def test_every_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    if doc["kind"] == "PredictiveScaler":
        assert validate_scaler(doc) == []
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for key, child in schema.get("properties", {}).items():
        nodes += _walk(child, f"{path}.{key}")
    if "items" in schema:
        nodes += _walk(schema["items"], f"{path}[]")
    return nodes


def test_crd_schema_is_structural_and_defaults_are_valid() -> None:
    for path, node in _walk(crd_schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        if "default" in node:
            assert not list(jsonschema.Draft4Validator(node).iter_errors(node["default"])), path


def test_printer_columns_point_at_schema_fields() -> None:
    crd = yaml.safe_load((DEPLOY / "crd.yaml").read_text())
    known = {path for path, _ in _walk(crd_schema())} | {".metadata.creationTimestamp"}
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        assert column["jsonPath"] in known, column


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s: s["spec"].update(minReplicas=-1), "spec.minReplicas"),
        (lambda s: s["spec"].update(maxReplicas=0), "spec.maxReplicas"),
        (lambda s: s["spec"].update(mode="Aggressive"), "spec.mode"),
        (lambda s: s["spec"].update(startupDelay="three minutes"), "spec.startupDelay"),
        (lambda s: s["spec"].update(startupDelay="-3m"), "spec.startupDelay"),
        (lambda s: s["spec"].update(capacityPerReplica=0), "spec.capacityPerReplica"),
        (lambda s: s["spec"].update(capacityPerReplica="100"), "spec.capacityPerReplica"),
        (lambda s: s["spec"].update(quantile=1.5), "spec.quantile"),
        (
            lambda s: s["spec"]["metric"].update(prometheusUrl="prometheus:9090"),
            "spec.metric.prometheusUrl",
        ),
        (lambda s: s["spec"]["metric"].update(query=""), "spec.metric.query"),
        (lambda s: s["spec"].pop("metric"), "spec: 'metric' is a required property"),
        (
            lambda s: s["spec"].pop("scaleTargetRef"),
            "spec: 'scaleTargetRef' is a required property",
        ),
        (lambda s: s["spec"]["overrides"][0].update(start="tomorrow"), "spec.overrides.0.start"),
        (
            lambda s: s["spec"]["retrain"].update(historyWindow="forever"),
            "spec.retrain.historyWindow",
        ),
        (lambda s: s["spec"].update(overrides=[{"name": "x"}] * 101), "spec.overrides"),
        (lambda s: s["spec"].update(outlook={"days": 15}), "spec.outlook.days"),
        (lambda s: s["spec"].update(feed={"public": "yes"}), "spec.feed.public"),
    ],
)
def test_invalid_scalers_are_rejected_by_the_schema(change, error: str) -> None:
    scaler = copy.deepcopy(example_scaler())
    change(scaler)
    errors = validate_scaler(scaler)
    assert any(e.startswith(error) for e in errors), errors


def test_min_above_max_is_a_cel_rule() -> None:
    # jsonschema cannot evaluate CEL; the API server does, and the controller checks it too.
    spec = crd_schema()["properties"]["spec"]
    rules = [v["rule"] for v in spec["x-kubernetes-validations"]]
    assert "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas" in rules


def rbac_rules() -> list[dict[str, Any]]:
    return [
        rule
        for _, doc in documents()
        if doc["kind"] in ("ClusterRole", "Role")
        for rule in doc["rules"]
    ]


def test_rbac_has_no_wildcards_and_reads_no_secrets() -> None:
    for rule in rbac_rules():
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "secrets" not in rule["resources"], rule


WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
ALLOWED_WRITES = {
    "predictivescalers",  # its finalizer only: an HPAFloor scaler gives the HPA's floor back
    "predictivescalers/status",
    "deployments/scale",
    "statefulsets/scale",
    "replicasets/scale",
    "horizontalpodautoscalers",  # HPAFloor mode raises minReplicas, and only that
    "events",
    "leases",
}


def test_rbac_writes_only_what_it_must() -> None:
    for rule in rbac_rules():
        if WRITE_VERBS & set(rule["verbs"]):
            assert set(rule["resources"]) <= ALLOWED_WRITES, rule
            assert "delete" not in rule["verbs"] and "deletecollection" not in rule["verbs"], rule
        if "leases" in rule["resources"] and {"update", "get"} & set(rule["verbs"]):
            assert rule.get("resourceNames") == ["surgecast-controller"], rule


def test_controller_pod_is_hardened_and_probed() -> None:
    (deployment,) = [d for _, d in documents() if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_model_names_agree_across_crd_spec_parser_and_registry() -> None:
    from controller.spec import MODELS
    from forecaster.models import registry

    enum = crd_schema()["properties"]["spec"]["properties"]["model"]["properties"]["name"]["enum"]
    assert set(enum) == set(MODELS) == {"auto", *registry(include_slow=True)}


def test_controller_args_are_options_of_surgecast_controller_run() -> None:
    from typer.main import get_command

    from controller.cli import app

    (deployment,) = [d for _, d in documents() if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["controller", "run"]
    run = get_command(app).commands["controller"].commands["run"]
    known = {opt for param in run.params for opt in param.opts}
    assert {arg.split("=")[0] for arg in args[2:]} <= known
