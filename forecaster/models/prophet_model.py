"""An adapter that gives Prophet the scikit-learn shape (refittable, clonable, one per series).

Prophet is fitted once per series on the observed rows only (missing data is left out,
never filled with zeros), with daily and weekly seasonality, public holidays and make-up
working days of ``country`` as regressors (the ``holidays`` package; the Chinese calendar
by default), and every column of a user event calendar as a regressor.

Quantiles come either from Prophet's own uncertainty (``quantile_method="uncertainty"``,
a normal approximation of its interval) or, by default, from the empirical distribution of
its in-sample errors by forecast level (``"residuals"``). Prophet's intervals describe a
smooth trend's uncertainty, not per-minute bursts, so the residual quantiles are the ones
that hold at the series' resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from forecaster.calendar import HOLIDAY, WORKING, day_types
from forecaster.frames import quantile_column, series_freq, validate_series
from forecaster.models.base import (
    check_params,
    check_predict,
    ds_zone,
    duration,
    fitted_zone,
    future_index,
    in_zone,
    is_nonnegative,
    number,
    positive,
    sort_quantiles,
    whole,
)
from forecaster.models.direct import cold_start, error_table, lookup_errors
from forecaster.models.features import event_matrix

SeasonalityMode = Literal["additive", "multiplicative"]
"""Prophet's ``seasonality_mode``; :meth:`ProphetForecaster.fit` rejects any other string."""


