"""Edge cases found by a bug hunt over the models, the backtest and the metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecaster.backtest import backtest, score
from forecaster.frames import read_events
from forecaster.metrics import mase
from forecaster.models import (
    ConformalCalibrator,
    GradientBoostingForecaster,
    LastValue,
    LinearForecaster,
    SeasonalNaive,
    SeasonalQuantile,
)
from forecaster.models.calibration import shortfall_table
from forecaster.models.direct import GRID
from forecaster.models.features import event_matrix


def hourly(days: int = 21, seed: int = 0, uid: str = "s") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2026-08-31", periods=24 * days, freq="1h")
    mean = 40 + 30 * np.sin(2 * np.pi * (ds.hour - 6) / 24) + 10 * (ds.day_of_week < 5)
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.poisson(mean).astype(float)})


@pytest.mark.parametrize(
    "make",
    [lambda: GradientBoostingForecaster(max_iter=30), LinearForecaster],
    ids=["gradient_boosting", "linear"],
)
def test_a_net_flow_fitted_alongside_counts_leaves_the_counts_clipped(make) -> None:
    """The flag was one for the whole frame: one net flow (below zero) among request counts
    left every count's forecast unclipped, with negative quantiles and medians."""
    counts = hourly(uid="counts")
    counts.loc[counts["ds"].dt.hour.isin([2, 3, 4]), "y"] = 0.0  # quiet nights
    flow = hourly(seed=5, uid="flow").assign(y=lambda f: f["y"] - 60)
    forecast = make().fit(pd.concat([counts, flow])).predict(48, quantiles=(0.05, 0.5, 0.9))
    mine = forecast[forecast["unique_id"] == "counts"]
    assert (mine[["yhat", "q0.05", "q0.5", "q0.9"]].to_numpy() >= 0).all()
    theirs = forecast[forecast["unique_id"] == "flow"]
    assert (theirs["q0.05"] < 0).any()


@pytest.mark.parametrize("normalize", [False, True])
def test_hours_missing_every_day_are_not_forecast_as_zero_traffic(normalize: bool) -> None:
    """The same hour missing every day left its slot with no value to pool, and the
    quantiles of nothing were 0: a forecast of no traffic at 3 a.m., every day."""
    frame = hourly(days=14)
    frame.loc[frame["ds"].dt.hour == 3, "y"] = np.nan
    model = SeasonalQuantile(country=None, tz=None, normalize=normalize).fit(frame)
    forecast = model.predict(24, quantiles=(0.5, 0.9))
    at_three = forecast[forecast["ds"].dt.hour == 3]
    neighbours = forecast[forecast["ds"].dt.hour.isin([2, 4])]
    assert at_three["q0.9"].iloc[0] >= neighbours["q0.9"].min()
    assert at_three["yhat"].iloc[0] >= neighbours["yhat"].min()


@pytest.mark.parametrize("make", [LastValue, SeasonalNaive], ids=lambda m: m.__name__)
def test_calibrated_counts_stay_at_or_above_zero_beside_a_net_flow(make) -> None:
    """The calibrator clipped at 0 only when every series' forecast was non-negative: a
    net flow in the frame let the corrections push the counts' quantiles below 0."""
    counts = hourly(days=7, uid="counts")
    counts.loc[counts["ds"].dt.hour < 8, "y"] = 0.0
    flow = hourly(days=7, seed=3, uid="flow").assign(y=lambda f: f["y"] - 60)
    model = ConformalCalibrator(make(), horizon=12, folds=5).fit(pd.concat([counts, flow]))
    forecast = model.predict(12, quantiles=(0.05, 0.5, 0.9))
    mine = forecast[forecast["unique_id"] == "counts"]
    assert (mine[["yhat", "q0.05", "q0.5", "q0.9"]].to_numpy() >= 0).all()
    assert (forecast.loc[forecast["unique_id"] == "flow", "q0.05"] < 0).all()


