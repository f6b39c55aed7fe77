"""One reconcile of one PredictiveScaler: read, decide, record, apply, report.

The steps, each at the edge it belongs to:

1. Read the spec (:func:`controller.spec.parse_scaler`). An invalid spec sets the Ready
   condition to False with every problem listed, emits a Warning Event once per distinct
   problem, and returns: the scheduler tries again next period, never a crash loop.
2. Read the target's scale subresource (current and ready replicas).
3. Read the live load and the recent history from Prometheus (:mod:`controller.prometheus`,
   one cache shared by all scalers, extended incrementally; :meth:`Reconciler.prefetch`
   reads a whole cycle's scalers in a few batched queries). Model work runs as a job off
   the reconcile path (:mod:`controller.modelling`): retrain on the scaler's cron schedule
   or after a spec change (backtest and choose a model, store it as a new version);
   between retrains, refit the chosen model on the newest history every ``refresh`` so
   the forecast always starts from now. Until a job is done, and when one fails, the
   previous forecast stays in place; the policy turns reactive once it is stale, and
   says so.
4. Decide with the pure :func:`controller.policy.decide`.
5. Record the decision in the decision log *before* applying it, apply it by mode
   (``Scale``: the target's scale subresource; ``HPAFloor``: the HPA's ``minReplicas``;
   ``ForecastOnly``: nothing), then mark it applied. Scaling never waits for the log:
   while it is down the decision is applied all the same and kept in memory
   (``UNLOGGED_MAX``) to be written when it is back, and ``DecisionLogged=False`` says so.
6. Write status (conditions, last decisions, forecast, model) only when it changed, emit
   Events for actions and errors, and update the metrics.

``now`` is always passed in, so tests and replays run the real reconciler in virtual time.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.exc import SQLAlchemyError

from controller.decisions import DecisionLog, DecisionRecord, SchemaError, record_from_decision
from controller.kube import KubeClient, KubeError, ScaleTarget, api_group
from controller.metrics import ControllerMetrics
from controller.modelling import (
    DEFAULT_STARTUP_DELAY,
    InlineExecutor,
    JobKind,
    ModelInfo,
    ModelJob,
    ModelResult,
    OutlookState,
    run_job,
)
from controller.outlook import Ratings, risk_message, risks, wall_clock
from controller.policy import (
    FALLBACK_WORDS,
    Decision,
    Forecast,
    PolicySpec,
    Recommendation,
    decide,
    effective_bounds,
)
from controller.prometheus import (
    HistoryCache,
    PrometheusClient,
    PrometheusError,
    PrometheusUnavailable,
)
from controller.spec import ScalerConfig, SpecError, cron_trigger, parse_scaler

log = logging.getLogger("surgecast.reconciler")

HPA_FLOOR_FINALIZER = "surgecast.dev/hpa-floor"
"""Held by every ``HPAFloor`` scaler: deleted, or moved to another mode, it first gives the
HPA back the ``minReplicas`` it had. Without it, a scaler deleted at a peak left the HPA's
floor raised for good, paying for the peak's pods every night."""

HPA_MIN_BEFORE = "surgecast.dev/min-replicas-before"
"""On an HPA whose ``minReplicas`` an ``HPAFloor`` scaler moves: the value to give back,
written with the first move."""

CONDITIONS = (
    "Ready",
    "ModelTrained",
    "ForecastFresh",
    "ScalingActive",
    "Fallback",
    "CapacityAtRisk",
    "DecisionLogged",
)
HPA_TARGET_UTILIZATION = 0.7
"""The utilisation target assumed for "what the HPA alone would have asked for"."""

RECENT_DECISIONS = 5
LEVEL_WINDOW = timedelta(hours=2)
"""Recent load the policy compares with the forecast to rescale it (nowcast); two hours did
best on the NASA replay (``benchmarks/replay.py --level-window``)."""

OUTLOOK_EVERY = timedelta(hours=1)
"""How often the days-ahead outlook is forecast again: its unit is the hour."""

OUTLOOK_STALE_AFTER = 3 * OUTLOOK_EVERY
"""How old an outlook may be before finding no risk in it no longer says the coming days
fit: its model jobs failing (Prometheus down for days), it covers fewer hours ahead every
hour, and none once it is ``days`` old. Three missed renewals, so one slow or failed job
does not flip the condition."""

JOB_RETRY = timedelta(minutes=5)
"""How long after a failed model job the scaler's next one is submitted: a history too
short to train on grows slowly, and a thousand scalers retrying every 30 s would keep
every worker busy with failures."""

UNLOGGED_MAX = 10_000
"""Most decisions (and applied marks) kept in memory while the decision log is down, to be
written when it is back: an hour of one-minute cycles for 160 scalers, about 20 MB. Past
it the oldest go, counted in ``surgecast_decision_log_dropped_total``: memory stays
bounded however long the outage, and only a long one loses decisions from the log."""


@dataclass
class ScalerState:
    """What the controller remembers about one scaler between reconciles."""

    model: ModelInfo | None = None
    forecast: Forecast | None = None
    job: Future[ModelResult] | None = None
    """The model job in flight (at most one per scaler)."""

    job_kind: JobKind | None = None
    job_series: tuple[str, str, timedelta] | None = None
    """The series the job in flight learns from: its result is of no use for another."""
    job_generation: int | None = None
    """The spec generation of the last job submitted: a failure waits ``JOB_RETRY`` only
    while the spec stays the same."""
    job_failed_at: datetime | None = None
    history: list[Recommendation] = field(default_factory=list)
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_DECISIONS))
    retrain_due: bool = False
    """The retrain schedule fired; a first model needs no asking (``start`` job)."""
    next_retrain: datetime | None = None
    retrain_schedule: str | None = None
    """The schedule ``next_retrain`` was computed from: an edited one is followed at once."""
    last_events: dict[str, str] = field(default_factory=dict)
    training_error: str | None = None
    metric_error: str | None = None
    scaling_error: str | None = None
    scaling_reason: str = "ScaleFailed"
    """The ``ScalingActive=False`` reason for ``scaling_error``."""
    series: tuple[str, str, timedelta] | None = None
    """The (Prometheus URL, query, step) of the scaler's history in the shared cache."""

    failed_record: int | None = None
    """The logged decision this process failed to apply: never to be marked applied."""

    outlook: OutlookState | None = None
    log_error: str | None = None
    """Why the decision log failed in this reconcile (None: it worked, or there is none)."""


