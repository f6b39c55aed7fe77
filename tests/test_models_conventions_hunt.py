"""The forecasters against scikit-learn's and pandas' conventions, as an analyst in Jupyter
uses them: parameters refused at fit, frames of every shape, outputs that keep their
promises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from forecaster.models import (
    ConformalCalibrator,
    GradientBoostingForecaster,
    LastValue,
    LinearForecaster,
    ProphetForecaster,
    SeasonalNaive,
    SeasonalQuantile,
)
from tests.test_analyst_api import _bands, drawn  # noqa: F401 (the fixture drawn)
from tests.test_models_contract import hourly


@pytest.mark.parametrize(
    ("model", "name"),
    [
        (LastValue(window=-5), "window"),
        (LastValue(freq="bogus"), "freq"),
        (SeasonalNaive(season="-1D"), "season"),
        (SeasonalQuantile(weeks=0, country=None, tz=None), "weeks"),
        (SeasonalQuantile(window=-1, country=None, tz=None), "window"),
        (GradientBoostingForecaster(max_horizon=-3), "max_horizon"),
        (GradientBoostingForecaster(max_horizon=0), "max_horizon"),
        (GradientBoostingForecaster(holdout=1.5), "holdout"),
        (GradientBoostingForecaster(lags=-1), "lags"),
        (LinearForecaster(per_origin=0), "per_origin"),
        (LinearForecaster(bins=0), "bins"),
        (LinearForecaster(alpha=-1.0), "alpha"),
        (LinearForecaster(alpha=0.0), "alpha"),
        (LinearForecaster(folds=0), "folds"),
        (LinearForecaster(max_samples=True), "max_samples"),
        (LastValue(window=1e4), "window"),
        (SeasonalQuantile(weeks=4.0, country=None, tz=None), "weeks"),
        (GradientBoostingForecaster(lags=6.0), "lags"),
        (ProphetForecaster(season="soon"), "season"),
        (ProphetForecaster(interval_width=0.0), "interval_width"),
        (ProphetForecaster(changepoint_prior_scale=-1.0), "changepoint_prior_scale"),
        (
            ProphetForecaster(quantile_method="uncertainty", uncertainty_samples=0),
            "uncertainty_samples",
        ),
        (ConformalCalibrator(), "model"),
        (ConformalCalibrator(SeasonalNaive(), horizon=-2), "horizon"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_a_parameter_out_of_range_is_refused_at_fit_by_name(model, name: str) -> None:
    """As in scikit-learn, __init__ stores anything and fit refuses it, naming the
    parameter. Unchecked, max_horizon=-3 forecast half the load, per_origin=0 NaN, weeks=0
    the last value, and holdout=1.5 or alpha=-1 were used as given, all without a word."""
    unchecked = clone(model)  # storing, cloning and set_params never refuse
    assert unchecked.set_params(**model.get_params()) is unchecked
    with pytest.raises(ValueError, match=rf"{type(model).__name__}: {name} must be"):
        model.fit(hourly(days=3))


def test_parameters_in_range_still_fit() -> None:
    """The edges of every range are usable values."""
    frame = hourly(days=3)
    for model in (
        LastValue(window=1, freq=pd.Timedelta("1h")),
        SeasonalQuantile(weeks=1, window=0, country=None, tz=None),
        GradientBoostingForecaster(max_horizon=1, lags=0, seasonal_lags=0, holdout=0.0),
        LinearForecaster(per_origin=1, bins=1, alpha=1e-6, folds=1, max_samples=np.int64(40_000)),
        ConformalCalibrator(LastValue(), horizon=3, folds=1, every=None),
    ):
        forecast = model.fit(frame).predict(3)
        assert np.isfinite(forecast[["yhat", "q0.5", "q0.9"]].to_numpy()).all()


def test_a_calibrated_level_asked_for_twice_is_one_column() -> None:
    """Every model gives a level asked for twice as one column; the calibrator gave two
    q0.9 columns, so ``forecast["q0.9"]`` was a frame and every metric of it failed."""
    model = ConformalCalibrator(SeasonalNaive(), horizon=12, folds=3).fit(hourly())
    forecast = model.predict(6, quantiles=(0.9, 0.5, 0.9))
    assert list(forecast.columns) == ["unique_id", "ds", "yhat", "q0.9", "q0.5"]
    assert forecast["q0.9"].ndim == 1


EVERY_MODEL = {
    "last_value": LastValue,
    "seasonal_naive": SeasonalNaive,
    "seasonal_quantile": lambda: SeasonalQuantile(country=None, tz=None, normalize=True),
    "gradient_boosting": lambda: GradientBoostingForecaster(max_iter=20),
    "linear": LinearForecaster,
    "prophet": lambda: ProphetForecaster(country=None),
    "conformal": lambda: ConformalCalibrator(SeasonalNaive(), horizon=12, folds=3),
}


@pytest.mark.parametrize("make", EVERY_MODEL.values(), ids=list(EVERY_MODEL))
def test_a_forecast_comes_out_in_the_zone_the_series_came_in(make, tmp_path) -> None:
    """Fitted on Shanghai stamps, every model forecast naive UTC ones: they printed eight
    hours early, and neither merged nor concatenated with the analyst's frame. The cold
    start of a short second series (a baseline fitted inside the model) too. Naive stamps
    stay naive, and a stored model keeps the zone."""
    from datetime import datetime

    from forecaster import store

    frame = pd.concat([hourly(uid="a"), hourly(seed=1, uid="b").iloc[:30]], ignore_index=True)
    local = frame.assign(ds=frame["ds"].dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai"))
    naive = make().fit(frame).predict(3)
    model = make().fit(local)
    aware = model.predict(3)
    assert str(aware["ds"].dt.tz) == "Asia/Shanghai" and naive["ds"].dt.tz is None
    assert (aware["ds"].dt.tz_convert("UTC").dt.tz_localize(None) == naive["ds"]).all()
    last = local.groupby("unique_id")["ds"].max() + pd.Timedelta("1h")
    assert (aware.groupby("unique_id")["ds"].min() == last).all()
    pd.testing.assert_frame_equal(aware.drop(columns="ds"), naive.drop(columns="ds"))
    store.save({"m": model}, str(tmp_path), {}, "x", datetime(2026, 9, 21))
    loaded = store.load(str(tmp_path)).models["m"]
    pd.testing.assert_frame_equal(loaded.predict(3), aware)


def test_prophets_own_interval_is_the_same_at_every_predict() -> None:
    """Prophet draws its uncertainty interval from NumPy's global generator: two predicts
    of one fitted model gave different quantiles. Seeded by random_state, they are equal
    (and equal for a refitted clone), and the caller's global draws are left alone."""
    frame = hourly(days=7)
    model = ProphetForecaster(country=None, quantile_method="uncertainty", uncertainty_samples=50)
    first = model.fit(frame).predict(6, quantiles=(0.1, 0.9))
    np.random.seed(1)
    expected = np.random.random()
    np.random.seed(1)
    again = model.predict(6, quantiles=(0.1, 0.9))
    assert np.random.random() == expected
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(clone(model).fit(frame).predict(6, quantiles=(0.1, 0.9)), first)


