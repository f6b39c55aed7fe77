"""deploy/grafana/surgecast-dashboard.json imports cleanly and asks only for what exists.

No Grafana JSON schema ships with the installed packages, so the checks are structural
(what Grafana's importer needs: schema version, unique panel ids, grid positions, defined
variables), plus the queries: every metric a PromQL expression names is one the controller
exports (read from a live :class:`ControllerMetrics` registry), every label it filters on is
one that metric has, and each expression parses, with ``promtool`` when it is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from controller.metrics import ControllerMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "surgecast-dashboard.json"
SCRAPE_LABELS = {"job", "instance"}
"""Labels Prometheus adds to every scraped series."""

GRAFANA_VARIABLES = {"__rate_interval": "1m", "__interval": "30s", "__range": "6h"}
"""Grafana's built-in variables used in queries, with a value to substitute for parsing."""

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels, rows, and the panels inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and annotations."""
    exprs = [
        target["expr"]
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


def exported() -> dict[str, set[str]]:
    """Each series name the controller exports, with the labels it carries.

    Names come from the registry as Prometheus would scrape them (counters gain ``_total``,
    histograms ``_bucket``/``_sum``/``_count``). prometheus_client has no public accessor
    for a metric's label names, so those are read from its ``_labelnames``.
    """
    metrics = ControllerMetrics()
    labels = {
        metric._name: set(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for suffix in suffixes.get(family.type, [""]):
            extra = {"le"} if suffix == "_bucket" else set()
            names[family.name + suffix] = labels[family.name] | extra | SCRAPE_LABELS
    return names


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """Each metric an expression selects, with the label names its matchers use."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    # Label lists of aggregations and vector matching are not metric names.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = []
    for match in re.finditer(r"\b([a-zA-Z_:][\w:]*)\b\s*(\{[^}]*\})?(?!\s*\()", text):
        name, matchers = match.group(1), match.group(2) or ""
        before = text[: match.start()]
        inside_range = before.count("[") > before.count("]")
        if name in PROMQL_KEYWORDS or inside_range or before.endswith("$"):
            continue
        found.append((name, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))))
    return found


def test_dashboard_has_what_the_importer_needs(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and dashboard["uid"] and dashboard.get("id") is None
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    taken: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), panel["title"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel.get("description"), panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(target["datasource"] == panel["datasource"] for target in panel["targets"])


def test_queries_name_only_exported_metrics_and_their_labels(dashboard: dict[str, Any]) -> None:
    names = exported()
    used = set()
    for expr in queries(dashboard):
        found = selectors(expr)
        assert found, f"no metric in {expr!r}"
        for name, labels in found:
            assert name in names, f"{expr!r} asks for {name}, which the controller does not export"
            assert labels <= names[name], f"{expr!r}: {name} has no label {labels - names[name]}"
            used.add(name.removesuffix("_bucket").removesuffix("_total"))
    # The panels the dashboard promises: forecast vs actual, desired vs actual replicas,
    # fallback, model age, decisions, errors, latency, leadership.
    assert {
        "surgecast_predicted_load",
        "surgecast_observed_load",
        "surgecast_desired_replicas",
        "surgecast_current_replicas",
        "surgecast_forecast_error_ratio",
        "surgecast_fallback",
        "surgecast_model_age_seconds",
        "surgecast_decisions",
        "surgecast_reconcile_errors",
        "surgecast_reconcile_duration_seconds",
        "surgecast_leader",
    } <= used


def test_selectors_are_found_where_promql_puts_them() -> None:
    """The test's own reader of PromQL, on the shapes the dashboard uses."""
    expr = (
        'sum by (namespace, le) (rate(a_total{namespace=~"$namespace", x="}"}[$__rate_interval]))'
        " / on (name) group_left b * 60 > bool 1"
    )
    assert selectors(expr) == [("a_total", {"namespace", "x"}), ("b", set())]


def test_queries_parse(dashboard: dict[str, Any], tmp_path: Path) -> None:
    exprs = [substitute(expr) for expr in queries(dashboard)]
    for expr in exprs:
        assert balanced(expr), f"unbalanced brackets or quotes in {expr!r}"
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (`make test` installs prometheus): brackets only")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "rules.yaml"
    path.write_text(json.dumps(rules), encoding="utf-8")  # JSON is YAML
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_variables_used_are_defined(dashboard: dict[str, Any]) -> None:
    variables = dashboard["templating"]["list"]
    defined: list[str] = []
    for variable in variables:
        # A variable's own query may only use the variables before it.
        assert used_variables(variable) <= set(defined) | {"datasource"}, variable["name"]
        defined.append(variable["name"])
    assert len(defined) == len(set(defined))
    assert {"datasource", "namespace", "name"} <= set(defined)
    assert next(v for v in variables if v["name"] == "datasource")["query"] == "prometheus"
    rest = {key: value for key, value in dashboard.items() if key != "templating"}
    assert used_variables(rest) <= set(defined)
    assert {"datasource", "namespace", "name"} <= used_variables(rest)


def used_variables(node: Any) -> set[str]:
    """Names of the dashboard variables referenced anywhere in ``node`` (built-ins aside)."""
    if isinstance(node, dict):
        return set().union(*(used_variables(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(used_variables(value) for value in node))
    if not isinstance(node, str):
        return set()
    found = re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", node)
    names = {next(part for part in groups if part) for groups in found}
    return {name for name in names if not name.startswith("__")}


def substitute(expr: str) -> str:
    """``expr`` as Prometheus would receive it: built-ins and variables filled in."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(f"${name}", value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    if '"' in text:
        return False
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return False
    return not stack
