"""The capacity outlook and the busy-hours ratings: days ahead, one hour at a time.

Pure functions from a model's forecast frame, the scaler's limits and ``now`` to plain
data, shared by the controller (a condition, an Event, a metric, the public feed) and
``surgecast outlook`` (a table and a chart for analysts):

- :func:`project` summarises a forecast at the model's own resolution hour by hour: the
  mean of the median (what an hour usually brings) and the highest upper quantile within
  the hour (the interval that must be served).
- :func:`risks` lists the coming hours with a quarter whose peak exceeds what the allowed
  replicas serve then (``maxReplicas`` or a scheduled override's bound, times
  ``capacityPerReplica``), with the shortfall in replicas and how far ahead each is: weeks
  of warning for a surge that the reactive floor and the policy could never absorb, because
  max clamps them both.
- :func:`typical_bands` and :func:`rate` rate each hour quiet, normal or busy against the
  service's own recent history, so a quiet hour of a busy service is not called busy just
  because its numbers are large; :func:`quiet_windows` finds the next quiet stretches.
- :data:`TEXT` and the ``*_label`` functions say it in English or Chinese, with dates in the
  service's time zone.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from controller.policy import PolicySpec, effective_bounds, lead_time, needed_replicas
from forecaster.frames import quantile_column

HOUR = pd.Timedelta(hours=1)
QUARTER = pd.Timedelta(minutes=15)
QUARTER_COLUMNS = ("peak_00", "peak_15", "peak_30", "peak_45")
"""The peak of each quarter of an hour: a bound that changes within the hour (an override
from 09:30, or from 09:00 in a zone 30 or 45 minutes off UTC) is judged against the load of
its own part of the hour, not against the hour's peak alone."""
RATINGS = ("quiet", "normal", "busy")
CODES = {"q": "quiet", "n": "normal", "b": "busy"}
"""One letter per hour in status: 168 hours fit in a short string."""

QUIET_LEVEL, BUSY_LEVEL = 0.4, 0.8
"""Quantile levels of the recent hourly load that bound the ratings: the quietest 40 % of
hours are quiet and the busiest 20 % busy, so "busy" singles out peaks without flagging
every working hour (``benchmarks/outlook.py`` measures how well it finds them)."""

IDLE_SHARE = 0.05
"""Hours expected below this share of the busy level are quiet even when the quiet
quantile of the history is lower (a service idle for most hours has one of 0)."""

REFERENCE = pd.Timedelta(weeks=4)
"""How far back the history that ratings are measured against reaches."""

DAYTIME = (7, 22)
"""Local hours in which quiet windows are suggested to users: a quiet 3 a.m. is no advice."""


# -- hourly summary and capacity ------------------------------------------------------------


def project(forecast: pd.DataFrame, quantile: float, now: datetime, days: int) -> pd.DataFrame:
    """One series' forecast frame (``ds, yhat, q...``) as one row per coming hour.

    The window starts at the first whole hour at or after ``now`` and lasts ``days``.
    Columns: ``ds`` (hour start, naive UTC), ``expected`` (mean of ``yhat`` over the hour's
    intervals, in the series' unit per interval), ``peak`` (the highest ``quantile`` forecast
    of an interval that runs in the hour), ``peak_at`` (when that interval starts) and the
    same peak per quarter of the hour (:data:`QUARTER_COLUMNS`), which :func:`risks` judges
    against the bounds in force then. An hour without an interval of its own (a series
    coarser than hourly) takes the values of the interval covering it. Intervals the model
    left without a number (NaN or ±inf) are skipped; an hour left with none is no row.
    """
    start = _naive_utc(now).ceil("h")
    grid = pd.date_range(start, periods=days * 24, freq=HOUR)
    step = forecast["ds"].diff().min() if len(forecast) > 1 else HOUR
    frame = forecast[(forecast["ds"] > start - step) & (forecast["ds"] < grid[-1] + HOUR)]
    rows = pd.DataFrame(
        {
            "hour": frame["ds"].dt.floor("h").to_numpy(),
            "ds": frame["ds"].to_numpy(),
            "yhat": _finite(frame["yhat"]),
            "upper": _finite(frame[quantile_column(quantile)]),
        }
    ).dropna()  # an interval without a number says nothing about its hour
    hourly = rows.groupby("hour", sort=True)[["yhat"]].mean().rename(columns={"yhat": "expected"})
    hourly = hourly.reindex(hourly.index.union(grid))
    cover = max(0, math.ceil(step / HOUR) - 1)  # hours an interval covers beyond its own
    if cover:
        hourly = hourly.ffill(limit=cover)
    hourly = hourly.join(_quarter_peaks(rows["ds"], rows["upper"], step))
    return hourly.reindex(grid).rename_axis("ds").reset_index().dropna(subset=["expected", "peak"])


