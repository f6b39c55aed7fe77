"""Replay a recorded series through scaling policies and measure what users would have seen.

The simulator walks the series one interval at a time. Each policy sets a desired replica
count at the start of an interval; a new pod serves only ``startup_delay`` after it was
asked for; removing pods is immediate (booting ones go first). In every interval each
ready pod serves ``capacity_per_replica`` requests and the rest go unserved.

Policies:

- ``predictive``: :func:`controller.policy.decide` on a forecast from a model retrained
  every ``retrain_every`` on the data before that moment only (no look-ahead), observing
  the load of the last complete interval;
- ``hpa``: :class:`controller.hpa.HPASimulator`, four 15 s syncs per minute; pods asked
  for at a sync within an interval serve from the first interval that starts once they
  are ready;
- ``oracle``: perfect foresight, the fewest pods with nothing unserved: at each interval
  the largest need within the next ``startup_delay`` (pods needed then must boot now).

Metrics skip intervals whose load is missing (NaN) or negative (a broken reading, a counter
reset through ``deriv()``, which the policy counts as unknown too): nothing is known about
them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from controller.decisions import DecisionRecord, record_from_decision
from controller.forecasting import to_forecast
from controller.hpa import HPASettings, HPASimulator
from controller.policy import (
    Decision,
    Forecast,
    PolicySpec,
    Recommendation,
    decide,
    lead_time,
    needed_replicas,
)
from forecaster.frames import series_freq, validate_series
from forecaster.models import SeasonalQuantile

POLICIES = ("predictive", "hpa", "oracle")


@dataclass(frozen=True)
class ReplaySettings:
    """The capacity model and the policies' parameters. Load unit: requests per interval."""

    capacity_per_replica: float
    startup_delay: timedelta
    min_replicas: int = 1
    max_replicas: int = 10_000
    quantile: float = 0.9
    retrain_every: timedelta = timedelta(days=1)
    history: timedelta = timedelta(weeks=4)
    """Training window of each refit."""

    hpa_target: float = 0.7
    scale_down_stabilization: timedelta = timedelta(minutes=5)
    tolerance: float = 0.0
    """The predictive policy's tolerance: 0 in replay, where every interval is a sync."""

    level_window: int = 30
    """Intervals of recent load used to nowcast the level (0: off); see ``policy.nowcast``."""


class ReplayModel(Protocol):
    """What a replay needs of a model: ``fit`` and ``predict`` as :mod:`forecaster.models`
    define them."""

    def fit(self, df: pd.DataFrame) -> ReplayModel: ...

    def predict(self, horizon: int, quantiles: Sequence[float]) -> pd.DataFrame: ...


ModelFactory = Callable[[], ReplayModel]


@dataclass
class _Fleet:
    """Pods as runs of ``[ready_at, count]``: ``count`` pods that become ready at interval
    ``ready_at``, oldest first.

    One entry per pod made a million-replica replay crawl and a larger one run out of
    memory; runs stay few, since ready ones are merged as they are counted.
    """

    delay_steps: int
    runs: list[list[int]] = field(default_factory=list)
    total: int = 0

    def set(self, desired: int, step: int, ready_at: int | None = None) -> None:
        """Scale to ``desired`` at interval ``step``; new pods are ready at ``ready_at``
        (default: ``delay_steps`` later), never earlier than pods asked for before them."""
        if desired > self.total:
            at = step + self.delay_steps if ready_at is None else ready_at
            if self.runs and self.runs[-1][0] == at:
                self.runs[-1][1] += desired - self.total
            else:
                self.runs.append([at, desired - self.total])
        excess = self.total - desired
        while excess > 0:  # the newest (still booting) go first
            removed = min(excess, self.runs[-1][1])
            self.runs[-1][1] -= removed
            excess -= removed
            if not self.runs[-1][1]:
                self.runs.pop()
        self.total = desired

    def ready(self, step: int) -> int:
        """Pods ready at ``step``; steps only move forward, so the ready runs become one."""
        done = 0
        while done < len(self.runs) and self.runs[done][0] <= step:
            done += 1
        if done > 1:
            self.runs[:done] = [[self.runs[done - 1][0], sum(n for _, n in self.runs[:done])]]
            done = 1
        return self.runs[0][1] if done else 0

    def __len__(self) -> int:
        return self.total


