"""A linear direct multi-step forecaster: ridge regression per step bin, fitted in milliseconds.

The samples and features are those of the gradient-boosting model
(:func:`forecaster.models.features.design`: seasonal lags, recent lags and rolling means,
the calendar's Fourier terms and day types, known events; every value divided by the level
of the season before the origin), and the target is ``y[o + h] / level(o)``. Instead of
trees, one ridge regression per bin of steps ahead (bins geometric in ``h``, so the first
minutes, where the recent lags matter most, get their own coefficients) learns the target,
across all series at once (``global_model``) or per series. Steps are drawn log-uniformly,
so every bin gets about the same number of samples. A least-squares fit chases outliers,
so origins whose level is measured on less than half a season (just after an outage) are
not learned from, ratios to the level are bounded by :data:`CLIP`, and a lone corrupt
interval as a target is bounded as the level bounds it
(:func:`~forecaster.models.features.capped`).

Quantiles are cross-conformal: the origins of each series are cut into ``folds``
contiguous blocks of time, each block is forecast by a fit on the other blocks, and the
empirical quantiles of those out-of-block errors, by step bin and forecast level (the error
table of :mod:`forecaster.models.sklearn_model`, reused), are added to the point forecast
of the final fit on everything. Every sample's error counts, not only those of the most
recent fifth as in the gradient-boosting model: a linear fit is cheap enough to repeat,
and five times as many errors make the q0.9 of each (step, level) cell far less noisy.
The blocks see their neighbours' future, so the intervals can be a little narrow where the
level drifts (q0.9 covered 88 % of NASA intervals in the backtests). All the fits come
from one pass over the samples (:func:`moments`), which keeps a fit to tens of milliseconds.

Missing data. A linear model cannot route NaN the way trees do, so a missing feature (a
seasonal lag that falls in an outage, the weekly lag in the first week of history) is
replaced by that column's mean over the training samples, plus a 0/1 indicator column for
each pattern of missingness seen in training, which lets the model learn what an absent
value implies. A mean, unlike a zero, is a typical ratio to the level, so a missing lag
pulls the forecast towards the usual rather than towards silence, and the indicator
corrects the average bias of doing so; filling from another seasonal lag instead would
need a rule per feature and still be wrong when both fall in the same outage. Missing
targets are dropped, never learned as zeros. A feature observed in under half of the
training samples (:data:`RARE`: the second seasonal lag of a two-day history) is read as
missing everywhere, at predict too: a few rows would decide its coefficients.

The fitted state is a handful of arrays (fill values, coefficients per step bin, the error
table), so a saved model is plain data and a loaded one predicts exactly as it did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecaster.models.base import check_params, positive, whole
from forecaster.models.direct import (
    DIRECT_PARAMS,
    DirectForecaster,
    error_table,
    samples_per_series,
)
from forecaster.models.features import capped, rolling_mean

MAX_TOTAL_SAMPLES = 1_000_000
"""Samples of a fit over a whole fleet, at most: the 200 per series stop here."""

CLIP = 50.0
"""Bound on a feature or target divided by the level: a ratio to a near-zero level (a series
that was silent for a season) or of a corrupt interval (a counter reset) must not dominate a
least-squares fit. The step ahead, the first column of
:func:`~forecaster.models.features.design`, is not a ratio and is not clipped."""


RARE = 0.5
"""Share of the training samples a feature must be observed in to be learned from; below
it the feature is read as missing in fit and predict alike. A least-squares fit gives a
column seen in a handful of rows whatever coefficients fit those rows (-0.7 and -0.96 on
the second seasonal lag of a 49-hour series, seen in 12 % of them), and predict, where the
column is present, multiplied them in: the next day came out near 0."""


def moments(Z: np.ndarray, target: np.ndarray, bins: np.ndarray, count: int) -> np.ndarray:
    """Per step bin, the cross products of ``[Z, 1, target]``: all a ridge fit needs.

    Sums of products add up, so the fit without the held-out samples costs only the
    held-out samples' own moments, and bins too small to fit alone can pool theirs.
    """
    augmented = np.hstack([Z, np.ones((len(Z), 1)), target[:, None]])
    out = np.zeros((count, augmented.shape[1], augmented.shape[1]))
    order = np.argsort(bins, kind="stable")
    bounds = np.searchsorted(bins[order], np.arange(count + 1))
    for b in range(count):
        part = augmented[order[bounds[b] : bounds[b + 1]]]
        out[b] = part.T @ part
    return out


def ridge(moment: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge coefficients and intercept from :func:`moments`, on standardised columns.

    The normal equations of a few dozen columns cost far less than scikit-learn's
    ``Ridge`` input checks (about a millisecond a fit, a dozen fits a model); the penalty
    is on standardised columns so it treats the step number and a ratio to the level alike.
    """
    p = moment.shape[0] - 2
    n = moment[p, p]
    mean_x, mean_y = moment[:p, p] / n, moment[p + 1, p] / n
    cov = moment[:p, :p] / n - np.outer(mean_x, mean_x)
    cross = moment[:p, p + 1] / n - mean_x * mean_y
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    std = np.where(std > 1e-9, std, 1.0)
    gram = n * cov / np.outer(std, std)
    gram[np.diag_indices_from(gram)] += alpha
    coef = np.linalg.solve(gram, n * cross / std) / std
    return coef, float(mean_y - mean_x @ coef)


