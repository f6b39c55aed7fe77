"""The replica decision: hand-computed cases, then invariants over random inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy import (
    Forecast,
    Override,
    PolicySpec,
    Recommendation,
    decide,
    needed_replicas,
    nowcast,
)

NOW = datetime(2026, 11, 20, 9, 41)
SPEC = PolicySpec(
    min_replicas=2,
    max_replicas=50,
    capacity_per_replica=100.0,
    startup_delay=timedelta(minutes=3),
    sync_period=timedelta(seconds=30),
    quantile=0.9,
    scale_down_stabilization=timedelta(minutes=5),
)


def forecast(
    values, start=NOW - timedelta(minutes=5), made_at=NOW - timedelta(hours=1), score=None
) -> Forecast:
    """A per-minute forecast whose upper quantile is ``values`` from ``start``."""
    times = np.array([np.datetime64(start) + np.timedelta64(i, "m") for i in range(len(values))])
    return Forecast(
        made_at=made_at,
        times=times,
        upper=np.asarray(values, dtype=float),
        quantile=0.9,
        backtest_score=score,
    )


def flat(value: float, minutes: int = 60) -> Forecast:
    return forecast([value] * minutes)


def test_scales_up_for_a_peak_inside_the_lead_window() -> None:
    values = [1000.0] * 60
    values[5 + 3] = 2950.0  # 09:44, inside [09:41, 09:44:30]
    d = decide(SPEC, NOW, current_replicas=12, observed_load=1200.0, forecast=forecast(values))
    assert (d.replicas, d.reason, d.predictive, d.reactive_floor) == (
        30,
        "ScaleUp/ForecastPeak",
        30,
        12,
    )
    assert d.forecast_peak == 2950.0
    assert d.message.startswith("12 → 30; the p90 forecast for 09:41–09:44 peaks at 2,950.0")


def test_a_peak_after_the_lead_window_does_not_count_yet() -> None:
    values = [1000.0] * 60
    values[5 + 10] = 5000.0  # 09:51, after the lead window
    d = decide(SPEC, NOW, current_replicas=10, observed_load=900.0, forecast=forecast(values))
    assert d.replicas == 10 and d.reason == "Hold/ForecastPeak"


def test_the_interval_starting_at_the_end_of_the_lead_window_is_the_next_syncs() -> None:
    # one-minute syncs, 3 min startup: the window is [09:41, 09:45); pods asked at 09:42
    # are ready at 09:45, so the 09:45 interval is the next decision's to cover
    spec = replace(SPEC, sync_period=timedelta(minutes=1), scale_down_stabilization=timedelta(0))
    values = [1000.0] * 60
    values[5 + 4] = 5000.0  # 09:45
    d = decide(spec, NOW, current_replicas=10, observed_load=900.0, forecast=forecast(values))
    assert (d.predictive, d.replicas) == (10, 10)
    values[5 + 3] = 3000.0  # 09:44: inside
    d = decide(spec, NOW, current_replicas=10, observed_load=900.0, forecast=forecast(values))
    assert (d.predictive, d.replicas) == (30, 30)


@given(
    st.integers(1, 5),
    st.integers(1, 4),
    st.lists(st.floats(0, 10_000), min_size=40, max_size=40),
)
def test_the_lead_window_covers_exactly_delay_plus_sync(delay, sync, values) -> None:
    """On a one-minute forecast with whole-minute timing, the predictive need is the peak
    of exactly ``delay + sync`` intervals from now: the capacity model's own window."""
    spec = replace(
        SPEC, startup_delay=timedelta(minutes=delay), sync_period=timedelta(minutes=sync)
    )
    d = decide(spec, NOW, current_replicas=10, observed_load=0.0, forecast=forecast(values))
    window = values[5 : 5 + delay + sync]
    assert d.predictive == needed_replicas(max(window), spec.capacity_per_replica)


