"""What the direct multi-step forecasters share (gradient boosting and the linear model).

Both learn ``y[o + h] / level(o)`` from samples (origin ``o``, step ``h``) drawn across the
history of every series (:func:`forecaster.models.features.design`), and both turn the
errors of forecasts they did not train on into quantiles the same way. This module holds
what they have in common, so a fix to either reaches both:

- :func:`error_table` and :func:`lookup_errors`: empirical quantiles of held-out errors by
  step ahead and forecast level, added to a point forecast (Prophet's residual quantiles
  use them too);
- :func:`cold_start`: the baseline a series with fewer than two seasons gets, and why;
- :class:`DirectForecaster`: the fit's bookkeeping (step, period, history kept, fallbacks)
  and the predict loop, around two hooks each model fills in: ``_fit_group`` (learn from
  one group's samples) and ``_point`` (the point forecast, as a ratio to the level).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from forecaster.frames import quantile_column, series_freq, validate_series
from forecaster.models.base import (
    Rule,
    check_predict,
    ds_zone,
    duration,
    fitted_zone,
    future_index,
    in_zone,
    is_nonnegative,
    regular,
    sort_quantiles,
    whole,
)
from forecaster.models.baselines import LastValue
from forecaster.models.features import (
    DAY_MARKS,
    FEATURES_VERSION,
    MIN_MARKED_DAYS,
    calendar_features,
    design,
    event_matrix,
    marked_days,
)
from forecaster.models.seasonal import SeasonalNaive

# Levels at which the held-out error distribution is kept; others are interpolated.
GRID = np.array(
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9]
    + [0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.99, 0.995, 0.999]
)
MIN_CELL = 60  # held-out errors needed before a (step, level) cell gets its own quantiles


def error_table(
    steps: np.ndarray, level: np.ndarray, errors: np.ndarray, step_edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles (on ``GRID``) of held-out errors by step bin and forecast-level tercile.

    Cells with fewer than ``MIN_CELL`` errors borrow the pooled quantiles of their step bin,
    and bins without enough either borrow from all errors.
    """
    level_edges = np.quantile(level, [1 / 3, 2 / 3]) if len(level) else np.zeros(2)
    pooled = np.quantile(errors, GRID) if len(errors) else np.zeros(len(GRID))
    table = np.zeros((len(step_edges) - 1, 3, len(GRID)))
    step_bin = np.clip(np.searchsorted(step_edges, steps, side="right") - 1, 0, len(table) - 1)
    level_bin = np.searchsorted(level_edges, level, side="right")
    for s in range(len(table)):
        in_step = step_bin == s
        row = np.quantile(errors[in_step], GRID) if in_step.sum() >= MIN_CELL else pooled
        for b in range(3):
            cell = in_step & (level_bin == b)
            table[s, b] = np.quantile(errors[cell], GRID) if cell.sum() >= MIN_CELL else row
    return table, level_edges


def lookup_errors(
    table: np.ndarray,
    level_edges: np.ndarray,
    step_edges: np.ndarray,
    steps: np.ndarray,
    level: np.ndarray,
    q: float,
) -> np.ndarray:
    step_bin = np.clip(np.searchsorted(step_edges, steps, side="right") - 1, 0, len(table) - 1)
    level_bin = np.searchsorted(level_edges, level, side="right")
    cells = table[step_bin, level_bin]  # (n, len(GRID))
    if q <= GRID[0]:
        return cells[:, 0]
    if q >= GRID[-1]:
        return cells[:, -1]
    upper = int(np.searchsorted(GRID, q))
    lower = upper - 1
    weight = (q - GRID[lower]) / (GRID[upper] - GRID[lower])
    return cells[:, lower] * (1 - weight) + cells[:, upper] * weight


def cold_start(one: pd.DataFrame, season: str, step: pd.Timedelta) -> tuple[Any, str]:
    """The baseline used for a series with fewer than two seasons, and the reason given.

    ``step`` is the interval of the frame the series came from: the series alone may be a
    single value, with no interval of its own.
    """
    seen = int(one["y"].notna().sum())
    # a season shorter than the interval has no value a season back to repeat
    if step <= pd.Timedelta(season) <= seen * step:
        naive = SeasonalNaive(season=season).fit(one)
        reason = (
            f"cold start: {seen} observed intervals is less than two seasons of {season};"
            " using seasonal naive"
        )
        inner = naive.fallback_reason_[str(one["unique_id"].iloc[0])]
        return naive, f"{reason} ({inner})" if inner else reason
    return LastValue(freq=step).fit(one), (
        f"cold start: {seen} observed intervals is less than one season of {season};"
        " using last value"
    )