@dataclass
class Reconciler:
    """Reconciles PredictiveScalers; one instance per controller process.

    Args:
        kube: the only door to the Kubernetes API.
        metrics: the Prometheus metrics the controller exports.
        decisions: the decision log (None: decisions only go to status and logs).
        model_store: root of the model store; each scaler gets ``ROOT/NAMESPACE/NAME``.
        prometheus: builds a client for a scaler's Prometheus URL (injectable for tests).
        refresh: how often the chosen model is refitted on the newest history.
        retention: how long decisions stay in the log (None: for ever); pruned hourly.
        executor: where model jobs run (:mod:`controller.modelling`); the default runs them
            inside the reconcile, the controller gives a worker pool or a Dask cluster.
        max_jobs: most model jobs in flight at once (None: no limit).
        cache: the history of every scaler's query, shared: scalers with the same query
            and Prometheus share one series.

    Not thread-safe: the caller runs one reconcile (or one :meth:`prefetch`) at a time.
    """

    kube: KubeClient
    metrics: ControllerMetrics
    decisions: DecisionLog | None = None
    model_store: str | None = None
    prometheus: Callable[[str], PrometheusClient] = PrometheusClient
    refresh: timedelta = timedelta(minutes=30)
    retention: timedelta | None = None
    pruned_at: datetime | None = None
    executor: Executor = field(default_factory=InlineExecutor)
    max_jobs: int | None = None
    jobs: int = 0
    """Model jobs submitted and not yet collected. At ``max_jobs``, scalers wait for a
    free slot (:meth:`take_waiting`): every job queued holds a copy of its scaler's
    history, so a thousand queued at start-up would hold a thousand copies."""

    waiting: dict[str, None] = field(default_factory=dict)
    """Scalers refused a job slot, in the order they asked."""

    job_done: Callable[[str], None] | None = None
    """Called with the scaler's key when its job finishes, from the executor's thread:
    the runner reconciles it at once, so the result is installed and the slot freed."""
    cache: HistoryCache = field(default_factory=HistoryCache)
    states: dict[str, ScalerState] = field(default_factory=dict)
    clients: dict[str, PrometheusClient] = field(default_factory=dict)
    """One client (one HTTP connection pool) per Prometheus URL."""

    loads: dict[tuple[str, str], float | None] = field(default_factory=dict)
    """The live load of each (Prometheus URL, query) read by :meth:`prefetch` at ``loads_at``."""

    loads_at: datetime | None = None
    down: dict[str, PrometheusUnavailable] = field(default_factory=dict)
    """Each Prometheus URL :meth:`prefetch` found unavailable at ``loads_at``: the cycle's
    reconciles report its error instead of asking again, each with the full retry policy
    (with a hanging server, a cycle would grow by attempts times timeout per scaler)."""
    history_down: dict[tuple[str, str], PrometheusUnavailable] = field(default_factory=dict)
    """Each (Prometheus URL, query) whose history :meth:`prefetch` could not bring up to
    date because Prometheus was unavailable for it: only that query's scalers report it. A
    new scaler's weeks of backfill timing out on a slow store say nothing of the other
    scalers' loads and tails, which were answered."""
    log_down: tuple[datetime, str] | None = None
    """When (the cycle's ``now``) the decision log last failed, and how: the cycle's other
    reconciles keep their decisions in memory rather than each wait on it (a PostgreSQL that
    never answers costs its connect timeout per try)."""
    shared_targets: dict[str, str] = field(default_factory=dict)
    """Scalers whose target an earlier scaler claims, each with that claimant (set by the
    runner from every watched object, see :func:`shared_targets`): they leave it alone."""
    unlogged: deque[DecisionRecord] = field(default_factory=lambda: deque(maxlen=UNLOGGED_MAX))
    """What the decision log missed while it was down, oldest first, written when it is back
    (:meth:`_flush_unlogged`): a record without an id is a decision to store, one with an id
    a decision stored but not yet marked applied (at its ``applied_at``), or not yet given
    the reason it was not (its ``not_applied``)."""

    # -- the loop's entry points -----------------------------------------------------------

    def reconcile(self, obj: dict[str, Any], now: datetime) -> Decision | None:
        """Bring one PredictiveScaler up to date at ``now``; the decision made, if any."""
        meta = obj.get("metadata", {})
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        state = self.states.setdefault(key, ScalerState())
        started = datetime.now(UTC)
        try:
            return self._reconcile(obj, key, state, now)
        finally:
            self.metrics.reconcile_seconds.observe((datetime.now(UTC) - started).total_seconds())

    def forget(self, key: str) -> None:
        """Drop a deleted scaler's state, model job, cached history and metrics."""
        state = self.states.pop(key, None)
        if state is not None and state.job is not None:
            state.job.cancel()
            self.jobs -= 1
        self.waiting.pop(key, None)
        if state is not None:
            self._forget_series(state.series)
        namespace, _, name = key.partition("/")
        self.metrics.forget(namespace, name)

    def _forget_series(self, series: tuple[str, str, timedelta] | None) -> None:
        """Drop ``series`` from the shared cache unless another scaler still reads it."""
        if series is not None and all(other.series != series for other in self.states.values()):
            self.cache.forget(*series)

    def take_waiting(self) -> list[str]:
        """Scalers that waited for a job slot, as many as there are free slots now."""
        free = len(self.waiting) if self.max_jobs is None else self.max_jobs - self.jobs
        taken = list(self.waiting)[: max(0, free)]
        for key in taken:
            del self.waiting[key]
        return taken

    def prefetch(self, objs: Sequence[dict[str, Any]], now: datetime) -> None:
        """Read the live load and the newest history of many scalers in a few requests.

        Scalers on the same Prometheus with the same step are asked together
        (:meth:`PrometheusClient.instant_many`, :meth:`HistoryCache.prefetch`); their
        reconciles at the same ``now`` then read the answers instead of asking one by one.
        A query the batch could not answer is asked again alone by its reconcile, so its
        error is reported on its own scaler, unless the Prometheus itself was unavailable
        (:attr:`down`). Invalid specs are left to their reconcile.
        """
        groups: dict[tuple[str, timedelta], list[ScalerConfig]] = {}
        for obj in objs:
            try:
                config = _parse(obj)
            except SpecError:
                continue
            groups.setdefault((config.prometheus_url, config.step), []).append(config)
        self.loads, self.loads_at, self.down, self.history_down = {}, now, {}, {}
        for (url, step), configs in groups.items():
            client = self._client(url)
            queries = sorted({config.query for config in configs})
            for query, value in zip(queries, client.instant_many(queries, now), strict=True):
                if isinstance(value, PrometheusUnavailable):
                    self.down[client.url] = value
                elif not isinstance(value, PrometheusError):
                    self.loads[(client.url, query)] = value
            if client.url in self.down:
                continue  # its history would wait for the same timeouts
            # Each query's history over the longest window its own scalers keep, shortest
            # windows first; one that finds Prometheus unavailable ends the asking.
            windows: dict[str, timedelta] = {}
            for config in configs:
                windows[config.query] = max(
                    config.history_window, windows.get(config.query, timedelta(0))
                )
            failed: PrometheusUnavailable | None = None
            for window in sorted(set(windows.values())):
                same = sorted(query for query, w in windows.items() if w == window)
                errors = (
                    dict.fromkeys(same, failed)
                    if failed is not None
                    else self.cache.prefetch(client, same, now, window, step)
                )
                for query, error in errors.items():
                    if isinstance(error, PrometheusUnavailable):
                        self.history_down[(client.url, query)] = failed = error

    # -- one reconcile -----------------------------------------------------------------------

    def _reconcile(
        self, obj: dict[str, Any], key: str, state: ScalerState, now: datetime
    ) -> Decision | None:
        if obj.get("metadata", {}).get("deletionTimestamp"):
            self._finalize(obj, state, now)
            return None
        status = _copy_status(obj)
        generation = int(obj.get("metadata", {}).get("generation") or 0)
        status["observedGeneration"] = generation
        try:
            config = _parse(obj)
        except SpecError as exc:
            message = "; ".join(exc.problems)
            _condition(status, "Ready", False, "InvalidSpec", message, now, generation)
            # It scales nothing now, and says so: a ScalingActive=True kept from before
            # would also count as holding its target (:func:`shared_targets`) once fixed.
            _condition(status, "ScalingActive", False, "InvalidSpec", message, now, generation)
            self._event(state, obj, "Warning", "InvalidSpec", message, now)
            self._count_error(obj, "InvalidSpec")
            self._write_status(obj, status)
            return None
        state.last_events.pop("InvalidSpec", None)  # a recurrence is news again
        self._hold_hpa_floor(config, obj, state, now)

        owner = self.shared_targets.get(key)
        if owner is not None:
            message = (
                f"{config.target['kind']} {config.target['name']} is also scaled by {owner}, "
                "which claimed it first; two scalers writing one target undo each other, so "
                "this one leaves it alone until one of them points elsewhere"
            )
            _condition(status, "ScalingActive", False, "AmbiguousTarget", message, now, generation)
            self._event(state, obj, "Warning", "AmbiguousTarget", message, now)
            self._count_error(obj, "AmbiguousTarget")
            self._write_status(obj, status)
            return None
        state.last_events.pop("AmbiguousTarget", None)

        try:
            scale = self.kube.get_scale(config.namespace, config.target)
        except KubeError as exc:
            reason = "TargetNotFound" if exc.not_found else "TargetUnreadable"
            message = f"{config.target['kind']} {config.target['name']}: {exc}"
            _condition(status, "Ready", False, reason, message, now, generation)
            self._event(state, obj, "Warning", reason, message, now)
            self._count_error(obj, reason)
            self._write_status(obj, status)
            return None
        state.last_events.pop("TargetNotFound", None)
        state.last_events.pop("TargetUnreadable", None)

        spec = self._policy_spec(config, scale)
        low, _, window = effective_bounds(spec, now)
        if (
            config.mode == "Scale"
            and scale.spec_replicas == 0
            and low > 0
            and not _zeroed_here(status)
        ):
            # As the HPA does: a target someone scaled to zero (maintenance, an incident) is
            # left there, not scaled back up behind their back. The minimum is the one in
            # force now (an override window may allow 0), and a 0 this scaler set itself
            # (in such a window) is no one's maintenance: it scales up when the window ends.
            how = (
                "scale it up, or set minReplicas 0, to resume"
                if low == config.min_replicas
                else f"scale it up to resume; {window} sets the minimum to {low}"
            )
            message = (
                f"{config.target['kind']} {config.target['name']} has 0 replicas: scaling is"
                f" disabled while it is scaled to zero ({how})"
            )
            _condition(
                status, "Ready", True, "Reconciled", "spec valid, target found", now, generation
            )
            _condition(status, "ScalingActive", False, "ScalingDisabled", message, now, generation)
            status["currentReplicas"] = 0
            self._event(state, obj, "Normal", "ScalingDisabled", message, now)
            self._write_status(obj, status)
            return None
        state.last_events.pop("ScalingDisabled", None)

        self._settle_pending(config, state, scale, now)
        if state.retrain_schedule != config.retrain_schedule:
            # A new schedule (weekly made daily) starts now: kept until the old one's next
            # firing, it would be ignored for up to a week. The edit itself retrains.
            state.next_retrain = _next_fire(config.retrain_schedule, now)
            state.retrain_schedule = config.retrain_schedule
        elif state.next_retrain is None or now >= state.next_retrain:
            state.retrain_due = state.retrain_due or state.next_retrain is not None
            state.next_retrain = _next_fire(config.retrain_schedule, now)
        client = self._client(config.prometheus_url)
        series, previous = (client.url, config.query, config.step), state.series
        state.series = series
        if previous is not None and previous != series:
            # The spec now reads another series (query, Prometheus or step): the forecast
            # and outlook were of the old one, and kept until the new model is trained (or,
            # if training fails, until maxForecastAge) they would scale the target for a
            # load it does not have; so was a training error. The recommendations stay:
            # scale-down stabilisation still damps the change, as the HPA's does across a
            # spec edit.
            state.forecast, state.outlook, state.training_error = None, None, None
            _merge_replace(status, "forecast", None)  # its peak showed in `kubectl get psc`
            self._forget_series(previous)
        load, recent = self._observe(config, state, client, now, obj)
        self._refresh_forecast(config, state, client, now, obj)
        # Recommendations stamped after now were made before the clock stepped back: kept,
        # they would hold a scale-down for the step on top of the stabilisation window.
        state.history = [
            r for r in state.history if now - config.scale_down_stabilization < r.at <= now
        ]
        decision = decide(
            spec, now, scale.spec_replicas, load, state.forecast, state.history, recent
        )
        state.history.append(Recommendation(now, decision.recommendation))
        applied = self._apply(config, state, obj, scale, spec, decision, now)
        self._report_outlook(config, state, obj, status, spec, now)

        self._report(config, state, obj, status, scale, decision, applied, now)
        return decision

    # -- data and models -------------------------------------------------------------------

    def _client(self, url: str) -> PrometheusClient:
        if url not in self.clients:
            self.clients[url] = self.prometheus(url)
        return self.clients[url]

    def _instant(self, client: PrometheusClient, query: str, now: datetime) -> float | None:
        """The load now: from this cycle's :meth:`prefetch` when it has it, else asked."""
        if self.loads_at == now and (client.url, query) in self.loads:
            return self.loads[(client.url, query)]
        return client.instant(query, now)

    def _raise_if_down(self, client: PrometheusClient, query: str, now: datetime) -> None:
        """Raise the error this cycle's :meth:`prefetch` got from ``client``'s Prometheus,
        if it found it, or ``query``'s history on it, unavailable: asking again would only
        wait for the same answer."""
        if self.loads_at != now:
            return
        if client.url in self.down:
            raise self.down[client.url]
        if (client.url, query) in self.history_down:
            raise self.history_down[(client.url, query)]

    def _observe(
        self,
        config: ScalerConfig,
        state: ScalerState,
        client: PrometheusClient,
        now: datetime,
        obj: dict[str, Any],
    ) -> tuple[float | None, list[float]]:
        """The live load and the recent intervals, or (None, []) when Prometheus fails."""
        try:
            self._raise_if_down(client, config.query, now)
            load = self._instant(client, config.query, now)
            recent = self.cache.values(client, config.query, now, LEVEL_WINDOW, config.step)
        except PrometheusError as exc:
            state.metric_error = str(exc)
            self._event(state, obj, "Warning", "MetricUnavailable", str(exc), now)
            self._count_error(obj, "MetricUnavailable")
            return None, []
        state.metric_error = None
        state.last_events.pop("MetricUnavailable", None)  # a recurrence is news again
        return load, [float(v) for v in recent[:-1]]  # complete intervals before now

    def _refresh_forecast(
        self,
        config: ScalerConfig,
        state: ScalerState,
        client: PrometheusClient,
        now: datetime,
        obj: dict[str, Any],
    ) -> None:
        """Install a finished model job; submit the next one when one is due.

        A job is due when the scaler has no model yet (``start``: reuse the stored one or
        train), when its spec changed or the retrain schedule fired (``train``), and when
        the forecast is older than ``refresh`` or the hourly outlook is due (``refit``).
        One job per scaler at a time; a failed one is tried again after ``JOB_RETRY``, or at
        once when the spec has changed since.
        """
        self._collect(config, state, obj, now)
        if not config.outlook.enabled:
            state.outlook = None
        kind = self._job_due(config, state, now)
        if kind is None or state.job is not None:
            return
        if (
            state.job_failed_at is not None
            and state.job_generation == config.generation
            and now - state.job_failed_at < JOB_RETRY
        ):
            return  # an edited spec (the user fixing what failed) is tried at once
        if self.max_jobs is not None and self.jobs >= self.max_jobs:
            self.waiting[config.key] = None  # woken when a slot frees; holds no history
            return
        try:
            self._raise_if_down(client, config.query, now)
            history = self.cache.get(
                client, config.query, now, config.history_window, config.step, config.key
            )
        except PrometheusError as exc:
            state.training_error = f"no history: {exc}"
            return
        model = state.model
        job = ModelJob(
            kind,
            config,
            history,
            now,
            model=model,
            outlook=config.outlook.enabled and self._outlook_due(state, now),
            model_store=self.model_store,
            hold_out=LEVEL_WINDOW,
        )
        if kind == "train":
            state.retrain_due = False  # the job in flight answers it; a failure asks again
        state.job, state.job_kind = self.executor.submit(run_job, job), kind
        state.job_series, state.job_generation = state.series, config.generation
        self.jobs += 1
        self.waiting.pop(config.key, None)
        if self.job_done is not None:
            key = config.key

            def notify(_: Future[ModelResult]) -> None:
                if self.job_done is not None:
                    self.job_done(key)

            state.job.add_done_callback(notify)
        self._collect(config, state, obj, now)

    def _job_due(self, config: ScalerConfig, state: ScalerState, now: datetime) -> JobKind | None:
        model = state.model
        if model is None:
            return "start"
        if state.retrain_due or model.generation != config.generation:
            return "train"
        stale = state.forecast is None or now - state.forecast.made_at >= self.refresh
        if stale or (config.outlook.enabled and self._outlook_due(state, now)):
            return "refit"
        return None

    def _outlook_due(self, state: ScalerState, now: datetime) -> bool:
        """The outlook's unit is the hour: forecast it again hourly, or for a new model."""
        outlook, model = state.outlook, state.model
        return (
            outlook is None
            or model is None
            or outlook.model_version != model.version
            or now - outlook.made_at >= OUTLOOK_EVERY
        )

    def _collect(
        self, config: ScalerConfig, state: ScalerState, obj: dict[str, Any], now: datetime
    ) -> None:
        """Take a finished job's result (or failure) into the scaler's state."""
        job, kind = state.job, state.job_kind
        if job is None or not job.done():
            return
        state.job = None
        self.jobs -= 1
        if state.job_series != state.series:
            return  # learnt from the series the spec read before: the next job is due now
        try:
            result: ModelResult = job.result()
        except Exception as exc:  # noqa: BLE001 - whatever a job raised, it failed; try later
            state.job_failed_at = now
            state.retrain_due = state.retrain_due or kind == "train"
            state.training_error = f"{type(exc).__name__}: {exc}"
            self._event(state, obj, "Warning", "ModelTrainingFailed", state.training_error, now)
            self._count_error(obj, "ModelTrainingFailed")
            return
        state.job_failed_at = None
        state.training_error = None
        state.model, state.forecast = result.model, result.forecast
        if result.outlook is not None:
            state.outlook = result.outlook
        if result.trained:
            info = result.model
            message = f"{info.name} version {info.version}" + (
                f", backtest peak recall {info.backtest_score:.2f}"
                if info.backtest_score is not None
                else ""
            )
            self._event(state, obj, "Normal", "ModelTrained", message, now)

    # -- deciding and applying ----------------------------------------------------------------

    def _policy_spec(self, config: ScalerConfig, scale: ScaleTarget) -> PolicySpec:
        return PolicySpec(
            min_replicas=config.min_replicas,
            max_replicas=config.max_replicas,
            capacity_per_replica=config.capacity_per_replica,
            startup_delay=self._startup_delay(config, scale),
            sync_period=config.sync_period,
            quantile=config.quantile,
            tolerance=config.tolerance,
            scale_up_max_step=config.scale_up_max_step,
            scale_down_max_step=config.scale_down_max_step,
            scale_down_stabilization=config.scale_down_stabilization,
            max_forecast_age=config.max_forecast_age,
            min_backtest_score=config.min_backtest_score,
            level_window=max(1, int(LEVEL_WINDOW / config.step)),
            overrides=config.overrides,
        )

    def _startup_delay(self, config: ScalerConfig, scale: ScaleTarget) -> timedelta:
        """The spec's delay, or for ``auto`` the p90 of the target's pods' start-up times."""
        if config.startup_delay is not None:
            return config.startup_delay
        try:
            seconds = self.kube.pod_startup_seconds(config.namespace, scale.selector)
        except KubeError:
            seconds = []
        if not seconds:
            return DEFAULT_STARTUP_DELAY
        return timedelta(seconds=float(np.quantile(seconds, 0.9)))

    def _apply(
        self,
        config: ScalerConfig,
        state: ScalerState,
        obj: dict[str, Any],
        scale: ScaleTarget,
        spec: PolicySpec,
        decision: Decision,
        now: datetime,
    ) -> bool:
        """Record, then apply by mode, then mark applied. Returns whether anything changed."""
        hpa_alone = _hpa_alone(decision.observed_load, config.capacity_per_replica)
        record, record_id = None, None
        if self.decisions is not None:
            record = record_from_decision(
                decision,
                scaler=config.key,
                target=f"{config.target['kind']}/{config.target['name']}",
                mode=config.mode,
                ready_replicas=scale.status_replicas,
                spec=spec,
                forecast=state.forecast,
                hpa_replicas=hpa_alone,
                at=now,
            )
            if state.log_error is None:  # else it is down: keep the record for later
                try:
                    record_id = self.decisions.record(record)
                except (SQLAlchemyError, SchemaError) as exc:
                    state.log_error = _db_error(exc)  # safety first: apply it all the same
                    self.log_down = (now, state.log_error)
        changed = False
        write = config.mode == "Scale" and decision.replicas != scale.spec_replicas
        rival = self._rival_hpa(config) if write else None
        # Found before, and nothing to write now: the HPA is still there, as far as we know.
        held = config.mode == "Scale" and not write and state.scaling_reason == "ConflictingHPA"
        if rival is not None or held:
            if rival is not None:
                state.scaling_error = (
                    f"HPA {rival} also scales {config.target['kind']} {config.target['name']}:"
                    " two autoscalers undo each other's changes, so this scaler leaves it to"
                    " the HPA; mode HPAFloor raises the HPA's minReplicas ahead of peaks instead"
                )
                state.scaling_reason = "ConflictingHPA"
                self._event(state, obj, "Warning", "ConflictingHPA", state.scaling_error, now)
                self._count_error(obj, "ConflictingHPA")
            state.failed_record = record_id
            why = f"ConflictingHPA: {state.scaling_error}" if state.scaling_error else None
            self._log_outcome(state, record, record_id, None, why)
            return False
        try:
            if write:
                self.kube.set_scale(config.namespace, config.target, decision.replicas)
                changed = True
            elif config.mode == "HPAFloor":
                changed = self._raise_hpa_floor(config, decision)
        except KubeError as exc:
            state.failed_record = record_id
            state.scaling_error = f"could not apply {decision.replicas} replicas: {exc}"
            state.scaling_reason = "ScaleFailed"
            self._event(state, obj, "Warning", "ScaleFailed", state.scaling_error, now)
            self._count_error(obj, "ScaleFailed")
            self._log_outcome(state, record, record_id, None, f"ScaleFailed: {state.scaling_error}")
            return False
        state.scaling_error, state.scaling_reason = None, "ScaleFailed"
        state.last_events.pop("ScaleFailed", None)
        state.last_events.pop("ConflictingHPA", None)
        self._log_outcome(state, record, record_id, None if config.mode == "ForecastOnly" else now)
        if changed:
            what = (
                f"{decision.current_replicas} → {decision.replicas} replicas"
                if config.mode == "Scale"
                else f"HPA minReplicas → {decision.replicas}"
            )
            message = f"{what}: {decision.message}"
            self._event(state, obj, "Normal", "Scaled", message, now, dedupe=False)
            target = {
                "apiVersion": config.target.get("apiVersion", "apps/v1"),
                "kind": config.target["kind"],
                "metadata": {
                    "name": config.target["name"],
                    "namespace": config.namespace,
                    "uid": scale.uid,
                },
            }
            self._event(state, target, "Normal", "PredictiveScaled", message, now, dedupe=False)
        return changed

    def _log_outcome(
        self,
        state: ScalerState,
        record: DecisionRecord | None,
        record_id: int | None,
        applied_at: datetime | None,
        not_applied: str | None = None,
    ) -> None:
        """Mark the decision applied at ``applied_at`` (None: it was not, for the reason
        ``not_applied`` when one is known), or keep what the log could not take for
        :meth:`_flush_unlogged`, so no decision is lost to an outage."""
        if record is None:
            return
        done = (
            replace(record, not_applied=not_applied)
            if applied_at is None
            else replace(record, applied=True, applied_at=applied_at)
        )
        if record_id is None:
            self._keep_unlogged(done)
            return
        if self.decisions is None or (applied_at is None and not_applied is None):
            return
        try:
            if applied_at is not None:
                self.decisions.mark_applied(record_id, applied_at)
            elif not_applied is not None:
                self.decisions.mark_not_applied(record_id, not_applied)
        except (SQLAlchemyError, SchemaError) as exc:
            state.log_error = _db_error(exc)
            self._keep_unlogged(replace(done, id=record_id))

    def _keep_unlogged(self, record: DecisionRecord) -> None:
        """Hold ``record`` until the log is back; past ``UNLOGGED_MAX`` the oldest goes."""
        if len(self.unlogged) == self.unlogged.maxlen:
            self.metrics.decision_log_dropped.inc()
        self.unlogged.append(record)
        self.metrics.decision_log_backlog.set(len(self.unlogged))

    def _flush_unlogged(self) -> None:
        """Write what the decision log missed while it was down; raises while it still is.

        The missed decisions go in one transaction. They are older than any decision made
        from now on, so :meth:`DecisionLog.pending` still sees each scaler's newest; a
        failed apply among them becomes its scaler's ``failed_record``, never to be marked
        applied.
        """
        if self.decisions is None or not self.unlogged:
            return
        try:
            new = [r for r in self.unlogged if r.id is None]
            ids = self.decisions.record_many(new)
            self.unlogged = deque(
                (r for r in self.unlogged if r.id is not None), maxlen=self.unlogged.maxlen
            )
            for record, record_id in zip(new, ids, strict=True):
                state = self.states.get(record.scaler)
                if state is not None and record.mode == "Scale" and not record.applied:
                    state.failed_record = record_id
            while self.unlogged:
                marked = self.unlogged[0]
                try:
                    if marked.id is not None and marked.applied_at is not None:  # by construction
                        self.decisions.mark_applied(marked.id, marked.applied_at)
                    elif marked.id is not None and marked.not_applied is not None:
                        self.decisions.mark_not_applied(marked.id, marked.not_applied)
                except KeyError:
                    # Gone from the log (pruned by the other replica, or the database was
                    # restored from an older backup): left at the head of the queue, the
                    # mark raised at every reconcile of every scaler, and nothing scaled.
                    log.warning(
                        "decision %s is no longer in the log: its mark is dropped", marked.id
                    )
                self.unlogged.popleft()
            log.info("decision log back: the decisions made while it was down are written")
        finally:
            self.metrics.decision_log_backlog.set(len(self.unlogged))

    def _settle_pending(
        self, config: ScalerConfig, state: ScalerState, scale: ScaleTarget, now: datetime
    ) -> None:
        """Finish the log's bookkeeping for a decision whose process stopped mid-way.

        A ``Scale`` decision recorded but never marked applied was made by a controller
        that died (or lost the Lease) between recording and marking. If the target already
        has that many replicas the change went through: mark it applied. Otherwise it did
        not, and the decision about to be made supersedes it. Either way nothing is applied
        twice (:meth:`controller.decisions.DecisionLog.pending`). Also prunes the log to
        ``retention`` once an hour.

        First writes what the log missed while it was down; while it still is, nothing is
        settled (the next decision is kept in memory, and supersedes the pending one).
        """
        if self.decisions is None:
            return
        if self.log_down is not None and self.log_down[0] == now:
            state.log_error = self.log_down[1]  # found down this cycle: do not wait on it again
            return
        state.log_error = None
        try:
            self._flush_unlogged()
            self._settle_logged(config, state, scale, now)
        except (SQLAlchemyError, SchemaError) as exc:
            state.log_error = _db_error(exc)
            self.log_down = (now, state.log_error)

    def _settle_logged(
        self, config: ScalerConfig, state: ScalerState, scale: ScaleTarget, now: datetime
    ) -> None:
        """:meth:`_settle_pending` once the log has everything this process decided."""
        if self.decisions is None:
            return
        pending = self.decisions.pending(config.key)
        if (
            pending is not None
            and pending.id != state.failed_record
            and pending.replicas == scale.spec_replicas
        ):
            if pending.id is None:
                raise AssertionError(f"decision log returned a record without an id: {pending}")
            self.decisions.mark_applied(pending.id, now)
            log.info(
                "decision %s for %s was applied before a restart; marked applied",
                pending.id,
                config.key,
            )
        if self.retention is not None and (
            self.pruned_at is None or now - self.pruned_at >= timedelta(hours=1)
        ):
            removed = self.decisions.prune(now - self.retention)
            self.pruned_at = now
            if removed:
                log.info("pruned %d decision(s) older than %s", removed, self.retention)

    def _rival_hpa(self, config: ScalerConfig) -> str | None:
        """The HPA that also scales a ``Scale`` scaler's target, if any, asked only before a
        write (not every cycle): like two scalers on one target, an HPA and this scaler
        would undo each other's changes every cycle, and no one would be told. A failed
        look is no reason not to scale."""
        try:
            hpa = self.kube.find_hpa(config.namespace, config.target)
        except KubeError as exc:
            log.warning("looking for an HPA on %s failed: %s", config.key, exc)
            return None
        return None if hpa is None else str(hpa["metadata"]["name"])

    # -- giving the HPA its floor back ------------------------------------------------------

    def _hold_hpa_floor(
        self, config: ScalerConfig, obj: dict[str, Any], state: ScalerState, now: datetime
    ) -> None:
        """Hold the finalizer while the mode is ``HPAFloor``; out of it, give the HPA back
        its ``minReplicas`` and let go. A failure is tried again at the next reconcile."""
        finalizers = list(obj.get("metadata", {}).get("finalizers") or [])
        held = HPA_FLOOR_FINALIZER in finalizers
        try:
            if config.mode == "HPAFloor" and not held:
                self._set_finalizers(obj, [*finalizers, HPA_FLOOR_FINALIZER])
            elif config.mode != "HPAFloor" and held:
                self._release_hpa_floor(config)
                self._set_finalizers(obj, [f for f in finalizers if f != HPA_FLOOR_FINALIZER])
        except KubeError as exc:
            self._event(state, obj, "Warning", "FinalizerFailed", str(exc), now)

    def _finalize(self, obj: dict[str, Any], state: ScalerState, now: datetime) -> None:
        """A scaler being deleted: give the HPA back its floor, then let the deletion end.

        With a spec that cannot be read there is no HPA to find: the deletion goes on, and
        a Warning Event says the floor was left as it was.
        """
        finalizers = list(obj.get("metadata", {}).get("finalizers") or [])
        if HPA_FLOOR_FINALIZER not in finalizers:
            return
        try:
            try:
                self._release_hpa_floor(_parse(obj))
            except SpecError as exc:
                message = "the HPA's minReplicas was left as it is: " + "; ".join(exc.problems)
                self._event(state, obj, "Warning", "FloorNotRestored", message, now)
            self._set_finalizers(obj, [f for f in finalizers if f != HPA_FLOOR_FINALIZER])
        except KubeError as exc:
            self._event(state, obj, "Warning", "FinalizerFailed", str(exc), now)

    def _release_hpa_floor(self, config: ScalerConfig) -> None:
        """Set the HPA's ``minReplicas`` back to what it was before this scaler moved it."""
        try:
            hpa = self.kube.find_hpa(config.namespace, config.target, config.hpa_name)
        except KubeError as exc:
            if not exc.not_found:
                raise
            return  # the HPA is gone: nothing to give back
        if hpa is None:
            return
        before = (hpa.get("metadata", {}).get("annotations") or {}).get(HPA_MIN_BEFORE)
        if before is None:
            return  # never moved by a scaler
        minimum = int(before) if before.isdigit() and int(before) > 0 else 1
        self.kube.set_hpa_min_replicas(
            config.namespace, hpa["metadata"]["name"], minimum, {HPA_MIN_BEFORE: None}
        )

    def _set_finalizers(self, obj: dict[str, Any], finalizers: list[str]) -> None:
        meta = obj["metadata"]
        updated = self.kube.set_scaler_finalizers(
            meta["namespace"], meta["name"], finalizers, meta["resourceVersion"]
        )
        # The runner may reconcile this same object again before the watch delivers the new
        # one: with the old version, its next finalizer write would be refused as stale.
        meta["finalizers"] = finalizers
        meta["resourceVersion"] = updated.get("metadata", {}).get("resourceVersion")

    def _raise_hpa_floor(self, config: ScalerConfig, decision: Decision) -> bool:
        """Set the HPA's minReplicas to the decision (never above its maxReplicas, nor below
        1: spec.minReplicas may be 0, but the API server refuses an HPA's minReplicas of 0
        unless the alpha HPAScaleToZero gate is on)."""
        hpa = self.kube.find_hpa(config.namespace, config.target, config.hpa_name)
        if hpa is None:
            raise KubeError("find HPA", 404, "NotFound", f"no HPA scales {config.target['name']}")
        spec = hpa.get("spec", {})
        floor = max(1, min(decision.replicas, int(spec.get("maxReplicas") or decision.replicas)))
        current = int(spec.get("minReplicas") or 1)
        if current == floor:
            return False
        annotations = hpa.get("metadata", {}).get("annotations") or {}
        first: dict[str, str | None] | None = (
            None if HPA_MIN_BEFORE in annotations else {HPA_MIN_BEFORE: str(current)}
        )
        self.kube.set_hpa_min_replicas(config.namespace, hpa["metadata"]["name"], floor, first)
        return True

    # -- reporting ---------------------------------------------------------------------------

    def _report_outlook(
        self,
        config: ScalerConfig,
        state: ScalerState,
        obj: dict[str, Any],
        status: dict[str, Any],
        spec: PolicySpec,
        now: datetime,
    ) -> None:
        """The outlook against today's bounds: ``status.outlook``, the ``CapacityAtRisk``
        condition, a Warning Event per newly first hour at risk, and the shortfall metrics.

        Judged at every reconcile (it is cheap), so raising ``maxReplicas`` clears it at once.
        """
        generation, labels, m = config.generation, (config.namespace, config.name), self.metrics
        outlook = state.outlook
        if outlook is None:
            # Without an outlook the coming days' risk is not known (Unknown), unless no one
            # asked for one: False, as a disabled check finds nothing.
            ok, reason, why = (
                (None, "NoForecast", state.training_error or "waiting for a model")
                if config.outlook.enabled
                else (False, "OutlookDisabled", "spec.outlook.enabled is false")
            )
            _condition(status, "CapacityAtRisk", ok, reason, why, now, generation)
            _merge_replace(status, "outlook", None)
            m.clear(m.projected_shortfall, *labels)
            m.clear(m.projected_shortfall_ahead, *labels)
            return
        found = risks(outlook.hours, spec, now)
        summary: dict[str, Any] = {}
        if outlook.bands is not None:
            rated = Ratings.of(
                outlook.hours, outlook.bands, outlook.made_at, config.feed.show_numbers
            )
            summary.update(rated.to_status())
        was_at_risk = any(
            c["type"] == "CapacityAtRisk" and c["status"] == "True"
            for c in status.get("conditions", [])
        )
        tz, days = config.feed.time_zone, config.outlook.days
        age = now - outlook.made_at
        # Whole hours, as the risk message's "in 4d 9h": the condition's message changes no
        # faster than the hourly outlook would (each change is a status write).
        made = f"made at {_iso(outlook.made_at)} ({int(age.total_seconds() // 3600)}h ago)"
        why = f"not renewed since: {state.training_error}" if state.training_error else ""
        stale = age > OUTLOOK_STALE_AFTER
        covered = _covered_until(outlook.hours)
        if found:
            message = risk_message(found, config.quantile, tz, days)
            if stale:  # still worth the warning, but the reader should know how old it is
                message += f"; from an outlook {made}" + (f", {why}" if why else "")
            shortfall = max(r.shortfall for r in found)
            summary.update(
                hoursAtRisk=len(found),
                firstRiskAt=_iso(found[0].start),
                maxShortfallReplicas=shortfall,
            )
            _condition(
                status, "CapacityAtRisk", True, "ForecastExceedsMax", message, now, generation
            )
            # One Event per local day at risk and spec generation: the hours of one surge
            # ending one by one, or its forecast moving a little (even across the line and
            # back), are not news; the user changing the spec is.
            day = f"{found[0].start.tz_convert(tz):%Y-%m-%d}/{generation}"
            self._event(state, obj, "Warning", "CapacityAtRisk", message, now, key=day)
            m.projected_shortfall.labels(*labels).set(shortfall)
            m.projected_shortfall_ahead.labels(*labels).set(found[0].ahead.total_seconds())
        elif stale or covered is None or covered <= pd.Timestamp(now):
            # No risk in an outlook that no longer covers the coming days (or gives no
            # number for them) says nothing about them: not known, rather than "fits".
            reason, message = (
                ("OutlookStale", f"the outlook was {made}" + (f" and {why}" if why else ""))
                if stale
                else ("NoForecast", f"the outlook {made} has no forecast for the coming hours")
            )
            message += f"; whether the next {days} days fit within the replica bounds is not known"
            _condition(status, "CapacityAtRisk", None, reason, message, now, generation)
            m.clear(m.projected_shortfall, *labels)
            m.clear(m.projected_shortfall_ahead, *labels)
        else:
            message = (
                f"the q{config.quantile:g} forecast up to {wall_clock(covered, tz)} ({tz})"
                f" fits within the replica bounds (max {config.max_replicas})"
            )
            summary["hoursAtRisk"] = 0
            _condition(status, "CapacityAtRisk", False, "WithinCapacity", message, now, generation)
            if was_at_risk:
                # Once per warned day and generation too: a forecast hovering at the bound
                # would otherwise send a Warning and a Normal Event every hour.
                warned = state.last_events.get("CapacityAtRisk")
                cleared = f"{warned}/{generation}"
                self._event(state, obj, "Normal", "CapacityRiskCleared", message, now, key=cleared)
            m.projected_shortfall.labels(*labels).set(0)
            m.clear(m.projected_shortfall_ahead, *labels)
        _merge_replace(status, "outlook", summary)

    def _report(
        self,
        config: ScalerConfig,
        state: ScalerState,
        obj: dict[str, Any],
        status: dict[str, Any],
        scale: ScaleTarget,
        decision: Decision,
        applied: bool,
        now: datetime,
    ) -> None:
        generation = config.generation
        summary = {
            "time": _iso(now),
            "replicas": decision.replicas,
            "from": decision.current_replicas,
            "reason": decision.reason,
            "message": decision.message,
        }
        last = status.get("lastDecision") or {}
        if (last.get("replicas"), last.get("reason")) != (decision.replicas, decision.reason):
            status["lastDecision"] = summary
            if not state.recent:
                # A restarted or newly elected controller: the decisions before it are in
                # status, and replacing them with its first alone would lose them.
                before = status.get("recentDecisions")
                kept = before[:RECENT_DECISIONS] if isinstance(before, list) else []
                state.recent.extend(d for d in kept if isinstance(d, dict))
            state.recent.appendleft(summary)
            status["recentDecisions"] = list(state.recent)
        status["currentReplicas"] = scale.spec_replicas
        status["desiredReplicas"] = decision.replicas
        if applied and config.mode == "Scale":
            status["lastScaleTime"] = _iso(now)
        model, forecast = state.model, state.forecast
        if model is not None:
            shown: dict[str, Any] = {
                "name": model.name,
                "version": model.version,
                "trainedAt": _iso(model.trained_at),
            }
            if model.backtest_score is not None:
                shown["backtestScore"] = round(model.backtest_score, 4)
            _merge_replace(status, "model", shown)  # no score: not the previous model's
        if forecast is not None and len(forecast.times):
            ahead = forecast.times >= np.datetime64(now.replace(tzinfo=None))
            if ahead.any():
                shown = {
                    "generatedAt": _iso(forecast.made_at),
                    "windowEnd": _iso(pd.Timestamp(forecast.times[-1]).tz_localize("UTC")),
                    "quantile": forecast.quantile,
                }
                # The peak of the values the model gave: JSON has no NaN or Infinity, and
                # the API server refuses a status carrying one (400) at every reconcile,
                # where a NaN was taken for the peak (argmax picks it) and sent.
                known = ahead & np.isfinite(forecast.upper)
                if known.any():
                    at = int(np.argmax(np.where(known, forecast.upper, -np.inf)))
                    shown["peak"] = round(float(forecast.upper[at]), 3)
                    shown["peakAt"] = _iso(pd.Timestamp(forecast.times[at]).tz_localize("UTC"))
                _merge_replace(status, "forecast", shown)  # no peak: not the last forecast's

        scaling_error = state.scaling_error
        _condition(status, "Ready", True, "Reconciled", "spec valid, target found", now, generation)
        if model is not None and state.training_error is None:
            _condition(
                status,
                "ModelTrained",
                True,
                "Trained",
                f"{model.name} {model.version}",
                now,
                generation,
            )
        elif model is not None:  # the last training failed: say so, and what is still used
            _condition(
                status,
                "ModelTrained",
                False,
                "TrainingFailed",
                f"{state.training_error}; still using {model.name} {model.version}",
                now,
                generation,
            )
        else:
            _condition(
                status,
                "ModelTrained",
                False,
                "NotTrained",
                state.training_error or "waiting for history",
                now,
                generation,
            )
        stale = decision.fallback in ("ForecastMissing", "ForecastStale")
        _condition(
            status,
            "ForecastFresh",
            forecast is not None and not stale,
            "Fresh" if forecast is not None and not stale else (decision.fallback or "NoForecast"),
            state.training_error or state.metric_error or "forecast in use",
            now,
            generation,
        )
        if config.mode == "ForecastOnly":
            _condition(
                status,
                "ScalingActive",
                False,
                "ForecastOnly",
                "mode ForecastOnly: decisions are recorded, nothing is changed",
                now,
                generation,
            )
        elif scaling_error:
            reason = state.scaling_reason
            _condition(status, "ScalingActive", False, reason, scaling_error, now, generation)
        else:
            _condition(
                status, "ScalingActive", True, config.mode, f"mode {config.mode}", now, generation
            )
        if decision.fallback:
            # Words that stay the same from one cycle to the next (not the decision's
            # message, which quotes the load): otherwise status is rewritten and an Event
            # sent every cycle, for a thousand scalers at once while their models train.
            why = (
                state.metric_error
                or state.training_error
                or f"no usable forecast ({FALLBACK_WORDS[decision.fallback]}):"
                " scaling reacts to the load"
            )
            _condition(status, "Fallback", True, decision.fallback, why, now, generation)
            self._event(
                state, obj, "Warning", "FallbackReactive", f"{decision.fallback}: {why}", now
            )
        elif decision.observed_load is None:
            why = state.metric_error or "the load query returned no value (empty or NaN)"
            message = f"{why}; the forecast is still used, and nothing scales down blind"
            _condition(status, "Fallback", True, "LoadUnknown", message, now, generation)
            if state.metric_error is None:  # an error already had its MetricUnavailable Event
                self._event(state, obj, "Warning", "LoadUnknown", why, now)
        else:
            _condition(status, "Fallback", False, "ForecastInUse", "predictive", now, generation)
            state.last_events.pop("FallbackReactive", None)
            state.last_events.pop("LoadUnknown", None)

        self._report_decision_log(state, obj, status, now, generation)
        self._write_status(obj, status)
        self._export(config, decision, forecast, model, now)

    def _report_decision_log(
        self,
        state: ScalerState,
        obj: dict[str, Any],
        status: dict[str, Any],
        now: datetime,
        generation: int,
    ) -> None:
        """``DecisionLogged``, and one Warning Event per outage (not one per cycle)."""
        if self.decisions is None:
            return
        if state.log_error is None:
            message = "every decision is recorded before it is applied"
            _condition(status, "DecisionLogged", True, "Recorded", message, now, generation)
            state.last_events.pop("DecisionLogUnavailable", None)  # a recurrence is news again
            return
        message = (
            f"decision log unavailable ({state.log_error}): decisions are applied all the"
            " same and kept in memory until it is back"
        )
        _condition(
            status, "DecisionLogged", False, "DecisionLogUnavailable", message, now, generation
        )
        self._event(state, obj, "Warning", "DecisionLogUnavailable", message, now, key="outage")
        self._count_error(obj, "DecisionLogUnavailable")

    def _export(
        self,
        config: ScalerConfig,
        decision: Decision,
        forecast: Forecast | None,
        model: ModelInfo | None,
        now: datetime,
    ) -> None:
        labels = (config.namespace, config.name)
        m = self.metrics
        m.desired_replicas.labels(*labels).set(decision.replicas)
        m.current_replicas.labels(*labels).set(decision.current_replicas)
        m.decisions.labels(*labels, decision.reason).inc()
        m.fallback.labels(*labels).set(1 if decision.fallback else 0)
        if model is not None:
            m.model_age.labels(*labels).set((now - model.trained_at).total_seconds())
        error = None
        load = decision.observed_load
        # A load of 0 is a reading (the forecast's whole median was error), not a missing one.
        if forecast is not None and forecast.median is not None and load is not None:
            at = np.searchsorted(forecast.times, np.datetime64(now.replace(tzinfo=None)), "right")
            if 0 < at <= len(forecast.median) and forecast.median[at - 1] > 0:
                median = float(forecast.median[at - 1])
                error = (load - median) / median
        # A value no longer known leaves the metrics, as the outlook's do: kept at its last
        # value, a dashboard would show a load that is no longer there.
        for gauge, value in (
            (m.predicted_load, decision.forecast_peak),
            (m.observed_load, decision.observed_load),
            (m.forecast_error, error),
        ):
            if value is None:
                m.clear(gauge, *labels)
            else:
                gauge.labels(*labels).set(value)

    def _write_status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch status only when it differs from what the object already shows."""
        if status == (obj.get("status") or {}):
            return
        meta = obj["metadata"]
        try:
            updated = self.kube.patch_scaler_status(meta["namespace"], meta["name"], status)
            obj["status"] = updated.get("status", status)
        except KubeError as exc:
            log.warning("status of %s/%s not written: %s", meta["namespace"], meta["name"], exc)
            self._count_error(obj, "StatusWriteFailed")

    def _event(
        self,
        state: ScalerState,
        involved: dict[str, Any],
        event_type: str,
        reason: str,
        message: str,
        now: datetime,
        dedupe: bool = True,
        key: str | None = None,
    ) -> None:
        """Emit an Event; a repeat of the same reason and ``key`` is skipped (no spam).

        By default the key is the message with its numbers blanked: the same failure told
        again with another time or count in it (a training error quotes its cutoff, which
        moves at every retry) is not news, where each retry sent a new Warning.
        """
        key = re.sub(r"\d+", "#", message) if key is None else key
        if dedupe and state.last_events.get(reason) == key:
            return
        state.last_events[reason] = key
        involved = {"apiVersion": "surgecast.dev/v1alpha1", "kind": "PredictiveScaler", **involved}
        try:
            self.kube.emit_event(involved, event_type, reason, message, now)
        except KubeError as exc:
            log.warning("event %s not written: %s", reason, exc)
        meta = involved.get("metadata", {})
        log.log(
            logging.WARNING if event_type == "Warning" else logging.INFO,
            "%s/%s %s: %s",
            meta.get("namespace"),
            meta.get("name"),
            reason,
            message,
        )

    def _count_error(self, obj: dict[str, Any], kind: str) -> None:
        meta = obj.get("metadata", {})
        self.metrics.errors.labels(meta.get("namespace", ""), meta.get("name", ""), kind).inc()


# -- helpers ------------------------------------------------------------------------------------


def _parse(obj: dict[str, Any]) -> ScalerConfig:
    """:func:`parse_scaler`, with anything else it raises turned into a :class:`SpecError`:
    a spec the reader chokes on is reported like an invalid one (``Ready=False``, one
    Event), where the exception would otherwise abort the reconcile at every cycle."""
    try:
        return parse_scaler(obj)
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug of the reader, not the user's mistake
        log.exception("the spec reader failed on %s", obj.get("metadata", {}).get("name"))
        raise SpecError([f"spec not readable: {type(exc).__name__}: {exc}"]) from exc


def _hpa_alone(load: float | None, capacity: float) -> int | None:
    """Replicas the HPA's ratio formula settles on for ``load`` at its utilisation target."""
    if load is None:
        return None
    return max(1, math.ceil(load / (capacity * HPA_TARGET_UTILIZATION) - 1e-9))


