"""Last value: the simplest yardstick, with random-walk intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from forecaster.frames import series_freq, validate_series
from forecaster.models.base import (
    PerSeriesModel,
    check_params,
    ds_zone,
    duration,
    is_nonnegative,
    regular,
    whole,
)


class LastValue(PerSeriesModel):
    """Repeat the last observed (non-missing) value.

    Quantiles are the last value plus the empirical quantiles of one-step changes seen in
    fit, widened by ``sqrt(h)`` at ``h`` steps ahead as for a random walk, and clipped at 0
    for a series never below 0 (request rates are not negative; a series that is, a net
    flow, keeps its negative quantiles). ``window`` bounds the history the changes are
    learned from, in intervals (the last value is the last one seen, however long ago).
    ``freq`` is the series' interval (``"1min"``), inferred from the data when ``None``:
    a series seen only once, a new service's first minute, has no interval to infer.
    """

    def __init__(self, window: int = 10_080, freq: str | pd.Timedelta | None = None) -> None:
        self.window = window
        self.freq = freq

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> LastValue:
        check_params(self, {"window": whole(1), "freq": duration(optional=True)})
        frame = validate_series(df)
        self.step_ = pd.Timedelta(self.freq) if self.freq is not None else series_freq(frame)
        self.ds_zone_ = ds_zone(df)  # after step_, which may refuse the frame
        self.last_ds_ = {}
        self.last_value_: dict[str, float] = {}
        self.changes_: dict[str, np.ndarray] = {}
        self.fallback_reason_: dict[str, str | None] = {}
        self.nonnegative_: dict[str, bool] = {}
        for uid, one in frame.groupby("unique_id", sort=True):
            self.nonnegative_[uid] = bool((one["y"].dropna() >= 0).all())
            y = regular(one, self.step_).iloc[-self.window :]
            self.last_ds_[uid] = y.index[-1]
            # the last value seen at all: the window bounds the changes learned from, and a
            # window of missing data at the end (window=60, the last hour of logs lost)
            # forecast 0, no traffic, for a series with days of data
            seen = one["y"].dropna()
            self.last_value_[uid] = float(seen.iloc[-1]) if len(seen) else 0.0
            changes = y.diff().dropna().to_numpy()
            self.changes_[uid] = changes if changes.size else np.zeros(1)
            self.fallback_reason_[uid] = None if len(seen) else "no observed value"
        return self

    def _forecast_one(
        self, uid: str, index: pd.DatetimeIndex, quantiles: Sequence[float]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        base = np.full(len(index), self.last_value_[uid])
        spread = np.sqrt(np.arange(1, len(index) + 1))
        changes = self.changes_[uid]
        by_quantile = {q: base + np.quantile(changes, q) * spread for q in quantiles}
        return base, clip_at_zero(self, uid, by_quantile)


def clip_at_zero(
    model: PerSeriesModel, uid: str, by_quantile: dict[float, np.ndarray]
) -> dict[float, np.ndarray]:
    """Quantiles of a series never below 0 clipped at 0 (:func:`is_nonnegative`), others as
    they are."""
    if not is_nonnegative(model, uid):
        return by_quantile
    return {q: np.maximum(value, 0.0) for q, value in by_quantile.items()}