def complete(X: np.ndarray, fill: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """``X`` with NaN replaced by ``fill`` and a missing indicator for each ``flagged`` column."""
    missing = np.isnan(X)
    out = np.where(missing, fill, X)
    np.clip(out[:, 1:], -CLIP, CLIP, out=out[:, 1:])
    return np.hstack([out, missing[:, flagged].astype(float)])


def steady(values: np.ndarray, period: int) -> np.ndarray:
    """Observed intervals whose level (the mean of the season before) is measured on at least
    half a season: the origins the model learns and forecasts from.

    Just after an outage the level is the mean of a few intervals at one time of day, and
    the ratios to it are outliers that a least-squares fit chases.
    """
    observed = rolling_mean(np.isfinite(values).astype(float), period)
    return np.isfinite(values) & (observed >= 0.5)


def step_bins(steps: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, steps, side="right") - 1, 0, len(edges) - 2)


class LinearForecaster(DirectForecaster):
    """Direct multi-step ridge regression per step bin, with cross-conformal quantiles.

    Args:
        season: the seasonal period (``1D``); lags are whole seasons back.
        max_horizon: the furthest step trained for, in intervals (default: one season).
            Further steps use the coefficients of the last bin with lags further back.
        lags: recent values before the origin used as features.
        seasonal_lags: seasons back of the target's time of day used as features.
        global_model: one model across all series (False: one per series).
        max_samples: training samples (origin, step) drawn in all; caps the fit time.
        per_origin: samples per observed origin, at most (fewer when ``max_samples``
            caps them): a short or coarse series needs no more to fit a few dozen numbers.
        bins: number of step bins, geometric in the step, each with its own coefficients.
        alpha: ridge penalty on standardised features.
        folds: blocks of time whose errors, each forecast by a fit on the other blocks,
            make the quantiles (1: in-sample errors, optimistic).
        country, tz: calendar for day types (holidays, make-up working days) in local time.
        random_state: seed for the sampling of origins and steps.
    """

    def __init__(
        self,
        season: str = "1D",
        max_horizon: int | None = None,
        lags: int = 6,
        seasonal_lags: int = 2,
        global_model: bool = True,
        max_samples: int = 40_000,
        per_origin: int = 2,
        bins: int = 6,
        alpha: float = 1.0,
        folds: int = 5,
        country: str | None = None,
        tz: str | None = None,
        random_state: int = 0,
    ) -> None:
        self.season = season
        self.max_horizon = max_horizon
        self.lags = lags
        self.seasonal_lags = seasonal_lags
        self.global_model = global_model
        self.max_samples = max_samples
        self.per_origin = per_origin
        self.bins = bins
        self.alpha = alpha
        self.folds = folds
        self.country = country
        self.tz = tz
        self.random_state = random_state

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> LinearForecaster:
        # per_origin=0 forecast NaN, bins=0 was an IndexError, a negative alpha was used
        check_params(
            self,
            {
                **DIRECT_PARAMS,
                "max_samples": whole(1),
                "per_origin": whole(1),
                "bins": whole(1),
                # the normal equations of collinear columns (two missing indicators, a
                # constant calendar column) need a penalty: alpha=0 was a LinAlgError
                "alpha": positive(),
                "folds": whole(1),
            },
        )
        series = self._start(df, events, step_bins=self.bins)
        if not series:
            return self
        rng = np.random.default_rng(self.random_state)
        budget = samples_per_series(len(series), self.max_samples, 200, MAX_TOTAL_SAMPLES)
        samples = [self._samples(uid, y, events, budget, rng) for uid, y in series]
        self._fit_groups([uid for uid, _ in series], samples)
        return self

    def _samples(
        self,
        uid: str,
        y: pd.Series,
        events: pd.DataFrame | None,
        budget: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        values = y.to_numpy(dtype=float)
        n = len(values)
        candidates = np.arange(min(self.period_, n - 2), n - 1)
        usable = candidates[steady(values, self.period_)[candidates]]
        candidates = usable if len(usable) else candidates[np.isfinite(values[candidates])]
        # every observed origin equally often, then a random subset if that is too many
        pool = np.repeat(candidates, self.per_origin)
        origins = pool if len(pool) <= budget else rng.choice(pool, size=budget, replace=False)
        count = len(origins)
        room = np.minimum(self.max_horizon_, n - 1 - origins)
        # Log-uniform in 1 .. room, stratified: each geometric step bin gets its share.
        spread = (rng.permutation(count) % self.bins + rng.random(count)) / self.bins
        steps = np.clip(np.floor(np.exp(spread * np.log(room + 1))).astype(int), 1, room)
        X, scale = self._design(uid, values, pd.DatetimeIndex(y.index), origins, steps, events)
        # A lone corrupt interval (a counter reset of 1000 times the load) is bounded as
        # the level bounds it (capped), as gradient boosting's targets are: clipped at
        # CLIP alone it was still a target of 50 that the least-squares fit chased, and a
        # spike ten intervals back put the whole next day at a third of its load.
        capped_values = capped(values, self.period_)
        target = np.clip(capped_values[origins + steps] / scale, -CLIP, CLIP)
        folds = max(1, self.folds)
        first, last = candidates.min(), candidates.max()
        block = np.minimum((origins - first) * folds // (last - first + 1), folds - 1)
        finite = np.isfinite(target)
        return X[finite], target[finite], steps[finite], block[finite]

    def _fit_group(self, samples: list[tuple[np.ndarray, ...]]) -> dict[str, Any]:
        X = np.vstack([s[0] for s in samples])
        target = np.concatenate([s[1] for s in samples])
        steps = np.concatenate([s[2] for s in samples])
        block = np.concatenate([s[3] for s in samples])
        # A column observed in a few rows only (the second seasonal lag of a two-day
        # history) got wild coefficients fitted to those few, which at predict, where it
        # is present, put the forecast at about 0: it is read as missing everywhere.
        rare = np.flatnonzero(np.isfinite(X).mean(axis=0) < RARE)
        X[:, rare] = np.nan
        missing = np.isnan(X)
        seen = (~missing).any(axis=0)
        with np.errstate(invalid="ignore"):
            fill = np.where(seen, np.nanmean(np.where(seen, X, 0.0), axis=0), 0.0)
        # one indicator per pattern of missingness: lags missing together share one
        patterns: dict[bytes, int] = {}
        for column in np.flatnonzero(missing.any(axis=0) & seen):
            patterns.setdefault(np.packbits(missing[:, column]).tobytes(), int(column))
        flagged = np.array(sorted(patterns.values()), dtype=np.int64)
        Z = complete(X, fill, flagged)
        bins = step_bins(steps, self.step_edges_)
        count = len(self.step_edges_) - 1
        every = moments(Z, target, bins, count)
        final = self._solve(every)
        point = np.empty(len(Z))
        blocks = np.unique(block)
        for k in blocks:
            out = block == k
            if len(blocks) == 1:  # nothing to hold out: in-sample errors, optimistic
                fit = final
            else:
                fit = self._solve(every - moments(Z[out], target[out], bins[out], count))
            point[out] = _apply(fit, Z[out], bins[out])
        table, level_edges = error_table(steps, point, target - point, self.step_edges_)
        return {
            "rare": rare,
            "fill": fill,
            "flagged": flagged,
            "coef": final[0],
            "intercept": final[1],
            "errors": table,
            "level_edges": level_edges,
        }

    def _solve(self, moment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients per step bin; a bin with too few samples shares the pooled fit."""
        count, width = moment.shape[0], moment.shape[1] - 2
        coef = np.zeros((count, width))
        intercept = np.zeros(count)
        pooled = ridge(moment.sum(axis=0), self.alpha)
        for b in range(count):
            enough = moment[b, width, width] >= 2 * width
            coef[b], intercept[b] = ridge(moment[b], self.alpha) if enough else pooled
        return coef, intercept

    def _origin(self, values: np.ndarray) -> int:
        """The last interval whose level is measured on half a season, as the model learned
        from: just after an outage the level is not yet known."""
        good = np.flatnonzero(steady(values, self.period_))
        return int(good[-1]) if len(good) else super()._origin(values)

    def _point(
        self, state: dict[str, Any], X: np.ndarray, steps: np.ndarray, nonnegative: bool
    ) -> np.ndarray:
        # unclipped: the error table was measured on unclipped points; predict clips
        if "rare" in state:  # a model stored before rare columns were found has none
            X = X.copy()
            X[:, state["rare"]] = np.nan
        Z = complete(X, state["fill"], state["flagged"])
        return _apply((state["coef"], state["intercept"]), Z, step_bins(steps, self.step_edges_))


def _apply(model: tuple[np.ndarray, np.ndarray], Z: np.ndarray, bins: np.ndarray) -> np.ndarray:
    coef, intercept = model
    return np.einsum("ij,ij->i", Z, coef[bins]) + intercept[bins]