@pytest.mark.parametrize("zone", ["UTC", "Asia/Shanghai"])
def test_an_event_calendar_with_utc_offsets_is_read_at_the_same_instants(zone: str) -> None:
    """Stamps with an offset matched none of the series' (naive UTC) stamps: every event
    of a calendar kept in local time was silently read as absent, in fit and predict."""
    ds = pd.date_range("2026-09-01", periods=6, freq="1h")
    naive = pd.DataFrame({"ds": ds, "launch": [0.0, 1.0, 0.0, 0.0, 2.0, 0.0]})
    local = naive.assign(ds=naive["ds"].dt.tz_localize("UTC").dt.tz_convert(zone))
    expected = event_matrix(naive, "s", ds, ["launch"])
    assert expected[:, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 2.0, 0.0]
    assert (event_matrix(local, "s", ds, ["launch"]) == expected).all()


def test_a_quantile_asked_for_twice_is_one_column_and_scores() -> None:
    """``--quantile 0.5`` backtests the median as (0.5, 0.5): the results had two q0.5
    columns and scoring them failed with numpy's "inhomogeneous shape"."""
    frame = hourly(days=5)
    results = backtest(LastValue(), frame, 6, folds=2, quantiles=(0.5, 0.5))
    assert list(results.columns).count("q0.5") == 1
    scores = score(results, frame, 24, 0.5, (0.5,))
    assert np.isfinite(scores[["coverage", "pinball_q0.5", "selection_score"]]).all(axis=None)


def test_a_young_series_with_absent_rows_does_not_fail_the_backtest() -> None:
    """By some cutoffs a new service's rows came every other hour, so that fold's frame
    looked like a mix of intervals and the whole backtest failed with "series have
    different intervals" on a frame whose interval is plain (hourly)."""
    ds = pd.date_range("2026-09-01", periods=130, freq="1h")
    old = pd.DataFrame({"unique_id": "old", "ds": ds, "y": 10.0, "note": "x"})
    young = pd.DataFrame({"unique_id": "young", "ds": ds[100:], "y": 5.0, "note": "y"})
    frame = pd.concat([old, young.drop(index=[1, 3])])
    results = backtest(LastValue(), frame, 6, folds=23, every=1)  # cutoffs ds[101..123]
    mine = results[results["unique_id"] == "young"]
    assert mine["cutoff"].min() == ds[101]  # forecast from every cutoff it was seen twice by
    assert (mine["yhat"] == 5.0).all() and (mine["y"].dropna() == 5.0).all()
    assert (results.loc[results["unique_id"] == "old", "yhat"] == 10.0).all()


def daily_sine(hours: int) -> pd.DataFrame:
    ds = pd.date_range("2026-09-01", periods=hours, freq="1h")
    noise = np.random.default_rng(0).normal(0, 2, hours)
    return pd.DataFrame(
        {"unique_id": "s", "ds": ds, "y": 100 + 80 * np.sin(2 * np.pi * ds.hour / 24) + noise}
    )


def test_calibration_measures_the_models_own_errors_not_its_cold_start_baselines() -> None:
    """Early folds with too little history for the model fall back to last value or
    seasonal naive; their errors (last value's, on a daily cycle: 18 against 2) were
    taken as the model's and widened its quantiles."""
    frame = daily_sine(24 * 5)
    model = ConformalCalibrator(LinearForecaster(), horizon=8, folds=13, every=8).fit(frame)
    folds = backtest(LinearForecaster(), frame, 8, folds=13, every=8, quantiles=tuple(GRID))
    assert folds["fallback"].notna().any() and folds["fallback"].isna().any()
    own = shortfall_table(folds[folds["fallback"].isna()], model.step_edges_)
    assert np.allclose(model.corrections_["s"], own)
    assert model.fallback_reason_["s"] is None


def test_a_model_that_fell_back_in_every_fold_is_reported_uncalibrated() -> None:
    frame = daily_sine(50)  # two days by the end, by no cutoff
    model = ConformalCalibrator(LinearForecaster(), horizon=4, folds=3, every=1).fit(frame)
    assert model.fallback_reason_["s"] == (
        "not calibrated: every backtest fold fell back to a baseline"
    )
    assert (model.corrections_["s"] == 0).all()


