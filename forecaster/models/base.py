"""What every forecaster shares: the scikit-learn contract and one predict loop.

A model's ``__init__`` stores keyword parameters only. ``fit(df, events=None)`` validates a
long-format series frame (``unique_id, ds, y``; NaN is missing data), learns, sets
attributes ending in ``_`` and returns ``self``; it can be called again. ``predict(horizon,
quantiles, events=None)`` forecasts ``horizon`` intervals after the end of the fitted data
of every series, as ``unique_id, ds, yhat`` plus one column per quantile named by
:func:`forecaster.frames.quantile_column` (``q0.9``). Quantiles come out non-decreasing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from forecaster.frames import quantile_column


def future_index(last: pd.Timestamp, step: pd.Timedelta, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``last``."""
    return pd.date_range(last + step, periods=horizon, freq=step)


def check_predict(model: BaseEstimator, horizon: int) -> int:
    """What every ``predict`` checks first; returns the horizon as an int.

    The horizon must be a positive whole number of intervals, and the model fitted
    (scikit-learn's own check, so an unfitted forecaster raises ``NotFittedError`` like
    any estimator).
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive number of intervals, got {horizon!r}")
    check_is_fitted(model)
    return int(horizon)


def sort_quantiles(by_quantile: dict[float, np.ndarray]) -> dict[float, np.ndarray]:
    """Make quantiles non-decreasing in the level (a crossing is always an estimation error)."""
    levels = sorted(by_quantile)
    if not levels:
        return by_quantile
    stacked = np.maximum.accumulate(np.vstack([by_quantile[q] for q in levels]), axis=0)
    return {q: stacked[n] for n, q in enumerate(levels)}


def is_nonnegative(model: BaseEstimator, uid: str) -> bool:
    """Whether series ``uid`` was never below 0 in ``model``'s fit, so its forecasts are
    clipped at 0 (request rates are not negative; a net flow keeps its negative values).

    Kept per series (``nonnegative_``), as one net flow fitted among request counts must not
    unclip theirs. Artefacts saved before hold one flag for the whole frame, or none at all
    (then every series is clipped, as it was).
    """
    flags = getattr(model, "nonnegative_", {})
    return flags if isinstance(flags, bool) else flags.get(uid, True)


def regular(one: pd.DataFrame, step: pd.Timedelta) -> pd.Series:
    """One series' ``y`` on a regular grid of ``step``; absent intervals become NaN (missing)."""
    return one.set_index("ds")["y"].asfreq(step)


class PerSeriesModel(BaseEstimator):
    """The predict loop shared by models fitted series by series.

    Subclasses set ``step_`` and ``last_ds_`` (last timestamp per series) in ``fit`` and
    implement ``_forecast_one``, returning the point forecast and each quantile as arrays.
    """

    step_: pd.Timedelta
    last_ds_: dict[str, pd.Timestamp]

    def predict(
        self,
        horizon: int,
        quantiles: Sequence[float] = (0.5, 0.9),
        events: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        horizon = check_predict(self, horizon)
        frames = []
        for uid, last in self.last_ds_.items():
            index = future_index(last, self.step_, horizon)
            yhat, by_quantile = self._forecast_one(uid, index, quantiles)
            by_quantile = sort_quantiles(by_quantile)
            frame = pd.DataFrame({"unique_id": uid, "ds": index, "yhat": yhat})
            for q in quantiles:
                frame[quantile_column(q)] = by_quantile[q]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def _forecast_one(
        self, uid: str, index: pd.DatetimeIndex, quantiles: Sequence[float]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        raise NotImplementedError
