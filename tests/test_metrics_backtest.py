"""Forecast metrics against hand-computed values, and rolling-origin backtests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator

from forecaster.backtest import (
    ShortHistoryError,
    backtest,
    by_horizon,
    cutoffs,
    fold_cutoffs,
    score,
)
from forecaster.metrics import (
    coverage,
    mae,
    mase,
    peak_recall,
    pinball,
    rmse,
    selection_score,
    smape,
)
from forecaster.models import (
    GradientBoostingForecaster,
    LastValue,
    SeasonalNaive,
    SeasonalQuantile,
)

NAN = np.nan


@pytest.mark.parametrize(
    ("metric", "args", "expected"),
    [
        (mae, ([1, 2, 3], [2, 2, 5]), 1.0),
        (rmse, ([1, 2, 3], [2, 2, 5]), np.sqrt(5 / 3)),
        (smape, ([100, 0], [50, 0]), 100 * (2 * 50 / 150) / 2),
        (pinball, ([10, 10], [8, 12], 0.9), (0.9 * 2 + 0.1 * 2) / 2),
        (coverage, ([1, 5, 9, 10], [5, 5, 5, 10]), 0.75),
        (mase, ([3, 5], [4, 4], [1, 2, 3, 4, 5], 2), 1.0 / 2.0),
        (mae, ([1, NAN, 3], [2, 5, NAN]), 1.0),  # missing data is not scored
        # a gap drops the pairs across it, never pairs values that are not a season apart
        (mase, ([3, 5], [4, 4], [1, 2, NAN, 4, 5, 6], 2), 1.0 / 2.0),
        # the median's pinball loss plus the upper quantile's, shortfalls tripled
        (selection_score, ([10, 10], [10, 10], [8, 12], 0.9, 3.0), (3 * 0.9 * 2 + 0.1 * 2) / 2),
        (selection_score, ([10, 10], [8, 12], [10, 10], 0.9, 3.0), (3 * 0.5 * 2 + 0.5 * 2) / 2),
        (selection_score, ([10, NAN], [10, 1], [8, 1], 0.9, 3.0), 3 * 0.9 * 2),
    ],
)
def test_metric_values(metric, args, expected) -> None:
    assert metric(
        *[np.asarray(a, float) if isinstance(a, list) else a for a in args]
    ) == pytest.approx(expected)


def test_peak_recall_looks_only_at_the_busiest_intervals() -> None:
    y = np.arange(100, dtype=float)
    upper = np.full(100, 97.0)
    assert peak_recall(y, upper, top=0.05) == pytest.approx(
        3 / 5
    )  # 95..99: only 95, 96, 97 covered
    assert coverage(y, upper) == pytest.approx(0.98)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1e4), min_size=1, max_size=50), st.floats(0.05, 0.95), st.floats(0, 100)
)
def test_selection_score_punishes_shortfalls_more_than_excess(y, q, gap) -> None:
    y = np.asarray(y)
    short, over = selection_score(y, y, y - gap, q), selection_score(y, y, y + gap, q)
    assert short >= over * (3 * q / (1 - q)) - 1e-6
    # so does a median below the load, and a median off centre adds to the upper's cost
    assert selection_score(y, y - gap, y + gap, q) == pytest.approx(over + 3 * 0.5 * gap, abs=1e-6)
    assert selection_score(y, y + gap, y + gap, q) == pytest.approx(over + 0.5 * gap, abs=1e-6)
    assert pinball(y, y, q) == 0


def hourly(days: int = 20, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2026-09-01", periods=24 * days, freq="1h")
    mean = 50 + 40 * np.sin(2 * np.pi * ds.hour / 24)
    return pd.DataFrame({"unique_id": "s", "ds": ds, "y": rng.poisson(mean).astype(float)})


@pytest.mark.parametrize(
    "metric", [mae, rmse, smape, coverage, peak_recall, selection_score], ids=lambda m: m.__name__
)
def test_metrics_take_lists_and_series_by_position(metric) -> None:
    """An analyst passes columns of two frames, or plain lists: every metric pairs values
    by position (selection_score raised on lists, and aligned Series on their index, which
    gave NaN for columns of differently indexed frames)."""
    y, yhat, upper = [10.0, 12.0, NAN, 9.0], [11.0, 12.0, 5.0, 8.0], [13.0, 11.0, 6.0, 10.0]
    extra = (0.9,) if metric is selection_score else ()
    arrays = [np.asarray(v) for v in (y, yhat, upper)][: 3 if extra else 2]
    expected = metric(*arrays, *extra)
    assert np.isfinite(expected)
    assert metric(*[list(a) for a in arrays], *extra) == pytest.approx(expected)
    shifted = [pd.Series(a, index=np.arange(len(a)) + 10 * n) for n, a in enumerate(arrays)]
    assert metric(*shifted, *extra) == pytest.approx(expected)


def test_cutoffs_leave_the_horizon_after_the_last() -> None:
    step = pd.Timedelta("1h")
    points = cutoffs(pd.Timestamp("2026-09-20 23:00"), step, horizon=24, folds=3, every=12)
    assert points == [pd.Timestamp("2026-09-19 23:00") - k * 12 * step for k in (2, 1, 0)]


def test_backtest_refits_on_the_past_only() -> None:
    series = hourly()
    results = backtest(
        SeasonalNaive(season="1D"), series, horizon=24, folds=3, quantiles=(0.5, 0.9)
    )
    assert sorted(results["cutoff"].unique()) == cutoffs(
        series["ds"].max(), pd.Timedelta("1h"), 24, 3, 24
    )
    assert results.groupby("cutoff")["h"].agg(["min", "max"]).values.tolist() == [[1, 24]] * 3
    # a seasonal naive forecast made at the cutoff repeats the day up to the cutoff: no future data
    fold = results[results["cutoff"] == results["cutoff"].min()]
    day_before = series.set_index("ds")["y"].loc[fold["ds"] - pd.Timedelta("1D")].to_numpy()
    assert np.array_equal(fold["yhat"].to_numpy(), day_before)


def test_score_and_horizon_bins() -> None:
    series = hourly(days=30)
    results = backtest(
        SeasonalQuantile(country=None, tz=None, window=1),
        series,
        horizon=24,
        folds=5,
        quantiles=(0.5, 0.9),
    )
    table = score(results, series, season=24, upper=0.9, quantiles=(0.5,))
    assert {
        "mae",
        "rmse",
        "smape",
        "mase",
        "coverage",
        "peak_recall",
        "pinball_q0.5",
        "pinball_q0.9",
    } <= set(table.columns)
    assert 0.75 <= table.loc[0, "coverage"] <= 1.0 and table.loc[0, "mase"] < 1.5
    bins = by_horizon(results, upper=0.9, bins=[6, 12, 24])
    assert bins["n"].sum() == 5 * 24 and len(bins) == 3


def test_backtest_needs_enough_history() -> None:
    with pytest.raises(ValueError, match="need more history"):
        backtest(SeasonalNaive(), hourly(days=2), horizon=24, folds=5)


@pytest.mark.parametrize(
    ("horizon", "folds", "every"),
    [(9_999_999_999_999, 3, None), (24, 10**8, None), (24, 3, 10**17), (24, 2, 455)],
)
def test_far_too_many_folds_or_steps_are_short_history_not_an_overflow(
    horizon: int, folds: int, every: int | None
) -> None:
    """A horizon of 10 million hours overflowed pandas' int64 ('Overflow in int64
    multiplication') and 100 million folds built 100 million cutoffs before finding out."""
    with pytest.raises(ShortHistoryError, match="need more history"):
        backtest(SeasonalNaive(), hourly(days=20), horizon=horizon, folds=folds, every=every)


