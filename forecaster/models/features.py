"""Features for direct multi-step forecasting, as functions over one regular array.

A sample is an *origin* ``o`` (the last interval seen) and a step ahead ``h``; the target
is ``y[o + h]`` divided by the level at the origin, so one model serves series of every
size. Every feature only reads ``y`` at or before ``o`` (no look-ahead): seasonal lags of
the target's time of day are taken whole seasons back, at least ``ceil(h / period)`` of
them, so they are always known at the origin. NaN (missing data) stays NaN: the gradient
boosting routes it as missing, it is never read as a zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd

from forecaster.calendar import (
    HOLIDAY,
    WORKING,
    day_types,
    first_working_days_after_holidays,
    last_working_days_of_month,
)
from forecaster.frames import naive_utc

FEATURES_VERSION = 6
"""The feature recipe a model is fitted with; a stored model keeps using its own.

Version 6 measures the level of a sample whose target is a working day on working days
only (:func:`level_skipping`). The level of the day before, a holiday or a weekend, told
the trees nothing they could use about a working day after it: they learned the jump from
the weekend by the day of the week (Monday), so the first working day after a holiday, a
Tuesday, came out as a Tuesday after a working Monday, at the holiday's level. Gradient
boosting forecast 10 a.m. the day after Dragon Boat Festival at 53 requests for 93 (q0.9
57), and a make-up working Sunday after Qingming at 70 for 105; the linear model at 44.

Version 5 adds two days to the calendar (:data:`CALENDAR_V4` columns before it), each
alone and times the time of day: the last working day of the month and the first working
day after a break with a public holiday. With day types alone no model could tell a month
end from the working day before it, and the seasonal lags (a day and a week back) never
see the last month end: a pension portal's 2.5x month-end morning was forecast as an
ordinary one, its q0.9 at half the load, with five month ends in the history.