def _finite(values: pd.Series) -> np.ndarray:
    """``values`` as floats, with ±inf as NaN: a model's infinite forecast is no number
    either, and kept it reached ``status.outlook.expected``, which the API server refuses
    (JSON has no Infinity) at every reconcile, and rated its hour busy."""
    array = values.to_numpy(dtype=float)
    return np.where(np.isfinite(array), array, np.nan)


def _quarter_peaks(starts: pd.Series, upper: pd.Series, step: pd.Timedelta) -> pd.DataFrame:
    """Per hour: the highest ``upper`` of the intervals ``[start, start + step)`` running in
    each quarter of it (:data:`QUARTER_COLUMNS`), the highest of all (``peak``) and when
    the interval that brings it starts (``peak_at``, the earliest of equals).

    An interval counts in every quarter it overlaps: a two-hour interval in eight, one of
    ten minutes from :10 in the first two.
    """
    begin = starts.to_numpy()
    first = starts.dt.floor(QUARTER).to_numpy()
    spans = np.ceil((begin + step.to_timedelta64() - first) / QUARTER.to_timedelta64())
    count = np.maximum(spans.astype(int), 1)
    which = np.repeat(np.arange(len(begin)), count)
    offsets = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    quarters = pd.DataFrame(
        {
            "quarter": first[which] + offsets * QUARTER.to_timedelta64(),
            "upper": upper.to_numpy(dtype=float)[which],
            "at": begin[which],
        }
    )
    # The highest first, the earliest of equals first: the first row per quarter is its peak.
    quarters = quarters.sort_values(["upper", "at"], ascending=[False, True], kind="stable")
    quarters = quarters.drop_duplicates("quarter")
    quarters["hour"] = quarters["quarter"].dt.floor("h")
    peaks = quarters.drop_duplicates("hour").set_index("hour")[["upper", "at"]]
    peaks.columns = pd.Index(["peak", "peak_at"])
    slot = quarters["quarter"].dt.minute // 15
    by_quarter = quarters.assign(slot=slot).pivot(index="hour", columns="slot", values="upper")
    by_quarter = by_quarter.reindex(columns=range(len(QUARTER_COLUMNS)))
    by_quarter.columns = pd.Index(QUARTER_COLUMNS)
    return peaks.join(by_quarter).sort_index()


@dataclass(frozen=True)
class Risk:
    """A coming hour with a quarter whose forecast peak needs more replicas than the bounds
    allow then."""

    start: pd.Timestamp
    """The hour's start (UTC)."""

    peak: float
    """The forecast's upper quantile in the hour's quarter most short of replicas (its
    peak, unless ``max`` changes within the hour)."""

    max_replicas: int
    """The most replicas allowed then (``maxReplicas``, or an override's bound)."""

    capacity: float
    """What those replicas serve: ``max_replicas × capacityPerReplica``."""

    shortfall: int
    """Replicas missing to serve the peak."""

    ahead: timedelta
    """From now to the hour's start (zero for the hour under way)."""


