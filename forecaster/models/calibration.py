"""Conformal calibration: correct any model's quantiles by its own backtest errors.

``ConformalCalibrator(model)`` backtests ``model`` on the training data (rolling origins,
each fold fitted on the past only), measures for every quantile level ``q`` on a grid how
far the actual values fell above the forecast quantile, and shifts the quantile by the
``q``-th empirical quantile of that shortfall, per series and by step ahead. A nominal
q0.9 is then exceeded about 10 % of the time in the conditions the backtest saw. The model
itself is finally refitted on all the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from forecaster.frames import quantile_column, series_freq, validate_series
from forecaster.models.base import (
    check_params,
    check_predict,
    ds_zone,
    fitted_zone,
    in_zone,
    sort_quantiles,
    whole,
)
from forecaster.models.direct import GRID


def shortfall_table(results: pd.DataFrame, step_edges: np.ndarray) -> np.ndarray:
    """For each step bin and grid level ``g``: the ``g``-quantile of ``y - q_g`` (0 if unseen)."""
    table = np.zeros((len(step_edges) - 1, len(GRID)))
    step_bin = np.clip(
        np.searchsorted(step_edges, results["h"], side="right") - 1, 0, len(table) - 1
    )
    y = results["y"].to_numpy()
    for n, g in enumerate(GRID):
        errors = y - results[quantile_column(g)].to_numpy()
        pooled = errors[np.isfinite(errors)]
        for s in range(len(table)):
            cell = errors[(step_bin == s) & np.isfinite(errors)]
            source = cell if cell.size >= 30 else pooled
            table[s, n] = np.quantile(source, g) if source.size else 0.0
    return table


def interpolate_levels(row: np.ndarray, q: float) -> np.ndarray:
    """Values on ``GRID`` (last axis) interpolated at level ``q``."""
    return np.apply_along_axis(lambda v: np.interp(q, GRID, v), -1, row)


class ConformalCalibrator(BaseEstimator):
    """Wrap ``model`` so its quantiles are corrected by backtest errors (see module doc).

    Args:
        model: any forecaster of this package (cloned, never modified).
        horizon: steps ahead forecast in each calibration fold.
        folds: calibration folds; their cutoffs are ``every`` steps apart.
        every: steps between cutoffs (default: ``horizon``).
    """

    def __init__(
        self, model: Any = None, horizon: int = 24, folds: int = 5, every: int | None = None
    ) -> None:
        self.model = model
        self.horizon = horizon
        self.folds = folds
        self.every = every

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> ConformalCalibrator:
        from forecaster.backtest import ShortHistoryError, backtest

        check_params(
            self,
            {
                "model": (lambda m: hasattr(m, "fit") and hasattr(m, "predict"), "a forecaster"),
                "horizon": whole(1),
                "folds": whole(1),
                "every": whole(1, optional=True),
            },
        )
        frame = validate_series(df)
        self.step_ = series_freq(frame)
        self.ds_zone_ = ds_zone(df)  # model_ is fitted on naive UTC, this puts it back
        self.step_edges_ = np.unique(np.round(np.geomspace(1, self.horizon + 1, 5)).astype(int))
        self.corrections_: dict[str, np.ndarray] = {}
        self.fallback_reason_: dict[str, str | None] = {}
        self.nonnegative_ = {
            str(uid): bool((y.dropna() >= 0).all()) for uid, y in frame.groupby("unique_id")["y"]
        }
        try:
            results = backtest(
                self.model,
                frame,
                self.horizon,
                self.folds,
                self.every,
                quantiles=tuple(GRID),
                events=events,
            )
        except ShortHistoryError as exc:  # too short to backtest: uncorrected, and say so
            results = None
            reason = f"not calibrated: {exc}"
        self.model_ = clone(self.model).fit(frame, events=events)
        inner = getattr(self.model_, "fallback_reason_", {})
        for uid in frame["unique_id"].unique():
            self.corrections_[uid] = np.zeros((len(self.step_edges_) - 1, len(GRID)))
            self.fallback_reason_[uid] = None
            if results is None:
                self.fallback_reason_[uid] = reason
                continue
            mine = results[results["unique_id"] == uid]
            if not inner.get(uid):
                # The model forecasts this series itself: early folds that had too little
                # history for it and fell back to a baseline (last value, seasonal naive)
                # measure that baseline's errors, not the model's, which they widened.
                own = mine[mine["fallback"].isna()]
                if own.empty and not mine.empty:
                    self.fallback_reason_[uid] = (
                        "not calibrated: every backtest fold fell back to a baseline"
                    )
                mine = own
            self.corrections_[uid] = shortfall_table(mine, self.step_edges_)
        for uid, why in inner.items():
            self.fallback_reason_[uid] = why or self.fallback_reason_.get(uid)
        return self

    def predict(
        self,
        horizon: int,
        quantiles: Sequence[float] = (0.5, 0.9),
        events: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        horizon, quantiles = check_predict(self, horizon, quantiles)
        levels = sorted({0.5, *quantiles})
        forecast = self.model_.predict(horizon, quantiles=levels, events=events)
        parts = []
        for uid, one in forecast.groupby("unique_id", sort=False):
            one = one.copy()
            steps = np.arange(1, len(one) + 1)
            step_bin = np.clip(
                np.searchsorted(self.step_edges_, steps, side="right") - 1,
                0,
                len(self.step_edges_) - 2,
            )
            table = self.corrections_.get(uid)
            corrected = {}
            for q in levels:
                value = one[quantile_column(q)].to_numpy()
                if table is not None:
                    value = value + interpolate_levels(table, q)[step_bin]
                corrected[q] = value
            corrected = sort_quantiles(corrected)
            # Per series, as its history was: counts are clipped at 0, a net flow is not
            # (clipped when the forecast it corrects was >= 0, a flow's inflow hour lost
            # the outflows its corrections held). Artefacts stored before this was
            # recorded judge by that forecast, as they did.
            stored = getattr(self, "nonnegative_", {})
            if stored.get(uid, (one[quantile_column(levels[0])] >= 0).all()):
                corrected = {q: np.maximum(v, 0.0) for q, v in corrected.items()}
            one["yhat"] = corrected[0.5]
            for q in quantiles:
                one[quantile_column(q)] = corrected[q]
            # each column once, as every model gives it: a level asked for twice was two
            # q0.9 columns, and one[q0.9] a frame where a column was expected
            columns = dict.fromkeys(quantile_column(q) for q in quantiles)
            parts.append(one[["unique_id", "ds", "yhat", *columns]])
        return in_zone(pd.concat(parts, ignore_index=True), fitted_zone(self))
