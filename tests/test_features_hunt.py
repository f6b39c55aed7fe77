"""Edge cases of the direct forecasters' features found by a bug hunt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.models import GradientBoostingForecaster, LinearForecaster
from forecaster.models.features import (
    CAP,
    FEATURES_VERSION,
    calendar_features,
    capped,
    design,
    level_skipping,
    origin_level,
    rolling_mean,
)
from tests.synthetic import poisson_days
from tests.test_models_sklearn import linear_forecast_after_a_spike


def hourly_counts(n: int = 400, seed: int = 0) -> tuple[np.ndarray, pd.DatetimeIndex]:
    y = np.random.default_rng(seed).poisson(50, n).astype(float)
    return y, pd.date_range("2026-10-05", periods=n, freq="1h")


def level_at(y: np.ndarray, ds: pd.DatetimeIndex, origin: int, version: int) -> float:
    origins, steps = np.array([origin]), np.array([1])
    return float(design(y, ds, origins, steps, 24, 3, 2, None, None, version=version)[1][0])


def test_the_level_at_an_origin_does_not_read_the_interval_after_it() -> None:
    """The level bounded the value at the origin by its larger neighbour, the one after it
    included: in training a peak starting at the origin counted whole when the next
    interval went on with it, at predict (nothing after it) it was cut, so the level the
    trees learned from was not the one they were given."""
    y, ds = hourly_counts()
    o = 300
    y[o] = 5000.0
    goes_on = y.copy()
    goes_on[o + 1] = 4000.0  # only the future changes
    assert FEATURES_VERSION >= 4  # the level as version 4 made it
    for version in (FEATURES_VERSION, 4):
        assert level_at(goes_on, ds, o, version) == level_at(y, ds, o, version)
        at_predict = np.concatenate([y[: o + 1], np.full(5, np.nan)])
        assert level_at(at_predict, ds[: o + 6], o, version) == level_at(goes_on, ds, o, version)
    # a stored version-3 model keeps the features it was fitted with, look-ahead and all
    assert level_at(goes_on, ds, o, 3) > 3 * level_at(y, ds, o, 3)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    spikes=st.lists(st.tuples(st.integers(0, 143), st.sampled_from([30.0, 1000.0, -5.0]))),
    gaps=st.lists(st.tuples(st.integers(0, 143), st.integers(1, 30)), max_size=3),
    origin=st.integers(24, 142),
)
def test_the_level_at_an_origin_is_the_one_of_the_series_cut_after_it(
    seed: int, spikes: list[tuple[int, float]], gaps: list[tuple[int, int]], origin: int
) -> None:
    y = np.random.default_rng(seed).poisson(40, 144).astype(float)
    for at, factor in spikes:
        y[at] *= factor
    for at, length in gaps:
        y[at : at + length] = np.nan
    cut = np.concatenate([y[: origin + 1], np.full(3, np.nan)])
    np.testing.assert_allclose(origin_level(cut, 24, 24)[origin], origin_level(y, 24, 24)[origin])


def test_version_4_ignores_a_lone_spike_before_or_at_the_origin() -> None:
    y, ds = hourly_counts()
    clean = rolling_mean(np.abs(y), 24)
    for at in (290, 300):  # ten intervals before the origin, and the origin itself
        spiked = y.copy()
        spiked[at] = 50_000.0
        assert level_at(spiked, ds, 300, 4) < 1.5 * clean[300]
        assert level_at(spiked, ds, 300, 2) > 30 * clean[300]  # the raw level of version 2


def test_version_4_counts_a_real_peak_that_rises_over_several_intervals() -> None:
    """A peak above the daily bound (10 times the mean, plus its root), rising over hours,
    counts whole at every origin: the value at the origin is vouched for by the one before
    it, the fall after the top is not needed."""
    day = np.array([1, 1, 1, 1, 1, 1, 3, 9, 27, 80, 240, 700, 2000, 4000, 1500, 300] + [20] * 8)
    y = np.tile(day.astype(float), 5)
    assert day.max() > CAP * (day.mean() + np.sqrt(day.mean()))
    ds = pd.date_range("2026-10-05", periods=len(y), freq="1h")
    np.testing.assert_array_equal(capped(y, 24, last=True)[24:], y[24:])
    for o in range(24, len(y)):
        assert level_at(y, ds, o, 4) == rolling_mean(y, 24)[o]


def weekdays_only(weeks: int = 12, seed: int = 0) -> pd.DataFrame:
    """Hourly load of a batch service idle on weekends, growing 1 % a day (from a Monday)."""
    ds = pd.date_range("2026-06-01", periods=24 * 7 * weeks, freq="1h")
    growth = 1.01 ** (ds - ds[0]).days.to_numpy()
    daily = 200 * (1 + np.sin(2 * np.pi * (ds.hour.to_numpy() - 6) / 24)) + 20
    mean = np.where(ds.day_of_week < 5, growth * daily, 0.0)
    y = np.random.default_rng(seed).poisson(mean).astype(float)
    return pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})


def test_the_level_floor_at_an_origin_does_not_read_after_it() -> None:
    """After an idle day the level is 0 and its floor decides the scale; the floor was 1 %
    of the whole series' mean, after the origin included (and at predict, of the history
    kept), so the features at an origin changed with the load weeks later."""
    frame = weekdays_only()
    y, ds = frame["y"].to_numpy(), pd.DatetimeIndex(frame["ds"])
    sunday_night = 24 * 7 * 6 - 1
    assert y[sunday_night - 47 : sunday_night + 1].sum() == 0
    later = y.copy()
    later[sunday_night + 1 :] *= 3  # the weeks after grow faster
    origins, steps = np.array([sunday_night]), np.array([10])
    before = design(y, ds, origins, steps, 24, 6, 2, None, None)
    after = design(later, ds, origins, steps, 24, 6, 2, None, None)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])


def test_monday_after_an_idle_weekend_is_forecast_at_its_load() -> None:
    """Ratios to a level of nearly 0 after an idle Sunday were in the hundreds, past the
    linear model's bound of 50: it forecast Monday at a quarter of its load."""
    frame = weekdays_only()
    monday = pd.date_range(frame["ds"].max() + pd.Timedelta("1h"), periods=24, freq="1h")
    daily = 200 * (1 + np.sin(2 * np.pi * (monday.hour.to_numpy() - 6) / 24)) + 20
    expected = 1.01**84 * daily
    for model in (LinearForecaster(), GradientBoostingForecaster(max_iter=60)):
        forecast = model.fit(frame).predict(24, quantiles=(0.5,))
        assert forecast["yhat"].sum() == pytest.approx(expected.sum(), rel=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("back", [1, 200])
def test_one_corrupt_target_does_not_bend_gradient_boostings_next_day(back: int) -> None:
    """A counter reset of 1000 times the load in the history was a target the squared
    loss chased: with one 200 intervals before the end, a third of the next day's
    forecasts were within 25 % of the clean ones, the rest anywhere from 0 to 30 times."""
    frame = poisson_days(21, seed=1)
    clean = GradientBoostingForecaster(max_iter=60).fit(frame).predict(288, quantiles=(0.5,))
    spiked = frame.copy()
    spiked.loc[spiked.index[-back], "y"] *= 1000
    forecast = GradientBoostingForecaster(max_iter=60).fit(spiked).predict(288, quantiles=(0.5,))
    ratio = forecast["q0.5"] / clean["q0.5"]
    assert ratio.between(0.8, 1.25).mean() > 0.9 and ratio.min() > 0.5


def test_the_nowcast_at_a_quiet_hour_is_todays_over_yesterdays() -> None:
    """The nowcast (the last hour over the same hour a day before) divides by a guard
    against zero; at 10 % of the week's level, the level's floor, it flattened every
    quiet night hour's nowcast (NASA's linear model lost 7 % at 60 minutes)."""
    hours = np.arange(24 * 14)
    y = np.where(hours % 24 < 6, 2.0, 100.0) * (1 + 0.1 * (hours // 24 == 13))
    ds = pd.date_range("2026-10-05", periods=len(y), freq="1h")
    origin = 24 * 13 + 3  # 03:00 on the last day: the night 10 % busier than the one before
    X, _ = design(y, ds, np.array([origin]), np.array([1]), 24, 6, 2, None, None)
    assert X[0, -1] == pytest.approx(1.1)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    spikes=st.lists(st.integers(0, 199), max_size=4),
    origin=st.integers(48, 198),
    steps=st.lists(st.sampled_from([1, 5, 24, 30, 48]), min_size=1, max_size=3),
)
def test_no_feature_reads_after_the_origin_with_spikes_about(
    seed: int, spikes: list[int], origin: int, steps: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    y = rng.poisson(30, 200).astype(float)
    y[spikes] *= 1000
    ds = pd.date_range("2026-10-05", periods=len(y), freq="1h")
    origins, hours = np.full(len(steps), origin), np.asarray(steps)
    known = np.concatenate([y[: origin + 1], np.full(len(y) - origin - 1, np.nan)])
    full = design(y, ds, origins, hours, 24, 6, 2, None, None)
    cut = design(known, ds, origins, hours, 24, 6, 2, None, None)
    np.testing.assert_array_equal(full[0], cut[0])
    np.testing.assert_array_equal(full[1], cut[1])


def test_a_corrupt_interval_at_the_origin_does_not_zero_the_linear_forecast() -> None:
    """Read raw as a recent lag (1000 times the load, clipped at 50 times the level), a
    counter reset in the last interval put the linear model's whole next day at 0."""
    ratio = linear_forecast_after_a_spike(1)
    assert ratio.between(0.8, 1.25).mean() > 0.8


def test_level_skipping_is_the_level_of_the_intervals_kept() -> None:
    y, _ = hourly_counts(200)
    skip = np.zeros(len(y), dtype=bool)
    skip[:10] = skip[100:148] = True  # two days off, the first before anything is kept
    level = level_skipping(y, skip, 24)
    assert np.isnan(level[:10]).all()
    kept = origin_level(y[~skip], 24, 24)
    np.testing.assert_array_equal(level[~skip], kept)
    # through the days off, the level of the last interval kept before them
    assert (level[100:148] == kept[89]).all()


@settings(max_examples=40, deadline=None)
@given(
    origin=st.integers(100, 380),
    steps=st.lists(st.sampled_from([1, 5, 24, 48, 72, 168]), min_size=1, max_size=4),
    noise=st.floats(1, 1000),
)
def test_features_with_a_calendar_never_read_after_the_origin(
    origin: int, steps: list[int], noise: float
) -> None:
    """The same as without a calendar, over Dragon Boat Festival and the weekends around
    it, where version 6 takes a working day's level on working days only."""
    y = np.random.default_rng(origin).poisson(50, 400).astype(float)
    ds = pd.date_range("2024-05-31 16:00", periods=len(y) + 168, freq="1h")
    calendar = calendar_features(ds, pd.Timedelta("1D"), "CN", "Asia/Shanghai")
    origins, hours = np.full(len(steps), origin), np.asarray(steps)
    extended = np.concatenate([y, np.full(168, np.nan)])
    before = design(extended, ds, origins, hours, 24, 3, 2, calendar, None)
    changed = extended.copy()
    changed[origin + 1 :] += noise  # the future changes...
    after = design(changed, ds, origins, hours, 24, 3, 2, calendar, None)
    for old, new in zip(before, after, strict=True):  # ...and no feature nor level does
        np.testing.assert_array_equal(old, new)