def risks(hours: pd.DataFrame, spec: PolicySpec, now: datetime) -> list[Risk]:
    """The hours of :func:`project` that the bounds cannot carry, in time order.

    Each quarter of an hour is judged at its peak against the lowest ``max`` in force in it
    (an override may raise or lower it, from any minute), with the policy's own
    :func:`needed_replicas`, so the outlook and the decisions never disagree about what a
    load needs; an hour's risk is its quarter with the largest shortfall. Judging the hour
    at its peak alone missed a surge that outlasts a raised ``max``: a deadline window
    until 10:30 carries the 10:10 peak, not the 10:40 load after it. Hours that have ended
    by ``now`` are skipped.
    """
    found = []
    current = _naive_utc(now)
    # Columns converted once, not row by row: the controller judges every scaler's
    # outlook at every reconcile.
    starts = pd.DatetimeIndex(hours["ds"])
    peaks = hours[list(QUARTER_COLUMNS)].to_numpy(dtype=float)
    coming = np.flatnonzero(starts + HOUR > current)
    if len(coming) == 0:
        return []
    quarter_starts = (
        starts[coming].to_numpy()[:, None] + np.arange(len(QUARTER_COLUMNS)) * QUARTER.to_numpy()
    )
    highs = _lowest_max(spec, quarter_starts)
    # A loose screen first (most quarters fit by far), then the policy's own arithmetic.
    with np.errstate(invalid="ignore"):
        screened = peaks[coming] / spec.capacity_per_replica > highs - 1e-6
    for row in np.flatnonzero(screened.any(axis=1)):
        i = coming[row]
        worst: tuple[int, float, int] | None = None
        for q in np.flatnonzero(screened[row]):
            peak, high = float(peaks[i, q]), int(highs[row, q])
            short = needed_replicas(peak, spec.capacity_per_replica) - high
            if short > 0 and (worst is None or short > worst[0]):
                worst = (short, peak, high)
        if worst is not None:
            short, peak, high = worst
            start = starts[i]
            found.append(
                Risk(
                    start=start.tz_localize("UTC"),
                    peak=peak,
                    max_replicas=high,
                    capacity=high * spec.capacity_per_replica,
                    shortfall=short,
                    ahead=max(timedelta(0), (start - current).to_pytimedelta()),
                )
            )
    return found


def _lowest_max(spec: PolicySpec, starts: np.ndarray) -> np.ndarray:
    """The lowest ``max`` of :func:`effective_bounds` within each quarter from ``starts``
    (naive UTC ``datetime64``, any shape).

    The bounds change only where an override opens or closes, or comes within the lead
    time (:func:`lead_time`), so they are worked out once per stretch between such moments
    rather than once per quarter.
    """
    lead = lead_time(spec)
    moments = {
        _naive_utc(t).to_datetime64()
        for o in spec.overrides
        for t in (o.start, o.end, o.start - lead)
    }
    flat = starts.ravel()
    first, last = flat.min(), flat.max() + QUARTER.to_numpy()
    edges = np.array(sorted({first} | {m for m in moments if first < m < last}))
    bounds = np.array(
        [
            effective_bounds(spec, pd.Timestamp(e).tz_localize("UTC").to_pydatetime())[1]
            for e in edges
        ]
    )
    # The stretch a quarter starts in, and the last one that starts before it ends.
    begin = np.searchsorted(edges, flat, side="right") - 1
    end = np.searchsorted(edges, flat + QUARTER.to_numpy(), side="left") - 1
    lowest = bounds[begin]
    for n in np.flatnonzero(end > begin):
        lowest[n] = bounds[begin[n] : end[n] + 1].min()
    return lowest.reshape(starts.shape)


def risk_message(found: Sequence[Risk], quantile: float, tz: str, days: int) -> str:
    """One sentence for the condition and the Event: the first hour at risk, its forecast,
    the shortfall and how far ahead it is, then how many hours are at risk and the worst."""
    first = found[0]
    worst = max(found, key=lambda r: (r.shortfall, -r.start.value))
    message = (
        f"{wall_clock(first.start, tz)} ({tz}), {ahead_label(first.ahead)}: forecast"
        f" q{quantile:g} peak {amount(first.peak)} exceeds the {amount(first.capacity)} that"
        f" {first.max_replicas} replicas serve: {_replicas(first.shortfall)} short"
    )
    if len(found) > 1:
        message += f"; {len(found)} hours at risk in the next {days} days"
        if worst is not first:
            message += (
                f", the worst {wall_clock(worst.start, tz)} ({_replicas(worst.shortfall)} short)"
            )
    return message


def amount(value: float) -> str:
    """A load for people: ``12.35``, ``987.6``, ``12,346`` — four significant digits below a
    thousand, whole numbers with separators above, never ``1.235e+04``."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def ahead_label(ahead: timedelta) -> str:
    """``in 4d 9h``, ``within the hour``, or ``now`` (the hour is under way).

    Whole hours only: the text is part of the condition's message, which should change
    no faster than the hourly outlook itself (each change is a status write).
    """
    seconds = ahead.total_seconds()
    if seconds <= 0:
        return "now"
    if seconds < 3600:
        return "within the hour"
    days, hours = divmod(int(seconds // 3600), 24)
    return f"in {days}d {hours}h" if days else f"in {hours}h"


# -- ratings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bands:
    """Where a service's hourly load stops being quiet and starts being busy."""

    quiet_below: float
    """Hours expected at or below this are quiet (the ``QUIET_LEVEL`` quantile, at least
    ``IDLE_SHARE`` of ``busy_above``)."""

    busy_above: float
    """Hours expected at or above this are busy (the ``BUSY_LEVEL`` quantile)."""


def hourly_load(series: pd.DataFrame) -> pd.Series:
    """Mean load per interval in each hour of one series (``ds, y``), by hour start.

    Hours with less than half of their intervals observed are dropped: an outage is not a
    quiet hour. The unit matches :func:`project`'s ``expected``.
    """
    frame = series[["ds", "y"]].dropna(subset=["ds"])
    if len(frame) < 2:
        return pd.Series(dtype=float)
    step = pd.Series(frame["ds"].sort_values().diff().dropna()).mode().iloc[0]
    per_hour = max(1, int(HOUR / step))
    grouped = frame.groupby(frame["ds"].dt.floor("h"))["y"]
    counts, means = grouped.count(), grouped.mean()
    return means[counts * 2 >= per_hour]


def typical_bands(
    history: pd.DataFrame, quiet: float = QUIET_LEVEL, busy: float = BUSY_LEVEL
) -> Bands | None:
    """The rating bands of a service from its own recent history (``ds, y``): its last
    :data:`REFERENCE` (the controller's history window may reach back 400 days, and a
    service that has grown since would then find its ordinary hours busy).

    ``None`` with less than a day of observed hours: too little to say what is typical.
    """
    recent = history[history["ds"] > history["ds"].max() - REFERENCE]
    hourly = hourly_load(recent).to_numpy(dtype=float)
    if len(hourly) < 24:
        return None
    low, high = np.quantile(hourly, [quiet, busy])
    # A service idle much of the time has a quiet quantile of exactly 0, and no model ever
    # forecasts exactly 0: its idle nights would all read "normal". Hours below a small
    # share of the busy level are quiet whatever the quantile says.
    return Bands(max(float(low), IDLE_SHARE * float(high)), float(high))


def rate(expected: np.ndarray, bands: Bands) -> np.ndarray:
    """``quiet``, ``normal`` or ``busy`` for each expected hourly load.

    When the bands collapse (a flat service), every hour is normal: nothing stands out.
    """
    expected = np.asarray(expected, dtype=float)
    out = np.full(len(expected), "normal", dtype=object)
    if bands.busy_above <= bands.quiet_below:
        return out
    out[expected <= bands.quiet_below] = "quiet"
    out[expected >= bands.busy_above] = "busy"
    return out


@dataclass(frozen=True)
class Ratings:
    """Each coming hour rated, as the status records it and the public feed reads it."""

    generated_at: datetime
    start: pd.Timestamp
    """The first hour (UTC); hour ``n`` starts ``n`` hours later."""

    ratings: tuple[str, ...]
    expected: tuple[float, ...] | None = None
    """The forecast load per hour, only when the feed may show numbers."""

    @classmethod
    def of(
        cls, hours: pd.DataFrame, bands: Bands, generated_at: datetime, numbers: bool = False
    ) -> Ratings:
        """Rate the hours of :func:`project` up to the first hour the forecast missed.

        No hours (a forecast without a number in the window) rate as none from the next
        hour: the reconciler rates at every reconcile, and raising would stop it there.
        """
        ds = pd.DatetimeIndex(hours["ds"])
        if len(ds) == 0:
            start = _naive_utc(generated_at).ceil("h").tz_localize("UTC")
            return cls(generated_at, start, (), () if numbers else None)
        consecutive = ds == ds[0] + HOUR * np.arange(len(ds))
        kept = hours[np.logical_and.accumulate(consecutive)]
        expected = kept["expected"].to_numpy(dtype=float)
        return cls(
            generated_at=generated_at,
            start=ds[0].tz_localize("UTC"),
            ratings=tuple(rate(expected, bands)),
            expected=tuple(float(v) for v in expected) if numbers else None,
        )

    def hours(self, now: datetime) -> list[tuple[pd.Timestamp, str, float | None]]:
        """(start, rating, expected) of every hour that has not ended by ``now``."""
        current = pd.Timestamp(now).tz_convert("UTC")
        out = []
        for n, rating in enumerate(self.ratings):
            start = self.start + n * HOUR
            if start + HOUR > current:
                out.append((start, rating, None if self.expected is None else self.expected[n]))
        return out

    def to_status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "generatedAt": _iso(self.generated_at),
            "start": _iso(self.start),
            "ratings": "".join(r[0] for r in self.ratings),
        }
        if self.expected is not None:
            status["expected"] = [float(f"{v:.4g}") for v in self.expected]
        return status

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> Ratings:
        """Read :meth:`to_status`'s output; ``ValueError`` when it is not that."""
        try:
            codes = str(status["ratings"])
            ratings = tuple(CODES[c] for c in codes)
            start = pd.Timestamp(status["start"]).tz_convert("UTC")
            generated = pd.Timestamp(status["generatedAt"]).tz_convert("UTC").to_pydatetime()
            expected = status.get("expected")
            values = None if expected is None else tuple(float(v) for v in expected)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an outlook status: {exc}") from None
        if pd.isna(start) or pd.isna(generated):
            raise ValueError("not an outlook status: no start or generatedAt")
        if values is not None and len(values) != len(ratings):
            raise ValueError("outlook status: expected and ratings differ in length")
        return cls(generated, start, ratings, values)


def quiet_windows(
    hours: Sequence[tuple[pd.Timestamp, str, float | None]],
    tz: str,
    count: int = 3,
    daytime: tuple[int, int] = DAYTIME,
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """The next ``count`` runs of consecutive quiet hours within local ``daytime``.

    ``hours`` are :meth:`Ratings.hours`; windows are (start, end) in ``tz``.
    """
    windows: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    run_start = run_end = None
    for start, rating, _ in hours:
        local = start.tz_convert(tz)
        suitable = rating == "quiet" and daytime[0] <= local.hour < daytime[1]
        if suitable and run_end is not None and local == run_end:
            run_end = local + HOUR
            continue
        if run_start is not None and run_end is not None:
            windows.append((run_start, run_end))
        run_start, run_end = (local, local + HOUR) if suitable else (None, None)
    if run_start is not None and run_end is not None:
        windows.append((run_start, run_end))
    return windows[:count]


# -- words ----------------------------------------------------------------------------------------

TEXT: dict[str, dict[str, Any]] = {
    "en": {
        "quiet": "Quiet",
        "normal": "Normal",
        "busy": "Busy",
        "title": "Busy hours ahead",
        "next_quiet": "Next quiet times",
        "no_quiet": "No quiet daytime hours in the coming days",
        "updated": "Updated",
        "weekdays": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
        "months": (
            "Jan",
            "Feb",
            "Mar",
            "Apr",
            "May",
            "Jun",
            "Jul",
            "Aug",
            "Sep",
            "Oct",
            "Nov",
            "Dec",
        ),
    },
    "zh": {
        "quiet": "空闲",
        "normal": "一般",
        "busy": "繁忙",
        "title": "未来繁忙时段",
        "next_quiet": "近期空闲时段",
        "no_quiet": "近几天白天暂无空闲时段",
        "updated": "更新于",
        "weekdays": ("周一", "周二", "周三", "周四", "周五", "周六", "周日"),
    },
}
LANGUAGES = tuple(TEXT)
DEFAULT_LANGUAGE = "en"


def language(asked: str | None, accept_language: str | None) -> str:
    """The language to answer in: ``?lang=`` first, then ``Accept-Language``, then English.

    Only the primary subtag counts (``zh-CN``, ``zh-Hans`` and ``zh-TW`` are all ``zh``);
    ``Accept-Language`` entries go by their ``q`` weight, ``q=0`` meaning "not this" (the
    parameter's name is case-insensitive in RFC 9110's grammar: ``Q=0.8`` is a weight too).
    """
    if asked and asked.split("-")[0].lower() in TEXT:
        return asked.split("-")[0].lower()
    weighted = []
    for n, item in enumerate((accept_language or "").split(",")):
        match = re.match(r"^\s*([A-Za-z]+)(?:-[\w-]*)?\s*(?:;\s*[qQ]\s*=\s*([0-9.]+))?\s*$", item)
        if not match:
            continue
        try:
            weight = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if weight > 0 and match.group(1).lower() in TEXT:
            weighted.append((-weight, n, match.group(1).lower()))
    return min(weighted)[2] if weighted else DEFAULT_LANGUAGE


def day_label(day: date, lang: str) -> str:
    """``Mon 16 Nov`` or ``11月16日 周一``."""
    text = TEXT[lang]
    weekday = text["weekdays"][day.weekday()]
    if lang == "zh":
        return f"{day.month}月{day.day}日 {weekday}"
    return f"{weekday} {day.day} {text['months'][day.month - 1]}"


def window_label(start: pd.Timestamp, end: pd.Timestamp, lang: str) -> str:
    """``Mon 16 Nov 14:00–16:00`` (local times; an end at midnight reads 24:00)."""
    until = "24:00" if end.hour == 0 and end.date() > start.date() else f"{end:%H:%M}"
    return f"{day_label(start.date(), lang)} {start:%H:%M}–{until}"


# -- helpers --------------------------------------------------------------------------------------


def _naive_utc(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def _replicas(count: int) -> str:
    return f"{count} replica" if count == 1 else f"{count} replicas"


def wall_clock(stamp: pd.Timestamp, tz: str, form: str = "%Y-%m-%d %H:%M") -> str:
    """``stamp`` on the clocks of ``tz``, with the zone's abbreviation when the clocks show
    that time twice (``01:00 EDT`` and ``01:00 EST`` the night they go back): two hours at
    risk that night read alike, and one of them is the wrong hour to prepare for."""
    local = stamp.tz_convert(tz)
    moment = local.to_pydatetime()
    twice = moment.replace(fold=1 - moment.fold).utcoffset() != moment.utcoffset()
    return f"{local:{form} %Z}" if twice else f"{local:{form}}"


def _iso(moment: datetime | pd.Timestamp) -> str:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