def test_an_event_row_without_a_unique_id_is_for_every_series(tmp_path) -> None:
    """A calendar mixing fleet-wide events (unique_id left blank) and per-service ones
    read the fleet-wide rows as a series called "nan": they applied to no series."""
    (tmp_path / "events.csv").write_text(
        "ds,unique_id,launch\n2026-09-01 01:00,,1\n2026-09-01 02:00,a,1\n2026-09-01 03:00,b,1\n"
    )
    events = read_events(tmp_path / "events.csv")
    ds = pd.date_range("2026-09-01", periods=5, freq="1h")
    assert event_matrix(events, "a", ds, ["launch"])[:, 0].tolist() == [0, 1, 1, 0, 0]
    assert event_matrix(events, "b", ds, ["launch"])[:, 0].tolist() == [0, 1, 0, 1, 0]


def test_an_event_between_two_stamps_counts_in_the_interval_that_contains_it() -> None:
    """An event at 09:30 of an hourly series matched no stamp and was silently dropped,
    in fit and in predict; it belongs to the 09:00 interval, as a request at 09:30 does."""
    ds = pd.date_range("2026-09-01 08:00", periods=4, freq="1h")
    events = pd.DataFrame(
        {
            "ds": pd.to_datetime(["2026-09-01 07:59", "2026-09-01 09:30", "2026-09-01 11:00"]),
            "launch": [5.0, 1.0, 2.0],
        }
    )
    assert event_matrix(events, "s", ds, ["launch"])[:, 0].tolist() == [0, 1, 0, 2]
    after = events.assign(ds=events["ds"] + pd.Timedelta("1h"))  # 12:00 is past the end
    assert event_matrix(after, "s", ds, ["launch"])[:, 0].tolist() == [5, 0, 1, 0]


@pytest.mark.parametrize("season", [0, -24, 1.5])
def test_a_mase_season_that_is_not_a_positive_whole_number_is_refused_clearly(season) -> None:
    """A season of 0 intervals (a 1-day season on 2-day data, rounded down) failed with
    numpy's "operands could not be broadcast together"."""
    with pytest.raises(ValueError, match="season must be a positive whole number"):
        mase(np.ones(3), np.ones(3), np.arange(10.0), season)


def test_a_text_event_column_is_refused_by_name() -> None:
    """A calendar passed in a notebook with a text column (a note per event) failed deep
    in numpy with "could not convert string to float"; numbers stored as text still work."""
    ds = pd.date_range("2026-09-01", periods=3, freq="1h")
    events = pd.DataFrame({"ds": ds, "launch": ["0", "1", "0"], "note": ["", "big day", ""]})
    assert event_matrix(events, "s", ds, ["launch"])[:, 0].tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match="event column 'note' is not numeric"):
        event_matrix(events, "s", ds, ["launch", "note"])
    with pytest.raises(ValueError, match="event column 'note' is not numeric"):
        LinearForecaster().fit(hourly(days=3), events=events)


def test_half_a_day_missing_every_day_at_15_seconds_is_pooled_from_the_nearest_slots() -> None:
    """Business hours only (nights missing, as ``ingest --gap`` leaves a silent fleet):
    each of the 2,880 empty slots looks once for its nearest observed ones, rather than
    widening its neighbourhood a slot at a time (billions of steps at 15 s)."""
    ds = pd.date_range("2026-09-01", periods=2 * 5760, freq="15s")
    y = np.where((ds.hour >= 9) & (ds.hour < 21), 20.0, np.nan)
    y[(ds.hour == 20) & (ds.minute >= 45)] = 40.0  # the last quarter hour before the gap
    frame = pd.DataFrame({"unique_id": "s", "ds": ds, "y": y})
    forecast = SeasonalQuantile(country=None, tz=None).fit(frame).predict(5760, quantiles=(0.9,))
    at = forecast.set_index("ds")["q0.9"]
    assert at[at.index.hour == 22].min() == 40.0  # nearer 20:59 than 09:00
    assert at[at.index.hour == 7].max() == 20.0  # nearer 09:00
