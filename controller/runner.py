"""The controller process: watch PredictiveScalers, elect a leader, reconcile on a schedule.

The loops are jobs of one apscheduler ``BackgroundScheduler``:

- the leader election ticks every ``retry_period`` (:class:`controller.leader.LeaderElector`);
  only the leader reconciles, standbys keep their watch and caches warm;
- one *cycle* job per distinct sync period (the spec's ``behavior.syncPeriod``, default
  30 s) reconciles every scaler with that period: it reads all their loads and histories
  from Prometheus in a few batched queries (:meth:`Reconciler.prefetch`), then reconciles
  them one after the other. Model work runs elsewhere (a worker pool or Dask), so a cycle
  costs milliseconds per scaler; a cycle that outlasts its period is counted and logged.
  A spec change (a new generation, or every scaler at start-up) puts the scaler in the
  ``urgent`` set, which one job drains every second, batched like a cycle: never a job
  (a thread) per scaler, which for a thousand scalers starved the leader election;
- the retrain schedule (``retrain.schedule``) needs no job: each reconcile compares the
  time with the schedule's next firing (:class:`controller.reconciler.Reconciler`).

Reconciles never overlap: the reconciler's caches are shared between scalers.

The watch runs in its own thread: list, then watch from the list's resourceVersion; when
the server says the version is too old (410 Gone) it lists again, and on any other error
it backs off and lists again. ``/readyz`` turns ready after the first list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from controller.http import ControllerHTTPServer
from controller.kube import KubeClient, KubeError
from controller.leader import LeaderElector
from controller.reconciler import Reconciler, shared_targets
from controller.spec import MIN_SYNC, SpecError, parse_duration, parse_scaler

log = logging.getLogger("surgecast.controller")

DEFAULT_SYNC = timedelta(seconds=30)
SCHEDULER_THREADS = 4
ELECTION = "election"
"""The scheduler executor that runs the leader election alone."""
URGENT_EVERY = 1.0
"""Seconds between looks at the scalers whose spec changed."""
WATCH_BACKOFF = (1.0, 30.0)
"""First and longest wait before listing again after a failed watch, in seconds."""
WATCH_JOIN = 1.0
"""Seconds :meth:`Controller.stop` waits for the watch thread."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Controller:
    """Everything one controller process runs; :meth:`start` it, :meth:`stop` it."""

    kube: KubeClient
    reconciler: Reconciler
    elector: LeaderElector
    namespace: str | None = None
    clock: Callable[[], datetime] = utcnow
    http: ControllerHTTPServer | None = None
    watch_timeout: int = 60
    scheduler: BackgroundScheduler = field(
        default_factory=lambda: BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1},
            # Jobs: the urgent set and one cycle per sync period share a few threads (fewer
            # threads, fewer malloc arenas holding freed memory). The election has a thread
            # of its own: batches run one at a time, and while a long one runs (a Prometheus
            # that hangs costs 5 tries of 10 s) the urgent job and the other periods' cycles
            # each hold a shared thread waiting for it; with three sync periods that was
            # every thread, the Lease went unrenewed, and the leader stopped mid-batch.
            executors={
                "default": ThreadPoolExecutor(SCHEDULER_THREADS),
                ELECTION: ThreadPoolExecutor(1),
            },
        )
    )
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    periods: dict[str, float] = field(default_factory=dict)
    """Each scaler's sync period in seconds: the cycle that reconciles it."""

    urgent: set[str] = field(default_factory=set)
    """Scalers whose spec changed since their last reconcile: reconciled within a second."""

    synced: threading.Event = field(default_factory=threading.Event)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _watch_thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards ``objects`` and ``periods`` (the watch thread writes, jobs read)."""

    _reconciling: threading.Lock = field(default_factory=threading.Lock)
    _leading: bool = False
    """Whether the last election tick found this instance leading."""

    _series_stale: bool = False
    """Lease lost, and the series of the time it led not yet dropped (:meth:`_elect`)."""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Controller:
        self.reconciler.job_done = self._job_done
        self.scheduler.start()
        self.scheduler.add_job(
            self._elect,
            "interval",
            seconds=self.elector.settings.retry_period.total_seconds(),
            id="leader-election",
            executor=ELECTION,
            next_run_time=self.clock(),
        )
        self.scheduler.add_job(self.reconcile_urgent, "interval", seconds=URGENT_EVERY, id="urgent")
        self._watch_thread = threading.Thread(target=self._watch, name="watch", daemon=True)
        self._watch_thread.start()
        if self.http is not None:
            self.http.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop every loop; ``release`` hands the Lease over at once (a clean shutdown)."""
        self._stopping.set()
        self.scheduler.shutdown(wait=True)
        if release:
            self.elector.release(self.clock())
        if self._watch_thread is not None:
            # Not until the watch request ends (up to watch_timeout, 60 s, when nothing
            # changes): the pod's grace period is 30 s, and a kill then would leave the HTTP
            # server, feed and model workers unstopped. The thread only reads, into a
            # stopped scheduler, and is a daemon: it ends with the process.
            self._watch_thread.join(timeout=WATCH_JOIN)
        if self.http is not None:
            self.http.stop()

    def healthy(self) -> tuple[bool, str]:
        alive = self._watch_thread is not None and self._watch_thread.is_alive()
        return (alive and self.scheduler.running), "watch and scheduler running"

    def ready(self) -> tuple[bool, str]:
        if not self.synced.is_set():
            return False, "waiting for the first list of PredictiveScalers"
        role = "leader" if self.elector.is_leader() else "standby"
        message = f"synced, {role}, {len(self.objects)} scaler(s)"
        # Still ready: a standby serves its watch and the feed, and failing readiness on
        # every replica at once would only take the Service's endpoints away.
        if self.elector.error is not None:
            message += f"; leader election failing: {self.elector.error}"
        return True, message

    # -- jobs ----------------------------------------------------------------------------------

    def _elect(self) -> None:
        """Renew or acquire the Lease. On losing it, drop the per-scaler and per-cycle
        series: a standby exporting its last values would keep alerts firing (a projected
        shortfall) and count every scaler twice in a ``sum()`` across replicas."""
        leading = self.elector.tick(self.clock())
        metrics = self.reconciler.metrics
        if leading != self._leading:  # when this replica acted, read from its logs alone
            elector = self.elector
            lease = f"Lease {elector.namespace}/{elector.name}"
            if leading:
                log.info("leading: this instance (%s) holds %s", elector.identity, lease)
            else:
                why = elector.error or "another instance holds it, or it was released"
                log.warning("no longer leading (%s): %s", lease, why)
        # Under the reconcile lock, or a reconcile still running would export its series
        # again on the standby. Not waiting for it, though: a batch can outlast the lease
        # many times over, and the election must go on ticking. A batch that began leading
        # drops the series itself when it ends without the lease (:meth:`_reconcile_many`);
        # with the lock held by anything else, the next tick tries again.
        self._series_stale = not leading and (self._leading or self._series_stale)
        if self._series_stale and self._reconciling.acquire(blocking=False):
            try:
                self._forget_series()
            finally:
                self._reconciling.release()
        self._leading = leading
        metrics.leader.set(1 if leading else 0)

    def _forget_series(self) -> None:
        """Drop every scaler's series and every cycle's; the caller holds ``_reconciling``."""
        self._series_stale = False
        metrics = self.reconciler.metrics
        with self._lock:
            keys = list(self.objects)
        for key in keys:
            namespace, _, name = key.partition("/")
            metrics.forget(namespace, name)
        for metric in (metrics.cycle_seconds, metrics.cycle_scalers, metrics.cycle_overruns):
            metric.clear()

    def reconcile_urgent(self) -> None:
        """Reconcile the scalers whose spec changed or whose model job finished, and those
        waiting for a free job slot, if this instance leads; never raises.

        A standby keeps them: on taking over it reconciles them at once, rather than a whole
        sync period after the failover.
        """
        if not self.elector.is_leader():
            return
        with self._lock:
            keys, self.urgent = self.urgent, set()
        if not keys and not self.reconciler.waiting:
            # Nothing to do, most seconds: not a wait for the batch under way, which held a
            # scheduler thread and logged a WARNING each second ("maximum number of running
            # instances reached") through every batch longer than a second. A scaler that
            # starts waiting meanwhile is looked at a second later.
            return
        self._reconcile_many(keys, "urgent", wake_waiting=True, requeue=True)

    def _requeue(self, keys: set[str]) -> None:
        with self._lock:
            self.urgent |= keys

    def _job_done(self, key: str) -> None:
        with self._lock:
            self.urgent.add(key)

    def cycle(self, period: float) -> None:
        """Reconcile every scaler whose sync period is ``period`` seconds; never raises."""
        with self._lock:
            keys = {key for key, p in self.periods.items() if p == period}
        self._reconcile_many(keys, _period_label(period), period=period)

    def _reconcile_many(
        self,
        keys: set[str],
        label: str,
        wake_waiting: bool = False,
        period: float | None = None,
        requeue: bool = False,
    ) -> tuple[float, int]:
        """Read the scalers' data in batches, then reconcile each; (seconds, scalers reconciled).
        A batch that takes longer than ``period`` seconds is counted and logged as an overrun.
        With ``requeue`` (the urgent set's batch) the scalers it leaves for lack of the lease
        go back in the urgent set, to be reconciled at once when this instance leads again
        rather than a whole sync period later.

        Leadership is checked before every reconcile, not once per batch: a batch can outlast
        the renew deadline, and once it has passed another instance may be scaling too. A
        scaler deleted since the batch began is skipped: its user may be scaling the target
        by hand now (the watch drops it from ``objects`` at once; ``forget`` waits for us).
        """
        if not self.elector.is_leader():
            self._requeue(keys if requeue else set())
            return 0.0, 0
        metrics = self.reconciler.metrics
        started = time.monotonic()
        with self._reconciling:
            # Read once the batch may run: a batch that waited for a long one would stamp
            # its decisions in the past, and drop the recommendations made since as if the
            # clock had stepped back.
            now = self.clock()
            if wake_waiting:
                keys = keys | set(self.reconciler.take_waiting())
            if not keys:  # the urgent set, empty most seconds
                return 0.0, 0
            with self._lock:
                due = [(key, self.objects[key]) for key in sorted(keys) if key in self.objects]
                self.reconciler.shared_targets = shared_targets(self.objects.values())
            if not due:
                # Nothing to do, nor to report: every scaler of a cycle gone meanwhile means
                # its job and series were dropped (:meth:`_drop_idle_cycle`).
                return 0.0, 0
            try:
                self.reconciler.prefetch([obj for _, obj in due], now)
            except Exception:  # each reconcile then asks Prometheus on its own
                log.exception("batched read of %d scalers failed", len(due))
            done = 0
            for index, (key, obj) in enumerate(due):
                if not self.elector.is_leader():
                    log.warning(
                        "lost the lease: %d of %d scalers not reconciled", len(due) - done, len(due)
                    )
                    self._requeue({key for key, _ in due[index:]} if requeue else set())
                    break
                if self._stopping.is_set():
                    # Shutting down (SIGTERM): finishing a long batch could outlast the pod's
                    # grace period, and a kill then leaves the lease for the standby to wait
                    # out. The next leader reconciles the rest at once.
                    log.info("stopping: %d of %d scalers not reconciled", len(due) - done, len(due))
                    break
                with self._lock:
                    deleted = key not in self.objects
                if not deleted:
                    self._reconcile_one(key, obj, now)
                    done += 1
            took = time.monotonic() - started
            metrics.cycle_seconds.labels(label).observe(took)
            metrics.cycle_scalers.labels(label).set(done)
            if period is not None and took > period:
                metrics.cycle_overruns.labels(label).inc()
                log.warning(
                    "reconciling %d scalers took %.1fs, longer than their %gs period",
                    done,
                    took,
                    period,
                )
            if not self.elector.is_leader():
                # The lease was lost during the batch: the election could not drop the
                # series while it ran (:meth:`_elect`).
                self._forget_series()
        metrics.model_jobs.set(self.reconciler.jobs)
        metrics.history_bytes.set(self.reconciler.cache.nbytes)
        return took, done

    def _reconcile_one(self, key: str, obj: dict[str, Any], now: datetime) -> None:
        try:
            self.reconciler.reconcile(obj, now)
        except Exception:  # a bug must not stop the other scalers or the process
            log.exception("reconcile of %s failed", key)
            namespace, _, name = key.partition("/")
            self.reconciler.metrics.errors.labels(namespace, name, "Unexpected").inc()

    # -- watching ------------------------------------------------------------------------------

    def _watch(self) -> None:
        backoff = WATCH_BACKOFF[0]
        while not self._stopping.is_set():
            try:
                items, version = self.kube.list_scalers(self.namespace)
                self._replace_all(items)
                self.synced.set()
                backoff = WATCH_BACKOFF[0]
                while not self._stopping.is_set():
                    for kind, obj in self.kube.watch_scalers(
                        self.namespace, version, timeout_seconds=self.watch_timeout
                    ):
                        version = obj.get("metadata", {}).get("resourceVersion", version)
                        self._handle(kind, obj)
                        if self._stopping.is_set():
                            return
            except KubeError as exc:
                if exc.status == 410:
                    log.info("watch expired (410 Gone): listing again")
                    continue
                log.warning(
                    "watch of PredictiveScalers failed: %s; retrying in %.0fs", exc, backoff
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, WATCH_BACKOFF[1])

    def _replace_all(self, items: list[dict[str, Any]]) -> None:
        listed = {_key(obj) for obj in items}
        with self._lock:
            gone = [key for key in self.objects if key not in listed]
        for key in gone:
            self._handle("DELETED", self.objects[key])
        for obj in items:
            self._handle("MODIFIED", obj)

    def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        """:meth:`_on_event`, logging what it raises: one object the code cannot handle must
        not end the watch of all the others (the thread would die, /healthz fail, and the
        restarted pod die again on the same object)."""
        try:
            self._on_event(kind, obj)
        except Exception:
            log.exception("handling %s of %s failed", kind, _key(obj))

    def _on_event(self, kind: str, obj: dict[str, Any]) -> None:
        key = _key(obj)
        if kind == "DELETED":
            with self._lock:
                self.objects.pop(key, None)
                period = self.periods.pop(key, None)
                self.urgent.discard(key)
            self._drop_idle_cycle(period)
            with self._reconciling:
                self.reconciler.forget(key)
            log.info("%s deleted", key)
            return
        with self._lock:
            previous = self.objects.get(key)
            # Deleted and created again while the watch was away (a relist shows only the new
            # one): another object under the same name, whose generation starts over.
            replaced = previous is not None and _uid(previous) != _uid(obj)
            # The controller's own status writes also arrive here; they keep the generation.
            changed = previous is None or replaced or _generation(previous) != _generation(obj)
            if previous is not None and not changed:
                obj = {**obj, "status": obj.get("status") or previous.get("status")}
            self.objects[key] = obj
        if replaced:
            with self._reconciling:
                self.reconciler.forget(key)  # its model and history were the old object's
        if changed:
            self._schedule(key, obj)

    def _drop_idle_cycle(self, period: float | None) -> None:
        """Remove the cycle job of ``period`` once no scaler has that sync period, and its
        series: exported at their last values, they would show a cycle that no longer runs."""
        with self._lock:
            used = period in self.periods.values()
        if period is None or used or not self.scheduler.get_job(_cycle(period)):
            return
        self.scheduler.remove_job(_cycle(period))
        metrics = self.reconciler.metrics
        with self._reconciling:  # after a batch of that period still running
            for metric in (metrics.cycle_seconds, metrics.cycle_scalers, metrics.cycle_overruns):
                try:
                    metric.remove(_period_label(period))
                except KeyError:  # never exported: the cycle had not run yet
                    pass

    def _schedule(self, key: str, obj: dict[str, Any]) -> None:
        """Put the scaler in its period's cycle and reconcile it now: the spec changed."""
        sync = _sync_period(key, obj)
        period = sync.total_seconds()
        with self._lock:
            previous = self.periods.get(key)
            self.periods[key] = period
        self._drop_idle_cycle(previous)
        if self.scheduler.get_job(_cycle(period)) is None:
            self.scheduler.add_job(
                self.cycle,
                "interval",
                args=[period],
                seconds=period,
                id=_cycle(period),
                replace_existing=True,
                next_run_time=utcnow() + sync,
            )
        with self._lock:
            self.urgent.add(key)