@dataclass
class ReplayResult:
    decisions: pd.DataFrame
    """One row per policy and interval: ds, policy, replicas, ready, load, unserved, ..."""

    summary: pd.DataFrame
    """One row per policy with the metrics."""

    settings: ReplaySettings

    policy_decisions: list[Decision] = field(default_factory=list)
    """The predictive run's decisions, one per interval, exactly as the policy made them
    (reasons, clamps, message): what a decision log records for a replay."""


def replay(
    series: pd.DataFrame,
    start: datetime | pd.Timestamp,
    settings: ReplaySettings,
    policies: Sequence[str] = POLICIES,
    model_factory: ModelFactory | None = None,
    end: datetime | pd.Timestamp | None = None,
) -> ReplayResult:
    """Replay one series from ``start`` (to ``end`` or its last interval) under each policy."""
    frame = validate_series(series)
    if frame["unique_id"].nunique() != 1:
        raise ValueError("replay takes one series; filter the frame to one unique_id first")
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; choose from {', '.join(POLICIES)}")
    if not policies or len(set(policies)) < len(policies):
        # a policy named twice ran twice and its runs were summed: twice the cost and changes
        raise ValueError(f"name each policy once, at least one: {list(policies)}")
    step = series_freq(frame)
    _refuse_off_grid(frame["ds"], step)
    y_all = frame.set_index("ds")["y"].asfreq(step)
    first, last = y_all.index[0], y_all.index[-1]
    start = _naive_utc(start)
    end = _naive_utc(end) if end is not None else last + step
    if start <= first or start >= end:
        raise ValueError(
            f"--start {start} must fall after the first interval and before the end"
            f" (the series runs from {first} to {last})"
        )
    replay_index = y_all.index[(y_all.index >= start) & (y_all.index < end)]
    if replay_index.empty:
        raise ValueError(
            f"no interval of the series falls between --start {start} and --end {end}"
            f" (the series runs from {first} to {last})"
        )
    delay_steps = math.ceil(settings.startup_delay / step)
    runs = []
    made: list[Decision] = []
    for name in policies:
        if name == "predictive":
            runs.append(
                _run_predictive(
                    y_all, replay_index, step, delay_steps, settings, model_factory, made
                )
            )
        elif name == "hpa":
            runs.append(_run_hpa(y_all, replay_index, step, delay_steps, settings))
        else:
            runs.append(_run_oracle(y_all, replay_index, delay_steps, settings))
    decisions = pd.concat(runs, ignore_index=True)
    return ReplayResult(decisions, summarize(decisions, step), settings, made)