def _db_error(exc: SQLAlchemyError | SchemaError) -> str:
    """The database's own words, without SQLAlchemy's statement, parameters and help link."""
    return str(getattr(exc, "orig", None) or exc).strip()


def _next_fire(schedule: str, now: datetime) -> datetime:
    """The schedule's first firing strictly after ``now`` (apscheduler's may be ``now``
    itself, which would retrain twice for one firing)."""
    trigger = cron_trigger(schedule)
    fire = trigger.get_next_fire_time(None, now + timedelta(seconds=1))
    return fire if fire is not None else now + timedelta(days=1)


def _zeroed_here(status: dict[str, Any]) -> bool:
    """Whether the status says this scaler, scaling, last asked for 0 replicas: a target
    at 0 is then its own doing (a window allowing 0), not someone's maintenance.

    Read from status, not memory, so a restarted or newly elected controller knows it too;
    a 0 set by hand while the scaler wanted more, or while it only forecast
    (``ForecastOnly``), or found by a scaler already disabled, is not its own.
    """
    active = [c for c in status.get("conditions") or [] if c.get("type") == "ScalingActive"]
    return (
        status.get("desiredReplicas") == 0
        and len(active) == 1
        and (active[0].get("status"), active[0].get("reason")) == ("True", "Scale")
    )


