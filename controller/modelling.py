"""One scaler's model work as a job that runs anywhere: here, in a worker process, or on Dask.

Training a scaler (backtesting every candidate model over three folds) takes seconds to
minutes, and a refit on the newest history about a second. Inside the reconcile, one slow
scaler would hold up every other scaler's loop, and a thousand of them could never keep a
30 s period. So the reconciler hands a :class:`ModelJob` to an executor and goes on
deciding with the forecast it has (reactively, and saying so, while there is none or it is
stale); the first reconcile after the job finished installs its :class:`ModelResult`.

A job carries everything it needs (the spec, the history, ``now``) and returns plain data:
the forecast arrays, the hourly outlook, the model's name and version. Fitted models stay
in the worker and in the model store, so what the controller keeps per scaler is bounded by
its history and its forecasts, never by the size of a model. For the same reason the
model libraries (scikit-learn, Prophet) are imported inside the functions that fit: a
controller whose jobs run in workers never loads them (about 70 MiB resident).

Executors (any :class:`concurrent.futures.Executor`):

- :class:`InlineExecutor` runs the job inside ``submit``: tests, replays and demos in
  virtual time see the model at the reconcile that asked for it.
- :class:`WorkerPool`: processes on this machine, replaced when one dies.
- ``distributed.Client(address).get_executor()``: an existing Dask cluster.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from controller.forecasting import event_calendar, naive_utc, to_forecast
from controller.outlook import Bands, project, typical_bands
from controller.policy import Forecast
from controller.spec import ScalerConfig

log = logging.getLogger("surgecast.modelling")

DEFAULT_STARTUP_DELAY = timedelta(minutes=3)
STORED_MODEL_MAX_AGE = timedelta(days=1)
"""A stored model older than this is not reused at start-up: the scaler trains again."""
CLOCK_SKEW = timedelta(minutes=1)
"""How far ahead of this controller's clock a stored model's ``created_at`` may be before
it is logged as written by a clock that runs ahead (NTP keeps nodes well within this)."""

JobKind = Literal["start", "train", "refit"]
"""``start``: reuse the stored model of this object and spec generation if recent, else train;
``train``: backtest and choose a model (a new spec, or the retrain schedule fired);
``refit``: fit the chosen model again on the newest history."""


@dataclass(frozen=True)
class ModelInfo:
    """The model in force for one scaler, and where it came from (no fitted object)."""

    name: str
    version: str
    trained_at: datetime
    generation: int
    backtest_score: float | None
    """Peak recall of the chosen model in its backtest: the policy's trust threshold."""

    refitted_at: datetime


@dataclass(frozen=True)
class OutlookState:
    """One scaler's days-ahead forecast, hour by hour (:func:`controller.outlook.project`)."""

    made_at: datetime
    model_version: str
    hours: pd.DataFrame
    bands: Bands | None
    """Quiet and busy thresholds from the scaler's history (None: too little history)."""


@dataclass(frozen=True)
class ModelJob:
    """Everything one piece of model work needs; picklable, so it can run in any process."""

    kind: JobKind
    config: ScalerConfig
    history: pd.DataFrame
    now: datetime
    model: ModelInfo | None = None
    """The model to refit (``refit`` only)."""

    outlook: bool = False
    """Also forecast the next ``spec.outlook.days``, hour by hour."""

    model_store: str | None = None
    """Root of the model store; the scaler's models go under ``ROOT/NAMESPACE/NAME``."""

    hold_out: timedelta = timedelta(0)
    """The newest stretch of history the model is not fitted on, so that its forecast
    covers it: the policy compares the forecast with the load there to rescale it to the
    level the load runs at now (:func:`controller.policy.nowcast`), as in the replay,
    whose models are fitted once a day. A model fitted up to now would forecast only
    from now, and the nowcast would find nothing to compare."""


@dataclass(frozen=True)
class ModelResult:
    """What a job hands back to the reconciler."""

    model: ModelInfo
    forecast: Forecast
    outlook: OutlookState | None
    trained: bool
    """A new version was backtested, chosen and stored (the reconciler emits an Event)."""