def test_folds_that_just_fit_are_kept() -> None:
    frame = hourly(days=20)  # 480 hours: 479 steps from the first to the last
    points = fold_cutoffs(frame, horizon=24, folds=2, every=454)  # 24 + 454 + 1 = 479
    assert points == [
        frame["ds"].min() + pd.Timedelta(hours=1),
        frame["ds"].max() - pd.Timedelta(hours=24),
    ]


@pytest.mark.parametrize(
    "bad", [{"folds": 0}, {"folds": -1}, {"every": 0}, {"every": -5}, {"horizon": 0}]
)
def test_folds_every_and_horizon_must_be_positive(bad) -> None:
    """No fold was an IndexError, and a negative ``every`` put a cutoff after the last one
    (forecasting past the data); neither is short history, which training falls back on."""
    arguments = {"horizon": 24, "folds": 3, "every": None} | bad
    with pytest.raises(ValueError, match="positive whole number") as caught:
        backtest(SeasonalNaive(), hourly(days=10), **arguments)
    assert not isinstance(caught.value, ShortHistoryError)


def test_folds_forecast_by_a_fallback_baseline_say_so() -> None:
    """Four days of history and a fold a day from the first day on: the first fold's
    gradient boosting has under two seasons and forecasts with seasonal naive, which was
    scored as the model's own without a word."""
    results = backtest(GradientBoostingForecaster(max_iter=10), hourly(days=4), horizon=24, folds=3)
    reasons = results.groupby("cutoff")["fallback"].first()
    assert "cold start" in reasons.iloc[0]
    assert reasons.iloc[1:].isna().all()


def test_map_function_is_used() -> None:
    calls = []

    def recording_map(fn, items):
        items = list(items)
        calls.append(len(items))
        return [fn(item) for item in items]

    backtest(SeasonalNaive(), hourly(), horizon=24, folds=4, map_function=recording_map)
    assert calls == [4]


class EventEcho(BaseEstimator):
    """Forecasts an event column: the point from fit's calendar, q0.9 from predict's."""

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> EventEcho:
        self.last_ = df["ds"].max()
        self.fit_events_ = events
        return self

    def predict(
        self, horizon: int, quantiles=(0.5, 0.9), events: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        ds = pd.date_range(self.last_ + pd.Timedelta("1h"), periods=horizon, freq="1h")
        frame = pd.DataFrame({"unique_id": "s", "ds": ds})
        frame["yhat"] = self.fit_events_.set_index("ds")["launch"].reindex(ds).to_numpy()
        for q in quantiles:
            frame[f"q{q:g}"] = events.set_index("ds")["launch"].reindex(ds).to_numpy()
        return frame


def test_backtest_gives_the_event_calendar_to_every_fit_and_predict() -> None:
    series = hourly()
    events = pd.DataFrame({"ds": pd.date_range(series["ds"].min(), periods=len(series), freq="1h")})
    events["launch"] = (events["ds"].dt.hour == 9) * 1.0
    results = backtest(EventEcho(), series, horizon=24, folds=3, events=events)
    expected = (results["ds"].dt.hour == 9) * 1.0
    assert results["yhat"].tolist() == expected.tolist()
    assert results["q0.9"].tolist() == expected.tolist()


def test_mase_scales_by_steps_a_season_apart_in_time_when_rows_are_absent() -> None:
    """An outage written as NaN rows or left out of the file is the same history: the
    seasonal differences of MASE's scale pair values a day apart in both."""
    with_nan = hourly(days=14)
    with_nan.loc[30:34, "y"] = np.nan
    absent = with_nan.dropna()
    results = backtest(SeasonalNaive(season="1D"), with_nan, horizon=24, folds=3)
    first = results["cutoff"].min()
    train = with_nan.loc[with_nan["ds"] <= first, "y"].to_numpy()
    expected = mase(results["y"], results["yhat"], train, 24)
    for frame in (with_nan, absent):
        table = score(results, frame, season=24, upper=0.9)
        assert table.loc[0, "mase"] == pytest.approx(expected, rel=1e-12)


def test_backtest_skips_cutoffs_before_any_series_has_two_rows() -> None:
    """One stray early row lets the folds reach back to before the series really starts;
    those folds had nothing to fit and failed the whole backtest."""
    ds = pd.date_range("2026-01-10", periods=48, freq="1h")
    stray = pd.DataFrame({"unique_id": "a", "ds": [pd.Timestamp("2026-01-01")], "y": [5.0]})
    frame = pd.concat([stray, pd.DataFrame({"unique_id": "b", "ds": ds, "y": 1.0})])
    results = backtest(LastValue(), frame, horizon=1, folds=60, every=1)
    assert results["cutoff"].min() == ds[1]  # "b" seen twice
    assert results["cutoff"].nunique() == 47 - 1 and (results["yhat"] == 1.0).all()
    with pytest.raises(ShortHistoryError, match="no series has two rows"):
        backtest(LastValue(), frame[frame["ds"] <= ds[1]], horizon=1, folds=1)
