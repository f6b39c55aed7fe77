"""Choose a model per series by backtest, fit it, and forecast with the result.

This is what ``surgecast backtest``, ``surgecast train`` and the controller share: the
choice is made by the selection score (the median's pinball loss plus the upper
quantile's, shortfalls weighted three times, see
:func:`forecaster.metrics.selection_score`), because under-forecasting is what pages
on-call. Series that chose the same model are fitted together, so a global model
(gradient boosting) still learns across all of them.

The work runs on an :class:`~forecaster.engine.Engine`. On several workers a model that
fits every series on its own is backtested in a few chunks of series per worker, and a
model that learns across series in one task per fold (each a fit on all the series); the
final fits are one task per model. Every task uses the whole frame's cutoffs, and the folds
are put back in the order a single pass gives and scored together, so every engine
returns the same scores, folds and models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecaster.backtest import ShortHistoryError, backtest_at, fold_cutoffs, score, seen_twice
from forecaster.engine import Engine, LocalEngine
from forecaster.frames import series_freq, validate_series
from forecaster.models import PerSeriesModel, ProphetForecaster
from forecaster.models.base import ds_zone, in_zone

DEFAULT_MODEL = "seasonal_quantile"
"""Used for every series when there is too little history to backtest at all."""


@dataclass(frozen=True)
class Selection:
    """Backtest scores of every candidate per series, and the folds behind them."""

    scores: pd.DataFrame
    """One row per (series, model), with ``chosen`` marking each series' pick."""

    results: dict[str, pd.DataFrame] = field(default_factory=dict)
    """Backtest folds per model (``unique_id, cutoff, ds, h, y, yhat, q...``)."""

    def chosen(self) -> dict[str, str]:
        picks = self.scores[self.scores["chosen"]]
        return dict(zip(picks["unique_id"], picks["model"], strict=True))


def select(
    frame: pd.DataFrame,
    candidates: dict[str, Callable[[], Any]],
    horizon: int,
    folds: int = 3,
    every: int | None = None,
    upper: float = 0.9,
    season: str = "1D",
    events: pd.DataFrame | None = None,
    engine: Engine | None = None,
) -> Selection:
    """Backtest every candidate on every series and mark the lowest selection score.

    ``events`` (an event calendar) is given to every fold, as to the final fit. ``engine``
    runs the backtests (default: in this process). Raises ``ValueError`` when the series
    is too short for the folds asked for (:class:`~forecaster.backtest.ShortHistoryError`).
    """
    frame = validate_series(frame)
    engine = engine or LocalEngine()
    step = series_freq(frame)
    points = fold_cutoffs(frame, horizon, folds, every)
    if not points[-1] >= seen_twice(frame):  # not: NaT when no series has two rows
        raise ShortHistoryError(f"no series has two rows by the last backtest cutoff, {points[-1]}")
    chunks = _chunks(frame, engine.workers)
    models = {name: make() for name, make in candidates.items()}
    parts = []
    for name, model in _longest_first(models):
        if fits_series_alone(model) or engine.workers == 1:
            parts += [_Part(name, model, chunk, points) for chunk in chunks]
        else:  # every fold is one fit on all the series: one task each
            parts += [_Part(name, model, frame, [cutoff]) for cutoff in points]
    done = engine.map(_BacktestTask(horizon, (0.5, upper), events), parts)
    season_steps = max(1, int(pd.Timedelta(season) / step))
    tables, results = [], {}
    for name in candidates:
        mine = [out for part, out in zip(parts, done, strict=True) if part.name == name]
        folds_of = pd.concat([out for out in mine if out is not None], ignore_index=True)
        results[name] = folds_of.sort_values(["cutoff", "unique_id"], kind="stable").reset_index(
            drop=True
        )
        tables.append(score(results[name], frame, season_steps, upper, (0.5,)).assign(model=name))
    scores = pd.concat(tables, ignore_index=True)
    scored = scores.dropna(subset=["selection_score"])  # a series with no fold has none
    best = scored.groupby("unique_id")["selection_score"].idxmin()
    scores["chosen"] = scores.index.isin(best.to_numpy())
    return Selection(scores, results)


def fits_series_alone(model: Any) -> bool:
    """Whether ``model`` fits every series on its own, so splitting a frame by series
    changes no forecast. Gradient boosting learns across series (and even per series it
    shares one sample budget and one random stream among them), so it is not; nor is any
    model not known to be."""
    return isinstance(model, PerSeriesModel | ProphetForecaster)


@dataclass(frozen=True)
class _Part:
    """One task: a model (unfitted), the series it works on and, to backtest, the cutoffs."""

    name: str
    model: Any
    series: pd.DataFrame
    points: Sequence[pd.Timestamp] = ()


@dataclass(frozen=True)
class _BacktestTask:
    """Backtest one part at its cutoffs, which are the whole frame's."""

    horizon: int
    quantiles: tuple[float, ...]
    events: pd.DataFrame | None = None

    def __call__(self, part: _Part) -> pd.DataFrame | None:
        # A series seen fewer than twice by a cutoff is not forecast from it (backtest_at
        # leaves it out), in a chunk as in the whole frame. A cutoff by which no series was
        # seen twice has nothing to fit: a stray early row then many folds failed the whole
        # backtest with "cannot infer the interval".
        ready = seen_twice(part.series)
        points = [p for p in part.points if p >= ready]
        if not points:
            return None
        return backtest_at(
            part.model, part.series, points, self.horizon, self.quantiles, events=self.events
        )


