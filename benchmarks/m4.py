"""M4 Hourly helpers: read the wide CSV, the Naive2 yardstick, and OWA.

The M4 competition scores a method by its OWA: the mean of its sMAPE and MASE, each
divided by the same figure for Naive2. Naive2 is implemented here exactly as in the
competition's reference code (``Benchmarks and Evaluation.R`` in Mcompetitions/M4-methods),
because every OWA below is only as good as this yardstick:

1. a 90 % autocorrelation test at the seasonal lag (``SeasonalityTest``);
2. if seasonal, classical multiplicative decomposition (R's ``decompose``): a centred
   moving average of one period as the trend, the mean ratio to it per position in the
   period, normalised to average 1;
3. the last seasonally adjusted value, repeated and multiplied back by the seasonal index.

Scores use the project's own ``smape`` and ``mase`` (M4's definitions), not copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forecaster.metrics import mase, smape

PERIOD = 24
"""M4 Hourly's seasonal period, used by Naive2 and by the MASE scale."""

HORIZON = 48
"""M4 Hourly's forecast horizon."""

START = pd.Timestamp("2020-01-01 00:00")
"""M4 series carry no timestamps; each gets an hourly index from this arbitrary midnight.
Series then keep their hour of the day relative to their first value, as the M4 reference
code's ``ts(x, frequency = 24)`` does, but days of the week and holidays mean nothing."""


def read_wide(path: Path) -> dict[str, np.ndarray]:
    """Series by id from an M4 wide CSV (``V1`` the id, then values padded with blanks)."""
    raw = pd.read_csv(path)
    ids = raw.iloc[:, 0].astype(str)
    values = raw.iloc[:, 1:].to_numpy(dtype=float)
    return {uid: row[np.isfinite(row)] for uid, row in zip(ids, values, strict=True)}


def to_frame(series: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long-format ``unique_id, ds, y`` on an hourly index from :data:`START`."""
    parts = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range(START, periods=len(y), freq="1h"),
                "y": y,
            }
        )
        for uid, y in series.items()
    ]
    return pd.concat(parts, ignore_index=True)


def acf(x: np.ndarray, lags: int) -> np.ndarray:
    """Sample autocorrelations at lags 1..``lags`` (R's ``acf``: one denominator, mean removed)."""
    centred = x - x.mean()
    denominator = np.sum(centred**2)
    return np.array([np.sum(centred[k:] * centred[:-k]) / denominator for k in range(1, lags + 1)])


def is_seasonal(x: np.ndarray, period: int = PERIOD) -> bool:
    """M4's 90 % test: |acf at the period| above 1.645 standard errors (Bartlett's formula).

    Series shorter than three periods count as not seasonal, as in the reference code.
    """
    if len(x) < 3 * period:
        return False
    r = acf(x, period)
    limit = 1.645 / np.sqrt(len(x)) * np.sqrt(1 + 2 * np.sum(r[: period - 1] ** 2))
    return bool(abs(r[period - 1]) > limit)


def seasonal_index(x: np.ndarray, period: int = PERIOD) -> np.ndarray:
    """Multiplicative seasonal index per position in the period, as R's ``decompose``.

    Position ``p`` is that of ``x[p]``, ``x[p + period]``, …; the trend is the centred moving
    average of one period (half weights at both ends, since the period is even).
    """
    weights = np.r_[0.5, np.ones(period - 1), 0.5] / period
    half = period // 2
    trend = np.full(len(x), np.nan)
    trend[half : len(x) - half] = np.convolve(x, weights, mode="valid")
    ratio = x / trend
    figure = np.array([np.nanmean(ratio[p::period]) for p in range(period)])
    return figure / figure.mean()


def naive2(x: np.ndarray, horizon: int = HORIZON, period: int = PERIOD) -> np.ndarray:
    """M4's Naive2: the last seasonally adjusted value, reseasonalised."""
    if not is_seasonal(x, period):
        return np.full(horizon, x[-1])
    index = seasonal_index(x, period)
    adjusted_last = x[-1] / index[(len(x) - 1) % period]
    return adjusted_last * index[(len(x) + np.arange(horizon)) % period]


def scores(
    actual: dict[str, np.ndarray], forecast: dict[str, np.ndarray], train: dict[str, np.ndarray]
) -> tuple[float, float]:
    """Mean sMAPE and mean MASE over series, as M4 averages them."""
    uids = sorted(actual)
    smapes = [smape(actual[u], forecast[u]) for u in uids]
    mases = [mase(actual[u], forecast[u], train[u], PERIOD) for u in uids]
    return float(np.mean(smapes)), float(np.mean(mases))


def owa(smape_value: float, mase_value: float, naive2_scores: tuple[float, float]) -> float:
    """Overall weighted average relative to Naive2 (Naive2 itself scores 1)."""
    return 0.5 * (smape_value / naive2_scores[0] + mase_value / naive2_scores[1])
