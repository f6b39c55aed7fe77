"""Where fleet-sized work runs: in this process, or on a Dask cluster.

Ingesting hundreds of log files and backtesting a thousand services are many independent
tasks: one per file, one per chunk of series, one per global model. The code that cuts the
work into tasks and merges their results lives with the work (:mod:`forecaster.ingest`,
:mod:`forecaster.training`) and is the same for every engine; an engine only runs a
function over items and hands the results back in the order of the items, so a result
never depends on which engine computed it.

- :class:`LocalEngine` runs the tasks one after the other in this process: today's
  behaviour, with no start-up cost, and tasks may call back into the caller (progress bars).
- :class:`DaskEngine` submits them to a ``distributed`` cluster: an existing one (a
  scheduler address), or a ``LocalCluster`` of one single-threaded worker process per core
  (pandas and the models hold the GIL, so processes, not threads, use the cores).

Both are context managers: ``with open_engine("dask") as engine: engine.map(fn, items)``.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

if TYPE_CHECKING:
    from distributed import Client

T = TypeVar("T")
R = TypeVar("R")

ENGINES = ("local", "dask")


class Engine(ABC):
    """Runs ``fn`` over items and returns the results in the order of the items."""

    in_process: ClassVar[bool]
    """True when tasks run in the caller's process, so they may call back into it."""

    @property
    @abstractmethod
    def workers(self) -> int:
        """Tasks that can run at once; callers split work into a few tasks per worker."""

    @abstractmethod
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(item) for item in items]``, computed wherever the engine runs tasks.

        The first exception a task raises is raised here, after the engine's retries; a
        task whose worker process died at every attempt raises ``ChildProcessError``.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the engine's resources; the engine cannot be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalEngine(Engine):
    """Run every task in this process, one after the other."""

    in_process = True

    @property
    def workers(self) -> int:
        return 1

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        return [fn(item) for item in items]

    def close(self) -> None:
        """Nothing to release: tasks ran in this process."""


class DaskEngine(Engine):
    """Run tasks on a Dask ``distributed`` cluster; started on ``__enter__``.

    Args:
        scheduler: address of a running scheduler (``tcp://host:8786``); its workers must
            see the same files and have this package installed. ``None`` starts a
            ``LocalCluster`` here and stops it on close.
        n_workers: worker processes of that LocalCluster (default: one per core).
        retries: times a task that *raised* is run again (a file on a network share that
            hiccuped). A task whose worker *died* (killed, out of memory) is re-run on
            another worker by the scheduler itself, up to Dask's
            ``distributed.scheduler.allowed-failures`` (3) times. Either way the results
            are gathered per item, so no item is lost or counted twice.
    """

    in_process = False

    def __init__(
        self,
        scheduler: str | None = None,
        n_workers: int | None = None,
        retries: int = 1,
    ) -> None:
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.retries = retries
        self._client: Client | None = None
        self._cluster: Any = None

    def __enter__(self) -> Self:
        # distributed takes a second to import: only commands that ask for it pay.
        import dask
        from distributed import LocalCluster

        if self._client is not None:
            raise RuntimeError("DaskEngine is already started")  # a second cluster, orphaned
        if self.scheduler is not None:
            try:
                self._client = _connect(self.scheduler)
            except ValueError as exc:  # a bad port said only "invalid literal for int()"
                raise ValueError(f"--scheduler {self.scheduler!r}: {exc}") from exc
            return self
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, to hand freed memory back to
        # the system sooner. A fixed threshold turns glibc's adaptive one off, so every large
        # temporary array of pandas and gradient boosting costs fresh pages: fits ran 40 %
        # slower than in this process. Our tasks are short, so keep glibc's default and only
        # hold the numerical libraries to the worker's one thread, as Dask does.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            self._cluster = LocalCluster(
                n_workers=self.n_workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                # A task that raised (an unrecognised log format) is reported by the command
                # in one line; each worker also logged it as "Compute Failed" with its
                # traceback, some twenty lines on stderr per attempt before that line.
                silence_logs=logging.CRITICAL,
            )
        try:
            self._client = _connect(self._cluster)
        except BaseException:
            self.close()  # no worker processes left behind
            raise
        return self

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("DaskEngine is not started; use it in a with block")
        return self._client

    @property
    def workers(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        import dask
        from distributed import KilledWorker

        # The items travel inside the tasks rather than being scattered to workers first
        # (which Dask's warning about large graphs suggests): data scattered to a worker
        # dies with it, and then its task could not be re-run elsewhere.
        # pure=False: one task per item, without hashing every frame to name the task.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "4GB"}):
            futures = self.client.map(fn, list(items), pure=False, retries=self.retries)
        try:
            return list(self.client.gather(futures))
        except KilledWorker as exc:
            self.client.cancel(futures)
            # An OSError, which the commands report in one line: a traceback ending in
            # Dask's KilledWorker did not say that the likely cause is memory.
            raise ChildProcessError(
                f"{exc} A worker that dies at every attempt has most often run out of memory:"
                " give each worker more (a LocalCluster divides the machine's among its"
                " workers)."
            ) from exc
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        try:
            if client is not None:
                client.close()
        finally:  # a client that timed out closing (a busy scheduler) kept the workers running
            if cluster is not None:
                cluster.close()


def _connect(address: Any) -> Client:
    """A client of ``address`` (a scheduler address or a LocalCluster), closed again if it
    cannot start.

    ``distributed.Client`` cleans up after a refused connection only: any other failure (a
    malformed port, an unknown protocol, Ctrl-C) left a half-started client "connecting",
    whose ``__del__`` at interpreter exit waited 60 s for an event loop that had stopped.
    It is not made the process's default client either: that set Dask's global scheduler
    to ``dask.distributed`` and kept it so after a failed start, and any later Dask
    computation in the process then started a hidden LocalCluster of its own.
    """
    from distributed import Client

    class _ClosingClient(Client):
        def start(self, **kwargs: Any) -> None:
            try:
                super().start(**kwargs)
            except BaseException:
                self.close()
                raise

    return _ClosingClient(address, set_as_default=False)


def open_engine(name: str = "local", scheduler: str | None = None) -> Engine:
    """The engine a command line asks for: ``local``, or ``dask`` with an optional address.

    Raises ``ValueError`` for an unknown name, or a scheduler address without ``dask``.
    """
    if name not in ENGINES:
        raise ValueError(f"unknown --engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "local":
        if scheduler is not None:
            raise ValueError("--scheduler needs --engine dask")
        return LocalEngine()
    return DaskEngine(scheduler=scheduler)


__all__ = ["ENGINES", "DaskEngine", "Engine", "LocalEngine", "open_engine"]