def samples_per_series(series: int, max_samples: int, floor: int, max_total: int) -> int:
    """Samples (origin, step) to draw from each of ``series`` series in one fit.

    An equal share of ``max_samples``, but at least ``floor`` from each series (a global
    model must see enough of every series to learn its shape) as long as the total stays
    within ``max_total`` (the memory and time of a fit over a whole fleet).
    """
    return max(min(floor, max_total // series), max_samples // series)


DIRECT_PARAMS: dict[str, Rule] = {
    "season": duration(),
    # max_horizon=-3 trained on no step ahead and forecast half the load; 0 was read as None
    "max_horizon": whole(1, optional=True),
    "lags": whole(0),
    "seasonal_lags": whole(0),
}
"""What the parameters every direct model has must be (:func:`check_params`)."""


def event_names(events: pd.DataFrame) -> list[str]:
    return [c for c in events.columns if c not in ("unique_id", "ds")]


class DirectForecaster(BaseEstimator):
    """Base of the direct multi-step forecasters; not a model on its own.

    A subclass has the parameters ``season``, ``max_horizon``, ``lags``,
    ``seasonal_lags``, ``global_model``, ``country`` and ``tz``, draws its samples in
    ``fit`` and implements ``_fit_group`` and ``_point``.
    """

    season: str
    max_horizon: int | None
    lags: int
    seasonal_lags: int
    global_model: bool
    country: str | None
    tz: str | None

    def _start(
        self, df: pd.DataFrame, events: pd.DataFrame | None, step_bins: int
    ) -> list[tuple[str, pd.Series]]:
        """Reset the fitted state; the series with two seasons of data to learn from.

        The others get their cold-start baseline here. ``step_bins`` bins of steps ahead,
        geometric in the step, each get their own error quantiles.
        """
        frame = validate_series(df)
        self.step_ = series_freq(frame)
        self.ds_zone_ = ds_zone(df)  # after step_, which may refuse the frame
        self.period_ = max(1, int(pd.Timedelta(self.season) / self.step_))
        self.max_horizon_ = int(self.max_horizon or self.period_)
        self.event_names_ = [] if events is None else event_names(events)
        self.step_edges_ = np.unique(
            np.round(np.geomspace(1, self.max_horizon_ + 1, step_bins + 1)).astype(int)
        )
        self.last_ds_: dict[str, pd.Timestamp] = {}
        self.history_: dict[str, np.ndarray] = {}
        self.fallback_reason_: dict[str, str | None] = {}
        self.fallbacks_: dict[str, Any] = {}
        self.models_: dict[str, dict[str, Any]] = {}
        # per series (see is_nonnegative): one net flow fitted alongside request counts
        # left every count's forecast unclipped, with negative quantiles and median
        self.nonnegative_: dict[str, bool] = {}
        self.features_version_ = FEATURES_VERSION
        keep = 8 * self.period_ + self.max_horizon_
        series = []
        for uid, one in frame.groupby("unique_id", sort=True):
            y = regular(one, self.step_)
            self.last_ds_[uid] = y.index[-1]
            self.nonnegative_[uid] = bool((one["y"].dropna() >= 0).all())
            if np.isfinite(y.to_numpy()).sum() < 2 * self.period_:
                self.fallbacks_[uid], self.fallback_reason_[uid] = cold_start(
                    one, self.season, self.step_
                )
                continue
            self.fallback_reason_[uid] = None
            self.history_[uid] = y.to_numpy()[-keep:]
            series.append((uid, y))
        # A day mark is used once some series has it on MIN_MARKED_DAYS days: fitted on
        # fewer, its columns learn those days' noise and repeat it on the next one.
        seen = [
            marked_days(y.index[np.isfinite(y.to_numpy())], self.country, self.tz)
            for _, y in series
        ]
        most = np.max(seen, axis=0) if seen else np.zeros(len(DAY_MARKS), dtype=int)
        self.day_marks_ = [bool(n >= MIN_MARKED_DAYS) for n in most]
        return series

    def _fit_groups(self, uids: Sequence[str], samples: Sequence[tuple[np.ndarray, ...]]) -> None:
        """One model on every series' samples (``global_model``), or one per series."""
        everyone = list(range(len(samples)))
        groups = [everyone] if self.global_model else [[n] for n in everyone]
        for members in groups:
            state = self._fit_group([samples[n] for n in members])
            for n in members:
                self.models_[uids[n]] = state

    def _fit_group(self, samples: list[tuple[np.ndarray, ...]]) -> dict[str, Any]:
        raise NotImplementedError

    def _point(
        self, state: dict[str, Any], X: np.ndarray, steps: np.ndarray, nonnegative: bool
    ) -> np.ndarray:
        """The point forecast as a ratio to the level, for features ``X`` at ``steps``
        (already capped at ``max_horizon_``) of a series that is ``nonnegative``."""
        raise NotImplementedError

    def _origin(self, values: np.ndarray) -> int:
        """The interval a forecast starts from: the last one observed."""
        seen = np.flatnonzero(np.isfinite(values))
        return int(seen[-1]) if len(seen) else len(values) - 1

    def _design(
        self,
        uid: str,
        values: np.ndarray,
        ds: pd.DatetimeIndex,
        origins: np.ndarray,
        steps: np.ndarray,
        events: pd.DataFrame | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        calendar = calendar_features(
            ds,
            pd.Timedelta(self.season),
            self.country,
            self.tz,
            # artefacts saved before marks were chosen used both
            getattr(self, "day_marks_", [True] * len(DAY_MARKS)),
        )
        X, scale = design(
            values,
            ds,
            origins,
            steps,
            self.period_,
            self.lags,
            self.seasonal_lags,
            calendar,
            event_matrix(events, uid, ds, self.event_names_),
            # artefacts saved before the version was recorded were fitted with version 1
            getattr(self, "features_version_", 1),
        )
        # Beyond max_horizon a forecast is made as at max_horizon (the step, the first
        # feature, is never extrapolated); the seasonal lags still reach further back.
        X[:, 0] = np.minimum(X[:, 0], self.max_horizon_)
        return X, scale

    def predict(
        self,
        horizon: int,
        quantiles: Sequence[float] = (0.5, 0.9),
        events: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        horizon, quantiles = check_predict(self, horizon, quantiles)
        frames = []
        for uid, last in self.last_ds_.items():
            if uid in self.fallbacks_:
                one = self.fallbacks_[uid].predict(horizon, quantiles=quantiles)
                frames.append(one[one["unique_id"] == uid])
                continue
            values = self.history_[uid]
            start = last - self.step_ * (len(values) - 1)
            ds = pd.date_range(start, periods=len(values) + horizon, freq=self.step_)
            extended = np.concatenate([values, np.full(horizon, np.nan)])
            # Missing data at the end: forecast from the last usable interval, further ahead.
            origin = self._origin(values)
            origins = np.full(horizon, origin)
            steps = np.arange(1, horizon + 1) + (len(values) - 1 - origin)
            X, scale = self._design(uid, extended, ds, origins, steps, events)
            state = self.models_[uid]
            trained = np.minimum(steps, self.max_horizon_)
            nonnegative = is_nonnegative(self, uid)
            point = self._point(state, X, trained, nonnegative)
            by_quantile = {}
            for q in sorted({0.5, *quantiles}):
                shift = lookup_errors(
                    state["errors"], state["level_edges"], self.step_edges_, trained, point, q
                )
                value = (point + shift) * scale
                by_quantile[q] = np.maximum(value, 0.0) if nonnegative else value
            by_quantile = sort_quantiles(by_quantile)
            frame = pd.DataFrame({"unique_id": uid, "ds": future_index(last, self.step_, horizon)})
            frame["yhat"] = by_quantile[0.5]
            for q in quantiles:
                frame[quantile_column(q)] = by_quantile[q]
            frames.append(frame)
        return in_zone(pd.concat(frames, ignore_index=True), fitted_zone(self))
