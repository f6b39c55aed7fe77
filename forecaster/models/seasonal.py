"""Seasonal baselines: seasonal naive, and empirical seasonal quantiles.

The empirical quantile model answers "how high does the load get at this time of day on
this kind of day?" straight from history at the series' own resolution. Quantiles of
per-minute counts pooled over nearby minutes of the same day type are calibrated for
per-minute peaks by construction, which is what a scaler needs; intervals of a smooth
model fitted on coarser totals are not (they miss minute-level bursts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecaster.calendar import (
    HOLIDAY,
    WEEKEND,
    WORKING,
    day_types,
    last_working_days_of_month,
)
from forecaster.frames import series_freq, validate_series
from forecaster.models.base import PerSeriesModel, check_params, ds_zone, duration, whole
from forecaster.models.baselines import LastValue, clip_at_zero
from forecaster.models.features import MIN_MARKED_DAYS

MONTH_END = 3
"""The day type of :class:`SeasonalQuantile` alone for the last working day of a month,
beside ``WORKING``, ``WEEKEND`` and ``HOLIDAY`` (a key of its ``samples_``)."""


DEFAULT_REACH = pd.Timedelta("30min")
"""How far either side of a time of day :class:`SeasonalQuantile` pools by default.

Chosen on the NASA replay (``benchmarks/replay.py``, August, 3 minutes' startup delay): at
q0.9625, ±30 minutes left 0.147 % unserved at 1.347x the oracle's cost where ±15 left
0.148 % at 1.352x (±20: 0.150 % at 1.348x, ±45: 0.150 % at 1.348x, ±60: 0.145 % at
1.353x), and the July hold-out gained too. A wider pool steadies both the upper
quantiles and the median the nowcast divides by; the week-ahead outlook, which rates
hours by their peaks, lost a little (busy-hour recall 84 % to 81 %).
"""

POOL_CELLS = 2_000_000
"""The most values stacked at once to take pools' quantiles together (16 MB of floats)."""


def _local_days(ds: pd.DatetimeIndex, tz: str | None) -> pd.DatetimeIndex:
    """The local calendar day (naive midnight) of each timestamp."""
    local = ds.tz_localize("UTC").tz_convert(tz) if tz else ds
    return local.normalize().tz_localize(None) if tz else local.normalize()


def _by_local_day(
    ds: pd.DatetimeIndex, tz: str | None, per_day: Callable[[pd.DatetimeIndex], Any]
) -> np.ndarray:
    """``per_day`` of the distinct local days, spread back over every timestamp: a
    calendar is looked up once a day, not once an interval."""
    days = _local_days(ds, tz)
    unique = pd.DatetimeIndex(days.unique())
    return pd.Series(per_day(unique), index=unique).reindex(days).to_numpy()


def _day_kind(ds: pd.DatetimeIndex, country: str | None, tz: str | None) -> np.ndarray:
    """Working day / weekend / holiday per timestamp, in the service's local time."""

    def kinds(unique: pd.DatetimeIndex) -> np.ndarray:
        if country:
            return day_types([d.date() for d in unique], country)
        return np.where(unique.day_of_week >= 5, WEEKEND, WORKING).astype(np.int8)

    return _by_local_day(ds, tz, kinds)


def _month_end(ds: pd.DatetimeIndex, country: str | None, tz: str | None) -> np.ndarray:
    """Whether each timestamp falls on the last working day of its local month."""

    def ends(unique: pd.DatetimeIndex) -> list[bool]:
        last = last_working_days_of_month([d.date() for d in unique], country)
        return [d.date() in last for d in unique]

    return _by_local_day(ds, tz, ends).astype(bool)


def _slot(ds: pd.DatetimeIndex, tz: str | None, step: pd.Timedelta) -> np.ndarray:
    """Index of the interval within the local day (0 .. steps per day - 1)."""
    local = ds.tz_localize("UTC").tz_convert(tz) if tz else ds
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return np.asarray(seconds // int(step.total_seconds()), dtype=np.int64)


class SeasonalNaive(PerSeriesModel):
    """Repeat the value one season ago; quantiles from the seasonal differences seen in fit.

    ``season`` is a duration (``1D`` or ``7D``). The quantile of each horizon is the last
    value plus the empirical quantile of ``y[t] - y[t - season]`` over the training data, so
    even this yardstick has honest intervals; clipped at 0 for a series never below 0.

    A season shorter than the series' interval is refused at ``fit``.

    A series with no observed value in its last season (a day of missing logs at the end,
    or less than a season of history) has nothing to repeat: it gets :class:`LastValue`,
    and ``fallback_reason_`` says so. Zero traffic instead would scale it to its minimum.
    """

    def __init__(self, season: str = "1D") -> None:
        self.season = season

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> SeasonalNaive:
        check_params(self, {"season": duration()})
        frame = validate_series(df)
        # Checked before any attribute is set: a refused fit left a new step_ beside the
        # previous fit's state (a fresh model: predict's AttributeError, not NotFittedError)
        step = series_freq(frame)
        if pd.Timedelta(self.season) < step:  # nothing a season back: all zeros forecast
            raise ValueError(
                f"SeasonalNaive repeats the value a season ago: the season {self.season} is"
                f" shorter than the series' interval {to_offset(step).freqstr}"
            )
        self.ds_zone_ = ds_zone(df)
        self.step_ = step
        self.period_ = int(pd.Timedelta(self.season) / self.step_)
        self.history_ = {}
        self.residuals_ = {}
        self.last_ds_ = {}
        self.fallbacks_: dict[str, LastValue] = {}
        self.fallback_reason_: dict[str, str | None] = {}
        self.nonnegative_: dict[str, bool] = {}
        for uid, one in frame.groupby("unique_id", sort=True):
            self.nonnegative_[uid] = bool((one["y"].dropna() >= 0).all())
            y = one.set_index("ds")["y"].asfreq(self.step_)
            self.history_[uid] = y.to_numpy()[-self.period_ :]
            self.last_ds_[uid] = y.index[-1]
            diffs = (y - y.shift(self.period_)).dropna().to_numpy()
            self.residuals_[uid] = diffs if diffs.size else np.zeros(1)
            why = None
            if len(y) < self.period_:
                why = f"less than one season of {self.season}"
            elif not np.isfinite(self.history_[uid]).any():
                why = f"no observed value in the last {self.season}"
            if why:
                self.fallbacks_[uid] = LastValue(freq=self.step_).fit(one)
                why += "; using last value"
            self.fallback_reason_[uid] = why
        return self

    def _forecast_one(
        self, uid: str, index: pd.DatetimeIndex, quantiles: Sequence[float]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        # Artefacts saved before the fallback existed have none and forecast as they did:
        # zeros where nothing is left to repeat.
        fallback = getattr(self, "fallbacks_", {}).get(uid)
        if fallback is not None:
            return fallback._forecast_one(uid, index, quantiles)
        values = self.history_[uid]
        horizon = len(index)
        if len(values) == self.period_:
            base = values[np.arange(horizon) % self.period_]
        else:
            base = np.full(horizon, np.nan)
        base = pd.Series(base).ffill().bfill().fillna(0.0).to_numpy()
        residuals = self.residuals_[uid]
        by_quantile = {q: base + np.quantile(residuals, q) for q in quantiles}
        return base, clip_at_zero(self, uid, by_quantile)


class SeasonalQuantile(PerSeriesModel):
    """Empirical quantiles by day type and time of day, at the series' resolution.

    For each future interval, the quantile is taken over every training value of the same
    day type (working day, weekend, public holiday) within ``window`` intervals of the same
    time of day, from the last ``weeks`` weeks. Missing values (NaN) are skipped, never
    read as zeros. Holidays with too little history borrow from weekends, and working days
    and weekends from each other. A day type with no profile to borrow (less than a day of
    history, or history only on holidays) repeats the last value (:class:`LastValue`, and
    ``fallback_reason_`` says so) rather than forecasting zero traffic. ``yhat`` is the
    median.

    The last working day of each local month (make-up working days count; a month ending
    on a weekend or a holiday ends earlier) is a day type of its own once the history
    given to ``fit`` holds at least :data:`~forecaster.models.features.MIN_MARKED_DAYS`
    (3) of them with data: month-end surges (a pension portal's 9-11 a.m. rush) were
    otherwise forecast as an ordinary working day, whatever the history showed. Those
    days are then pooled only there, from the whole history rather than the last
    ``weeks`` (a month end comes once a month; ``weeks`` long enough to hold three would
    blur the ordinary days' recent level); with fewer they stay in the working-day pool,
    since one or two days are noise rather than a profile (the rule of the
    gradient-boosting model's month-end mark). So the history must cover about three
    months for month ends to be learnt (14 weeks always hold three); four weeks of it,
    the replay's and the controller's default, never do, and a month end is then
    forecast as the working day it is. Normalised, each month end counts as a multiple of
    the working days of its own week, so one from months back brings its surge, not the
    level of its time.

    The series' interval must divide a day (a minute, five, an hour), so that every day
    has the same slots; ``fit`` refuses any other.

    Args:
        weeks: how much recent history to pool, month ends apart; recent weeks follow
            growth and level shifts.
        window: half-width, in intervals, of the time-of-day neighbourhood pooled. By
            default :data:`DEFAULT_REACH` (30 minutes) worth: 30 at one minute, 6 at five,
            0 at an hour. What makes neighbouring intervals alike is their distance in
            time, and at coarse resolutions a fixed count would pool the morning peak
            with the night.
        country: calendar for holidays and make-up working days (``None``: weekday/weekend).
        tz: the service's time zone; day types and times of day are local.
        normalize: pool each day divided by its own level (see ``_normalize_days``), and
            start the forecast from the level of the last five days. The quantiles then
            measure the noise around a day's level, which a nowcast of today's level
            (``controller.policy.nowcast``) supplies at decision time.
    """

    def __init__(
        self,
        weeks: int = 4,
        window: int | None = None,
        country: str | None = "CN",
        tz: str | None = "Asia/Shanghai",
        normalize: bool = False,
    ) -> None:
        self.weeks = weeks
        self.window = window
        self.country = country
        self.tz = tz
        self.normalize = normalize

    def fit(self, df: pd.DataFrame, events: pd.DataFrame | None = None) -> SeasonalQuantile:
        # weeks=0 pooled nothing and repeated the last value without a word
        check_params(self, {"weeks": whole(1), "window": whole(0, optional=True)})
        frame = validate_series(df)
        step = series_freq(frame)  # checked before any attribute is set (SeasonalNaive)
        if pd.Timedelta("1D") % step:
            raise ValueError(
                f"SeasonalQuantile pools the same time of day: the series' interval"
                f" {to_offset(step).freqstr} does not divide a day"
            )
        self.ds_zone_ = ds_zone(df)
        self.step_ = step
        self.slots_ = int(pd.Timedelta("1D") / self.step_)
        self.samples_: dict[str, dict[int, list[np.ndarray]]] = {}
        self.last_ds_: dict[str, pd.Timestamp] = {}
        self.fallback_reason_: dict[str, str | None] = {}
        self.level_: dict[str, float] = {}
        self.fallbacks_: dict[str, LastValue] = {}
        for uid, rows in frame.groupby("unique_id", sort=True):
            one = rows.set_index("ds")["y"].asfreq(self.step_)
            self.last_ds_[uid] = one.index[-1]
            index = pd.DatetimeIndex(one.index)
            values = one.to_numpy(dtype=float)
            kinds = _pooled_kinds(index, np.isfinite(values), self.slots_, self.country, self.tz)
            slots = _slot(index, self.tz, self.step_)
            # Month ends come a dozen a year: pooled from all the history given, ordinary
            # days from the last ``weeks`` only, which follow growth and level shifts.
            pooled = (index > index[-1] - pd.Timedelta(weeks=self.weeks)) | (kinds == MONTH_END)
            self.level_[uid] = 1.0
            if self.normalize:
                values, self.level_[uid] = _normalize_days(
                    values, kinds, slots, index, pooled, self.tz
                )
            values, kinds, slots = values[pooled], kinds[pooled], slots[pooled]
            per_kind: dict[int, list[np.ndarray]] = {}
            for kind in (WORKING, WEEKEND, HOLIDAY, MONTH_END):
                mask = (kinds == kind) & np.isfinite(values)
                if mask.sum() < self.slots_:
                    continue
                table = _slot_table(slots[mask], values[mask], self.slots_)
                per_kind[kind] = table
            why = None if WORKING in per_kind else "less than a working day of history"
            if WORKING not in per_kind and WEEKEND not in per_kind:
                self.fallbacks_[uid] = LastValue(freq=self.step_).fit(rows)
                why = f"{why}; using last value for days without a profile"
            self.fallback_reason_[uid] = why
            self.samples_[uid] = per_kind
        return self

    def _forecast_one(
        self, uid: str, index: pd.DatetimeIndex, quantiles: Sequence[float]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        tables = self.samples_[uid]
        window = self.window
        if window is None:
            window = int(DEFAULT_REACH // self.step_)
        kinds = _day_kind(index, self.country, self.tz)
        if MONTH_END in tables:  # else a month end is forecast as the working day it is
            kinds = np.where(_month_end(index, self.country, self.tz), MONTH_END, kinds)
        slots = _slot(index, self.tz, self.step_)
        levels = sorted({0.5, *quantiles})
        out = {q: np.zeros(len(index)) for q in levels}
        unprofiled = np.zeros(len(index), dtype=bool)
        for kind in np.unique(kinds):
            table = tables.get(int(kind)) or tables.get(WEEKEND) or tables.get(WORKING)
            where = kinds == kind
            if table is None:
                unprofiled |= where
                continue
            per_slot = _pooled_quantiles(table, levels, window, np.unique(slots[where]))
            for n, q in enumerate(levels):
                out[q][where] = per_slot[n][slots[where]]
        level = self.level_[uid]
        yhat, by_quantile = out[0.5] * level, {q: out[q] * level for q in quantiles}
        # artefacts saved before the fallback existed forecast as they did
        fallback = getattr(self, "fallbacks_", {}).get(uid)
        if fallback is not None and unprofiled.any():
            last, last_by_quantile = fallback._forecast_one(uid, index, quantiles)
            yhat[unprofiled] = last[unprofiled]
            for q in quantiles:
                by_quantile[q][unprofiled] = last_by_quantile[q][unprofiled]
        return yhat, by_quantile


def _pooled_kinds(
    index: pd.DatetimeIndex,
    observed: np.ndarray,
    n_slots: int,
    country: str | None,
    tz: str | None,
) -> np.ndarray:
    """The day type each training interval is pooled under: ``MONTH_END`` for the last
    working days of months when at least :data:`MIN_MARKED_DAYS` of them have data (and
    together a day's worth of values, what any day type needs for a profile), else the
    day type of :func:`_day_kind`: with fewer they stay in the working-day pool.

    Fewer would make the profile one day's noise (the reason the gradient-boosting model
    waits for as many), and four weeks of history never hold three month ends: a model
    fitted on them forecasts as it did before month ends had a type of their own.
    """
    kinds = _day_kind(index, country, tz)
    ends = _month_end(index, country, tz)
    seen = ends & observed
    if len(_local_days(index[seen], tz).unique()) >= MIN_MARKED_DAYS and seen.sum() >= n_slots:
        return np.where(ends, MONTH_END, kinds)
    return kinds


def _normalize_days(
    values: np.ndarray,
    kinds: np.ndarray,
    slots: np.ndarray,
    index: pd.DatetimeIndex,
    pooled: np.ndarray,
    tz: str | None,
) -> tuple[np.ndarray, float]:
    """Divide each local day by its level: its load over the seasonal median of its day type
    (taken over the ``pooled`` rows).

    Busy and quiet days then share one shape, so the quantiles measure the noise around a
    day's own level rather than the spread between days. Returns the normalised values
    and the median level of the last five days (the level a forecast starts from). A day
    whose seasonal median is not positive (a series that is all zeros, or negative) has no
    level and is left as it is; when none of the last five days has one, the forecast
    starts from 1 (the seasonal median itself) rather than from NaN.

    A month end takes the level of the working days of the week before it instead (see
    :func:`_month_ends_at_working_level`): its surge is then kept as a multiple of the
    ordinary level of its time, which the forecast scales to today's.
    """
    day = np.asarray(_local_days(index, tz))
    median = np.full(len(values), np.nan)
    for kind in np.unique(kinds):
        mask = (kinds == kind) & np.isfinite(values) & pooled
        if mask.any():
            profile = pd.Series(values[mask]).groupby(slots[mask]).median()
            median[kinds == kind] = profile.reindex(slots[kinds == kind]).to_numpy()
    frame = pd.DataFrame({"day": day, "y": values, "m": median})
    usable = frame.dropna()
    sums = usable.groupby("day")[["y", "m"]].sum()
    level = (sums["y"] / sums["m"]).where(sums["m"] > 0).clip(0.2, 5.0)
    level = _month_ends_at_working_level(
        level, pd.Series(kinds, index=day).groupby(level=0).first()
    )
    per_row = frame["day"].map(level).fillna(1.0).to_numpy()
    recent = level.iloc[-5:].dropna()
    return values / per_row, float(recent.median()) if len(recent) else 1.0


def _month_ends_at_working_level(level: pd.Series, kind_of_day: pd.Series) -> pd.Series:
    """``level`` (per local day) with each month end's replaced by the median level of the
    working days in the seven days before it, when it has any.

    Pooled from months back, month ends measured against their own median kept the level
    of the middle one: with 2 % growth a week, a month end forecast from three of them was
    about 15 % short. Measured against the ordinary days of their own week, each keeps
    only its surge over them, and the forecast multiplies that by today's level.
    """
    kind = kind_of_day.reindex(level.index)
    working = level[kind == WORKING].dropna()
    level = level.copy()
    for end in level.index[kind == MONTH_END]:
        week = working[(working.index >= end - pd.Timedelta(days=7)) & (working.index < end)]
        if len(week):
            level[end] = week.median()
    return level


def _slot_table(slots: np.ndarray, values: np.ndarray, n_slots: int) -> list[np.ndarray]:
    """Values grouped by slot: a list with one array per time-of-day slot."""
    order = np.argsort(slots, kind="stable")
    slots, values = slots[order], values[order]
    bounds = np.searchsorted(slots, np.arange(n_slots + 1))
    return [values[bounds[s] : bounds[s + 1]] for s in range(n_slots)]


def _pooled_quantiles(
    table: list[np.ndarray], levels: Sequence[float], window: int, wanted: np.ndarray
) -> np.ndarray:
    """Quantiles per wanted slot over the slots within ``window`` of it (wrapping at
    midnight); a ``levels`` × slots array, 0 for the slots not wanted.

    A slot with no value that near (the same hours missing every day: a nightly log
    rotation, a scrape that always fails at 3 a.m.) pools the nearest slots that have
    values instead: the quantiles of nothing were 0, a forecast of no traffic.

    The slots' values are laid end to end, repeated on either side so that a pool across
    midnight is one slice too, and pools of equal size are stacked and their quantiles
    taken in one call: one call per slot took most of a controller cycle's time.
    """
    n = len(table)
    result = np.zeros((len(levels), n))
    sizes = np.array([values.size for values in table])
    seen = np.flatnonzero(sizes)
    if not seen.size:
        return result
    lap = window // n + 1  # copies of the day needed on either side
    flat = np.tile(np.concatenate(table), 2 * lap + 1)
    bounds = np.concatenate([[0], np.cumsum(np.tile(sizes, 2 * lap + 1))])
    centre = wanted + lap * n  # each wanted slot in the middle copy

    def pools(reach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each wanted slot's pool of ``reach`` slots either side starts and ends."""
        return bounds[centre - reach], bounds[centre + reach + 1]

    reach = np.full(len(wanted), window)
    first, last = pools(reach)
    empty = first == last
    if empty.any():  # the nearest slots with values are at most half a day away
        gap = np.abs(seen[None, :] - wanted[empty, None])
        reach[empty] = np.minimum(gap, n - gap).min(axis=1)
        first, last = pools(reach)
    lengths = last - first
    for length in np.unique(lengths):
        same = np.flatnonzero(lengths == length)
        rows = max(1, POOL_CELLS // int(length))  # stacks of at most POOL_CELLS values
        for chunk in range(0, len(same), rows):
            part = same[chunk : chunk + rows]
            stack = flat[first[part, None] + np.arange(length)]
            result[:, wanted[part]] = np.quantile(stack, levels, axis=1)
    return result