def _quiet() -> None:
    """Prophet and cmdstanpy log every fit at INFO; a CLI over many series cannot afford it."""
    for name in ("prophet", "cmdstanpy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def calendar_regressors(ds: pd.Series, country: str) -> pd.DataFrame:
    """``holiday`` and ``makeup_workday`` (weekend days that are working days) per row."""
    days = pd.DatetimeIndex(pd.to_datetime(ds)).normalize()
    unique = pd.DatetimeIndex(days.unique())
    kinds = pd.Series(day_types([d.date() for d in unique], country), index=unique)
    kind = kinds.reindex(days).to_numpy()
    return pd.DataFrame(
        {
            "holiday": (kind == HOLIDAY).astype(float),
            "makeup_workday": ((kind == WORKING) & (days.day_of_week >= 5)).astype(float),
        }
    )


def _seeded_predict(model: Any, inputs: pd.DataFrame, seed: int | None) -> pd.DataFrame:
    """``model.predict(inputs)`` with its trend and noise draws seeded by ``seed``.

    Prophet draws them from NumPy's global generator, so two predicts of one model gave
    different ``uncertainty`` quantiles (and a backtest different scores at every run);
    the global state is put back after, so no one else's draws change.
    """
    if seed is None:
        return model.predict(inputs)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return model.predict(inputs)
    finally:
        np.random.set_state(state)


class ProphetForecaster(BaseEstimator):
    """Prophet per series behind ``fit(df, events)`` / ``predict(horizon, quantiles, events)``.

    Args:
        seasonality_mode: ``additive`` or ``multiplicative``.
        daily_seasonality, weekly_seasonality: Prophet's switches.
        country: holiday calendar whose holidays and make-up working days become regressors
            (``None``: none).
        tz: the service's time zone; Prophet sees local time so days start at local midnight.
        changepoint_prior_scale: trend flexibility (Prophet's default).
        quantile_method: ``residuals`` (default) or ``uncertainty`` (see the module doc).
        interval_width, uncertainty_samples: Prophet's, used by ``uncertainty`` only.
        season: for cold start: fewer than two seasons of data falls back to a baseline.
        random_state: seed of the draws Prophet's ``uncertainty`` interval is made of
            (``None``: a new interval at every predict).
    """

    def __init__(
        self,
        seasonality_mode: SeasonalityMode = "additive",
        daily_seasonality: bool = True,
        weekly_seasonality: bool = True,
        country: str | None = "CN",
        tz: str | None = None,
        changepoint_prior_scale: float = 0.05,
        quantile_method: str = "residuals",
        interval_width: float = 0.8,
        uncertainty_samples: int = 300,
        season: str = "1D",
        random_state: int | None = 0,
    ) -> None:
        self.seasonality_mode = seasonality_mode
        self.daily_seasonality = daily_seasonality
        self.weekly_seasonality = weekly_seasonality
        self.country = country
        self.tz = tz
        self.changepoint_prior_scale = changepoint_prior_scale
        self.quantile_method = quantile_method
        self.interval_width = interval_width
        self.uncertainty_samples = uncertainty_samples
        self.season = season
        self.random_state = random_state

    def _local(self, ds: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
        index = pd.DatetimeIndex(ds)
        return index.tz_localize("UTC").tz_convert(self.tz).tz_localize(None) if self.tz else index

    def _inputs(self, uid: str, ds: pd.DatetimeIndex, events: pd.DataFrame | None) -> pd.DataFrame:
        frame = pd.DataFrame({"ds": self._local(ds)})
        if self.country:
            frame = pd.concat([frame, calendar_regressors(frame["ds"], self.country)], axis=1)
        extra = event_matrix(events, uid, ds, self.event_names_)
        if extra is not None:  # None exactly when there are no event names
            for n, name in enumerate(self.event_names_):
                frame[f"event_{name}"] = extra[:, n]
        return frame

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> ProphetForecaster:
        from prophet import Prophet

        _quiet()
        if self.seasonality_mode not in ("additive", "multiplicative"):
            raise ValueError(
                "seasonality_mode must be additive or multiplicative,"
                f" not {self.seasonality_mode!r}"
            )
        if self.quantile_method not in ("residuals", "uncertainty"):
            raise ValueError(
                f"quantile_method must be residuals or uncertainty, not {self.quantile_method!r}"
            )
        own_interval = self.quantile_method == "uncertainty"
        check_params(
            self,
            {
                "season": duration(),
                "changepoint_prior_scale": positive(),
                # NaN quantiles at 0, an error from statistics at 1; and with no draws
                # Prophet makes no interval at all (a KeyError of yhat_upper at predict)
                "interval_width": (lambda v: number(v) and 0 < v < 1, "between 0 and 1"),
                "uncertainty_samples": whole(1 if own_interval else 0),
            },
        )
        frame = validate_series(df)
        self.step_ = series_freq(frame)
        self.ds_zone_ = ds_zone(df)  # after step_, which may refuse the frame
        self.event_names_ = (
            [] if events is None else [c for c in events.columns if c not in ("unique_id", "ds")]
        )
        self.last_ds_: dict[str, pd.Timestamp] = {}
        self.models_: dict[str, Any] = {}
        self.errors_: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.fallbacks_: dict[str, Any] = {}
        self.fallback_reason_: dict[str, str | None] = {}
        # per series (see is_nonnegative)
        self.nonnegative_: dict[str, bool] = {}
        for uid, one in frame.groupby("unique_id", sort=True):
            self.last_ds_[uid] = one["ds"].iloc[-1]
            self.nonnegative_[uid] = bool((one["y"].dropna() >= 0).all())
            seen = one.dropna(subset=["y"])
            if len(seen) * self.step_ < 2 * pd.Timedelta(self.season):
                self.fallbacks_[uid], self.fallback_reason_[uid] = cold_start(
                    one, self.season, self.step_
                )
                continue
            self.fallback_reason_[uid] = None
            inputs = self._inputs(uid, pd.DatetimeIndex(seen["ds"]), events)
            inputs["y"] = seen["y"].to_numpy()
            model = Prophet(
                seasonality_mode=self.seasonality_mode,
                daily_seasonality=self.daily_seasonality,
                weekly_seasonality=self.weekly_seasonality,
                yearly_seasonality=False,
                changepoint_prior_scale=self.changepoint_prior_scale,
                interval_width=self.interval_width,
                uncertainty_samples=(
                    self.uncertainty_samples if self.quantile_method == "uncertainty" else 0
                ),
            )
            for column in inputs.columns:
                if column not in ("ds", "y") and inputs[column].std() > 0:
                    model.add_regressor(column, mode="additive")
            model.fit(inputs)
            self.models_[uid] = model
            fitted = model.predict(inputs.drop(columns="y"))["yhat"].to_numpy()
            self.errors_[uid] = error_table(
                np.ones(len(fitted)), fitted, inputs["y"].to_numpy() - fitted, np.array([1, 2])
            )
        return self

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
            index = future_index(last, self.step_, horizon)
            model = self.models_[uid]
            inputs = self._inputs(uid, index, events)
            inputs = inputs[["ds", *model.extra_regressors]]
            raw = _seeded_predict(model, inputs, self.random_state)
            point = raw["yhat"].to_numpy()
            nonnegative = is_nonnegative(self, uid)
            by_quantile = {}
            for q in sorted({0.5, *quantiles}):
                if self.quantile_method == "uncertainty":
                    z = NormalDist().inv_cdf(0.5 + self.interval_width / 2)
                    sigma = (raw["yhat_upper"] - raw["yhat_lower"]).to_numpy() / (2 * z)
                    value = point + NormalDist().inv_cdf(q) * sigma
                else:
                    table, edges = self.errors_[uid]
                    value = point + lookup_errors(
                        table, edges, np.array([1, 2]), np.ones(horizon), point, q
                    )
                by_quantile[q] = np.maximum(value, 0.0) if nonnegative else value
            by_quantile = sort_quantiles(by_quantile)
            frame = pd.DataFrame({"unique_id": uid, "ds": index, "yhat": by_quantile[0.5]})
            for q in quantiles:
                frame[quantile_column(q)] = by_quantile[q]
            frames.append(frame)
        return in_zone(pd.concat(frames, ignore_index=True), fitted_zone(self))