def test_reactive_floor_beats_a_low_forecast() -> None:
    d = decide(SPEC, NOW, current_replicas=10, observed_load=2501.0, forecast=flat(500.0))
    assert (d.replicas, d.reason) == (26, "ScaleUp/ReactiveFloor")


@pytest.mark.parametrize(
    ("fc", "reason"),
    [
        (None, "FallbackReactive/ForecastMissing"),
        (
            forecast([100.0] * 60, made_at=NOW - timedelta(hours=30)),
            "FallbackReactive/ForecastStale",
        ),
        (forecast([100.0] * 60, score=0.2), "FallbackReactive/ModelScoreTooLow"),
        (flat(100.0, minutes=6), "FallbackReactive/ForecastDoesNotCoverWindow"),
        (forecast([100.0] * 5 + [np.nan] * 55), "FallbackReactive/ForecastInvalid"),
        (forecast([100.0] * 5 + [-1.0] * 55), "FallbackReactive/ForecastInvalid"),
    ],
)
def test_unusable_forecasts_fall_back_to_the_load(fc, reason: str) -> None:
    spec = PolicySpec(**{**SPEC.__dict__, "min_backtest_score": 0.5})
    d = decide(spec, NOW, current_replicas=10, observed_load=1750.0, forecast=fc)
    assert (d.replicas, d.reason, d.predictive) == (18, reason, None)
    assert "no usable forecast" in d.message


def test_no_load_and_no_forecast_changes_nothing() -> None:
    d = decide(SPEC, NOW, current_replicas=7, observed_load=None, forecast=None)
    assert (d.replicas, d.reason) == (7, "FallbackReactive/ForecastMissing")
    d = decide(SPEC, NOW, current_replicas=7, observed_load=float("nan"), forecast=None)
    assert d.replicas == 7


def test_unknown_load_holds_a_scale_down_the_forecast_asks_for() -> None:
    low = flat(300.0)  # 3 replicas would do by the forecast alone
    for load in (None, float("nan"), float("inf"), -50.0):  # -50: a broken query, not a rate
        d = decide(SPEC, NOW, current_replicas=12, observed_load=load, forecast=low)
        assert (d.replicas, d.recommendation, d.reason) == (12, 3, "Hold/ForecastPeak")
        assert d.clamps == ("Hold/LoadUnknown",)
        assert "the load now is unknown" in d.message
        assert "needs" not in d.message and d.reactive_floor == 0
        if load is not None:
            assert f"the load reading ({load:g}) is not a usable request rate" in d.message
    up = decide(SPEC, NOW, current_replicas=12, observed_load=None, forecast=flat(2950.0))
    assert up.replicas == 30  # scaling up on the forecast alone is still allowed


def test_within_tolerance_holds() -> None:
    d = decide(SPEC, NOW, current_replicas=20, observed_load=1500.0, forecast=flat(2050.0))
    assert (d.recommendation, d.replicas) == (21, 20) and "Hold/WithinTolerance" in d.clamps


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    history = [
        Recommendation(NOW - timedelta(minutes=4), 20),
        Recommendation(NOW - timedelta(minutes=6), 40),
    ]
    d = decide(
        SPEC, NOW, current_replicas=30, observed_load=500.0, forecast=flat(500.0), history=history
    )
    assert d.replicas == 20 and "Hold/Stabilizing" in d.clamps  # 40 is older than 5 minutes
    d = decide(SPEC, NOW, current_replicas=30, observed_load=500.0, forecast=flat(500.0))
    assert d.replicas == 20  # only the step limit (10) holds it back
    assert "ScalingLimited/ScaleDownLimit" in d.clamps


def test_scale_down_only_when_the_forecast_ahead_allows() -> None:
    values = [500.0] * 60
    values[5 + 4] = 1800.0  # 09:45: after the lead window, inside the stabilisation window ahead
    d = decide(SPEC, NOW, current_replicas=20, observed_load=500.0, forecast=forecast(values))
    assert d.replicas == 18 and "Hold/Stabilizing" in d.clamps