def test_a_series_that_ended_before_a_cutoff_has_no_rows_before_it() -> None:
    """A series ending 10 hours before the other was forecast, from the last cutoff, from
    its own end: rows at or before the cutoff, with h from -3 to 0 and no actual value,
    which a groupby("h") of the results showed as steps ahead."""
    from forecaster.backtest import backtest

    ended = hourly(seed=1, uid="b")
    frame = pd.concat(
        [hourly(uid="a"), ended[ended["ds"] <= ended["ds"].max() - pd.Timedelta("10h")]]
    )
    results = backtest(LastValue(), frame, horizon=6, folds=2, every=6)
    assert (results["h"] >= 1).all() and (results["ds"] > results["cutoff"]).all()
    late = results[(results["unique_id"] == "b") & (results["cutoff"] == results["cutoff"].max())]
    assert list(late["h"]) == [1, 2] and late["y"].isna().all()
    assert len(results[results["unique_id"] == "a"]) == 12


@pytest.mark.parametrize("lost", [1, 5])
def test_missing_intervals_at_the_end_are_shaded_in_full(lost: int, tmp_path, request) -> None:
    """A band ended at the last stamp drawn: the last hour of logs lost had no band at all
    (from its stamp to itself), and the last five hours a band of four."""
    from matplotlib.dates import date2num

    from forecaster import plots

    frame = hourly(days=2)
    frame.loc[frame.index[-lost:], "y"] = np.nan
    figures = request.getfixturevalue("drawn")
    plots.plot_series(frame, tmp_path / "end.png")
    (band,) = _bands(figures[0])
    first_lost = frame["ds"].iloc[-lost]
    expected = (date2num(first_lost), date2num(first_lost + pd.Timedelta(hours=lost)))
    assert band == pytest.approx(expected)


def test_last_value_repeats_a_value_seen_before_its_window() -> None:
    """The window bounds the changes learned from; with the last ``window`` intervals
    missing, the model said "no observed value" and forecast 0 for a series with weeks of
    data."""
    frame = hourly()
    frame.loc[frame.index[-3:], "y"] = np.nan
    model = LastValue(window=2).fit(frame)
    assert (model.predict(4)["yhat"] == frame["y"].iloc[-4]).all()
    assert model.fallback_reason_ == {"s": None}


