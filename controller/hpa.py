"""A faithful simulation of the Kubernetes HPA (autoscaling/v2 defaults), for baselines.

It follows ``pkg/controller/podautoscaler`` for a per-pod request-rate metric (an External
or Pods metric with an ``AverageValue`` target), which is how an HPA scales a web service
on request rate:

- target per pod = ``target_utilization × capacity_per_replica`` (70 % leaves headroom);
- every ``sync_period`` (15 s): usage ratio = load / (target × current replicas); within
  ``tolerance`` (0.1) keep the count, else ``ceil(load / target)``;
- scale-up: no stabilisation, at most ``max(+100 %, +4 pods)`` per 15 s period, counted
  from the replicas at the period's start as the HPA's scale events do (the sync period and
  the policies' period are separate settings: syncing more often does not scale faster);
- scale-down: the highest recommendation of the last 300 s wins (the count found at the
  first sync is one), at most -100 % per period;
- then ``min/max``.

Assumptions, stated because they favour or hurt the HPA: the metric is the true demand
(not capped at what the pods served, which favours the HPA), and it arrives one interval
late (a ``rate()`` over the last complete minute plus the adapter's scrape); pods it asks
for are ready ``startup_delay`` later, like the predictive policy's.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from controller.policy import needed_replicas


@dataclass(frozen=True)
class HPASettings:
    min_replicas: int
    max_replicas: int
    capacity_per_replica: float
    target_utilization: float = 0.7
    tolerance: float = 0.1
    sync_seconds: int = 15
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    scale_up_period_seconds: int = 15
    scale_down_stabilization_seconds: int = 300


@dataclass
class HPASimulator:
    """State across syncs: the recommendations remembered for scale-down stabilisation and
    the scale events (time, replica change) that bound the next scale-up."""

    settings: HPASettings
    _recommendations: deque[tuple[float, int]] = field(default_factory=deque)
    _events: deque[tuple[float, int]] = field(default_factory=deque)
    _started: bool = False

    def recommend(self, load: float) -> int:
        """Replicas the HPA's formula asks for before behaviour rules (``ceil(load/target)``),
        bounded as :func:`~controller.policy.needed_replicas` bounds the policy's: an absurd
        load over a tiny target overflowed to infinity, and rounding it up raised
        OverflowError out of the replay."""
        target = self.settings.target_utilization * self.settings.capacity_per_replica
        return needed_replicas(load, target)

    def sync(self, at_seconds: float, current: int, load: float | None) -> int:
        """One HPA sync at time ``at_seconds``: the new desired replica count."""
        s = self.settings
        if not self._started:
            # ``recordInitialRecommendation``: the count found at the first sync counts as
            # a recommendation, so an HPA taking over a warm workload keeps it for the
            # stabilisation window instead of dropping it at its first quiet sync.
            self._recommendations.append((at_seconds, current))
            self._started = True
        if load is None or not math.isfinite(load):
            return current  # the HPA does nothing without a metric
        target = s.target_utilization * s.capacity_per_replica
        ratio = load / (target * current) if current > 0 else math.inf
        desired = current if abs(ratio - 1.0) <= s.tolerance else self.recommend(load)
        self._recommendations.append((at_seconds, desired))
        while (
            self._recommendations
            and self._recommendations[0][0] <= at_seconds - s.scale_down_stabilization_seconds
        ):
            self._recommendations.popleft()
        if desired < current:
            desired = min(current, max(r for _, r in self._recommendations))
        while self._events and self._events[0][0] <= at_seconds - s.scale_up_period_seconds:
            self._events.popleft()
        if desired > current:
            # ``calculateScaleUpLimitWithScalingRules``: the limit grows from the replicas at
            # the start of the period (events strictly after its cutoff), never below current
            start = current - sum(change for _, change in self._events)
            limit = max(math.ceil(start * (1 + s.scale_up_percent / 100)), start + s.scale_up_pods)
            desired = min(desired, max(limit, current))
        desired = max(s.min_replicas, min(s.max_replicas, desired))
        if desired != current:
            self._events.append((at_seconds, desired - current))
        return desired
