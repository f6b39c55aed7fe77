"""Reading PredictiveScaler objects: defaults, every invalid field reported, durations."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from controller.spec import SpecError, parse_duration, parse_scaler

EXAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "deploy/example-predictivescaler.yaml").read_text()
)


def test_example_parses_with_defaults() -> None:
    config = parse_scaler(EXAMPLE)
    assert config.key == "default/pension-portal"
    assert (config.min_replicas, config.max_replicas, config.mode) == (2, 40, "ForecastOnly")
    assert config.startup_delay == timedelta(minutes=3)
    assert config.quantile == 0.95 and config.capacity_per_replica == 100.0
    assert config.scale_down_stabilization == timedelta(minutes=10)
    assert config.sync_period == timedelta(seconds=30) and config.tolerance == 0.1
    assert config.history_window == timedelta(days=28)
    assert [w.name for w in config.overrides] == ["annual-pension-adjustment"]
    assert config.overrides[0].min_replicas == 10 and config.overrides[
        0
    ].start.utcoffset() == timedelta(hours=8)


def test_minimal_spec_takes_every_default() -> None:
    config = parse_scaler(
        {
            "metadata": {"namespace": "ns", "name": "a", "generation": 3},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web"},
                "maxReplicas": 5,
                "metric": {"prometheusUrl": "http://prom:9090", "query": "sum(rate(x[1m]))"},
                "capacityPerReplica": 50,
            },
        }
    )
    assert (config.min_replicas, config.mode, config.model, config.generation) == (
        1,
        "ForecastOnly",
        "auto",
        3,
    )
    assert config.startup_delay == timedelta(minutes=3) and config.max_forecast_age == timedelta(
        hours=26
    )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda s: s.update(minReplicas=50),
            "spec.minReplicas (50) is greater than spec.maxReplicas (40)",
        ),
        (lambda s: s.update(minReplicas=-1), "spec.minReplicas: -1 is not an integer >= 0"),
        (lambda s: s.update(maxReplicas="many"), "spec.maxReplicas: 'many' is not an integer >= 1"),
        (lambda s: s.pop("maxReplicas"), "spec.maxReplicas: required"),
        (lambda s: s.update(mode="Turbo"), "spec.mode: 'Turbo' is not one of"),
        (lambda s: s.update(startupDelay="-3m"), "spec.startupDelay: '-3m' is not a duration"),
        (lambda s: s.update(startupDelay="0s"), "spec.startupDelay: must be positive"),
        # CRD-valid (^([0-9]+(m|h|d))+$), yet beyond what a timedelta holds
        (lambda s: s.update(horizon="3000000000d"), "spec.horizon: '3000000000d' is too long"),
        (
            lambda s: s.update(capacityPerReplica=0),
            "spec.capacityPerReplica: 0 is not a number > 0",
        ),
        (lambda s: s.update(quantile=0.2), "spec.quantile: 0.2 is not a number >= 0.5"),
        (lambda s: s["metric"].update(prometheusUrl="ftp://x"), "spec.metric.prometheusUrl"),
        (lambda s: s["metric"].update(query="  "), "spec.metric.query: empty"),
        (lambda s: s.pop("scaleTargetRef"), "spec.scaleTargetRef: needs kind and name"),
        (
            lambda s: s["retrain"].update(historyWindow="1000d"),
            "spec.retrain.historyWindow: 1000d is longer than 400d",
        ),
        (lambda s: s.update(behavior={"tolerance": 3}), "spec.behavior.tolerance"),
        (lambda s: s.update(behavior={"syncPeriod": "soon"}), "spec.behavior.syncPeriod"),
        (
            lambda s: s["overrides"][0].update(end="2026-11-30T00:00:00+08:00"),
            "spec.overrides[0]: end is not after start",
        ),
        (
            lambda s: s["overrides"][0].update(start="2026-12-01T00:00:00"),
            "spec.overrides[0]: needs start and end",
        ),
        (
            lambda s: s["overrides"][0].update(maxReplicas=3),
            "spec.overrides[0]: minReplicas (10) is greater",
        ),
        (lambda s: s.update(events="soon"), "spec.events: not a list"),
        (lambda s: s["model"].update(name="gpt"), "spec.model.name: 'gpt' is not one of"),
        (
            lambda s: s.update(retrain={"schedule": "daily at 3"}),
            "spec.retrain.schedule: 'daily at 3' is not a cron expression",
        ),
        (lambda s: s.update(outlook={"days": 30}), "spec.outlook.days: 30 is more than 14"),
        (lambda s: s.update(outlook={"enabled": "yes"}), "spec.outlook.enabled: 'yes' is not"),
        (lambda s: s.update(feed={"public": 1}), "spec.feed.public: 1 is not true or false"),
        (
            lambda s: s.update(feed={"timeZone": "Mars/Olympus"}),
            "spec.feed.timeZone: 'Mars/Olympus' is not an IANA time zone",
        ),
    ],
)
def test_each_invalid_field_is_named(change, problem: str) -> None:
    scaler = copy.deepcopy(EXAMPLE)
    change(scaler["spec"])
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_outlook_is_on_and_the_feed_private_unless_asked_for() -> None:
    config = parse_scaler(EXAMPLE)
    assert (config.outlook.enabled, config.outlook.days) == (True, 7)
    assert (config.feed.public, config.feed.show_numbers) == (False, False)
    scaler = copy.deepcopy(EXAMPLE)
    scaler["spec"]["model"]["params"] = {"tz": "Asia/Shanghai"}
    assert parse_scaler(scaler).feed.time_zone == "Asia/Shanghai"  # the model's zone
    scaler["spec"]["feed"] = {"public": True, "showNumbers": True, "timeZone": "Asia/Urumqi"}
    feed = parse_scaler(scaler).feed
    assert (feed.public, feed.show_numbers, feed.time_zone) == (True, True, "Asia/Urumqi")


def test_all_problems_are_reported_together() -> None:
    scaler = copy.deepcopy(EXAMPLE)
    scaler["spec"].update(minReplicas=99, quantile=2, mode="x")
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    assert len(caught.value.problems) == 3


def test_missing_spec() -> None:
    with pytest.raises(SpecError, match="spec: missing"):
        parse_scaler({"metadata": {"name": "x"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("3m", timedelta(minutes=3)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("28d", timedelta(days=28)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "3", "m", "3 m", "-3m", "3min", "1.5h", "3m3h"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["3000000000d", "999999999d24h", "99999999999999999999s"])
def test_parse_duration_rejects_what_a_timedelta_cannot_hold(text: str) -> None:
    with pytest.raises(ValueError, match=f"'{text}' is too long a duration"):
        parse_duration(text)