def run_job(job: ModelJob) -> ModelResult:
    """Do one job: get a fitted model (stored, trained or refitted), then forecast from now.

    Raises ``ValueError``/``RuntimeError`` when the history cannot make a model (too short,
    all missing) and :class:`forecaster.store.StoreError` when the store fails.
    """
    config, now = job.config, job.now
    cutoff = naive_utc(now).floor(config.step) - job.hold_out
    history = job.history[job.history["ds"] <= cutoff]
    until = now + (
        timedelta(days=config.outlook.days, hours=1) if job.outlook else config.horizon * 2
    )
    step = pd.Timedelta(config.step)
    trained = False
    loaded = _load_stored(config, job.model_store, now) if job.kind == "start" else None
    if loaded is None and not history["y"].notna().any():
        # A model of nothing forecasts zero (the last value of nothing), which would read
        # as a trained model of an idle service: a mistyped query is an error to show.
        raise ValueError(_no_history(job, cutoff))
    events = event_calendar(config.events, job.history["ds"].min(), naive_utc(until), step)
    if job.kind == "refit" and job.model is not None:
        models = {job.model.name: candidates(config)[job.model.name]().fit(history, events=events)}
        info = replace(job.model, refitted_at=now)
    elif loaded is not None:
        models, info = loaded
    else:
        models, info = _train(config, history, events, now, job.model_store)
        trained = True
    fitted = models[info.name]
    predicted = _predict(fitted, now + config.horizon, config.step, config.quantile, events)
    forecast = to_forecast(
        predicted, now, config.quantile, info.version, backtest_score=info.backtest_score
    )
    outlook = None
    if job.outlook:
        ahead = _predict(fitted, until, config.step, config.quantile, events)
        hours = project(ahead, config.quantile, now, config.outlook.days)
        outlook = OutlookState(now, info.version, hours, typical_bands(job.history))
    return ModelResult(info, forecast, outlook, trained)


def _no_history(job: ModelJob, cutoff: pd.Timestamp) -> str:
    """Why there is nothing to fit on, in terms the spec's author can act on."""
    from controller.prometheus import grafana_hint  # here: workers need no HTTP client

    held_out = f"the newest {_duration(job.hold_out)} are held out to rescale the forecast"
    if job.history["ds"].min() > cutoff:
        return (
            f"spec.retrain.historyWindow ({_duration(job.config.history_window)}) leaves no"
            f" history to fit a model on: {held_out}; make the window longer"
        )
    seen = job.history.loc[job.history["y"].notna(), "ds"]
    if len(seen):
        # A service younger than the hold-out: its query is right, it is just too new.
        return (
            f"the query has data only since {seen.min():%Y-%m-%d %H:%M} UTC and a model is"
            f" fitted on the history up to {cutoff:%Y-%m-%d %H:%M} UTC ({held_out});"
            " scaling reactively until there is data before then"
        )
    return (
        "the query returned no data in the history window (spec.retrain.historyWindow)"
        f" up to {cutoff:%Y-%m-%d %H:%M} UTC: check spec.metric.query"
        + grafana_hint(job.config.query)
    )


def _duration(span: timedelta) -> str:
    """``2h``, ``90m``, ``1d``: a span as the spec writes it."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def lead_time_of(config: ScalerConfig) -> timedelta:
    """Startup delay (3 min when measured) plus one sync: the policy's lead window."""
    return (config.startup_delay or DEFAULT_STARTUP_DELAY) + config.sync_period


def candidates(config: ScalerConfig) -> dict[str, Callable[[], Any]]:
    """The models a scaler may use, with its ``spec.model.params`` applied."""
    from forecaster.models import registry

    params = dict(config.model_params)
    country, tz = params.pop("country", None), params.pop("tz", None)
    models = registry(country=country, tz=tz, include_slow=config.model == "prophet")
    if config.model not in ("auto",) and params:
        make = models[config.model]
        models[config.model] = lambda: make().set_params(**params)
    return models


def store_url(root: str, config: ScalerConfig) -> str:
    return f"{root.rstrip('/')}/{config.namespace}/{config.name}"


