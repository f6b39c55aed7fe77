"""The replay, its HPA baseline and its oracle against slow, obviously correct references.

Each reference is written from the rule it checks, not from the code under test:

- the fleet: a list of pods with the second each becomes ready; a pod serves an interval
  when it is ready at the interval's start (the startup delay rounded up to whole
  intervals) and still there at its end (removing pods is immediate, the newest first);
- the HPA: ``pkg/controller/podautoscaler`` for an External metric with an ``AverageValue``
  target, read from ``horizontal.go`` and ``replica_calculator.go`` (milli-value integers,
  the tolerance, the up and down stabilisation limits,
  ``calculateScaleUpLimitWithScalingRules`` over the scale-up and scale-down events of the
  15 s policy period, then min/max), synced every 15 s on the metric of the last complete
  interval;
- the oracle: every schedule of a tiny series, brute force.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.policy import (
    Forecast,
    Override,
    PolicySpec,
    Recommendation,
    decide,
    effective_bounds,
)
from controller.replay import ReplaySettings, predictive_spec, replay

ORIGIN = pd.Timestamp("2026-11-02 00:00")
SYNC = 15  # seconds between HPA syncs


def frame(values: list[float], step: pd.Timedelta) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": "s",
            "ds": pd.date_range(ORIGIN, periods=len(values), freq=step),
            "y": np.asarray(values, float),
        }
    )


@dataclass
class Pods:
    """Pods in the order they were asked for, each with the second it becomes ready."""

    ready_at: list[float] = field(default_factory=list)

    def scale(self, desired: int, at: float, delay: float) -> None:
        if desired >= len(self.ready_at):
            self.ready_at += [at + delay] * (desired - len(self.ready_at))
        else:
            del self.ready_at[desired:]  # the newest go first

    def ready(self, at: float) -> int:
        return sum(r <= at for r in self.ready_at)


def needed(load: float, capacity: float) -> int:
    return math.ceil(load / capacity - 1e-9)


def warm_start(loads: list[float], delay_steps: int, capacity: float, low: int, high: int) -> int:
    """The replay's warm start: ready pods for the first lead window's largest load."""
    first = [x for x in loads[: delay_steps + 1] if not math.isnan(x)]
    return max(low, min(high, needed(max(first, default=0.0), capacity)))


@dataclass
class ReferenceHPA:
    """One HPA object in the upstream controller: autoscaling/v2 default behaviour."""

    min_replicas: int
    max_replicas: int
    target_milli: int
    tolerance: float = 0.1
    recommendations: list[tuple[float, int]] | None = None
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)

    def reconcile(self, now: float, current: int, usage_milli: int | None) -> int:
        if self.recommendations is None:  # recordInitialRecommendation
            self.recommendations = [(now, current)]
        if current > self.max_replicas:
            desired = self.max_replicas
        elif current < self.min_replicas:
            desired = self.min_replicas
        else:
            if usage_milli is None:
                return current  # FailedComputeMetricsReplicas: no scale, nothing recorded
            ratio = usage_milli / (self.target_milli * current)
            metric = current
            if abs(1.0 - ratio) > self.tolerance:
                metric = math.ceil(usage_milli / self.target_milli)
            # stabilizeRecommendationWithBehaviors: up window 0 s, down window 300 s
            up = metric
            down = max([metric] + [r for t, r in self.recommendations if t > now - 300])
            stabilized = current
            if stabilized < up:
                stabilized = up
            if stabilized > down:
                stabilized = down
            self.recommendations.append((now, metric))
            desired = self._rate_limited(now, current, stabilized)
        if desired > current:
            self.up_events.append((now, desired - current))
        elif desired < current:
            self.down_events.append((now, current - desired))
        return desired

    def _rate_limited(self, now: float, current: int, desired: int) -> int:
        """convertDesiredReplicasWithBehaviorRate with the default policies."""
        added = sum(c for t, c in self.up_events if t > now - 15)
        deleted = sum(c for t, c in self.down_events if t > now - 15)
        start = current - added + deleted
        if desired > current:
            limit = max(math.ceil(start * 2.0), start + 4)  # 100 % and 4 pods, selectPolicy Max
            limit = max(limit, current)
            return min(desired, min(self.max_replicas, limit))
        if desired < current:
            limit = min(int(start * 0.0), current)  # 100 % per 15 s
            return max(desired, max(self.min_replicas, limit))
        return desired


def reference_hpa_run(
    loads: list[float],
    first: int,
    step: pd.Timedelta,
    capacity: float,
    target: float,
    delay: timedelta,
    low: int,
    high: int,
) -> tuple[list[int], list[int]]:
    """Replicas and ready pods per interval from ``first`` on, syncing every 15 s."""
    step_s = step.total_seconds()
    delay_steps = math.ceil(delay.total_seconds() / step_s)
    hpa = ReferenceHPA(low, high, round(target * capacity * 1000))
    pods = Pods()
    start = warm_start(loads[first:], delay_steps, capacity, low, high)
    pods.scale(start, -math.inf, 0.0)
    origin = ORIGIN.timestamp()
    replicas, ready = [], []
    for n in range(first, len(loads)):
        begin = origin + n * step_s
        seen = loads[n - 1]
        usage = None if math.isnan(seen) else round(seen * 1000)
        at = math.ceil(begin / SYNC) * SYNC
        while at < begin + step_s:
            pods.scale(hpa.reconcile(at, len(pods.ready_at), usage), at, delay.total_seconds())
            at += SYNC
        replicas.append(len(pods.ready_at))
        ready.append(pods.ready(begin))
    return replicas, ready


STEPS = st.sampled_from(["10s", "15s", "20s", "30s", "40s", "1min", "2min"]).map(pd.Timedelta)
DELAYS = st.sampled_from([0, 10, 30, 45, 60, 90, 150, 180, 600]).map(lambda s: timedelta(seconds=s))
CAPACITIES = st.sampled_from([1.0, 2.0, 2.5, 5.0, 10.0, 20.0])
TARGETS = st.sampled_from([0.5, 0.6, 0.7, 0.8, 1.0])
LOAD = st.one_of(st.integers(0, 300).map(float), st.just(math.nan))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    loads=st.lists(LOAD, min_size=3, max_size=40),
    first=st.integers(1, 2),
    step=STEPS,
    delay=DELAYS,
    capacity=CAPACITIES,
    target=TARGETS,
    low=st.integers(1, 3),
    span=st.integers(0, 60),
    between=st.sampled_from([0.0, 0.25, 0.5, 0.99]),
)
def test_the_replayed_hpa_is_the_upstream_controller(
    loads, first, step, delay, capacity, target, low, span, between
) -> None:
    high = low + span
    replay_settings = ReplaySettings(
        capacity_per_replica=capacity,
        startup_delay=delay,
        min_replicas=low,
        max_replicas=high,
        hpa_target=target,
    )
    begin = ORIGIN + (first - between) * step  # between samples: from the next one on
    result = replay(frame(loads, step), begin, replay_settings, ["hpa"])
    run = result.decisions
    replicas, ready = reference_hpa_run(loads, first, step, capacity, target, delay, low, high)
    assert run["replicas"].tolist() == replicas
    assert run["ready"].tolist() == ready
    # the summary, from the reference's counts
    known = [(x, r) for x, r in zip(loads[first:], ready, strict=True) if not math.isnan(x)]
    short = [x - r * capacity if needed(x, capacity) > r else 0.0 for x, r in known]
    start = warm_start(loads[first:], math.ceil(delay / step), capacity, low, high)
    summary = result.summary.iloc[0]
    if known:
        assert summary["unserved_requests"] == pytest.approx(sum(short))
        assert summary["minutes_over_capacity_share"] == sum(x > 0 for x in short) / len(known)
    assert summary["replica_minutes"] == pytest.approx(sum(replicas) * step.total_seconds() / 60)
    changes = sum(a != b for a, b in zip([start, *replicas], replicas, strict=False))
    assert summary["scaling_changes"] == changes


def test_pods_the_hpa_asks_for_within_an_interval_serve_once_they_are_ready() -> None:
    """The HPA's syncs at :15, :30 and :45 ask for pods later than the interval's start:
    with a 3 min delay those pods serve from the interval 4 min on, not 3 (counted from
    the interval's start, 35 pods served up to 45 s before they were ready)."""
    loads = [10.0] * 5 + [400.0] * 10
    replay_settings = ReplaySettings(
        capacity_per_replica=10, startup_delay=timedelta(minutes=3), hpa_target=1.0
    )
    step = pd.Timedelta("1min")
    run = replay(frame(loads, step), ORIGIN + step, replay_settings, ["hpa"]).decisions
    surge = run[run["ds"] >= ORIGIN + 6 * step]
    # the syncs of 00:06 ask for 5, 10, 20 and 40 pods: 5 ready at 00:09, all at 00:10
    assert surge["replicas"].tolist()[:5] == [40] * 5
    assert surge["ready"].tolist()[:5] == [1, 1, 1, 5, 40]
    assert surge["unserved"].tolist()[:5] == [390, 390, 390, 350, 0]


def test_a_load_a_rounding_error_above_the_capacity_is_served() -> None:
    """A ``rate()`` reads 40.00000000001 where two 20-request pods serve 40: every policy
    asks for two pods, as ``needed_replicas`` absorbs the float noise, yet the minute
    counted as over capacity, even for the oracle (36 % of its minutes)."""
    loads = [20.0] * 5 + [40.00000000001] * 5 + [20.0] * 5
    replay_settings = ReplaySettings(capacity_per_replica=20, startup_delay=timedelta(minutes=1))
    step = pd.Timedelta("1min")
    result = replay(frame(loads, step), ORIGIN + step, replay_settings, ["oracle"])
    oracle = result.summary.iloc[0]
    assert oracle["minutes_over_capacity_share"] == 0
    assert oracle["unserved_requests"] == 0
    assert (result.decisions["unserved"] == 0).all()


def reference_run(
    loads: list[float],
    first: int,
    schedule: tuple[int, ...],
    capacity: float,
    delay: float,
    start: int,
    step_s: float = 60.0,
) -> tuple[float, int]:
    """(unserved requests, replica-intervals) of a schedule of replica counts, one per
    interval from ``first`` on, starting from ``start`` ready pods."""
    pods = Pods()
    pods.scale(start, -math.inf, 0.0)
    unserved, cost = 0.0, 0
    for n, desired in enumerate(schedule, start=first):
        pods.scale(desired, n * step_s, delay)
        ready, load = pods.ready(n * step_s), loads[n]
        if not math.isnan(load) and needed(load, capacity) > ready:
            unserved += load - ready * capacity
        cost += len(pods.ready_at)
    return unserved, cost


@settings(max_examples=40, deadline=None)
@given(
    loads=st.lists(
        st.one_of(st.integers(0, 30).map(float), st.just(math.nan)), min_size=3, max_size=6
    ),
    capacity=st.sampled_from([5.0, 10.0]),
    delay=st.sampled_from([0, 45, 60, 90, 120, 180]),
    low=st.integers(1, 2),
    span=st.integers(0, 4),
    step=st.sampled_from(["30s", "1min", "90s"]).map(pd.Timedelta),
)
def test_the_oracle_is_the_cheapest_schedule_that_serves_everything(
    loads, capacity, delay, low, span, step
) -> None:
    """Brute force over every schedule: the oracle leaves the fewest requests unserved
    (none while max allows) and, among the schedules that do, costs the least."""
    high = low + span
    step_s = step.total_seconds()
    delay_steps = math.ceil(delay / step_s)
    replay_settings = ReplaySettings(
        capacity_per_replica=capacity,
        startup_delay=timedelta(seconds=delay),
        min_replicas=low,
        max_replicas=high,
    )
    result = replay(frame(loads, step), ORIGIN + step, replay_settings, ["oracle"])
    oracle = result.summary.iloc[0]
    start = warm_start(loads[1:], delay_steps, capacity, low, high)
    runs = [
        reference_run(loads, 1, schedule, capacity, float(delay), start, step_s)
        for schedule in itertools.product(range(low, high + 1), repeat=len(loads) - 1)
    ]
    fewest = min(unserved for unserved, _ in runs)
    cheapest = min(cost for unserved, cost in runs if unserved == fewest)
    known = [x for x in loads[1:] if not math.isnan(x)]
    if known:
        assert oracle["unserved_requests"] == fewest
    else:
        assert np.isnan(oracle["unserved_requests"])  # nothing to score
    assert oracle["replica_minutes"] == pytest.approx(cheapest * step_s / 60)
    if all(needed(x, capacity) <= high for x in known):
        assert fewest == 0


NOW = datetime(2026, 11, 2, 12, 0)


def reference_bounds(spec: PolicySpec, now: datetime) -> tuple[int, int]:
    """min and max at ``now``: those of the overrides active now, each raised to what it
    will be when an override starting within the lead time opens its window (that one's
    minimum, and the maximum in force then), so the pods are ready when it does."""

    def active(at: datetime) -> list[Override]:
        return [o for o in spec.overrides if o.start <= at < o.end]

    def maximum(at: datetime) -> int:
        maxes = [o.max_replicas for o in active(at) if o.max_replicas is not None]
        return min(maxes) if maxes else spec.max_replicas

    mins = [o.min_replicas for o in active(now) if o.min_replicas is not None]
    low, high = (max(mins) if mins else spec.min_replicas), maximum(now)
    lead_end = now + spec.startup_delay + spec.sync_period
    for o in spec.overrides:
        if now < o.start <= lead_end:
            if o.min_replicas is not None:
                low = max(low, o.min_replicas)
            if o.max_replicas is not None:
                high = max(high, maximum(o.start))
    return low, max(low, high)


overrides = st.lists(
    st.builds(
        lambda name, start, minutes, low, high: Override(
            name,
            NOW + timedelta(minutes=start),
            NOW + timedelta(minutes=start + minutes),
            low,
            high,
        ),
        st.sampled_from(["a", "b", "c"]),
        st.integers(-20, 20),
        st.integers(1, 40),
        st.one_of(st.none(), st.integers(0, 60)),
        st.one_of(st.none(), st.integers(0, 60)),
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(
    overrides,
    st.integers(0, 10),
    st.integers(0, 40),
    st.integers(0, 600),
    st.integers(-5, 5),
)
def test_bounds_are_those_in_force_when_each_upcoming_window_opens(
    windows, low, span, delay, minutes
) -> None:
    spec = PolicySpec(
        min_replicas=low,
        max_replicas=low + span,
        capacity_per_replica=10,
        startup_delay=timedelta(seconds=delay),
        overrides=tuple(windows),
    )
    now = NOW + timedelta(minutes=minutes)
    assert effective_bounds(spec, now)[:2] == reference_bounds(spec, now)


def test_an_upcoming_higher_maximum_capped_by_an_active_freeze_does_not_widen_early() -> None:
    """A release freeze (max 3) runs for the next hour; a sale (max 50) opens in 2 min:
    when it does, the freeze still caps the count at 3, yet the sale's 50 applied through
    the lead time before, scaling to 40 and back to 3 two minutes later."""
    freeze = Override("freeze", NOW - timedelta(hours=1), NOW + timedelta(hours=1), None, 3)
    sale = Override("sale", NOW + timedelta(minutes=2), NOW + timedelta(hours=3), None, 50)
    spec = PolicySpec(
        min_replicas=1,
        max_replicas=10,
        capacity_per_replica=10,
        startup_delay=timedelta(minutes=3),
        overrides=(freeze, sale),
    )
    before = decide(spec, NOW, 3, 400.0, None)
    assert (before.replicas, before.max_replicas, before.override) == (3, 3, "freeze")
    assert decide(spec, NOW + timedelta(minutes=2), 3, 400.0, None).replicas == 3
    # once the freeze is over, the sale's maximum applies a lead time early as before
    later = replace(spec, overrides=(replace(freeze, end=NOW + timedelta(minutes=2)), sale))
    assert decide(later, NOW, 3, 400.0, None).replicas == 40


def test_the_oracle_asks_for_the_maximum_ahead_of_an_absurd_load() -> None:
    """A corrupt 1e20 reading overflowed the oracle's need when cast to int: it kept
    minReplicas (1) before it instead of maxReplicas (50), as every brute-force schedule
    that leaves the fewest requests unserved does."""
    loads = [10.0] * 5 + [1e20] + [10.0] * 5
    replay_settings = ReplaySettings(
        capacity_per_replica=10, startup_delay=timedelta(minutes=1), max_replicas=50
    )
    step = pd.Timedelta("1min")
    run = replay(frame(loads, step), ORIGIN + step, replay_settings, ["oracle"]).decisions
    assert run["replicas"].tolist() == [1, 1, 1, 50, 50, 1, 1, 1, 1, 1]
    assert run["ready"].tolist()[4] == 50


def test_a_negative_reading_is_not_scored() -> None:
    """A broken reading of -1000 requests counted as known load: it cut the requests
    served from 450 to -550, and the policies' unserved shares came out negative (-39 %).
    The policy counts such a reading as unknown; the replay's metrics now skip it as a gap."""
    loads = [10.0] * 5 + [-1000.0] + [100.0] * 5
    replay_settings = ReplaySettings(capacity_per_replica=10, startup_delay=timedelta(minutes=1))
    step = pd.Timedelta("1min")
    result = replay(frame(loads, step), ORIGIN + step, replay_settings)
    summary = result.summary.set_index("policy")
    gap = frame([10.0] * 5 + [math.nan] + [100.0] * 5, step)
    expected = replay(gap, ORIGIN + step, replay_settings).summary.set_index("policy")
    for metric in ("unserved_share", "unserved_requests", "minutes_over_capacity_share"):
        assert summary.loc["oracle", metric] == expected.loc["oracle", metric] == 0
        assert summary.loc["predictive", metric] > 0
    assert (summary["unserved_share"] >= 0).all()
    broken = result.decisions[result.decisions["ds"] == ORIGIN + 5 * step]
    assert broken["unserved"].isna().all()


def test_an_absurd_load_over_a_tiny_capacity_asks_the_hpa_for_the_maximum() -> None:
    """``--capacity-per-replica 1e-300`` on a load of 1e9: the HPA's ``ceil(load /
    target)`` overflowed to infinity and raised OverflowError out of the replay (the
    policy's needed_replicas was bounded for this already); with the NumPy loads of a
    replay the division also warned on stderr."""
    loads = [1e9] * 20
    replay_settings = ReplaySettings(
        capacity_per_replica=1e-300, startup_delay=timedelta(minutes=1), max_replicas=50
    )
    step = pd.Timedelta("1min")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = replay(frame(loads, step), ORIGIN + 5 * step, replay_settings)
    runs = result.decisions.groupby("policy")["replicas"].max()
    assert runs.to_dict() == {"hpa": 50, "oracle": 50, "predictive": 50}


@dataclass
class Foresight:
    """A model that knows the whole series: its forecast of an interval is the load there
    (median) and 1.2 times it (the quantile), from the end of what it was fitted on."""

    truth: pd.Series
    quantile: float = 0.9
    end: pd.Timestamp | None = None

    def fit(self, df: pd.DataFrame) -> Foresight:
        self.end = df["ds"].max()
        return self

    def predict(self, horizon: int, quantiles: tuple[float, ...]) -> pd.DataFrame:
        assert self.end is not None
        step = self.truth.index[1] - self.truth.index[0]
        ds = pd.date_range(self.end + step, periods=horizon, freq=step)
        median = self.truth.reindex(ds).fillna(0.0).to_numpy()
        out = pd.DataFrame({"unique_id": "replay", "ds": ds, "yhat": median})
        for q in quantiles:
            out[f"q{q:g}"] = median * (1.2 if q > 0.5 else 1.0)
        return out


def reference_predictive_run(
    loads: list[float], first: int, replay_settings: ReplaySettings
) -> tuple[list[int], list[int]]:
    """The predictive policy driven interval by interval: a refit every ``retrain_every``
    on the data before its level window, the load of the last interval, the recent load,
    the recommendations of the stabilisation window, and its pods in the reference fleet."""
    s = replay_settings
    step = pd.Timedelta("1min")
    spec = predictive_spec(s, step)  # the replay's own: the run, not the spec, is checked
    times = [ORIGIN + n * step for n in range(len(loads))]
    delay_steps = math.ceil(s.startup_delay / step)
    pods = Pods()
    warm = warm_start(
        loads[first:], delay_steps, s.capacity_per_replica, s.min_replicas, s.max_replicas
    )
    pods.scale(warm, -math.inf, 0.0)
    forecast, next_fit, history = None, times[first], []
    replicas, ready = [], []
    for n in range(first, len(loads)):
        now = times[n]
        if now >= next_fit:
            cutoff = n - s.level_window
            fitted = [x for x in loads[max(0, cutoff - 40320) : max(0, cutoff)]]
            if sum(not math.isnan(x) for x in fitted) >= 2:
                ahead = [x if not math.isnan(x) else 0.0 for x in loads[cutoff:]]
                horizon = 10_000
                ahead = (ahead + [0.0] * horizon)[:horizon]
                forecast = Forecast(
                    made_at=now.to_pydatetime(),
                    times=np.array(
                        [np.datetime64(ORIGIN + (cutoff + i) * step) for i in range(horizon)]
                    ),
                    upper=np.array(ahead) * 1.2,
                    quantile=s.quantile,
                    median=np.array(ahead),
                )
            else:
                forecast = None
            next_fit = now + s.retrain_every
        seen = loads[n - 1]
        recent = loads[max(0, n - s.level_window) : n]
        history = [r for r in history if r.at > now - s.scale_down_stabilization]
        d = decide(
            spec,
            now.to_pydatetime(),
            len(pods.ready_at),
            None if math.isnan(seen) else seen,
            forecast,
            history,
            recent,
        )
        history.append(Recommendation(now.to_pydatetime(), d.recommendation))
        pods.scale(d.replicas, now.timestamp(), s.startup_delay.total_seconds())
        replicas.append(len(pods.ready_at))
        ready.append(pods.ready(now.timestamp()))
    return replicas, ready


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    loads=st.lists(LOAD, min_size=3, max_size=40),
    first=st.integers(1, 12),
    delay=st.sampled_from([0, 30, 60, 90, 180]),
    capacity=CAPACITIES,
    retrain=st.integers(1, 15),
    level_window=st.integers(0, 5),
    stabilization=st.integers(0, 5),
    tolerance=st.sampled_from([0.0, 0.1]),
    low=st.integers(1, 3),
    span=st.integers(0, 60),
)
def test_the_replayed_predictive_policy_decides_as_a_loop_over_decide_would(
    loads, first, delay, capacity, retrain, level_window, stabilization, tolerance, low, span
) -> None:
    first = min(first, len(loads) - 1)
    replay_settings = ReplaySettings(
        capacity_per_replica=capacity,
        startup_delay=timedelta(seconds=delay),
        min_replicas=low,
        max_replicas=low + span,
        retrain_every=timedelta(minutes=retrain),
        level_window=level_window,
        scale_down_stabilization=timedelta(minutes=stabilization),
        tolerance=tolerance,
    )
    step = pd.Timedelta("1min")
    series = frame(loads, step)
    truth = series.set_index("ds")["y"]
    result = replay(
        series, ORIGIN + first * step, replay_settings, ["predictive"], lambda: Foresight(truth)
    )
    replicas, ready = reference_predictive_run(loads, first, replay_settings)
    assert result.decisions["replicas"].tolist() == replicas
    assert result.decisions["ready"].tolist() == ready


def test_a_gap_in_the_forecast_ahead_does_not_release_a_scale_down() -> None:
    """The forecast ahead shows 500 requests in 3 min, then one NaN: the whole window was
    skipped for it and 50 pods dropped to 1, where a 0 in place of the NaN held them.
    Missing data damps a change; it never amplifies one."""
    values = [10.0] * 3 + [500.0, math.nan] + [10.0] * 10
    times = np.array([np.datetime64(NOW) + np.timedelta64(i, "m") for i in range(len(values))])
    gap = Forecast(made_at=NOW, times=times, upper=np.array(values), quantile=0.9)
    spec = PolicySpec(
        min_replicas=1,
        max_replicas=100,
        capacity_per_replica=10,
        startup_delay=timedelta(minutes=1),
        scale_down_max_step=100,
    )
    d = decide(spec, NOW, 50, 10.0, gap)
    assert (d.replicas, d.clamps) == (50, ("Hold/Stabilizing",))