def _covered_until(hours: pd.DataFrame) -> pd.Timestamp | None:
    """The end (UTC) of the last hour an outlook's :func:`controller.outlook.project` frame
    has a forecast for; None for none."""
    if hours.empty:
        return None
    return pd.Timestamp(hours["ds"].max()).tz_localize("UTC") + pd.Timedelta(hours=1)


def _copy_status(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj.get("status") or {})


def _iso(moment: datetime | pd.Timestamp) -> str:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_replace(status: dict[str, Any], key: str, value: dict[str, Any] | None) -> None:
    """Set ``status[key]`` so that the merge patch also removes what ``value`` lacks.

    A JSON merge patch deletes a field only when it is sent as null, and only fields the
    object still has need that.
    """
    old = status.get(key)
    if value is None:
        if old is not None:
            status[key] = None
        return
    gone = dict.fromkeys(k for k in old if k not in value) if isinstance(old, dict) else {}
    status[key] = {**gone, **value}


def _condition(
    status: dict[str, Any],
    kind: str,
    ok: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> None:
    """Set one standard condition; ``lastTransitionTime`` moves only when status flips.

    ``ok`` None is ``Unknown``, the Kubernetes convention for a condition that cannot be
    judged (a capacity outlook too old to say whether the coming days fit).
    """
    conditions = status.setdefault("conditions", [])
    value = "Unknown" if ok is None else "True" if ok else "False"
    reason = reason.replace("/", "")
    for condition in conditions:
        if condition["type"] == kind:
            if condition["status"] != value:
                condition["lastTransitionTime"] = _iso(now)
            condition.update(
                status=value, reason=reason, message=message[:1000], observedGeneration=generation
            )
            return
    conditions.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message[:1000],
            "lastTransitionTime": _iso(now),
            "observedGeneration": generation,
        }
    )
    conditions.sort(key=lambda c: CONDITIONS.index(c["type"]) if c["type"] in CONDITIONS else 99)


