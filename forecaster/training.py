"""Choose a model per series by backtest, fit it, and forecast with the result.

This is what ``surgecast backtest``, ``surgecast train`` and the controller share: the
choice is made by the selection score (the upper quantile's pinball loss with shortfalls
weighted three times, see :func:`forecaster.metrics.selection_score`), because
under-forecasting is what pages on-call. Series that chose the same model are fitted
together, so a global model (gradient boosting) still learns across all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from forecaster.backtest import backtest, score
from forecaster.frames import series_freq, validate_series

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
) -> Selection:
    """Backtest every candidate on every series and mark the lowest selection score.

    ``events`` (an event calendar) is given to every fold, as to the final fit. Raises
    ``ValueError`` when the series is too short for the folds asked for.
    """
    step = series_freq(frame)
    season_steps = max(1, int(pd.Timedelta(season) / step))
    tables, results = [], {}
    for name, make in candidates.items():
        results[name] = backtest(
            make(), frame, horizon, folds, every, quantiles=(0.5, upper), events=events
        )
        table = score(results[name], frame, season_steps, upper, (0.5,))
        tables.append(table.assign(model=name))
    scores = pd.concat(tables, ignore_index=True)
    best = scores.groupby("unique_id")["selection_score"].idxmin()
    scores["chosen"] = scores.index.isin(best.to_numpy())
    return Selection(scores, results)


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
) -> Trained:
    """Fit ``model`` (a name in ``candidates``, or ``auto``) on every series of ``frame``.

    With ``auto`` each series gets the model with the best selection score in a backtest
    of ``folds`` cutoffs; a frame too short to backtest gets :data:`DEFAULT_MODEL` and
    :attr:`Trained.note` says so. A named model is backtested too when the data allows,
    so its stored scores say how far to trust it.
    """
    frame = validate_series(frame)
    if model != "auto" and model not in candidates:
        raise ValueError(f"unknown model {model!r}; choose auto or one of {', '.join(candidates)}")
    pool = candidates if model == "auto" else {model: candidates[model]}
    uids = sorted(frame["unique_id"].unique())
    try:
        selection = select(frame, pool, horizon, folds, every, upper, season, events)
        assignment, scores, note = selection.chosen(), selection.scores, None
    except ValueError as exc:
        fallback = DEFAULT_MODEL if model == "auto" else model
        assignment = dict.fromkeys(uids, fallback)
        scores, note = None, f"not backtested ({exc}); using {fallback}"
    models = {}
    for name in sorted(set(assignment.values())):
        members = [uid for uid, chosen in assignment.items() if chosen == name]
        part = frame[frame["unique_id"].isin(members)]
        models[name] = candidates[name]().fit(part, events=events)
    return Trained(models, assignment, scores, note)


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
