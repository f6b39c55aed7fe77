"""explain(): the exact account of every reason family, and that it never fails."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.decisions import DecisionRecord
from controller.explain import applied_status, explain

AT = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)
SCALE_UP = DecisionRecord(
    at=AT,
    scaler="prod/portal",
    target="Deployment/portal",
    mode="Scale",
    current_replicas=12,
    ready_replicas=12,
    observed_load=1_180.0,
    load_unit="rps",
    window_start=AT,
    window_end=AT + timedelta(minutes=3, seconds=30),
    quantile=0.9,
    forecast_peak=2_950.0,
    predictive=30,
    capacity_per_replica=100.0,
    startup_delay=timedelta(minutes=3),
    reactive_floor=12,
    min_replicas=2,
    max_replicas=200,
    recommendation=30,
    replicas=30,
    hpa_replicas=14,
    reason="ScaleUp/ForecastPeak",
    message="12 → 30; the p90 forecast ...",
    model_version="SeasonalQuantile-7",
    backtest_score=0.93,
    applied=True,
    applied_at=AT + timedelta(seconds=1),
)
FORECAST = (
    "the p90 forecast for 09:41–09:44 peaks at 2,950 rps, each pod serves 100 rps, "
    "pods take 3 min to start"
)
FLOOR = dict(observed_load=3_100.0, reactive_floor=31, recommendation=31, replicas=31)
HOLD_30 = dict(current_replicas=30, replicas=30)

CASES = [
    (
        "forecast scale-up",
        {},
        None,
        f"scaled 12 → 30 at 09:41 because {FORECAST}; HPA alone would have asked for 14.",
    ),
    (
        "local time zone",
        {},
        "Asia/Shanghai",
        "scaled 12 → 30 at 17:41 because the p90 forecast for 17:41–17:44 peaks at 2,950 rps, "
        "each pod serves 100 rps, pods take 3 min to start; HPA alone would have asked for 14.",
    ),
    (
        "forecast scale-down, other quantile, units and delay",
        dict(
            reason="ScaleDown/ForecastPeak",
            current_replicas=1_500,
            forecast_peak=60_950.4,
            predictive=1_220,
            recommendation=1_220,
            replicas=1_220,
            quantile=0.975,
            load_unit="req/min",
            capacity_per_replica=50.0,
            startup_delay=timedelta(seconds=90),
            hpa_replicas=None,
        ),
        None,
        "scaled 1,500 → 1,220 at 09:41 because the p97.5 forecast for 09:41–09:44 peaks at "
        "60,950.4 req/min, each pod serves 50 req/min, pods take 1.5 min to start.",
    ),
    (
        "reactive floor beat the forecast",
        dict(reason="ScaleUp/ReactiveFloor", **FLOOR),
        None,
        "scaled 12 → 31 at 09:41 because the load now, 3,100 rps, needs 31 pods at 100 rps "
        "each, more than the p90 forecast for 09:41–09:44 asks for (peak 2,950 rps); "
        "HPA alone would have asked for 14.",
    ),
    (
        "fallback: stale forecast",
        dict(
            reason="FallbackReactive/ForecastStale",
            fallback="ForecastStale",
            forecast_peak=None,
            predictive=None,
            **FLOOR,
        ),
        None,
        "scaled 12 → 31 at 09:41 because there was no usable forecast (the last one is too "
        "old), so it followed the load now: 3,100 rps needs 31 pods at 100 rps each; "
        "HPA alone would have asked for 14.",
    ),
    (
        "fallback: model score too low",
        dict(
            reason="FallbackReactive/ModelScoreTooLow",
            fallback="ModelScoreTooLow",
            backtest_score=0.412,
            forecast_peak=None,
            predictive=None,
            **FLOOR,
        ),
        None,
        "scaled 12 → 31 at 09:41 because there was no usable forecast (the model's backtest "
        "score is below the threshold: 0.41), so it followed the load now: 3,100 rps needs "
        "31 pods at 100 rps each; HPA alone would have asked for 14.",
    ),
    (
        "fallback without load",
        dict(
            reason="FallbackReactive/ForecastMissing",
            fallback="ForecastMissing",
            forecast_peak=None,
            predictive=None,
            observed_load=None,
            reactive_floor=0,
            recommendation=12,
            replicas=12,
            hpa_replicas=None,
        ),
        None,
        "kept 12 pods at 09:41 because there was no usable forecast (none yet) and no load "
        "was observed to react to.",
    ),
    (
        "override raised the minimum",
        dict(
            min_replicas=40,
            replicas=40,
            clamps=("ScalingLimited/TooFewReplicas", "ScheduledOverride/black-friday"),
            override="black-friday",
        ),
        None,
        f"scaled 12 → 40 at 09:41 because {FORECAST}, so it needs 30; raised to the minimum "
        "of 40; scheduled override black-friday sets the bounds to 40–200; "
        "HPA alone would have asked for 14.",
    ),
    (
        "held by stabilisation",
        dict(
            reason="Hold/ForecastPeak",
            predictive=20,
            recommendation=20,
            forecast_peak=1_950.0,
            clamps=("Hold/Stabilizing",),
            **HOLD_30,
        ),
        None,
        "kept 30 pods at 09:41 because the p90 forecast for 09:41–09:44 peaks at 1,950 rps, "
        "each pod serves 100 rps, pods take 3 min to start, so it needs 20; the scale-down "
        "to 20 waits for the stabilisation window and the forecast ahead; "
        "HPA alone would have asked for 14.",
    ),
    (
        "held within tolerance",
        dict(
            reason="Hold/ForecastPeak",
            predictive=32,
            recommendation=32,
            forecast_peak=3_150.0,
            clamps=("Hold/WithinTolerance",),
            **HOLD_30,
        ),
        None,
        "kept 30 pods at 09:41 because the p90 forecast for 09:41–09:44 peaks at 3,150 rps, "
        "each pod serves 100 rps, pods take 3 min to start, so it needs 32; the change to 32 "
        "is within the tolerance; HPA alone would have asked for 14.",
    ),
    (
        "clamped by the maximum",
        dict(
            predictive=300,
            recommendation=300,
            replicas=200,
            forecast_peak=29_950.0,
            clamps=("ScalingLimited/TooManyReplicas",),
        ),
        None,
        "scaled 12 → 200 at 09:41 because the p90 forecast for 09:41–09:44 peaks at 29,950 "
        "rps, each pod serves 100 rps, pods take 3 min to start, so it needs 300; capped at "
        "the maximum of 200; HPA alone would have asked for 14.",
    ),
    (
        "limited by the step",
        dict(replicas=22, clamps=("ScalingLimited/ScaleUpLimit",)),
        None,
        f"scaled 12 → 22 at 09:41 because {FORECAST}, so it needs 30; limited by the "
        "scale-up step (asked for 30); HPA alone would have asked for 14.",
    ),
    (
        "forecast only",
        dict(mode="ForecastOnly", applied=False, applied_at=None),
        None,
        f"would have scaled 12 → 30 at 09:41 because {FORECAST}; HPA alone would have asked "
        "for 14. Recorded only: the scaler is in ForecastOnly mode.",
    ),
    (
        "recorded, never marked applied",
        dict(applied=False, applied_at=None),
        None,
        f"would have scaled 12 → 30 at 09:41 because {FORECAST}; HPA alone would have asked "
        "for 14. Not marked applied: the change failed or the controller stopped before "
        "making it.",
    ),
    (
        "left to an HPA",
        dict(
            applied=False,
            applied_at=None,
            not_applied="ConflictingHPA: HPA portal also scales Deployment portal",
        ),
        None,
        f"would have scaled 12 → 30 at 09:41 because {FORECAST}; HPA alone would have asked "
        "for 14. Not applied (ConflictingHPA): HPA portal also scales Deployment portal.",
    ),
    (
        "HPA floor",
        dict(mode="HPAFloor"),
        None,
        f"set the HPA's minReplicas to 30 (12 running) at 09:41 because {FORECAST}; "
        "HPA alone would have asked for 14.",
    ),
]


@pytest.mark.parametrize(
    ("changes", "tz", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_explain_tells_the_story(changes: dict, tz: str | None, expected: str) -> None:
    assert explain(replace(SCALE_UP, **changes), tz) == expected


KNOWN_REASONS = [
    "ScaleUp/ForecastPeak",
    "ScaleDown/ForecastPeak",
    "Hold/ForecastPeak",
    "ScaleUp/ReactiveFloor",
    "Hold/ReactiveFloor",
    "FallbackReactive/ForecastMissing",
    "FallbackReactive/ModelScoreTooLow",
]
KNOWN_CLAMPS = [
    "Hold/WithinTolerance",
    "Hold/Stabilizing",
    "ScalingLimited/ScaleUpLimit",
    "ScalingLimited/ScaleDownLimit",
    "ReactiveFloor/LoadNeedsMore",
    "ScalingLimited/TooManyReplicas",
    "ScalingLimited/TooFewReplicas",
    "ScheduledOverride/holiday",
]
times = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC))
counts = st.integers(0, 10**6)
loads = st.none() | st.floats(allow_nan=True, allow_infinity=True)
texts = st.text(max_size=30)
records = st.builds(
    DecisionRecord,
    at=times,
    scaler=texts,
    target=texts,
    mode=st.sampled_from(["Scale", "HPAFloor", "ForecastOnly"]) | texts,
    current_replicas=counts,
    ready_replicas=st.none() | counts,
    observed_load=loads,
    load_unit=st.sampled_from(["rps", "req/min", ""]),
    window_start=times,
    window_end=times,
    quantile=st.floats(allow_nan=True, allow_infinity=True),
    forecast_peak=loads,
    predictive=st.none() | counts,
    capacity_per_replica=st.floats(allow_nan=True, allow_infinity=True),
    startup_delay=st.timedeltas(timedelta(0), timedelta(days=2)),
    reactive_floor=counts,
    min_replicas=counts,
    max_replicas=counts,
    recommendation=counts,
    replicas=counts,
    hpa_replicas=st.none() | counts,
    reason=st.sampled_from(KNOWN_REASONS) | texts,
    message=texts,
    clamps=st.lists(st.sampled_from(KNOWN_CLAMPS) | texts, max_size=4).map(tuple),
    override=st.none() | texts,
    fallback=st.none() | st.sampled_from(["ForecastStale", "ModelScoreTooLow"]) | texts,
    backtest_score=loads,
    applied=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(records, st.sampled_from([None, "UTC", "Asia/Shanghai", "America/New_York"]))
def test_explain_never_fails_and_names_the_count(record: DecisionRecord, tz: str | None) -> None:
    text = explain(record, tz)
    first_clause = text.split(" because ")[0]
    assert f"{record.replicas:,}" in first_clause


@pytest.mark.parametrize(
    ("changes", "shown"),
    [
        ({"applied": True}, "yes"),
        ({"applied": False, "mode": "ForecastOnly"}, "recorded only"),
        ({"applied": False}, "no"),  # the controller stopped between recording and applying
        (
            {"applied": False, "not_applied": "ConflictingHPA: HPA portal also scales it"},
            "no (ConflictingHPA)",
        ),
        ({"applied": False, "not_applied": "ScaleFailed: 500 InternalError"}, "no (ScaleFailed)"),
    ],
)
def test_the_applied_column_names_why_a_decision_was_not_applied(changes: dict, shown: str) -> None:
    """The list and the page said only "no", so a decision an HPA overrode every cycle read
    as one a crash had interrupted until each row's account was opened."""
    assert applied_status(replace(SCALE_UP, **changes)) == shown
