"""Turning a model's forecast frame into the policy's :class:`~controller.policy.Forecast`,
and a scaler's event windows into the model's event calendar. Shared by the replay
simulator and the reconciler, so both feed the policy the very same way."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from controller.policy import Forecast, Override
from forecaster.frames import quantile_column


def to_forecast(
    predicted: pd.DataFrame,
    made_at: datetime,
    quantile: float,
    model_version: str,
    backtest_score: float | None = None,
) -> Forecast:
    """One series' forecast frame (``ds, yhat, q...``) as the policy's arrays."""
    return Forecast(
        made_at=made_at,
        times=predicted["ds"].to_numpy(dtype="datetime64[ns]"),
        upper=predicted[quantile_column(quantile)].to_numpy(dtype=float),
        quantile=quantile,
        median=predicted["yhat"].to_numpy(dtype=float),
        model_version=model_version,
        backtest_score=backtest_score,
    )


def event_calendar(
    windows: Sequence[Override], start: pd.Timestamp, end: pd.Timestamp, step: pd.Timedelta
) -> pd.DataFrame | None:
    """A ``ds`` grid from ``start`` to ``end`` with one 0/1 column per event name.

    Window times may be timezone-aware; the grid is naive UTC like every series frame.
    """
    if not windows:
        return None
    ds = pd.date_range(start, end, freq=step)
    frame = pd.DataFrame({"ds": ds})
    for window in windows:
        begin, finish = naive_utc(window.start), naive_utc(window.end)
        inside = ((ds >= begin) & (ds < finish)).astype(float)
        column = f"event_{window.name}"
        frame[column] = inside if column not in frame else frame[column].to_numpy() + inside
        frame[column] = frame[column].clip(upper=1.0)
    return frame


def naive_utc(moment: datetime) -> pd.Timestamp:
    """``moment`` as naive UTC, the time of every series frame; naive input is UTC already.
    (``moment.replace(tzinfo=None)`` would keep a local wall-clock time instead.)"""
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp
