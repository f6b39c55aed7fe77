"""The replica decision: one pure function from forecast, load and spec to a :class:`Decision`.

No Kubernetes, no Prometheus, no clock, no logging: everything arrives as plain data, with
``now`` passed in, so the controller, the replay simulator and the tests all run the very
same arithmetic (as the HPA keeps ``replica_calculator.go`` apart from its control loop).

The rules, in the order they apply:

1. Bounds: ``min/max``, replaced by any scheduled override active now. An override that
   raises the minimum or the maximum and starts within the lead time (startup delay + one
   sync period) applies already, so its pods are ready when it begins.
2. Reactive floor: the replicas the load observed now needs, ``ceil(load / capacity)``.
3. Predictive need: the replicas that cover the forecast's chosen upper quantile at every
   point of the lead window ``[now, now + startup delay + sync period)``: pods asked for
   now are ready only at its end, so they must cover everything until then. The interval
   that starts exactly at its end is the next sync's to cover (its pods are ready in time).
4. The recommendation is the larger of the two. A missing, stale, invalid or poorly
   scored forecast leaves only the floor (``FallbackReactive/...``); with no load either,
   the current count is kept: missing data damps a change, never amplifies it.
5. Tolerance: changes within ``tolerance`` of the current count are skipped (no flapping),
   unless the floor demands more.
6. Scale-down: the highest recommendation over the stabilisation window wins (the HPA's
   rule), and the forecast over the window ahead must allow the lower count too.
7. Step limits per sync, then the bounds. The floor beats the step limit, the bounds beat
   everything: nothing ever scales outside min/max, or below what the load needs now
   while max allows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np


@dataclass(frozen=True)
class Override:
    """A scheduled window with its own bounds (a holiday, a filing deadline, a release)."""

    name: str
    start: datetime
    end: datetime
    min_replicas: int | None = None
    max_replicas: int | None = None


@dataclass(frozen=True)
class PolicySpec:
    """What the user asked for. Load and capacity share one unit (e.g. requests/second)."""

    min_replicas: int
    max_replicas: int
    capacity_per_replica: float
    """Load one ready pod serves before requests queue or fail."""

    startup_delay: timedelta
    """From asking for a pod to it serving."""

    sync_period: timedelta = timedelta(seconds=30)
    """Time between decisions: a pod asked for at the next sync is ready one period later."""

    quantile: float = 0.9
    """Forecast quantile the replicas must cover."""

    tolerance: float = 0.1
    """Relative change below which the count is left alone (the HPA's default)."""

    scale_up_max_step: int = 100
    scale_down_max_step: int = 10
    scale_down_stabilization: timedelta = timedelta(minutes=5)
    """The highest recommendation within this past window bounds a scale-down."""

    max_forecast_age: timedelta = timedelta(hours=26)
    """An older forecast is stale: decide reactively."""

    min_backtest_score: float = 0.0
    """Below this backtest score (peak recall, 0..1) the model is not trusted."""

    level_window: int = 0
    """Intervals of recent load compared with the forecast median to nowcast the level
    (0: off). A busy day runs above the seasonal median all day, a quiet one below."""

    level_bounds: tuple[float, float] = (0.5, 4.0)
    """The nowcast level factor is clipped to this range."""

    overrides: tuple[Override, ...] = ()


@dataclass(frozen=True)
class Forecast:
    """A quantile forecast as plain arrays: ``upper`` is the spec's quantile at ``times``."""

    made_at: datetime
    times: np.ndarray
    """``datetime64`` timestamps (UTC, naive), ascending."""

    upper: np.ndarray
    quantile: float
    median: np.ndarray | None = None
    model_version: str = ""
    backtest_score: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """A past recommendation, kept by the caller for the stabilisation window."""

    at: datetime
    replicas: int


@dataclass(frozen=True)
class Decision:
    """What to do and why, with every input that mattered."""

    replicas: int
    reason: str
    """CamelCase code, ``Family/Detail`` (e.g. ``ScaleUp/ForecastPeak``)."""

    message: str
    recommendation: int
    """Before stabilisation, steps and bounds: what the caller keeps for stabilisation."""

    reactive_floor: int
    predictive: int | None
    forecast_peak: float | None
    window_start: datetime
    window_end: datetime
    min_replicas: int
    max_replicas: int
    current_replicas: int
    observed_load: float | None
    clamps: tuple[str, ...] = field(default_factory=tuple)
    override: str | None = None
    fallback: str | None = None
    """Why the forecast was not used, when it was not."""


def lead_time(spec: PolicySpec) -> timedelta:
    """How far ahead replicas asked for now must cover: startup delay plus one sync."""
    return spec.startup_delay + spec.sync_period


MOST_REPLICAS = 1e15
"""More replicas than any cluster runs: what an unbounded need is counted as."""


def needed_replicas(load: float, capacity: float) -> int:
    """Pods needed to serve ``load`` at ``capacity`` each (a tiny epsilon absorbs float noise).

    The ratio is bounded at ``MOST_REPLICAS``, far above any ``maxReplicas`` (which clamps the
    result anyway): an absurd load over a tiny capacity overflows to infinity, and rounding
    infinity up raised OverflowError out of the decision instead of asking for the maximum.
    Divided as Python floats: a NumPy load (a replay's) warned of the overflow on stderr.
    """
    return max(0, math.ceil(min(float(load) / float(capacity), MOST_REPLICAS) - 1e-9))


def effective_bounds(spec: PolicySpec, now: datetime) -> tuple[int, int, str | None]:
    """min, max and the override responsible, at ``now``.

    An override starting within the lead time already raises the minimum or the maximum,
    so its pods are ready when its window opens (the maximum to the one in force then, as
    other overrides still active may cap it); one that lowers either waits for its
    window, or the pods would go before the load they serve does.
    """
    lead = lead_time(spec)
    low, high = spec.min_replicas, _max_at(spec, now)
    active = [o for o in spec.overrides if o.start <= now < o.end]
    mins = [o.min_replicas for o in active if o.min_replicas is not None]
    if mins:
        low = max(mins)
    upcoming = [o for o in spec.overrides if now < o.start <= now + lead]
    raising = [o for o in upcoming if o.min_replicas is not None and o.min_replicas > low]
    if raising:
        low = max(o.min_replicas for o in raising if o.min_replicas is not None)
    # The same holds for a higher maximum: capped until its window opened, the pods a
    # forecast surge at the window's start needs were ready only a startup delay into it.
    # It widens to the maximum in force when the window opens, which another override
    # active then may cap: widened to the new window's own maximum, the count rose during
    # the lead time only to be cut back to the other's cap as the window opened.
    widening = [o for o in upcoming if o.max_replicas is not None and _max_at(spec, o.start) > high]
    if widening:
        high = max(_max_at(spec, o.start) for o in widening)
    names = [o.name for o in active + raising + widening]
    return low, max(low, high), (", ".join(dict.fromkeys(names)) or None)


def _max_at(spec: PolicySpec, moment: datetime) -> int:
    """The maximum in force at ``moment``: the lowest of the active overrides' maxima, or
    the spec's."""
    maxes = [
        o.max_replicas
        for o in spec.overrides
        if o.start <= moment < o.end and o.max_replicas is not None
    ]
    return min(maxes) if maxes else spec.max_replicas


def forecast_problem(
    spec: PolicySpec, forecast: Forecast | None, now: datetime, until: datetime
) -> str | None:
    """Why ``forecast`` cannot be used for the window ending ``until``, or None."""
    if forecast is None or len(forecast.times) == 0:
        return "ForecastMissing"
    if now - forecast.made_at > spec.max_forecast_age:
        return "ForecastStale"
    if forecast.backtest_score is not None and forecast.backtest_score < spec.min_backtest_score:
        return "ModelScoreTooLow"
    window = _window(forecast, now, until)
    if window.size == 0 or _covered_until(forecast.times) < np.datetime64(
        until.replace(tzinfo=None)
    ):
        return "ForecastDoesNotCoverWindow"
    if not np.all(np.isfinite(window)) or np.any(window < 0):
        return "ForecastInvalid"
    return None


def _covered_until(times: np.ndarray) -> np.datetime64:
    """The end of a forecast's last interval: its start plus the forecast's step.

    Comparing the window's end with the last interval's start instead fell back one
    interval early (an hour early on an hourly forecast). A one-point forecast has no step
    and is taken to cover its instant only.
    """
    step = times[-1] - times[-2] if len(times) > 1 else np.timedelta64(0, "s")
    return np.datetime64(times[-1] + step)


def nowcast(
    forecast: Forecast, now: datetime, recent: Sequence[float], bounds: tuple[float, float]
) -> Forecast:
    """Rescale a seasonal forecast to the level the load is running at today.

    ``recent`` holds the complete intervals before the one ``now`` falls in (``now`` is
    a wall-clock time, rarely on the interval grid). The level factor R is their observed
    load over the forecast median for the same intervals. The median scales by R and the
    spread above it by sqrt(R), as for counts whose variance grows with their mean.
    Intervals missing on either side (NaN: a scrape gap) are left out of both sums, so one
    gap does not switch the nowcast off for a whole window; so is a negative reading (a
    broken query, a counter reset through ``deriv()``), as unknown here as it is to the
    floor: counted, one such minute dragged the level to its lower bound and scaled the
    service down on a forecast halved. With fewer than half the
    intervals usable, no median, or no forecast coverage of the recent intervals, the
    forecast is returned unchanged.
    """
    values = np.asarray(recent, dtype=float)
    times = forecast.times
    if forecast.median is None or values.size == 0 or len(times) < 2:
        return forecast
    step = times[1] - times[0]
    current = int(np.searchsorted(times, np.datetime64(now.replace(tzinfo=None)), "right")) - 1
    at = current - values.size
    if at < 0 or times[current] - times[at] != step * values.size:
        return forecast
    expected_all = forecast.median[at:current]
    usable = np.isfinite(values) & (values >= 0) & np.isfinite(expected_all)
    if 2 * usable.sum() < values.size:
        return forecast
    expected = float(np.sum(expected_all[usable]))
    if expected <= 0:
        return forecast
    ratio = float(np.clip(values[usable].sum() / expected, *bounds))
    median = forecast.median * ratio
    upper = median + np.sqrt(ratio) * np.maximum(forecast.upper - forecast.median, 0.0)
    return replace(forecast, upper=upper, median=median)


def _window(forecast: Forecast, start: datetime, end: datetime) -> np.ndarray:
    """Forecast values for the intervals overlapping [start, end).

    Half-open: an interval that starts at ``end`` only touches the window. Pods asked for
    at the next sync, ``now + sync period``, are ready at ``end`` of this sync's lead window,
    so counting that interval here made every decision cover one interval more than its
    pods have to (the replay's oracle, which needs no forecast, covers exactly
    ``[now, now + startup delay]`` per one-interval sync).
    """
    times = forecast.times
    first = np.searchsorted(times, np.datetime64(start.replace(tzinfo=None)), side="right") - 1
    last = np.searchsorted(times, np.datetime64(end.replace(tzinfo=None)), side="left")
    return forecast.upper[max(first, 0) : last]


def decide(
    spec: PolicySpec,
    now: datetime,
    current_replicas: int,
    observed_load: float | None,
    forecast: Forecast | None,
    history: Sequence[Recommendation] = (),
    recent_load: Sequence[float] = (),
) -> Decision:
    """Decide the replica count for ``now``. Pure: same inputs, same decision.

    ``recent_load`` holds the observed load of the intervals just before ``now``, oldest
    first; with ``spec.level_window`` it rescales the forecast (see :func:`nowcast`).
    """
    low, high, override = effective_bounds(spec, now)
    lead_end = now + lead_time(spec)
    ahead_end = now + max(lead_time(spec), spec.scale_down_stabilization)
    floor = (
        needed_replicas(observed_load, spec.capacity_per_replica)
        if observed_load is not None and _usable_load(observed_load)
        else None
    )
    problem = forecast_problem(spec, forecast, now, lead_end)
    if problem is None and forecast is not None and spec.level_window:
        forecast = nowcast(forecast, now, recent_load[-spec.level_window :], spec.level_bounds)
    predictive = peak = None
    if problem is None and forecast is not None:
        peak = float(_window(forecast, now, lead_end).max())
        predictive = needed_replicas(peak, spec.capacity_per_replica)

    if predictive is not None:
        recommendation = max(predictive, floor or 0)
        reason = "ForecastPeak" if predictive >= (floor or 0) else "ReactiveFloor"
    elif floor is not None:
        recommendation, reason = floor, "ReactiveFloor"
    else:
        recommendation, reason = current_replicas, "NoData"

    replicas, clamps = recommendation, []
    if current_replicas > 0 and replicas != current_replicas:
        change = replicas / current_replicas - 1
        if abs(change) <= spec.tolerance and not (floor is not None and floor > current_replicas):
            replicas = current_replicas
            clamps.append("Hold/WithinTolerance")

    if replicas < current_replicas and floor is None:
        replicas = current_replicas  # the load now is unknown: never scale down blind
        clamps.append("Hold/LoadUnknown")
    if replicas < current_replicas:
        window_start = now - spec.scale_down_stabilization
        stabilized = max([replicas] + [r.replicas for r in history if r.at > window_start])
        if predictive is not None and forecast is not None:
            # A NaN ahead (past the lead window, which was checked) leaves the rest in
            # force: skipping the whole window for it let a peak the forecast shows just
            # before the gap go unheeded, and the count drop to the floor.
            ahead = _window(forecast, now, ahead_end)
            ahead = ahead[np.isfinite(ahead)]
            if ahead.size:
                stabilized = max(
                    stabilized, needed_replicas(float(ahead.max()), spec.capacity_per_replica)
                )
        if stabilized > replicas:
            replicas = min(stabilized, current_replicas)
            clamps.append("Hold/Stabilizing")

    if replicas > current_replicas + spec.scale_up_max_step:
        replicas = current_replicas + spec.scale_up_max_step
        clamps.append("ScalingLimited/ScaleUpLimit")
    if replicas < current_replicas - spec.scale_down_max_step:
        replicas = current_replicas - spec.scale_down_max_step
        clamps.append("ScalingLimited/ScaleDownLimit")
    if floor is not None and replicas < min(floor, high):
        replicas = min(floor, high)
        clamps.append("ReactiveFloor/LoadNeedsMore")
    if replicas > high:
        replicas = high
        clamps.append("ScalingLimited/TooManyReplicas")
    if replicas < low:
        replicas = low
        clamps.append("ScalingLimited/TooFewReplicas")
    if override:
        clamps.append(f"ScheduledOverride/{override}")

    family = "FallbackReactive" if problem is not None else _family(replicas, current_replicas)
    code = f"{family}/{problem}" if problem is not None else f"{family}/{reason}"
    decision = Decision(
        replicas=int(replicas),
        reason=code,
        message="",
        recommendation=int(recommendation),
        reactive_floor=int(floor or 0),
        predictive=predictive,
        forecast_peak=peak,
        window_start=now,
        window_end=lead_end,
        min_replicas=low,
        max_replicas=high,
        current_replicas=current_replicas,
        observed_load=observed_load,
        clamps=tuple(clamps),
        override=override,
        fallback=problem,
    )
    return _with_message(decision, spec, forecast)


def _family(replicas: int, current: int) -> str:
    if replicas > current:
        return "ScaleUp"
    if replicas < current:
        return "ScaleDown"
    return "Hold"


def _with_message(decision: Decision, spec: PolicySpec, forecast: Forecast | None) -> Decision:
    """One plain sentence on-call can read: the change, then why."""
    d = decision
    change = (
        f"{d.current_replicas} → {d.replicas}"
        if d.replicas != d.current_replicas
        else f"hold at {d.replicas}"
    )
    parts = [change]
    startup = _minutes(spec.startup_delay)
    if d.forecast_peak is not None and forecast is not None:
        parts.append(
            f"the p{round(forecast.quantile * 100)} forecast for "
            f"{d.window_start:%H:%M}–{d.window_end:%H:%M} "
            f"peaks at {d.forecast_peak:,.1f}, each pod serves {spec.capacity_per_replica:g} "
            f"and pods take {startup} to start, so {d.predictive} cover it"
        )
    elif d.fallback is not None:
        parts.append(
            f"no usable forecast ({FALLBACK_WORDS[d.fallback]}), so scaling reacts to the load"
        )
    if d.observed_load is None and d.forecast_peak is not None:
        parts.append("no load was observed")  # the forecast decides; a hold says why
    elif d.observed_load is None:
        parts.append("no load was observed, so nothing changes without a forecast")
    elif not _usable_load(d.observed_load):
        parts.append(
            f"the load reading ({d.observed_load:g}) is not a usable request rate, "
            "so the load counts as unknown"
        )
    else:
        parts.append(f"the load now ({d.observed_load:,.1f}) needs {d.reactive_floor}")
    for clamp in d.clamps:
        words = _CLAMP_WORDS.get(clamp) or _CLAMP_WORDS[clamp.split("/")[0]]
        parts.append(words.format(d=d))
    return replace(d, message="; ".join(parts) + ".")


def _usable_load(load: float) -> bool:
    """A request rate: finite and not negative. A negative one (a broken query, a counter
    reset seen through ``deriv()``) is as unknown as NaN, never a reason to scale down."""
    return math.isfinite(load) and load >= 0


def _minutes(delay: timedelta) -> str:
    seconds = delay.total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


FALLBACK_WORDS = {
    "ForecastMissing": "none yet",
    "ForecastStale": "the last one is too old",
    "ModelScoreTooLow": "the model's backtest score is below the threshold",
    "ForecastDoesNotCoverWindow": "it ends before the lead window does",
    "ForecastInvalid": "it has NaN or negative values",
}
_CLAMP_WORDS = {
    "Hold/WithinTolerance": "the change is within the tolerance, so the count stays",
    "Hold/Stabilizing": "held by the scale-down stabilisation window or the forecast ahead",
    "Hold/LoadUnknown": "held because the load now is unknown, and nothing scales down blind",
    "ScalingLimited/ScaleUpLimit": "limited by the scale-up step",
    "ScalingLimited/ScaleDownLimit": "limited by the scale-down step",
    "ReactiveFloor/LoadNeedsMore": "raised to what the load needs now",
    "ScalingLimited/TooManyReplicas": "capped at maxReplicas {d.max_replicas}",
    "ScalingLimited/TooFewReplicas": "raised to minReplicas {d.min_replicas}",
    "ScheduledOverride": "bounds from scheduled override {d.override}",
}