def _train(
    config: ScalerConfig,
    history: pd.DataFrame,
    events: pd.DataFrame | None,
    now: datetime,
    model_store: str | None,
) -> tuple[dict[str, Any], ModelInfo]:
    """Backtest, choose, fit, and store a new version when a store is configured."""
    from forecaster import store
    from forecaster.training import train

    step = pd.Timedelta(config.step)
    horizon = max(1, int(pd.Timedelta(lead_time_of(config)) / step) * 2)
    trained = train(
        history,
        candidates(config),
        model=config.model,
        horizon=horizon,
        folds=3,
        every=int(pd.Timedelta("1D") / step) if step <= pd.Timedelta("1h") else None,
        upper=config.quantile,
        events=events,
    )
    name = trained.assignment[config.key]
    recall = None
    if trained.scores is not None:
        row = trained.scores[trained.scores["model"] == name]
        recall = float(row["peak_recall"].iloc[0]) if len(row) else None
        recall = recall if recall is not None and math.isfinite(recall) else None
    version = f"{naive_utc(now):%Y%m%dT%H%M%SZ}-memory"
    if model_store:
        metadata = {
            **_source(config),
            "model_name": name,
            "backtest_peak_recall": recall,
            "note": trained.note,
        }
        version = store.save(
            trained.models,
            store_url(model_store, config),
            metadata,
            store.fingerprint(history),
            now,
        )
    info = ModelInfo(name, version, now, config.generation, recall, refitted_at=now)
    return trained.models, info


def _source(config: ScalerConfig) -> dict[str, Any]:
    """What decides the data a model learned from, recorded in its manifest.

    A stored model is reused only when all of it matches. Name and generation alone do not
    identify a scaler: one deleted and applied again (for another service, say) starts at
    generation 1 again, so the object's uid, the Prometheus it reads and its query count too.
    """
    return {
        "scaler": config.key,
        "uid": config.uid,
        "generation": config.generation,
        "prometheus_url": config.prometheus_url,
        "query": config.query,
        "step": f"{int(config.step.total_seconds())}s",
    }


def _load_stored(
    config: ScalerConfig, model_store: str | None, now: datetime
) -> tuple[dict[str, Any], ModelInfo] | None:
    """The stored model of this very object, spec generation and data (:func:`_source`),
    trained within a day, so a restarted or newly elected controller need not retrain at
    once."""
    from forecaster import store

    if not model_store:
        return None
    try:
        stored = store.load(store_url(model_store, config))
    except store.StoreError as exc:
        log.info("no usable stored model for %s: %s", config.key, exc)
        return None
    manifest = stored.manifest
    if "uid" not in manifest:
        log.info(
            "stored model %s of %s records no scaler uid (saved by an older version), so it"
            " may be another object's: training again",
            stored.version,
            config.key,
        )
        return None
    differ = [k for k, v in _source(config).items() if manifest.get(k) != v]
    if differ:
        log.info(
            "stored model %s of %s was trained for another object or spec (%s differ):"
            " training again",
            stored.version,
            config.key,
            ", ".join(differ),
        )
        return None
    trained_at = datetime.fromisoformat(manifest["created_at"])
    if trained_at > now:
        # Written by a replica whose clock runs ahead: kept as written, the model would
        # count as fresh until the clocks agree, status show a future trainedAt and the
        # model-age metric go negative. As of now, it is at most as old as it really is.
        if trained_at - now > CLOCK_SKEW:
            log.warning(
                "stored model %s of %s was made at %s, %s after now: the clock of the"
                " controller that trained it runs ahead; taken as made now",
                stored.version,
                config.key,
                trained_at.isoformat(),
                trained_at - now,
            )
        trained_at = now
    if now - trained_at > STORED_MODEL_MAX_AGE:
        return None
    info = ModelInfo(
        manifest["model_name"],
        stored.version,
        trained_at,
        config.generation,
        manifest.get("backtest_peak_recall"),
        refitted_at=trained_at,
    )
    return stored.models, info


