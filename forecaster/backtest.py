"""Rolling-origin backtests as plain functions.

Every fold refits a fresh clone of the model on the data up to its cutoff only and
forecasts the next ``horizon`` intervals; results come back as one long frame with a
``cutoff`` column and the step ahead (``h``), so metrics can be binned by horizon.
Parallelism is passed in as a ``map`` function (the built-in ``map`` by default).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from forecaster.frames import naive_utc, quantile_column, series_freq, validate_series
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
from forecaster.models.base import ds_zone, in_zone, regular

MapFunction = Callable[[Callable[[Any], pd.DataFrame], Iterable[Any]], Iterable[pd.DataFrame]]


class ShortHistoryError(ValueError):
    """The series is too short for the folds asked for.

    Its own type because training then falls back to a default model, which no other bad
    argument (a quantile of 1.5, a horizon of 0) may quietly turn into.
    """


def cutoffs(
    last: pd.Timestamp, step: pd.Timedelta, horizon: int, folds: int, every: int
) -> list[pd.Timestamp]:
    """The last timestamps seen by each fold, oldest first; the newest leaves ``horizon``."""
    final = last - step * horizon
    return [final - step * every * k for k in reversed(range(folds))]


def backtest(
    model: Any,
    series: pd.DataFrame,
    horizon: int,
    folds: int = 3,
    every: int | None = None,
    quantiles: Sequence[float] = (0.5, 0.9),
    map_function: MapFunction = map,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Forecasts of every fold next to the actual values.

    ``events`` is an event calendar (see :func:`forecaster.frames.read_events`) given to
    every fold's ``fit`` and ``predict``: events are known in advance (a filing deadline is
    announced), so a fold may read the calendar past its cutoff, never the series.
    Returns ``unique_id, cutoff, ds, h, y, yhat``, the quantile columns and ``fallback``:
    why a series' forecast from that cutoff came from a baseline instead of the model (too
    little history by the cutoff: the model's ``fallback_reason_``), ``None`` when it did
    not. Without it an early fold's seasonal naive forecasts were scored as the model's.
    ``ds`` and ``cutoff`` are in the time zone of ``series`` (naive UTC when it is naive),
    as a model's forecasts are.
    """
    frame = validate_series(series)
    points = fold_cutoffs(frame, horizon, folds, every)
    results = backtest_at(model, frame, points, horizon, quantiles, map_function, events)
    return in_zone(results, ds_zone(series), ("cutoff", "ds"))