@pytest.mark.parametrize(
    ("current", "load", "peak", "expected", "clamp"),
    [
        (4, 100.0, 9000.0, 50, "ScalingLimited/TooManyReplicas"),
        (10, 0.0, 0.0, 2, "ScalingLimited/TooFewReplicas"),
        (60, 9000.0, 9000.0, 50, "ScalingLimited/TooManyReplicas"),
        (1, 100.0, 100.0, 2, "ScalingLimited/TooFewReplicas"),
    ],
)
def test_bounds(current: int, load: float, peak: float, expected: int, clamp: str) -> None:
    spec = PolicySpec(**{**SPEC.__dict__, "scale_down_max_step": 100})
    d = decide(spec, NOW, current, load, flat(peak))
    assert d.replicas == expected and clamp in d.clamps


def test_step_limit_never_keeps_replicas_below_the_floor() -> None:
    spec = PolicySpec(**{**SPEC.__dict__, "scale_up_max_step": 2})
    d = decide(spec, NOW, current_replicas=3, observed_load=1000.0, forecast=flat(3000.0))
    assert d.replicas == 10  # the floor: 2 steps would give 5, too few for the load now
    assert d.clamps[:2] == ("ScalingLimited/ScaleUpLimit", "ReactiveFloor/LoadNeedsMore")


def test_overrides_set_bounds_and_start_early_enough() -> None:
    deadline = Override(
        "filing-deadline", NOW + timedelta(minutes=2), NOW + timedelta(hours=8), min_replicas=25
    )
    freeze = Override(
        "release-freeze", NOW - timedelta(hours=1), NOW + timedelta(hours=1), max_replicas=8
    )
    spec = PolicySpec(**{**SPEC.__dict__, "overrides": (deadline,)})
    d = decide(spec, NOW, 10, 100.0, flat(100.0))
    assert (d.replicas, d.min_replicas, d.override) == (25, 25, "filing-deadline")
    night = Override("night", NOW + timedelta(minutes=2), NOW + timedelta(hours=8), 1)
    before = PolicySpec(**{**SPEC.__dict__, "min_replicas": 5, "overrides": (night,)})
    d = decide(before, NOW, 5, 10.0, flat(10.0))  # a lower minimum waits for its window
    assert (d.replicas, d.min_replicas, d.override) == (5, 5, None)
    assert decide(before, NOW + timedelta(minutes=2), 5, 10.0, flat(10.0)).replicas == 1
    later = PolicySpec(
        **{
            **SPEC.__dict__,
            "overrides": (
                Override("later", NOW + timedelta(hours=1), NOW + timedelta(hours=2), 25),
            ),
        }
    )
    assert decide(later, NOW, 10, 100.0, flat(100.0)).min_replicas == 2
    capped = PolicySpec(**{**SPEC.__dict__, "overrides": (freeze,)})
    d = decide(capped, NOW, 6, 1500.0, flat(1500.0))
    assert d.replicas == 8 and "ScalingLimited/TooManyReplicas" in d.clamps


def test_needed_replicas_rounds_up_but_not_float_noise() -> None:
    assert needed_replicas(0.0, 100) == 0
    assert needed_replicas(100.0, 100) == 1
    assert needed_replicas(100.01, 100) == 2
    assert needed_replicas(0.1 + 0.2, 0.3) == 1


def test_an_overflowing_need_asks_for_the_maximum_instead_of_raising() -> None:
    assert needed_replicas(1.0, 5e-324) == needed_replicas(1e308, 1e-308) == int(1e15)
    tiny = replace(SPEC, capacity_per_replica=1e-300)
    d = decide(tiny, NOW, current_replicas=2, observed_load=1e300, forecast=flat(1e300))
    assert d.replicas == 50