def _predict(
    fitted: Any, until: datetime, step: timedelta, quantile: float, events: pd.DataFrame | None
) -> pd.DataFrame:
    """The model's median and ``quantile`` from the end of its data to ``until``."""
    last = max(fitted.last_ds_.values())
    horizon = int((naive_utc(until) - last) / pd.Timedelta(step))
    return fitted.predict(max(1, horizon), quantiles=(0.5, quantile), events=events)


# -- executors -------------------------------------------------------------------------------


class InlineExecutor(Executor):
    """Runs each job inside ``submit`` and hands back a finished future.

    The reconciler's code path is the same as with a pool; only the timing differs.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # the caller reads it from the future, as from a pool
            future.set_exception(exc)
        return future


class JsonFormatter(logging.Formatter):
    """One JSON object per line, as log collectors in a cluster expect."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines to stderr at ``level``, chatty libraries at WARNING; for the controller
    and its model workers alike.

    Here rather than beside the controller's loop (:mod:`controller.runner`): a worker
    process calls it too, and importing the loop would load the Kubernetes client and the
    scheduler into every worker, about 40 MB each.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "urllib3", "cmdstanpy", "prophet"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _start_worker(log_level: str) -> None:
    """Set a model worker process up: the controller's logging, one thread.

    A spawned worker starts with no logging set up: cmdstanpy then installs a handler of
    its own and writes a plain-text INFO line per chain into the controller's JSON logs,
    and the jobs' own warnings lose their format.
    """
    configure_logging(log_level)
    _one_thread_per_worker()


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _one_thread_per_worker() -> None:
    """Limit a model worker's numeric libraries to one thread, as joblib's workers do.

    Parallelism comes from the number of workers. Left alone, OpenMP (gradient boosting)
    and BLAS start a thread per core of the node, not of the pod's CPU share: next to busy
    neighbours those threads spin-wait on each other and a fit runs 10-20x slower. The
    variables cover the libraries loaded later (scikit-learn's OpenMP is loaded by the
    first fit); threadpoolctl covers those already loaded (numpy's BLAS).
    """
    from threadpoolctl import threadpool_limits

    for name in _THREAD_VARIABLES:
        os.environ[name] = "1"
    threadpool_limits(limits=1)


class WorkerPool(Executor):
    """Worker processes for model jobs; a pool broken by a dead worker is replaced.

    Processes, not threads: pandas and the models hold the GIL, and a job in a thread would
    slow the reconcile loop it was moved out of. Each worker computes on one thread (see
    :func:`_one_thread_per_worker`) and logs as the controller does (:func:`_start_worker`).
    A worker killed mid-job (out of memory, say) fails the jobs it was running with
    ``BrokenProcessPool``; the reconciler sees a failed job and submits it again, to the
    new pool.

    Args:
        workers: processes (each imports the models once: about 200 MB).
        max_tasks_per_child: a worker is replaced after this many jobs, so memory that
            fragments over thousands of fits is handed back.
    """

    def __init__(self, workers: int = 1, max_tasks_per_child: int = 200) -> None:
        if workers < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.workers = workers
        self.max_tasks_per_child = max_tasks_per_child
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: the controller runs threads (scheduler, watch, HTTP); forking a threaded
        # process can copy a held lock into the child.
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            # The level this process logs at now: the controller's --log-level.
            initargs=(logging.getLevelName(logging.getLogger().getEffectiveLevel()),),
            max_tasks_per_child=self.max_tasks_per_child,
        )

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        try:
            return self._pool.submit(fn, *args, **kwargs)
        except BrokenProcessPool:
            log.warning("a model worker died; starting a new pool")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the workers; ``wait=False`` also drops the jobs not yet started, as Dask's
        executor does, so a stopping controller does not finish a thousand queued fits, and
        ends the running ones: the interpreter's exit joins the pool, so a training of
        minutes held a stopping controller past its pod's grace period (or a Ctrl-C) until
        it was killed. The next leader runs them again."""
        processes = list((self._pool._processes or {}).values())  # no public way before 3.14
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures or not wait)
        if not wait:
            for process in processes:
                process.terminate()