def fold_cutoffs(
    frame: pd.DataFrame, horizon: int, folds: int, every: int | None = None
) -> list[pd.Timestamp]:
    """The cutoffs of :func:`backtest` for a series frame; :class:`ShortHistoryError` when
    the frame is too short.

    ``horizon``, ``folds`` and ``every`` must be whole and positive (``ValueError``): no fold
    at all was an ``IndexError``, and a negative ``every`` put cutoffs after the last one,
    forecasting past the end of the data.
    """
    for name, value in (("horizon", horizon), ("folds", folds), ("every", every)):
        if value is not None and (int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    step = series_freq(frame)
    every = every or horizon
    # Checked in whole steps before any timestamp is made: 10 million folds built 10
    # million cutoffs first, and a horizon of 10 million hours overflowed pandas' int64.
    span = (frame["ds"].max() - frame["ds"].min()) // step
    if horizon + every * (folds - 1) + 1 > span:
        raise ShortHistoryError(
            f"{folds} folds of {horizon} steps every {every} need more history than the series has"
        )
    return cutoffs(frame["ds"].max(), step, horizon, folds, every)


def backtest_at(
    model: Any,
    series: pd.DataFrame,
    points: Sequence[pd.Timestamp],
    horizon: int,
    quantiles: Sequence[float] = (0.5, 0.9),
    map_function: MapFunction = map,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`backtest` from given cutoffs: a chunk of a fleet's series, backtested on its
    own, must use the cutoffs of the whole fleet to give the same folds."""
    frame = validate_series(series)
    step = series_freq(frame)
    # A cutoff by which no series was seen twice has nothing to fit (one stray early row
    # lets the folds reach back that far): it is skipped, and a backtest left with none
    # is a short history, not an error deep inside a model.
    ready = seen_twice(frame)
    usable = [p for p in points if p >= ready]  # none when ``ready`` is NaT
    if not usable:
        raise ShortHistoryError(
            f"no series has two rows by the last backtest cutoff, {max(points)}"
        )

    history = with_gaps_as_rows(frame, step)

    def one_fold(cutoff: pd.Timestamp) -> pd.DataFrame:
        train = history[history["ds"] <= cutoff]
        # A series seen once by the cutoff has no interval or season to learn: it is not
        # forecast from this fold, whichever other series share its task.
        seen = train.groupby("unique_id")["ds"].transform("size")
        train = train[seen >= 2]
        fitted = clone(model).fit(train, events=events)
        forecast = fitted.predict(horizon, quantiles=quantiles, events=events)
        reasons = getattr(fitted, "fallback_reason_", {})
        forecast["fallback"] = pd.Series(
            [reasons.get(uid) for uid in forecast["unique_id"]], index=forecast.index, dtype=object
        )
        forecast["cutoff"] = cutoff
        # Rounded up: a series on the half hour among hourly ones on the hour is 0.5 steps
        # past the cutoff at its first forecast, which is its first step ahead, not a 0th.
        forecast["h"] = np.ceil((forecast["ds"] - cutoff) / step).astype(int)
        # A series whose data ended before the cutoff (a retired service) is forecast from
        # its own end: the rows up to the cutoff are no step ahead of it (h of 0 or less,
        # never an actual value to score) and are left out.
        forecast = forecast[forecast["h"] >= 1]
        actual = frame[["unique_id", "ds", "y"]]
        return forecast.merge(actual, on=["unique_id", "ds"], how="left")

    results = pd.concat(list(map_function(one_fold, usable)), ignore_index=True)
    columns = [
        "unique_id",
        "cutoff",
        "ds",
        "h",
        "y",
        "yhat",
        # once each: an upper quantile of 0.5 alongside the median was two q0.5 columns,
        # and every metric of it failed on a frame where a column was expected
        *dict.fromkeys(quantile_column(q) for q in quantiles),
        "fallback",
    ]
    return results[columns]


def with_gaps_as_rows(frame: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """``frame`` with every absent interval of a series, between its first and last row,
    as a row of NaN (missing), which every model reads alike.

    A model infers the interval from the rows it is fitted on: a young series whose first
    rows, by a fold's cutoff, came every other interval made that fold's whole frame
    "series have different intervals", and the backtest failed on a frame that is fine.
    Only series with absent rows are touched, so a zero-filled fleet costs one count.
    """
    span = frame.groupby("unique_id", sort=False)["ds"].agg(["min", "max", "size"])
    holed = span.index[(span["max"] - span["min"]) // step + 1 != span["size"]]
    if holed.empty:
        return frame
    inside = frame["unique_id"].isin(holed)
    filled = [
        regular(one, step).reset_index().assign(unique_id=uid)
        for uid, one in frame[inside].groupby("unique_id", sort=False)
    ]
    out = pd.concat([frame[~inside], *filled], ignore_index=True).reindex(columns=frame.columns)
    return out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def seen_twice(series: pd.DataFrame) -> pd.Timestamp:
    """When the first series of a (sorted) frame has its second row: the first cutoff a
    model can be fitted at. ``NaT`` when no series has two."""
    return series.groupby("unique_id")["ds"].nth(1).min()


def score(
    results: pd.DataFrame,
    series: pd.DataFrame,
    season: int,
    upper: float,
    quantiles: Sequence[float] = (),
) -> pd.DataFrame:
    """Metrics per series: MAE, RMSE, sMAPE, MASE, pinball per quantile, coverage and peak
    recall of ``upper``, and the selection score. MASE scales every fold by the training data
    before the first cutoff: one scale per series, so the folds weigh by their errors alone."""
    frame = validate_series(series)
    step = series_freq(frame)
    rows = []
    upper_column = quantile_column(upper)
    histories = frame.groupby("unique_id", sort=False)  # indexed once: fleets have 1,000s
    for uid, one in results.groupby("unique_id", sort=True):
        history = histories.get_group(uid)
        y, yhat, high = one["y"].to_numpy(), one["yhat"].to_numpy(), one[upper_column].to_numpy()
        # MASE pairs values a season apart by position: on the regular grid, rows left out
        # of the frame are NaN and a season apart in the array is a season apart in time.
        # results of a tz-aware frame have tz-aware cutoffs (backtest), the frame naive UTC
        first = naive_utc(one["cutoff"]).min()
        train = regular(history[history["ds"] <= first], step).to_numpy()
        row = {
            "unique_id": uid,
            "mae": mae(y, yhat),
            "rmse": rmse(y, yhat),
            "smape": smape(y, yhat),
            "mase": mase(y, yhat, train, season),
            "coverage": coverage(y, high),
            "peak_recall": peak_recall(y, high),
            "selection_score": selection_score(y, yhat, high, upper),
        }
        for q in sorted({*quantiles, upper}):
            row[f"pinball_{quantile_column(q)}"] = pinball(y, one[quantile_column(q)].to_numpy(), q)
        rows.append(row)
    return pd.DataFrame(rows)


def by_horizon(results: pd.DataFrame, upper: float, bins: Sequence[int]) -> pd.DataFrame:
    """Coverage and pinball loss of ``upper`` binned by steps ahead (edges in ``bins``)."""
    column = quantile_column(upper)
    binned = pd.cut(results["h"], bins=[0, *bins], include_lowest=False)
    rows = []
    for interval, part in results.groupby(binned, observed=True):
        y, high = part["y"].to_numpy(), part[column].to_numpy()
        rows.append(
            {
                "h": str(interval),
                "coverage": coverage(y, high),
                "pinball": pinball(y, high, upper),
                "n": int(np.isfinite(y).sum()),
            }
        )
    return pd.DataFrame(rows)