@pytest.mark.parametrize("blank", [1, 2])
def test_a_row_without_a_time_stamp_is_refused_by_name(blank: int) -> None:
    """A blank ds was NaT: one such row was dropped as a gap without a word, two in a
    series were refused as "duplicate (unique_id, ds) rows"."""
    from forecaster.frames import validate_series

    frame = hourly(days=2)
    frame["ds"] = frame["ds"].astype(object)
    frame.loc[frame.index[5 : 5 + blank], "ds"] = None
    with pytest.raises(ValueError, match=f"series frame has no ds in {blank} of its rows"):
        validate_series(frame)


def test_a_y_that_is_not_a_number_is_refused_by_column() -> None:
    """pandas said only "Unable to parse string '1,234' at position 0", naming no column."""
    from forecaster.frames import validate_series

    frame = hourly(days=2).astype({"y": object})
    frame.loc[0, "y"] = "1,234"
    with pytest.raises(ValueError, match="y that is not a number.*1,234"):
        validate_series(frame)


def test_a_backtest_of_local_stamps_is_in_local_time_and_scores_alike() -> None:
    """Forecasts keep the zone of the series they were fitted on; a backtest of the same
    frame gave naive UTC stamps and cutoffs, which merged with nothing of the analyst's.
    Its scores are those of the naive frame."""
    from forecaster.backtest import backtest, score

    frame = hourly(days=5)
    local = frame.assign(ds=frame["ds"].dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai"))
    naive = backtest(SeasonalNaive(), frame, horizon=6, folds=3)
    aware = backtest(SeasonalNaive(), local, horizon=6, folds=3)
    assert str(aware["ds"].dt.tz) == str(aware["cutoff"].dt.tz) == "Asia/Shanghai"
    for column in ("ds", "cutoff"):
        assert (aware[column].dt.tz_convert("UTC").dt.tz_localize(None) == naive[column]).all()
    merged = aware.merge(local, on=["unique_id", "ds"], suffixes=("", "_actual"))
    assert len(merged) == len(aware) and (merged["y"] == merged["y_actual"]).all()
    pd.testing.assert_frame_equal(score(aware, local, 24, 0.9), score(naive, frame, 24, 0.9))


def test_series_on_the_half_hour_keep_their_first_step_ahead() -> None:
    """A series on the half hour among hourly ones on the hour is half a step off the
    cutoffs: its first forecast was h 0 (truncated), with the rows before a cutoff
    dropped it would be lost; it is h 1."""
    from forecaster.backtest import backtest

    shifted = hourly(seed=2, uid="b").assign(ds=lambda d: d["ds"] + pd.Timedelta("30min"))
    results = backtest(LastValue(), pd.concat([hourly(uid="a"), shifted]), horizon=3, folds=2)
    for _, fold in results.groupby(["unique_id", "cutoff"]):
        assert list(fold["h"]) == list(range(1, len(fold) + 1))
    assert results.groupby("unique_id").size().to_dict() == {"a": 6, "b": 6}


def test_files_are_read_by_their_extension_in_either_case(tmp_path) -> None:
    """series.CSV was refused as an unsupported extension, and an event calendar of any
    extension but .parquet was read as CSV: a spreadsheet failed with UnicodeDecodeError."""
    from forecaster.frames import read_events, read_series, write_frame

    frame = hourly(days=2)
    write_frame(frame, tmp_path / "SERIES.CSV")
    assert len(read_series(tmp_path / "SERIES.CSV")) == len(frame)
    (tmp_path / "events.xlsx").write_bytes(b"PK\x03\x04\xff\xfe binary")
    with pytest.raises(ValueError, match="unsupported extension '.xlsx'; use .csv or .parquet"):
        read_events(tmp_path / "events.xlsx")


@pytest.mark.parametrize("make", EVERY_MODEL.values(), ids=list(EVERY_MODEL))
def test_levels_given_as_a_generator_are_all_columns(make) -> None:
    """A generator of levels was used up by the first series (or by the sorted levels),
    and the forecast came back without quantile columns, without a word."""
    frame = pd.concat([hourly(uid="a"), hourly(seed=1, uid="b")])
    model = make().fit(frame)
    forecast = model.predict(3, quantiles=(q / 100 for q in (90, 50)))
    assert list(forecast.columns) == ["unique_id", "ds", "yhat", "q0.9", "q0.5"]
    assert forecast[["q0.9", "q0.5"]].notna().all().all()


def test_periods_are_read_as_their_start() -> None:
    """A ds of hourly periods (``to_period("h")``) was a TypeError from pandas."""
    frame = hourly(days=3)
    periods = frame.assign(ds=frame["ds"].dt.to_period("h"))
    pd.testing.assert_frame_equal(
        LastValue().fit(periods).predict(3), LastValue().fit(frame).predict(3)
    )


@pytest.mark.parametrize(
    ("make", "every"),
    [(SeasonalNaive, "2D"), (lambda: SeasonalQuantile(country=None, tz=None), "7min")],
    ids=["seasonal_naive", "seasonal_quantile"],
)
def test_a_refused_fit_leaves_the_model_as_it_was(make, every: str) -> None:
    """A fit refused for the data's interval set the new step_ first: a fresh model then
    failed predict with an AttributeError instead of NotFittedError, and a fitted one
    forecast its old series on the refused interval."""
    from sklearn.exceptions import NotFittedError

    odd = pd.DataFrame(
        {"unique_id": "s", "ds": pd.date_range("2026-09-01", periods=30, freq=every), "y": 1.0}
    )
    fresh = make()
    with pytest.raises(ValueError, match="interval"):
        fresh.fit(odd)
    with pytest.raises(NotFittedError):
        fresh.predict(3)
    fitted = make().fit(hourly())
    before = fitted.predict(3)
    with pytest.raises(ValueError, match="interval"):
        fitted.fit(odd)
    pd.testing.assert_frame_equal(fitted.predict(3), before)


@pytest.mark.parametrize("make", EVERY_MODEL.values(), ids=list(EVERY_MODEL))
def test_a_fresh_model_whose_fit_was_refused_is_not_fitted(make) -> None:
    """A frame mixing intervals is refused; the zone was recorded before, so predict
    raised an AttributeError instead of NotFittedError."""
    from sklearn.exceptions import NotFittedError

    mixed = pd.concat([hourly(uid="a"), hourly(uid="b").iloc[::2]])
    model = make()
    with pytest.raises(ValueError, match="different intervals"):
        model.fit(mixed)
    with pytest.raises(NotFittedError):
        model.predict(3)


def test_train_and_forecast_keep_the_zone_the_series_came_in() -> None:
    """``train`` validated the frame (naive UTC) before fitting, so the models it chose
    forecast naive UTC for a Shanghai frame, where the same model fitted directly
    forecast Shanghai time."""
    from forecaster.training import forecast, train

    frame = hourly(uid="a")
    local = frame.assign(ds=frame["ds"].dt.tz_localize("UTC").dt.tz_convert("Asia/Shanghai"))
    candidates = {"seasonal_naive": SeasonalNaive, "last_value": LastValue}
    aware = forecast(train(local, candidates, horizon=6).models, 3)
    naive = forecast(train(frame, candidates, horizon=6).models, 3)
    assert str(aware["ds"].dt.tz) == "Asia/Shanghai" and naive["ds"].dt.tz is None
    assert aware["ds"].min() == local["ds"].max() + pd.Timedelta("1h")
    pd.testing.assert_frame_equal(aware.drop(columns="ds"), naive.drop(columns="ds"))


def test_a_calibrated_net_flow_is_not_clipped_at_zero(tmp_path) -> None:
    """Whether to clip at 0 was judged by the forecast being corrected: a net flow whose
    last value was an inflow (3, with outflows of -5 after it every time) had its
    corrected median, -5, clipped to 0. It is judged by the series' history now, and a
    stored model keeps it."""
    from datetime import datetime

    from forecaster import store
    from forecaster.models.calibration import ConformalCalibrator

    rng = np.random.default_rng(0)
    ds = pd.date_range("2026-09-07", periods=24 * 20, freq="1h")
    y = -5 + rng.normal(0, 1, len(ds))
    y[(len(ds) - 1 - np.arange(len(ds))) % 6 == 0] = 3.0  # each cutoff sees an inflow
    flow = pd.DataFrame({"unique_id": "flow", "ds": ds, "y": y})
    model = ConformalCalibrator(LastValue(), horizon=6, folds=5).fit(flow)
    assert (model.model_.predict(6)["q0.5"] > 0).all()
    median = model.predict(6)["q0.5"]
    assert median.between(-6, -4).all()
    store.save({"m": model}, str(tmp_path), {}, "x", datetime(2026, 9, 28))
    pd.testing.assert_series_equal(store.load(str(tmp_path)).models["m"].predict(6)["q0.5"], median)
    counts = flow.assign(y=flow["y"].clip(lower=0))
    assert (
        ConformalCalibrator(LastValue(), horizon=6, folds=5).fit(counts).predict(6)["q0.5"] >= 0
    ).all()