def shared_targets(objects: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Scalers whose target an earlier scaler already scales, each with that first one.

    Two scalers writing one Deployment's scale undo each other every cycle (4, 10, 4, ...),
    as two HPAs would; like the HPA controller (``AmbiguousSelector``), only the first, by
    creation time then name, may scale it. ``ForecastOnly`` scalers write nothing and claim
    nothing, so a shadow scaler may watch a target another one scales; nor does a scaler
    whose spec is invalid, which scales nothing (it left the target to no one).

    A claimant whose status says it holds the target (:func:`_holds_target`) comes before
    those that do not: an older scaler that was invalid while a newer one took the target
    over does not take it back when it is fixed, which would move the target between two
    sets of bounds behind the user's back.
    """
    claims: dict[tuple[object, ...], list[tuple[bool, str, str]]] = {}
    for obj in objects:
        try:
            config = _parse(obj)
        except SpecError:
            continue
        if config.mode == "ForecastOnly":
            continue
        meta = obj.get("metadata") or {}
        # The group too: OpenKruise's StatefulSet "web" is not apps/v1's StatefulSet "web".
        ref = config.target
        target = (config.namespace, api_group(ref), ref.get("kind"), ref.get("name"))
        created = str(meta.get("creationTimestamp") or "")
        key = f"{meta.get('namespace')}/{meta.get('name')}"  # as :meth:`Reconciler.reconcile`
        claims.setdefault(target, []).append((not _holds_target(obj), created, key))
    later: dict[str, str] = {}
    for claimants in claims.values():
        (*_, first), *rest = sorted(claimants)
        later.update({key: first for *_, key in rest})
    return later


def _holds_target(obj: dict[str, Any]) -> bool:
    """Whether the scaler's status says it scales its target (or would, but for the target
    being at 0, an HPA, a failed write): it has a ``ScalingActive`` condition, and not one
    saying it leaves the target to another scaler, only forecasts, or has an invalid spec."""
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(
        isinstance(c, dict)
        and c.get("type") == "ScalingActive"
        and c.get("reason") not in ("AmbiguousTarget", "ForecastOnly", "InvalidSpec")
        for c in conditions
    )