def _sync_period(key: str, obj: dict[str, Any]) -> timedelta:
    """The scaler's sync period, or the default when its spec cannot be read: it is still
    scheduled, so that its reconcile reports the spec as invalid."""
    try:
        return parse_scaler(obj).sync_period
    except SpecError:
        pass
    except Exception:  # a bug of the spec reader, not the user's mistake
        log.exception("reading the spec of %s failed", key)
    try:
        period = parse_duration(obj["spec"]["behavior"]["syncPeriod"])
    except Exception:  # absent, or as unreadable as the rest
        return DEFAULT_SYNC
    return period if period >= MIN_SYNC else DEFAULT_SYNC  # refused too: not 10 cycles a second


def _cycle(period: float) -> str:
    return f"cycle:{period:g}s"


def _period_label(period: float) -> str:
    return f"{period:g}s"


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _uid(obj: dict[str, Any]) -> str | None:
    return obj.get("metadata", {}).get("uid")


def _generation(obj: dict[str, Any]) -> int:
    return int(obj.get("metadata", {}).get("generation") or 0)


def wait_for_termination() -> None:
    """Block until SIGTERM or SIGINT, so the caller can then stop cleanly.

    Kubernetes sends SIGTERM before killing a pod; stopping then releases the Lease at once
    instead of making the standby wait for it to expire.
    """
    import signal

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        time.sleep(0.5)
