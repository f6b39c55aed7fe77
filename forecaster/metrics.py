"""Forecast metrics as plain functions over arrays, and a registry to run them by name.

Point metrics (MAE, RMSE, sMAPE, MASE) say how close the median is; for scaling what
matters more is the upper quantile: pinball loss per quantile, interval coverage, and
**peak recall**, the share of the busiest intervals where the upper quantile covered the
actual load (a miss there is a page to on-call).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _finite(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Drop positions where any array is NaN: missing data is not scored."""
    stacked = [np.asarray(a, dtype=float) for a in arrays]
    keep = np.all([np.isfinite(a) for a in stacked], axis=0)
    return tuple(a[keep] for a in stacked)


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = _finite(y, yhat)
    return float(np.mean(np.abs(y - yhat))) if y.size else np.nan


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    y, yhat = _finite(y, yhat)
    return float(np.sqrt(np.mean((y - yhat) ** 2))) if y.size else np.nan


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Symmetric MAPE in percent, as in the M4 competition (0 where both are 0)."""
    y, yhat = _finite(y, yhat)
    if not y.size:
        return np.nan
    denominator = np.abs(y) + np.abs(yhat)
    ratio = np.divide(
        2 * np.abs(y - yhat), denominator, out=np.zeros_like(y), where=denominator > 0
    )
    return float(100 * np.mean(ratio))


def mase(y: np.ndarray, yhat: np.ndarray, train: np.ndarray, season: int) -> float:
    """MAE scaled by the in-sample MAE of the seasonal naive forecast (M4's definition).

    ``train`` is the regular history, gaps as NaN: differences are taken a season apart in
    time first, and only then are pairs with a missing side dropped. Dropping the gaps
    first would pair values that are not a season apart.
    """
    if int(season) != season or season < 1:  # 0 compared each value with the whole array
        raise ValueError(f"season must be a positive whole number of intervals, got {season!r}")
    train = np.asarray(train, dtype=float)
    if train.size <= season:
        return np.nan
    (diffs,) = _finite(train[season:] - train[:-season])
    if not diffs.size:
        return np.nan
    scale = np.mean(np.abs(diffs))
    return mae(y, yhat) / scale if scale > 0 else np.nan


def pinball(y: np.ndarray, yq: np.ndarray, q: float) -> float:
    """Quantile (pinball) loss: under-forecasts cost ``q``, over-forecasts ``1 - q``."""
    y, yq = _finite(y, yq)
    if not y.size:
        return np.nan
    diff = y - yq
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def coverage(y: np.ndarray, upper: np.ndarray) -> float:
    """Share of intervals at or below the upper quantile (a calibrated q0.9 gives ~0.9)."""
    y, upper = _finite(y, upper)
    return float(np.mean(y <= upper)) if y.size else np.nan


def peak_recall(y: np.ndarray, upper: np.ndarray, top: float = 0.05) -> float:
    """Share of the busiest ``top`` share of intervals where the upper quantile covered y."""
    y, upper = _finite(y, upper)
    if not y.size:
        return np.nan
    threshold = np.quantile(y, 1 - top)
    busiest = y >= threshold
    return float(np.mean(y[busiest] <= upper[busiest]))


def selection_score(
    y: np.ndarray, median: np.ndarray, upper: np.ndarray, q: float, under_weight: float = 3.0
) -> float:
    """Lower is better: pinball loss of the median plus that of the upper quantile, every
    shortfall weighted up.

    Under-forecasting is what pages on-call, so a shortfall costs ``under_weight`` times
    more than the same excess. The upper quantile is what the controller scales on; the
    median counts too, as it is what the capacity outlook and every plot show: judged on
    the upper quantile alone, a model whose band is well placed around a wrong centre wins
    (on M4 Hourly, weekly seasonal naive for half the series, OWA 0.75 instead of 0.51).
    Used by ``--model auto`` to choose between models.
    """
    y, median, upper = _finite(y, median, upper)
    if not y.size:
        return np.nan
    return _weighted_pinball(y, median, 0.5, under_weight) + _weighted_pinball(
        y, upper, q, under_weight
    )


def _weighted_pinball(y: np.ndarray, yq: np.ndarray, q: float, under_weight: float) -> float:
    diff = y - yq
    return float(np.mean(np.where(diff > 0, under_weight * q * diff, (1 - q) * -diff)))


Metric = Callable[..., float]
REGISTRY: dict[str, Metric] = {
    "mae": mae,
    "rmse": rmse,
    "smape": smape,
    "mase": mase,
    "pinball": pinball,
    "coverage": coverage,
    "peak_recall": peak_recall,
    "selection_score": selection_score,
}