def _naive_utc(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    """A time as the series hold them: naive UTC. An aware one (``tz="UTC"``, a local
    offset) is converted; compared as given with the series' times, it raised TypeError."""
    stamp = pd.Timestamp(moment)
    return stamp if stamp.tz is None else stamp.tz_convert("UTC").tz_localize(None)


def _refuse_off_grid(ds: pd.Series, step: pd.Timedelta) -> None:
    """Refuse times off the series' grid of ``step`` intervals.

    The replay walks a regular grid; a time between its points would be dropped without a
    word, and an off-grid first row would shift the grid so that every other row reads as
    missing (the replay then scores nothing). The grid is the one most times lie on.
    """
    phase = (ds - pd.Timestamp(0)) % step
    off = phase != phase.mode().iloc[0]
    if off.any():
        every = to_offset(step).freqstr
        every = every if every[0].isdigit() else f"1{every}"
        raise ValueError(
            f"{int(off.sum())} of the series' {len(ds)} times are off its {every} grid, e.g."
            f" {ds[off].iloc[0]}: aggregate the series to one row per {every} interval first"
        )


def _initial_replicas(
    y: pd.Series, index: pd.DatetimeIndex, delay_steps: int, settings: ReplaySettings
) -> int:
    """Every policy starts warm, with enough ready pods for the first lead window.

    Otherwise the first minutes would measure the cold start, the same for every policy,
    rather than the policies.
    """
    first = y.reindex(index[: delay_steps + 1]).fillna(0.0)
    return _clamp(needed_replicas(float(first.max()), settings.capacity_per_replica), settings)


def _clamp(replicas: int, settings: ReplaySettings) -> int:
    return max(settings.min_replicas, min(settings.max_replicas, replicas))


Requests = Sequence[tuple[int, int]]
"""The counts a policy asks for within one interval, in order: (desired replicas, the
interval from which the pods it adds serve)."""


def _simulate(
    name: str,
    y: pd.Series,
    index: pd.DatetimeIndex,
    delay_steps: int,
    settings: ReplaySettings,
    choose: Callable[[int, pd.Timestamp, int], tuple[Requests, dict[str, object]]],
) -> pd.DataFrame:
    """Drive one policy: ``choose(step, now, current)`` gives (requests, extra columns).

    A policy deciding at the start of an interval makes one request, its pods ready
    ``delay_steps`` later; the HPA, syncing within the interval, may make several.
    """
    fleet = _Fleet(delay_steps)
    fleet.set(
        _initial_replicas(y, index, delay_steps, settings), -delay_steps
    )  # ready at the start
    loads = y.reindex(index).to_numpy(dtype=float)
    rows = []
    for n, now in enumerate(index):
        requests, extra = choose(n, now, len(fleet))
        before = len(fleet)
        for desired, ready_at in requests:
            fleet.set(desired, n, ready_at)
        changed = len(fleet) != before
        ready = fleet.ready(n)
        load = loads[n]
        capacity = ready * settings.capacity_per_replica
        unserved = _unserved(load, ready, settings.capacity_per_replica)
        rows.append(
            {
                "ds": now,
                "policy": name,
                "replicas": len(fleet),
                "ready": ready,
                "load": load,
                "capacity": capacity,
                "unserved": unserved,
                "changed": changed,
                **extra,
            }
        )
    return pd.DataFrame(rows)


def _known(load: float | pd.Series) -> bool | pd.Series:
    """Whether a load is known: a negative reading is as unknown as NaN. Scored, one
    broken minute of -1000 requests made the unserved share negative."""
    return np.isfinite(load) & (load >= 0)


def _unserved(load: float, ready: int, capacity_per_replica: float) -> float:
    """Requests the ready pods could not serve; NaN when the load is unknown.

    Nothing is unserved while the ready pods are as many as :func:`needed_replicas` asks
    for: a load a rounding error above their capacity (40.00000000001 requests on two
    20-request pods, as a ``rate()`` often reads) counted a minute over capacity, even
    for the oracle, whose pods are exactly the ones needed.
    """
    if not _known(load):
        return np.nan
    if needed_replicas(load, capacity_per_replica) <= ready:
        return 0.0
    return load - ready * capacity_per_replica


def _run_hpa(
    y: pd.Series,
    index: pd.DatetimeIndex,
    step: pd.Timedelta,
    delay_steps: int,
    settings: ReplaySettings,
) -> pd.DataFrame:
    hpa = HPASimulator(
        HPASettings(
            min_replicas=settings.min_replicas,
            max_replicas=settings.max_replicas,
            capacity_per_replica=settings.capacity_per_replica,
            target_utilization=settings.hpa_target,
        )
    )
    every = hpa.settings.sync_seconds
    step_seconds = step.total_seconds()
    delay_seconds = settings.startup_delay.total_seconds()

    def choose(n: int, now: pd.Timestamp, current: int) -> tuple[Requests, dict[str, object]]:
        previous = y.get(now - step, np.nan)
        load = None if not np.isfinite(previous) else float(previous)
        desired, requests = current, []
        # The HPA syncs every 15 s whatever the series' step: on a 10 s series some
        # intervals see no sync, on a 40 s one two or three (not one sync per interval).
        begin = now.timestamp()
        at = math.ceil(begin / every) * every
        while at < begin + step_seconds:
            desired = hpa.sync(at, desired, load)
            # Pods asked for at this sync serve from the first interval that starts once
            # they are ready; counted from the interval's start, those of its :45 sync
            # served up to 45 s before they existed.
            ready = n + math.ceil((at - begin + delay_seconds) / step_seconds - 1e-9)
            requests.append((desired, ready))
            at += every
        return requests, {"reason": "HPA"}

    return _simulate("hpa", y, index, delay_steps, settings, choose)


def _run_oracle(
    y: pd.Series, index: pd.DatetimeIndex, delay_steps: int, settings: ReplaySettings
) -> pd.DataFrame:
    future = y.reindex(index).fillna(0.0).to_numpy()
    # needed_replicas bounds an absurd need (a corrupt 1e20 reading): cast to int as it
    # was, it overflowed to a negative count and the oracle kept minReplicas for it
    need = np.array([needed_replicas(x, settings.capacity_per_replica) for x in future])
    ahead = pd.Series(need[::-1]).rolling(delay_steps + 1, min_periods=1).max().to_numpy()[::-1]

    def choose(n: int, now: pd.Timestamp, current: int) -> tuple[Requests, dict[str, object]]:
        return [(_clamp(int(ahead[n]), settings), n + delay_steps)], {"reason": "Oracle"}

    return _simulate("oracle", y, index, delay_steps, settings, choose)


def predictive_spec(settings: ReplaySettings, step: pd.Timedelta) -> PolicySpec:
    """The policy spec a replay's predictive run decides with: every interval is a sync,
    steps are unlimited, and a forecast lives two retrain periods."""
    return PolicySpec(
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
        capacity_per_replica=settings.capacity_per_replica,
        startup_delay=settings.startup_delay,
        sync_period=step,
        quantile=settings.quantile,
        tolerance=settings.tolerance,
        scale_up_max_step=settings.max_replicas,
        scale_down_max_step=settings.max_replicas,
        scale_down_stabilization=settings.scale_down_stabilization,
        max_forecast_age=settings.retrain_every * 2,
        level_window=settings.level_window,
    )


@dataclass
class _PredictiveState:
    """What the predictive run carries from one interval to the next."""

    next_fit: pd.Timestamp
    forecast: Forecast | None = None
    history: list[Recommendation] = field(default_factory=list)


def _run_predictive(
    y: pd.Series,
    index: pd.DatetimeIndex,
    step: pd.Timedelta,
    delay_steps: int,
    settings: ReplaySettings,
    model_factory: ModelFactory | None,
    made: list[Decision],
) -> pd.DataFrame:
    """The predictive policy's run; appends each :class:`Decision` to ``made``."""
    spec = predictive_spec(settings, step)
    factory = model_factory or SeasonalQuantile
    hold_out = step * settings.level_window
    horizon = (
        int(
            (
                hold_out
                + settings.retrain_every
                + lead_time(spec)
                + settings.scale_down_stabilization
            )
            / step
        )
        + 1
    )
    state = _PredictiveState(next_fit=index[0])
    values = y.to_numpy(dtype=float)
    offset = int(y.index.get_loc(index[0]))

    def choose(n: int, now: pd.Timestamp, current: int) -> tuple[Requests, dict[str, object]]:
        if now >= state.next_fit:
            state.forecast = _fit_and_forecast(y, now, hold_out, settings, factory, horizon)
            state.next_fit = now + settings.retrain_every
        previous = y.get(now - step, np.nan)
        load = float(previous) if np.isfinite(previous) else None
        history = [r for r in state.history if r.at > now - settings.scale_down_stabilization]
        at = offset + n  # position of ``now`` in the regular series ``y``
        recent = values[max(0, at - settings.level_window) : at]
        decision = decide(spec, now.to_pydatetime(), current, load, state.forecast, history, recent)
        state.history = [*history, Recommendation(now.to_pydatetime(), decision.recommendation)]
        made.append(decision)
        forecast = state.forecast
        median = np.nan
        if isinstance(forecast, Forecast) and forecast.median is not None:
            i = int(np.searchsorted(forecast.times, np.datetime64(now), side="right")) - 1
            median = float(forecast.median[i]) if 0 <= i < len(forecast.median) else np.nan
        return [(decision.replicas, n + delay_steps)], {
            "reason": decision.reason,
            "forecast_peak": decision.forecast_peak,
            "forecast_median": median,
            "reactive_floor": decision.reactive_floor,
        }

    return _simulate("predictive", y, index, delay_steps, settings, choose)


def _fit_and_forecast(
    y: pd.Series,
    now: pd.Timestamp,
    hold_out: pd.Timedelta,
    settings: ReplaySettings,
    factory: ModelFactory,
    horizon: int,
) -> Forecast | None:
    """Fit on the data strictly before ``now - hold_out`` and forecast from there.

    The predictive run holds out its ``level_window`` newest intervals, as the controller
    does (``ModelJob.hold_out``): the forecast then covers the recent load the nowcast
    compares it with from the refit's first decision on, not only ``level_window``
    intervals later.
    """
    cutoff = now - hold_out
    past = y[(y.index < cutoff) & (y.index >= cutoff - settings.history)]
    if past.notna().sum() < 2:
        return None
    frame = pd.DataFrame({"unique_id": "replay", "ds": past.index, "y": past.to_numpy()})
    model = factory().fit(frame)
    predicted = model.predict(horizon, quantiles=(0.5, settings.quantile))
    predicted = predicted[predicted["ds"] >= cutoff]
    return to_forecast(predicted, now.to_pydatetime(), settings.quantile, type(model).__name__)


def summarize(decisions: pd.DataFrame, step: pd.Timedelta) -> pd.DataFrame:
    """Per-policy metrics; cost relative to the oracle when it ran.

    With no interval's load known (a replay of a scrape outage) the service metrics are
    NaN, not 0: "0 % unserved" called every policy perfect on nothing.
    """
    minutes_per_step = step.total_seconds() / 60
    rows = []
    for name, run in decisions.groupby("policy", sort=False):
        known = run[_known(run["load"])]
        requests = known["load"].sum()
        unknown = len(known) == 0
        rows.append(
            {
                "policy": name,
                "unserved_share": np.nan
                if unknown
                else (known["unserved"].sum() / requests if requests else 0.0),
                "unserved_requests": np.nan if unknown else known["unserved"].sum(),
                "minutes_over_capacity_share": np.nan
                if unknown
                else float((known["unserved"] > 0).mean()),
                "replica_minutes": run["replicas"].sum() * minutes_per_step,
                "scaling_changes": int(run["changed"].sum()),
            }
        )
    summary = pd.DataFrame(rows)
    oracle = summary.loc[summary["policy"] == "oracle", "replica_minutes"]
    summary["cost_vs_oracle"] = (
        summary["replica_minutes"] / oracle.iloc[0] if len(oracle) else np.nan
    )
    return summary


def replay_records(
    result: ReplayResult, series: pd.DataFrame, scaler: str, model_version: str
) -> list[DecisionRecord]:
    """The predictive policy's decisions of a replay as ForecastOnly decision records.

    Each record is the policy's own :class:`~controller.policy.Decision` (reason, clamps,
    message, floor, forecast peak); the replay adds what a cluster would: the ready count
    of the interval, the bounds of the replay's settings (a replay has no overrides) and
    ``hpa_replicas``, the HPA run's count at the same interval when it ran.
    """
    step = series_freq(series)
    spec = predictive_spec(result.settings, step)
    runs = result.decisions
    rows = runs[runs["policy"] == "predictive"].reset_index(drop=True)
    hpa = runs[runs["policy"] == "hpa"].set_index("ds")["replicas"]
    target = f"Series/{series['unique_id'].iloc[0]}"
    unit = f"req/{to_offset(step).freqstr}"
    records = []
    for row, decision in zip(rows.itertuples(index=False), result.policy_decisions, strict=True):
        hpa_replicas = hpa.get(row.ds)
        record = record_from_decision(
            decision,
            scaler=scaler,
            target=target,
            mode="ForecastOnly",
            ready_replicas=int(row.ready),
            spec=spec,
            forecast=None,
            hpa_replicas=None if hpa_replicas is None else int(hpa_replicas),
            at=row.ds.to_pydatetime(),
            load_unit=unit,
        )
        records.append(replace(record, model_version=model_version))
    return records