Version 4 bounds the value at the origin as it is bounded at predict, with its later
neighbour unknown: version 3 let the interval after the origin vouch for it in training
(a peak starting at the origin counted whole), while at predict, with nothing after it,
the same value was cut, so the level a model learned from was not the one it was given.
Version 3 measures the level as the mean absolute value of capped values (:func:`capped`);
version 2 as the mean of the raw values, where one corrupt interval moved every forecast of
the next season, and a series below zero had its floor for a level."""

CAP = 10.0
"""How far above the level of the season before an interval may count towards the level:
``CAP`` times the level plus ``CAP`` times its square root (see :func:`capped`)..."""

NEIGHBOUR_CAP = 3.0
"""...unless it is within this many times its larger neighbour (plus its square root): a
real peak rises over several intervals, a corrupt one stands alone."""

FLOOR = 0.1
"""From version 4, the level at an origin is at least this share of the level of the week
before it. A service idle on weekends had a level of 0 on Sunday night: its ratios to
the floor then in use (1 % of the whole series' mean, read after the origin too) were in
the hundreds, beyond the linear model's bound of 50, which forecast Monday at a quarter of
its load."""


def trailing_sums(y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the finite values among the last ``window`` at each interval."""
    finite = np.isfinite(y)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, y, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(1, len(y) + 1)
    start = np.maximum(end - window, 0)
    return sums[end] - sums[start], counts[end] - counts[start]


def rolling_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean of the last ``window`` values ignoring NaN; NaN if all are missing."""
    total, n = trailing_sums(y, window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def capped(y: np.ndarray, period: int, last: bool = False) -> np.ndarray:
    """``y`` with each isolated spike bounded, once the season before is at least half
    observed: a value counts up to the larger of ``CAP * (m + sqrt(m))``, where ``m`` is
    the mean of absolute values over the season before it, and ``NEIGHBOUR_CAP`` times its
    larger neighbour (plus the square root). With ``last``, each value is bounded as if it
    were the last one seen, its later neighbour unknown: what it counts for at an origin.

    The level divides every feature and multiplies every forecast back, so with raw values
    one corrupt interval (a counter reset of 1000 times the load) in the season before the
    origin multiplied every forecast of the next season by up to seven. A real peak rises
    over several intervals, so its neighbours keep it unbounded, however far above the
    daily mean it climbs (M4 Hourly has series whose peak is 14 times their daily mean);
    the square root keeps a count of 1 at a level of 0.01 (a rare event) unbounded. The
    season before is measured on values bounded once already, so a spike does not raise
    the bound of the one after it.
    """
    finite = np.isfinite(y)
    observed = rolling_mean(finite.astype(float), period)
    half_seen = np.concatenate([[False], observed[:-1] >= 0.5])
    magnitude = np.abs(y.astype(float))
    before = np.concatenate([[np.nan], magnitude[:-1]])
    after = np.concatenate([magnitude[1:], [np.nan]])
    neighbour = np.fmax(before, after)  # NaN only when both are missing
    near = NEIGHBOUR_CAP * (neighbour + np.sqrt(neighbour))
    out = y.astype(float)
    for _ in range(2):
        m = np.concatenate([[np.nan], rolling_mean(np.abs(out), period)[:-1]])
        bound = np.fmax(CAP * (m + np.sqrt(m)), near)
        bounded = half_seen & finite & np.isfinite(bound)
        out = np.where(bounded, np.clip(y, -bound, bound), y)
    if not last:
        return out
    # The values before one only read up to it, so the season before is the same as in
    # the series cut after it; only the neighbour after it is gone.
    bound = np.fmax(CAP * (m + np.sqrt(m)), NEIGHBOUR_CAP * (before + np.sqrt(before)))
    bounded = half_seen & finite & np.isfinite(bound)
    return np.where(bounded, np.clip(y, -bound, bound), y)


def origin_level(y: np.ndarray, period: int, window: int) -> np.ndarray:
    """The level at each interval taken as an origin: the mean absolute value of the last
    ``window`` intervals up to it, bounded by :func:`capped` as in the series cut after it
    (so the same in training, where the future is known, as at predict, where it is not)."""
    seen = np.abs(capped(y, period))
    total, n = trailing_sums(seen, window)
    # the interval itself counts as the last one seen, not as its later neighbour knows it
    own = np.abs(capped(y, period, last=True)) - seen
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total + np.nan_to_num(own)) / np.maximum(n, 1), np.nan)


def level_skipping(y: np.ndarray, skip: np.ndarray, period: int) -> np.ndarray:
    """:func:`origin_level` over the intervals not ``skip``-ped, at every interval: the
    level of the last ``period`` of them up to it (NaN before the first). Each reads only
    intervals at or before it, as the plain level does."""
    kept = np.flatnonzero(~skip)
    out = np.full(len(y), np.nan)
    if len(kept):
        level = origin_level(y[kept], period, period)
        latest = np.searchsorted(kept, np.arange(len(y)), side="right") - 1
        out[latest >= 0] = level[latest[latest >= 0]]
    return out


def centred_mean(y: np.ndarray, half: int) -> np.ndarray:
    """Mean over ``[t - half, t + half]`` ignoring NaN (smooths per-minute noise)."""
    if half <= 0:
        return y.astype(float)
    trailing = rolling_mean(np.concatenate([y, np.full(half, np.nan)]), 2 * half + 1)
    return trailing[half:]


def take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` with NaN where the index falls outside the array."""
    inside = (index >= 0) & (index < len(values))
    out = np.full(index.shape, np.nan)
    out[inside] = values[index[inside]]
    return out


CALENDAR_V4 = 10
"""Calendar columns of feature versions 1 to 4, which read no more of :func:`calendar_features`."""

WORKING_COLUMN = 7
"""The column of :func:`calendar_features` that flags working days (make-up days included)."""


DAY_MARKS = (last_working_days_of_month, first_working_days_after_holidays)
"""The days version 5 marks, in the order of their columns."""

MIN_MARKED_DAYS = 3
"""Days a mark must fall on in the training data for a model to use it. Seen once, a
month end's columns fitted that one day's residuals whole: on NASA 1995 the linear model
carried 31 July's afternoon over to 31 August and its pinball loss 60 minutes ahead rose
11 % over the backtest's 61 cutoffs (all of it on the two cutoffs of 31 August)."""


def _local(ds: pd.DatetimeIndex, tz: str | None) -> pd.DatetimeIndex:
    return ds.tz_localize("UTC").tz_convert(tz).tz_localize(None) if tz else ds


def marked_days(ds: pd.DatetimeIndex, country: str | None, tz: str | None) -> tuple[int, ...]:
    """How many local days of ``ds`` (the observed intervals of a series) each of
    :data:`DAY_MARKS` falls on."""
    dates = sorted(set(_local(ds, tz).date))
    return tuple(len(mark(dates, country)) for mark in DAY_MARKS)


def calendar_features(
    ds: pd.DatetimeIndex,
    period: pd.Timedelta,
    country: str | None,
    tz: str | None,
    marks: Sequence[bool] = (True, True),
) -> np.ndarray:
    """Time of day (three Fourier pairs), day of week, day type, and from version 5 the last
    working day of the month and the first working day after a holiday, each alone and
    times the time of day, in local time. A mark not in use (``marks``, one flag per
    :data:`DAY_MARKS`) has its columns at 0, as on an unmarked day."""
    local = _local(ds, tz)
    seconds = (local - local.normalize()).total_seconds().to_numpy()
    phase = 2 * np.pi * seconds / period.total_seconds()
    columns = []
    for k in (1, 2, 3):
        columns += [np.sin(k * phase), np.cos(k * phase)]
    days = local.normalize()
    unique = pd.DatetimeIndex(days.unique())
    dates = [d.date() for d in unique]
    kind = pd.Series(day_types(dates, country), index=unique).reindex(days).to_numpy()

    def marks_of(chosen: set[date]) -> np.ndarray:
        on = pd.Series([d in chosen for d in dates], index=unique, dtype=float)
        return on.reindex(days).to_numpy()

    columns += [
        local.day_of_week.to_numpy().astype(float),
        (kind == WORKING).astype(float),
        (kind == HOLIDAY).astype(float),
        ((kind == WORKING) & (local.day_of_week >= 5)).astype(float),  # make-up working day
    ]
    time_of_day = columns[:6]
    for day, used in zip(DAY_MARKS, marks, strict=True):
        on = marks_of(day(dates, country)) if used else np.zeros(len(local))
        # and by time of day, so a model additive in its features (the linear one) can
        # put the surge at its hours: alone the column lifted the whole day a little
        columns += [on, *(on * term for term in time_of_day)]
    return np.column_stack(columns)


def design(
    y: np.ndarray,
    ds: pd.DatetimeIndex,
    origins: np.ndarray,
    steps: np.ndarray,
    period: int,
    lags: int,
    seasonal_lags: int,
    calendar: np.ndarray | None,
    events: np.ndarray | None,
    version: int = FEATURES_VERSION,
) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix for samples (origin, step) of one series, and each sample's level.

    ``calendar`` and ``events`` are per-interval arrays aligned with ``y`` extended by the
    forecast horizon (so they can be read at ``o + h``). Values are divided by the level:
    the mean of the season before the origin, from version 3 the mean absolute value of
    values :func:`capped`, from version 4 with the origin's own value bounded as at
    predict (:func:`origin_level`) and floored at :data:`FLOOR` of the week's level before
    the origin (version 3's floor read the whole series, the future included). From
    version 4 the values themselves are bounded too, each as the last one seen. From
    version 6 a sample whose target is a working day takes its level on working days.
    """
    if version >= 4:
        level = take(origin_level(y, period, period), origins)
        if version >= 6 and calendar is not None:
            work = calendar[:, WORKING_COLUMN] == 1
            working = take(level_skipping(y, ~work, period), origins)
            to_work = take(work.astype(float), origins + steps) == 1
            level = np.where(to_work & np.isfinite(working), working, level)
        weekly = take(origin_level(y, period, 7 * period), origins)
        weekly = np.where(np.isfinite(weekly), np.maximum(weekly, 1e-5), 10.0)
        floor = FLOOR * weekly
        # only guards the division of the nowcast: the share version 3 used
        tiny = 0.01 * weekly
        # A corrupt interval in the last hour, read raw as a recent lag, put the linear
        # model's next day at 0: the values are bounded as the last one seen (reading
        # nothing after them), so a lone spike is one in training and at predict alike.
        y = capped(y, period, last=True)
    else:
        # a level below zero (a net flow) would be floored, and ratios to it clipped
        base = np.abs(capped(y, period)) if version >= 3 else y
        fallback = np.nanmean(base) if np.isfinite(base).any() else 1.0
        known = rolling_mean(base, period)
        level = take(np.where(np.isfinite(known), known, fallback), origins)
        floor = tiny = np.full(len(origins), max(1e-6, 0.01 * abs(fallback)))
    scale = np.fmax(level, floor)
    half = max(1, period // 96)
    smooth = centred_mean(y, half)
    # A smoothed lag whole seasons back can land on the origin, and its centred window
    # would then read the future: there the trailing window of the same width, all known,
    # stands in. Version 1 (artefacts saved before this was found) read the centred one
    # anyway, and keeps its features.
    trailing = rolling_mean(y, 2 * half + 1)
    reach = half if version >= 2 else 0
    target = origins + steps
    columns = [steps.astype(float)]
    first = -(-steps // period)  # ceil(h / period): the closest season back that is known
    for k in range(seasonal_lags):
        back = target - (first + k) * period
        columns.append(take(y, back) / scale)
        known = back + reach <= origins
        if version >= 2:
            columns.append(np.where(known, take(smooth, back), take(trailing, back)) / scale)
        else:
            columns.append(np.where(known, take(smooth, back), np.nan) / scale)
    week = 7 * period
    weeks_back = target - week * -(-steps // week)
    known = weeks_back + reach <= origins
    columns.append(np.where(known, take(smooth, weeks_back), take(trailing, weeks_back)) / scale)
    for j in range(lags):
        columns.append(take(y, origins - j) / scale)
    for window in sorted({max(2, period // 288), max(2, period // 96), max(2, period // 24)}):
        columns.append(take(rolling_mean(y, window), origins) / scale)
    # today's deviation from the same hour one season ago, a nowcast of the level
    recent = take(rolling_mean(y, max(2, period // 24)), origins)
    before = take(rolling_mean(y, max(2, period // 24)), origins - period)
    with np.errstate(invalid="ignore", divide="ignore"):
        columns.append(recent / np.maximum(before, tiny))
    matrix = np.column_stack(columns)
    if calendar is not None:
        read = calendar if version >= 5 else calendar[:, :CALENDAR_V4]
        matrix = np.hstack([matrix, read[target]])
    if events is not None:
        matrix = np.hstack([matrix, events[target]])
    return matrix, scale


def event_matrix(
    events: pd.DataFrame | None, uid: str, ds: pd.DatetimeIndex, names: Sequence[str]
) -> np.ndarray | None:
    """Known-in-advance event columns on ``ds`` (0 where the calendar says nothing).

    ``events`` has ``ds`` and one numeric column per event; a ``unique_id`` column restricts
    a row to one series, and a row with none there (a calendar mixing fleet-wide and
    per-service events) is for every series: it was for none. A calendar lacking one of
    ``names`` (the events a model was trained with) is refused: reading an absent event as
    0 would forecast a launch day as an ordinary one. No calendar at all means no events.
    """
    if not names:
        return None
    out = np.zeros((len(ds), len(names)))
    if events is None:
        return out
    missing = [name for name in names if name not in events.columns]
    if missing:
        raise ValueError(
            f"the events calendar lacks the event column(s) {', '.join(missing)}"
            " that the model was trained with"
        )
    if events.empty:
        return out
    rows = events
    for name in names:  # a text column failed deep in numpy: "could not convert string"
        if not pd.api.types.is_numeric_dtype(rows[name]):
            try:
                rows = rows.assign(**{name: pd.to_numeric(rows[name]).astype(float)})
            except (ValueError, TypeError):
                raise ValueError(
                    f"event column {name!r} is not numeric: an event column holds a number"
                    " per interval (0 when the event is absent)"
                ) from None
    if "unique_id" in rows.columns:  # a row without one (a blank cell) is for every series
        named = rows["unique_id"]
        rows = rows[named.isna() | (named.astype(str) == uid)]
    # as the series' stamps (naive UTC): stamps with an offset, from a calendar kept in
    # local time, matched none of them and every event was silently read as absent
    stamps = pd.DatetimeIndex(naive_utc(rows["ds"]))
    if len(ds) > 1:
        # An event counts in the interval that contains it, as a request does (intervals
        # are labelled by their start): one at 09:30 of an hourly series was matched to
        # no stamp and silently dropped.
        step = (ds[1:] - ds[:-1]).min()
        at = np.clip(ds.searchsorted(stamps, side="right") - 1, 0, None)
        inside = (stamps >= ds[0]) & (stamps < ds[at] + step)
        rows, stamps = rows[inside], ds[at[inside]]
    table = rows.groupby(stamps)[list(names)].max()
    aligned = table.reindex(ds).fillna(0.0).to_numpy(dtype=float)
    return aligned