specs = st.builds(
    lambda low, span, cap, delay, up, down: PolicySpec(
        min_replicas=low,
        max_replicas=low + span,
        capacity_per_replica=cap,
        startup_delay=timedelta(seconds=delay),
        scale_up_max_step=up,
        scale_down_max_step=down,
    ),
    st.integers(0, 20),
    st.integers(0, 80),
    st.floats(0.5, 500),
    st.integers(0, 1200),
    st.integers(1, 20),
    st.integers(1, 20),
)
loads = st.one_of(st.none(), st.floats(-100, 50_000), st.just(float("nan")))
values = st.lists(st.floats(0, 50_000), min_size=40, max_size=40)
histories = st.lists(
    st.builds(
        Recommendation,
        st.integers(0, 900).map(lambda s: NOW - timedelta(seconds=s)),
        st.integers(0, 120),
    ),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(specs, st.integers(0, 120), loads, st.one_of(st.none(), values), histories)
def test_invariants(spec, current, load, upper, history) -> None:
    fc = None if upper is None else forecast(upper)
    d = decide(spec, NOW, current, load, fc, history)
    assert spec.min_replicas <= d.replicas <= spec.max_replicas  # never outside the bounds
    usable = load is not None and load >= 0  # NaN compares false: unusable too
    if usable:
        assert d.replicas >= min(
            needed_replicas(load, spec.capacity_per_replica), spec.max_replicas
        )  # floor
    within = spec.min_replicas <= current <= spec.max_replicas
    floor = d.reactive_floor
    if within and d.replicas > current and d.replicas > floor:
        assert (
            d.replicas - current <= spec.scale_up_max_step
        )  # step limit, unless the floor needs more
    if within and d.replicas < current:
        assert current - d.replicas <= spec.scale_down_max_step
    if within and not usable:
        assert d.replicas >= current  # the load is unknown: never scale down blind
    assert decide(spec, NOW, current, load, fc, history) == d  # pure


@settings(max_examples=300, deadline=None)
@given(specs, st.integers(0, 120), loads, values, st.integers(0, 39), st.floats(0, 20_000))
def test_monotone_in_the_forecast(spec, current, load, upper, index, bump) -> None:
    low = decide(spec, NOW, current, load, forecast(upper))
    higher = list(upper)
    higher[index] += bump
    high = decide(spec, NOW, current, load, forecast(higher))
    assert high.replicas >= low.replicas


@settings(max_examples=200, deadline=None)
@given(specs, st.integers(0, 120), st.floats(0, 50_000), values, st.integers(27, 500))
def test_stale_forecasts_are_ignored(spec, current, load, upper, hours) -> None:
    stale = forecast(upper, made_at=NOW - timedelta(hours=hours))
    d = decide(spec, NOW, current, load, stale)
    assert d.reason == "FallbackReactive/ForecastStale" and d.predictive is None
    assert d.replicas == decide(spec, NOW, current, load, None).replicas


def median_forecast(median: float, upper: float, minutes: int = 90) -> Forecast:
    times = np.array(
        [
            np.datetime64(NOW - timedelta(minutes=30)) + np.timedelta64(i, "m")
            for i in range(minutes)
        ]
    )
    return Forecast(
        made_at=NOW - timedelta(minutes=30),
        times=times,
        upper=np.full(minutes, upper),
        median=np.full(minutes, median),
        quantile=0.9,
    )


def test_nowcast_rescales_to_the_level_running_today() -> None:
    fc = median_forecast(100.0, 150.0)
    adjusted = nowcast(fc, NOW, [300.0] * 10, (0.5, 4.0))
    assert adjusted.median[40] == pytest.approx(300.0)
    assert adjusted.upper[40] == pytest.approx(300.0 + np.sqrt(3.0) * 50.0)
    assert nowcast(fc, NOW, [10.0] * 10, (0.5, 4.0)).median[40] == pytest.approx(
        50.0
    )  # clipped at 0.5
    assert nowcast(fc, NOW, [np.nan] * 10, (0.5, 4.0)) is fc
    assert nowcast(fc, NOW, [np.nan] * 6 + [300.0] * 4, (0.5, 4.0)) is fc  # mostly unseen


def test_nowcast_runs_at_a_wall_clock_time_off_the_interval_grid() -> None:
    # The controller decides at 12:00:17, not 12:00:00: the recent intervals are the same.
    fc = median_forecast(100.0, 150.0)
    on_grid = nowcast(fc, NOW, [300.0] * 10, (0.5, 4.0))
    for late in (timedelta(seconds=17), timedelta(seconds=59)):
        off_grid = nowcast(fc, NOW + late, [300.0] * 10, (0.5, 4.0))
        np.testing.assert_array_equal(off_grid.median, on_grid.median)
        np.testing.assert_array_equal(off_grid.upper, on_grid.upper)


def test_a_missing_forecast_median_is_left_out_and_never_crashes_a_decision() -> None:
    fc = median_forecast(100.0, 150.0)
    gappy = fc.median.copy()
    start = int(np.searchsorted(fc.times, np.datetime64(NOW.replace(tzinfo=None)))) - 10
    gappy[start : start + 3] = np.nan
    adjusted = nowcast(replace(fc, median=gappy), NOW, [300.0] * 10, (0.5, 4.0))
    assert adjusted.median[40] == pytest.approx(300.0)
    gappy[start : start + 10] = np.nan
    assert nowcast(replace(fc, median=gappy), NOW, [300.0] * 10, (0.5, 4.0)).median is gappy
    spec = PolicySpec(**{**SPEC.__dict__, "level_window": 10})
    decision = decide(spec, NOW, 2, 300.0, replace(fc, median=gappy), recent_load=[300.0] * 10)
    assert decision.replicas >= 3  # 300 rps needs 3 pods of 100: the floor still holds


def test_nowcast_leaves_a_scrape_gap_out() -> None:
    fc = median_forecast(100.0, 150.0)
    ramp = np.linspace(1.0, 2.0, len(fc.times))  # so that which intervals count matters
    fc = replace(fc, median=fc.median * ramp, upper=fc.upper * ramp)
    start = int(np.searchsorted(fc.times, np.datetime64(NOW.replace(tzinfo=None)))) - 10
    expected = fc.median[start : start + 10]
    seen = expected * 2.5
    gappy = np.where(np.arange(10) % 3 == 1, np.nan, seen)
    adjusted = nowcast(fc, NOW, gappy, (0.5, 4.0))
    assert adjusted.median[40] == pytest.approx(2.5 * fc.median[40])
    assert adjusted.upper[40] == pytest.approx(
        2.5 * fc.median[40] + np.sqrt(2.5) * (fc.upper[40] - fc.median[40])
    )
    no_median = replace(fc, median=None)
    assert nowcast(no_median, NOW, [300.0] * 10, (0.5, 4.0)) is no_median
    assert nowcast(fc, NOW, [300.0] * 40, (0.5, 4.0)) is fc  # recent data older than the forecast


def test_decide_uses_the_nowcast_when_asked() -> None:
    spec = PolicySpec(**{**SPEC.__dict__, "level_window": 10})
    fc = median_forecast(100.0, 150.0)
    plain = decide(SPEC, NOW, 2, 300.0, fc, recent_load=[300.0] * 10)
    assert plain.predictive == 2
    adjusted = decide(spec, NOW, 2, 300.0, fc, recent_load=[300.0] * 10)
    assert adjusted.predictive == 4 and adjusted.forecast_peak == pytest.approx(
        300 + np.sqrt(3) * 50
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 5_000), min_size=10, max_size=10), st.integers(0, 9), st.floats(0, 5_000)
)
def test_nowcast_is_monotone_in_recent_load(recent, index, bump) -> None:
    spec = PolicySpec(**{**SPEC.__dict__, "level_window": 10})
    fc = median_forecast(100.0, 150.0)
    low = decide(spec, NOW, 5, recent[-1], fc, recent_load=recent)
    higher = list(recent)
    higher[index] += bump
    assert (
        decide(
            spec, NOW, 5, recent[-1] + (bump if index == 9 else 0), fc, recent_load=higher
        ).replicas
        >= low.replicas
    )
