"""What every forecaster shares: the scikit-learn contract and one predict loop.

A model's ``__init__`` stores keyword parameters only. ``fit(df, events=None)`` validates a
long-format series frame (``unique_id, ds, y``; NaN is missing data), learns, sets
attributes ending in ``_`` and returns ``self``; it can be called again. ``predict(horizon,
quantiles, events=None)`` forecasts ``horizon`` intervals after the end of the fitted data
of every series, as ``unique_id, ds, yhat`` plus one column per quantile named by
:func:`forecaster.frames.quantile_column` (``q0.9``). Quantiles come out non-decreasing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from forecaster.frames import quantile_column


def future_index(last: pd.Timestamp, step: pd.Timedelta, horizon: int) -> pd.DatetimeIndex:
    """The ``horizon`` timestamps after ``last``."""
    return pd.date_range(last + step, periods=horizon, freq=step)


def check_predict(
    model: BaseEstimator, horizon: int, quantiles: Iterable[float]
) -> tuple[int, tuple[float, ...]]:
    """What every ``predict`` checks first; returns the horizon as an int and the levels.

    The horizon must be a positive whole number of intervals, and the model fitted
    (scikit-learn's own check, so an unfitted forecaster raises ``NotFittedError`` like
    any estimator). The levels are read once, into a tuple, and each must be strictly
    between 0 and 1: a generator was used up by the first series, and the forecast came
    back without a quantile column.
    """
    if int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive number of intervals, got {horizon!r}")
    check_is_fitted(model)
    levels = tuple(quantiles)
    for q in levels:
        quantile_column(q)  # a ValueError for 0, 1, 1.5 or NaN
    return int(horizon), levels


Rule = tuple[Callable[[Any], bool], str]
"""A parameter's test and what it must be, for :func:`check_params`."""


def whole(minimum: int, optional: bool = False) -> Rule:
    """A whole number of at least ``minimum`` (``None`` too when ``optional``)."""

    def ok(value: Any) -> bool:
        if value is None:
            return optional
        # an int, as scikit-learn asks: 1e4 passed the check and failed in pandas' iloc
        return isinstance(value, Integral) and not isinstance(value, bool) and int(value) >= minimum

    what = "a positive whole number" if minimum == 1 else f"a whole number of at least {minimum}"
    return ok, what + (" or None" if optional else "")


def at_least(minimum: float, below: float | None = None) -> Rule:
    """A number of at least ``minimum`` (and under ``below``, when given)."""

    def ok(value: Any) -> bool:
        return number(value) and value >= minimum and (below is None or value < below)

    return ok, f"a number of at least {minimum}" + (
        f" and under {below}" if below is not None else ""
    )


def positive() -> Rule:
    """A number above 0."""
    return (lambda value: number(value) and value > 0), "a positive number"


def duration(optional: bool = False) -> Rule:
    """A positive duration, a ``pd.Timedelta`` or text such as ``"1D"``."""

    def ok(value: Any) -> bool:
        if value is None:
            return optional
        return bool(pd.Timedelta(value) > pd.Timedelta(0))

    return ok, "a positive duration such as '1D'" + (" or None" if optional else "")


def number(value: Any) -> bool:
    """A real number, not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_params(model: BaseEstimator, rules: Mapping[str, Rule]) -> None:
    """Refuse at ``fit`` parameters a model cannot use, naming each, as scikit-learn does.

    ``__init__`` stores whatever it is given (``clone`` and ``set_params`` rely on it), so
    this is the first place a value can be refused; left unchecked, ``max_horizon=-3``
    gave forecasts at half the load and ``per_origin=0`` forecasts of NaN, without a word.
    """
    problems = []
    for name, (ok, expected) in rules.items():
        value = getattr(model, name)
        try:
            good = ok(value)
        except (TypeError, ValueError):  # pd.Timedelta("bogus"), a comparison with text
            good = False
        if not good:
            problems.append(f"{name} must be {expected}, got {value!r}")
    if problems:
        raise ValueError(f"{type(model).__name__}: {'; '.join(problems)}")


def ds_zone(df: pd.DataFrame) -> str | None:
    """The time zone of a frame's ``ds`` column, by a name pandas reads back; ``None`` when
    the stamps are naive (naive UTC, the frames' convention) or text.

    A forecast comes out in the zone the series came in (:func:`in_zone`): fitted on
    Shanghai stamps, it gave naive UTC ones, which neither merged nor concatenated with
    the analyst's own frame and, printed, looked eight hours early.
    """
    dtype = df["ds"].dtype if "ds" in df.columns else None
    if not isinstance(dtype, pd.DatetimeTZDtype):
        return None
    zone = getattr(dtype.tz, "key", None) or str(dtype.tz)
    try:
        pd.Timestamp(0, tz="UTC").tz_convert(zone)
    except (ValueError, KeyError):  # a zone with no name pandas reads (dateutil's files)
        return None
    return zone


def in_zone(
    frame: pd.DataFrame, zone: str | None, columns: Sequence[str] = ("ds",)
) -> pd.DataFrame:
    """``frame`` with its naive UTC ``columns`` in ``zone`` (as they are when ``None``)."""
    if zone is not None:
        for column in columns:
            frame[column] = frame[column].dt.tz_localize("UTC").dt.tz_convert(zone)
    return frame


def fitted_zone(model: BaseEstimator) -> str | None:
    """The zone ``model`` was fitted in (:func:`ds_zone`); ``None`` for artefacts saved
    before it was recorded, which forecast naive UTC as they did."""
    return getattr(model, "ds_zone_", None)


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
        horizon, quantiles = check_predict(self, horizon, quantiles)
        frames = []
        for uid, last in self.last_ds_.items():
            index = future_index(last, self.step_, horizon)
            yhat, by_quantile = self._forecast_one(uid, index, quantiles)
            by_quantile = sort_quantiles(by_quantile)
            frame = pd.DataFrame({"unique_id": uid, "ds": index, "yhat": yhat})
            for q in quantiles:
                frame[quantile_column(q)] = by_quantile[q]
            frames.append(frame)
        return in_zone(pd.concat(frames, ignore_index=True), fitted_zone(self))

    def _forecast_one(
        self, uid: str, index: pd.DatetimeIndex, quantiles: Sequence[float]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        raise NotImplementedError