def _chunks(frame: pd.DataFrame, workers: int) -> list[pd.DataFrame]:
    """Whole series in a few chunks per worker, so one slow chunk does not hold up the rest;
    one chunk for one worker (in this process: the single pass it always was)."""
    uids = frame["unique_id"].unique()
    if workers == 1:
        return [frame]
    groups = np.array_split(uids, min(len(uids), 4 * workers))
    return [frame[frame["unique_id"].isin(group)] for group in groups]


def _longest_first(models: dict[str, Any]) -> list[tuple[str, Any]]:
    """Models that learn across series first: theirs are the longest tasks, and a long task
    started last would leave every other worker idle at the end."""
    return sorted(models.items(), key=lambda item: fits_series_alone(item[1]))


@dataclass(frozen=True)
class Trained:
    """Fitted models by name, which series each serves, and how the choice was made."""

    models: dict[str, Any]
    assignment: dict[str, str]
    """Model name per series."""

    scores: pd.DataFrame | None
    """The selection's scores, or ``None`` when no backtest could run."""

    note: str | None = None
    """Why the choice was not made by backtest, when it was not."""


def train(
    frame: pd.DataFrame,
    candidates: dict[str, Callable[[], Any]],
    model: str = "auto",
    horizon: int = 60,
    folds: int = 3,
    every: int | None = None,
    upper: float = 0.9,
    season: str = "1D",
    events: pd.DataFrame | None = None,
    engine: Engine | None = None,
) -> Trained:
    """Fit ``model`` (a name in ``candidates``, or ``auto``) on every series of ``frame``.

    With ``auto`` each series gets the model with the best selection score in a backtest
    of ``folds`` cutoffs; a frame too short to backtest, or a series with no data at any
    cutoff, gets :data:`DEFAULT_MODEL` and :attr:`Trained.note` says so. A named model is
    backtested too when the data allows, so its stored scores say how far to trust it.
    ``engine`` runs the backtests and the fits (default: in this process). The models are
    fitted on the frame's ``ds`` as given, so they forecast in its zone.
    """
    zone = ds_zone(frame)
    frame = validate_series(frame)
    engine = engine or LocalEngine()
    if model != "auto" and model not in candidates:
        raise ValueError(f"unknown model {model!r}; choose auto or one of {', '.join(candidates)}")
    pool = candidates if model == "auto" else {model: candidates[model]}
    uids = sorted(frame["unique_id"].unique())
    fallback = DEFAULT_MODEL if model == "auto" else model
    try:
        selection = select(frame, pool, horizon, folds, every, upper, season, events, engine)
        assignment, scores, note = selection.chosen(), selection.scores, None
    except ShortHistoryError as exc:
        assignment = dict.fromkeys(uids, fallback)
        scores, note = None, f"not backtested ({exc}); using {fallback}"
    unscored = [uid for uid in uids if uid not in assignment]
    if unscored:  # e.g. a series that stopped before the first cutoff
        assignment.update(dict.fromkeys(unscored, fallback))
        note = f"no backtest fold has data of {', '.join(unscored)}; using {fallback} for them"
    parts, step = [], series_freq(frame)
    for name in sorted(set(assignment.values())):
        members = [uid for uid, chosen in assignment.items() if chosen == name]
        series = _with_interval(frame[frame["unique_id"].isin(members)], step)
        # Validated, ds is naive UTC: fitted on it, a model of a Shanghai frame forecast
        # naive UTC, where one fitted directly forecasts Shanghai time.
        series = in_zone(series.copy(), zone)
        parts.append(_Part(name, candidates[name](), series))
    fitted = engine.map(_FitTask(events), parts)
    models = {part.name: model for part, model in zip(parts, fitted, strict=True)}
    return Trained(models, assignment, scores, note)


def _with_interval(series: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """``series`` as a model can fit it: when no series of them has two rows, each gets a
    missing value one ``step`` before its only row.

    A model learns the interval from the frame it is fitted on. With ``auto``, series that
    fell back to the default model are fitted on their own, and when they were only
    services seen once (new, or sampled once), the whole fleet's training failed with
    "cannot infer the interval" and no model was stored for any of the others.
    """
    if series.groupby("unique_id")["ds"].size().max() >= 2:
        return series
    before = series.assign(ds=series["ds"] - step, y=np.nan)
    return pd.concat([before, series], ignore_index=True)


@dataclass(frozen=True)
class _FitTask:
    """Fit one part's model on its series."""

    events: pd.DataFrame | None = None

    def __call__(self, part: _Part) -> Any:
        return part.model.fit(part.series, events=self.events)


def forecast(
    models: dict[str, Any],
    horizon: int,
    quantiles: Sequence[float] = (0.5, 0.9),
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every model's forecast for its own series, as one long frame sorted by series."""
    parts = [m.predict(horizon, quantiles=quantiles, events=events) for m in models.values()]
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
