"""Reading PredictiveScaler objects: defaults, every invalid field reported, durations."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.reconciler import _next_fire
from controller.spec import SpecError, cron_trigger, parse_duration, parse_scaler

EXAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "deploy/example-predictivescaler.yaml").read_text()
)


def test_a_zero_stabilisation_window_scales_down_at_once_as_in_the_hpa() -> None:
    spec = copy.deepcopy(EXAMPLE)
    spec["spec"]["behavior"]["scaleDownStabilization"] = "0s"
    assert parse_scaler(spec).scale_down_stabilization == timedelta(0)
    spec["spec"]["behavior"]["scaleDownStabilization"] = "-1m"
    with pytest.raises(SpecError, match="scaleDownStabilization"):
        parse_scaler(spec)


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
            lambda s: s.update(behavior={"syncPeriod": "100ms"}),
            "spec.behavior.syncPeriod: 100ms is shorter than 1s",
        ),
        (
            lambda s: s["overrides"][0].update(end="2026-11-30T00:00:00+08:00"),
            "spec.overrides[0]: end is not after start",
        ),
        (
            lambda s: s["overrides"][0].update(start="2026-12-01T00:00:00"),
            "spec.overrides[0].start: '2026-12-01T00:00:00' is not an RFC 3339 time",
        ),
        (
            lambda s: s["overrides"][0].update(maxReplicas=3),
            "spec.overrides[0]: minReplicas (10) is greater",
        ),
        (lambda s: s.update(events="soon"), "spec.events: 'soon' is not a list"),
        (lambda s: s["model"].update(name="gpt"), "spec.model.name: 'gpt' is not one of"),
        (
            lambda s: s["model"].update(name="auto", params={"tz": "UTC", "max_horizon": 2016}),
            "spec.model.params: max_horizon is for one model; with model.name auto only",
        ),
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
        (
            lambda s: s.update(model={"name": "gradient_boosting", "params": {"country": "cn"}}),
            "spec.model.params.country: country 'cn' has no holiday calendar",
        ),
        (  # a folder of the zone database: zoneinfo raised IsADirectoryError
            lambda s: s.update(feed={"timeZone": "Europe"}),
            "spec.feed.timeZone: 'Europe' is not an IANA time zone",
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


def test_a_duration_of_thousands_of_digits_is_too_long_not_beyond_pythons_reading() -> None:
    """``/ui?since=999…9d`` with 5,000 nines was refused with Python's own limit on reading
    integers, which names ``sys.set_int_max_str_digits``; the text is quoted cut short."""
    with pytest.raises(ValueError, match=r"^'9{40}'\.\.\. is too long a duration \(at most"):
        parse_duration("9" * 5000 + "d")


def _set(scaler: dict, path: str, value: object) -> None:
    """Put ``value`` at a dotted ``path`` (list indices as numbers) of a copied scaler."""
    *parents, last = [int(part) if part.isdigit() else part for part in path.split(".")]
    node = scaler
    for part in parents:
        node = node[part]
    node[last] = value


# Every field parse_scaler reads, given a value of the wrong JSON type: a CRD that is
# older or looser than the controller (or kubectl --validate=false) lets these through.
WRONG_TYPES = [
    ("metadata", "portal", "metadata"),
    ("metadata.name", 5, "metadata.name"),
    ("metadata.namespace", ["default"], "metadata.namespace"),
    ("metadata.uid", 1, "metadata.uid"),
    ("metadata.generation", "2", "metadata.generation"),
    ("spec.scaleTargetRef", "web", "spec.scaleTargetRef"),
    ("spec.scaleTargetRef.apiVersion", 1, "spec.scaleTargetRef.apiVersion"),
    ("spec.scaleTargetRef.kind", 5, "spec.scaleTargetRef.kind"),
    ("spec.scaleTargetRef.name", ["web"], "spec.scaleTargetRef.name"),
    ("spec.minReplicas", "3", "spec.minReplicas"),
    ("spec.maxReplicas", 4.5, "spec.maxReplicas"),
    ("spec.mode", ["Scale"], "spec.mode"),
    ("spec.hpaName", 7, "spec.hpaName"),
    ("spec.metric", "prometheus", "spec.metric"),
    ("spec.metric.prometheusUrl", 9090, "spec.metric.prometheusUrl"),
    ("spec.metric.query", ["sum(x)"], "spec.metric.query"),
    ("spec.metric.step", 60, "spec.metric.step"),
    ("spec.capacityPerReplica", "100", "spec.capacityPerReplica"),
    ("spec.startupDelay", 180, "spec.startupDelay"),
    ("spec.quantile", "high", "spec.quantile"),
    ("spec.horizon", 6, "spec.horizon"),
    ("spec.model", "auto", "spec.model"),
    ("spec.model.name", ["auto"], "spec.model.name"),
    ("spec.model.params", "x", "spec.model.params"),
    ("spec.model.params", {"tz": 8}, "spec.model.params.tz"),
    ("spec.model.minBacktestScore", "high", "spec.model.minBacktestScore"),
    ("spec.retrain", ["0 3 * * *"], "spec.retrain"),
    ("spec.retrain.schedule", 3, "spec.retrain.schedule"),
    ("spec.retrain.historyWindow", 28, "spec.retrain.historyWindow"),
    ("spec.retrain.maxForecastAge", True, "spec.retrain.maxForecastAge"),
    ("spec.behavior", "fast", "spec.behavior"),
    ("spec.behavior.tolerance", "10%", "spec.behavior.tolerance"),
    ("spec.behavior.scaleUpMaxStep", 1.5, "spec.behavior.scaleUpMaxStep"),
    ("spec.behavior.scaleDownMaxStep", "1", "spec.behavior.scaleDownMaxStep"),
    ("spec.behavior.scaleDownStabilization", 300, "spec.behavior.scaleDownStabilization"),
    ("spec.behavior.syncPeriod", 30, "spec.behavior.syncPeriod"),
    ("spec.overrides", {"name": "x"}, "spec.overrides"),
    ("spec.overrides.0", "pension day", "spec.overrides[0]"),
    ("spec.overrides.0.name", 1, "spec.overrides[0].name"),
    ("spec.overrides.0.start", 20261201, "spec.overrides[0].start"),
    ("spec.overrides.0.end", None, "spec.overrides[0].end"),
    ("spec.overrides.0.minReplicas", "3", "spec.overrides[0].minReplicas"),
    ("spec.overrides.0.maxReplicas", "50", "spec.overrides[0].maxReplicas"),
    ("spec.events", "soon", "spec.events"),
    ("spec.events", [["launch"]], "spec.events[0]"),
    ("spec.outlook", True, "spec.outlook"),
    ("spec.outlook.enabled", "yes", "spec.outlook.enabled"),
    ("spec.outlook.days", "7", "spec.outlook.days"),
    ("spec.feed", "public", "spec.feed"),
    ("spec.feed.public", 1, "spec.feed.public"),
    ("spec.feed.showNumbers", "no", "spec.feed.showNumbers"),
    ("spec.feed.timeZone", 8, "spec.feed.timeZone"),
]


def _full_example() -> dict:
    """The example with every optional section present, so each field can be replaced."""
    scaler = copy.deepcopy(EXAMPLE)
    scaler["metadata"].update(uid="0b6f", generation=1)
    scaler["spec"].update(behavior={}, outlook={}, feed={}, hpaName="portal")
    scaler["spec"]["model"]["params"] = {}
    return scaler


@pytest.mark.parametrize(("path", "value", "field"), WRONG_TYPES)
def test_a_field_of_the_wrong_type_is_named(path: str, value: object, field: str) -> None:
    scaler = _full_example()
    _set(scaler, path, value)
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    assert any(p.startswith(f"{field}: ") for p in caught.value.problems), caught.value.problems


def test_the_full_example_is_valid() -> None:
    """The base of the wrong-type table parses, so each case fails for its own field."""
    config = parse_scaler(_full_example())
    assert (config.uid, config.hpa_name) == ("0b6f", "portal")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
"""Any JSON-like value (NaN, infinities and integers beyond a float included)."""


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([path for path, _, _ in WRONG_TYPES]),
    JSON,
    st.dictionaries(st.sampled_from(sorted(_full_example()["spec"])), JSON, max_size=3),
)
def test_any_spec_parses_or_raises_spec_error(path: str, value: object, spec: dict) -> None:
    """Whatever the API server lets through, the reader answers with a config or a
    SpecError, never another exception (which would kill the watch thread)."""
    scaler = _full_example()
    _set(scaler, path, value)
    scaler["spec"].update(spec)
    try:
        parse_scaler(scaler)
    except SpecError:
        pass


MONDAY = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def fire_days(schedule: str, days: int = 14) -> list[str]:
    """The dates (and weekdays) the schedule fires on in the ``days`` after MONDAY noon."""
    trigger, fired, now = cron_trigger(schedule), [], MONDAY
    while (fire := trigger.get_next_fire_time(None, now)) < MONDAY + timedelta(days=days):
        fired.append(f"{fire:%a %d}")
        now = fire + timedelta(seconds=1)
    return fired


@pytest.mark.parametrize(
    ("schedule", "weekdays"),
    [
        # Cron numbers weekdays from Sunday = 0 (and 7); apscheduler 3 from Monday = 0, so
        # "0" fired on Mondays, "1-5" on Tuesday to Saturday, and "7" was refused.
        ("0 3 * * 0", {"Sun"}),
        ("0 3 * * 7", {"Sun"}),
        ("0 3 * * 1", {"Mon"}),
        ("0 3 * * 6", {"Sat"}),
        ("0 3 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 3 * * 5-7", {"Fri", "Sat", "Sun"}),
        ("0 3 * * 0,6", {"Sat", "Sun"}),
        ("0 3 * * 1,3-4,7", {"Sun", "Mon", "Wed", "Thu"}),
        ("0 3 * * */2", {"Sun", "Tue", "Thu", "Sat"}),
        ("0 3 * * 1-5/2", {"Mon", "Wed", "Fri"}),
        ("0 3 * * 2/3", {"Tue", "Fri"}),
        ("0 3 * * sun", {"Sun"}),
        ("0 3 * * MON-fri", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 3 * * fri-sun", {"Fri", "Sat", "Sun"}),
        ("0 3 * * sat,0", {"Sat", "Sun"}),
        ("0 3 * * *", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
        ("0 3 * * ?", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
    ],
)
def test_retrain_schedules_count_weekdays_as_cron_does(schedule: str, weekdays: set[str]) -> None:
    fired = fire_days(schedule)
    assert {day.split()[0] for day in fired} == weekdays, fired
    assert f"{_next_fire(schedule, MONDAY):%a %d %H:%M}" == f"{fired[0]} 03:00"  # the reconciler's


def test_a_day_of_month_and_a_weekday_fire_on_either_as_in_cron() -> None:
    """apscheduler fired only on days matching both (here only Monday the 7th)."""
    assert fire_days("0 3 1,7 * mon") == ["Tue 01", "Mon 07", "Mon 14"]
    assert fire_days("0 3 1,7 * *") == ["Tue 01", "Mon 07"]
    assert fire_days("0 3 ? * mon") == ["Mon 07", "Mon 14"]
    assert f"{_next_fire('0 3 5 * mon', MONDAY):%a %d}" == "Sat 05"


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 3 * * 8", "day of week '8' is not a day"),
        ("0 3 * * 5-1", "day of week '5-1' runs backwards"),
        ("0 3 * * */0", "day of week '*/0' has a step of 0"),
        ("0 3 * * funday", "day of week 'funday' is not a day"),
        ("0 3 * * mon-xyz", "'xyz' is not a day of the week"),
        ("0 3 * *", "Wrong number of fields; got 4"),
        ("0 25 * * *", "higher than the maximum value (23)"),
        # Cron would take them and never run; the reconciler retrained daily instead.
        ("0 3 30 2 *", "it never fires: no day of the year matches it"),
        ("0 3 31 4,6,9,11 *", "it never fires"),
    ],
)
def test_a_schedule_cron_would_refuse_is_refused_with_its_field(
    schedule: str, problem: str
) -> None:
    scaler = copy.deepcopy(EXAMPLE)
    scaler["spec"]["retrain"] = {"schedule": schedule}
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    assert any(
        p.startswith(f"spec.retrain.schedule: {schedule!r} is not a cron expression")
        and problem in p
        for p in caught.value.problems
    ), caught.value.problems


@pytest.mark.parametrize(
    ("step", "window", "refused"),
    [
        ("1m", "400d", None),  # the longest window at the default step stays allowed
        ("5s", "28d", None),
        ("1s", "6d", None),
        ("1s", "28d", "28d of 1s steps (spec.metric.step) is 2,419,200 points, more than"),
        ("1s", "7d", "at most 6d at this step"),
        ("100ms", "1d", "864,000 points, more than 576,000: make the step longer or the window"),
    ],
)
def test_a_history_of_millions_of_steps_is_refused(
    step: str, window: str, refused: str | None
) -> None:
    """28 days at 1 s were 2.4 million points per query and per model job: minutes of
    fitting and hundreds of MB for every retrain, with nothing said."""
    scaler = copy.deepcopy(EXAMPLE)
    scaler["spec"]["metric"]["step"] = step
    scaler["spec"]["retrain"] = {"historyWindow": window}
    if refused is None:
        assert parse_scaler(scaler).history_window == parse_duration(window)
        return
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    assert any(
        p.startswith(f"spec.retrain.historyWindow: {window} of {step} steps") and refused in p
        for p in caught.value.problems
    ), caught.value.problems


@pytest.mark.parametrize(
    ("step", "horizon", "refused"),
    [
        ("1m", "6h", None),
        ("1m", "400d", None),
        ("1m", "9999d", "spec.horizon: 9999d is longer than 400d"),
        (
            "1s",
            "7d",
            "spec.horizon: 7d of 1s steps (spec.metric.step) is 604,800 points, more than"
            " 576,000: make the step longer or the horizon shorter (at most 6d at this step)",
        ),
    ],
)
def test_a_horizon_of_millions_of_steps_is_refused(
    step: str, horizon: str, refused: str | None
) -> None:
    """A typo such as ``9999d`` was accepted: every refit predicted 14 million steps (and
    built an event calendar twice as long), minutes of CPU and gigabytes each time."""
    scaler = copy.deepcopy(EXAMPLE)
    scaler["spec"]["metric"]["step"] = step
    scaler["spec"]["horizon"] = horizon
    scaler["spec"]["retrain"] = {"historyWindow": "1d"}
    if refused is None:
        assert parse_scaler(scaler).horizon == parse_duration(horizon)
        return
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    assert caught.value.problems == [refused]


@pytest.mark.parametrize(
    ("section", "field"),
    [
        (None, "startupDelay"),
        ("metric", "step"),
        ("retrain", "maxForecastAge"),
        ("behavior", "scaleDownStabilization"),
        ("behavior", "syncPeriod"),
    ],
)
def test_a_duration_of_millions_of_days_is_an_invalid_spec(section: str | None, field: str) -> None:
    """999999999d parses (the CRD's pattern bounds no number), and now minus a stabilisation
    window that long, or now plus such a startup delay or sync period, is before year 1 or
    after 9999: an OverflowError in every reconcile rather than ``InvalidSpec``."""
    scaler = copy.deepcopy(EXAMPLE)
    where = scaler["spec"] if section is None else scaler["spec"].setdefault(section, {})
    where[field] = "999999999d"
    with pytest.raises(SpecError) as caught:
        parse_scaler(scaler)
    path = field if section is None else f"{section}.{field}"
    assert f"spec.{path}: 999999999d is longer than 400d" in caught.value.problems
