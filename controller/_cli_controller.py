"""``surgecast controller run``: the in-cluster controller (or from outside, with a kubeconfig)."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
import typer

from controller.decisions import DecisionLog, shown_url
from controller.feed import FeedServer
from controller.http import ControllerHTTPServer
from controller.kube import KubeClient, api_client
from controller.leader import LeaderElector
from controller.metrics import ControllerMetrics
from controller.modelling import WorkerPool, configure_logging
from controller.prometheus import client_factory
from controller.reconciler import Reconciler
from controller.review import review_route
from controller.runner import Controller, wait_for_termination
from controller.spec import parse_duration
from forecaster._cli_common import fail
from forecaster.engine import DaskEngine, Engine, open_engine

log = logging.getLogger("surgecast.controller")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

JOBS_PER_WORKER = 2
"""Model jobs in flight per worker: one running, one waiting so no worker idles."""

app = typer.Typer(help="Run the in-cluster controller.", no_args_is_help=True)


@app.command("run")
def run(
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Run from outside the cluster (default: in-cluster)."
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Watch one namespace (default: all namespaces)."
    ),
    lease_namespace: str = typer.Option(
        os.environ.get("POD_NAMESPACE", "surgecast-system"),
        "--lease-namespace",
        help="Namespace of the leader-election Lease.",
    ),
    lease_name: str = typer.Option("surgecast-controller", "--lease-name"),
    identity: str | None = typer.Option(
        None,
        "--identity",
        help="This instance's name in the Lease (default: $POD_NAME, else the host name"
        " and a random suffix).",
        show_default=False,
    ),
    port: int = typer.Option(
        8080,
        "--port",
        min=0,
        max=65535,
        help="Port of /metrics, /healthz, /readyz and the review page /ui.",
    ),
    model_dir: str = typer.Option(
        "/var/lib/surgecast/models", "--model-dir", help="Model store: a path or fsspec URL."
    ),
    decision_log: str = typer.Option(
        os.environ.get("SURGECAST_DECISION_DB", "sqlite:////var/lib/surgecast/decisions.db"),
        "--decision-log",
        help="Decision log: sqlite:///PATH or postgresql+psycopg://...",
    ),
    decision_retention: str = typer.Option(
        "30d",
        "--decision-retention",
        help="How long decisions stay in the log (a duration such as 30d; 0 keeps them all).",
    ),
    prometheus_token_file: Path | None = typer.Option(
        None,
        "--prometheus-token-file",
        envvar="SURGECAST_PROMETHEUS_TOKEN_FILE",
        help="Bearer token for Prometheus, read from this file (a mounted Secret) per request.",
    ),
    prometheus_token_url: str | None = typer.Option(
        None,
        "--prometheus-token-url",
        envvar="SURGECAST_PROMETHEUS_TOKEN_URL",
        help="The Prometheus the token is for; scalers naming any other URL get no token.",
    ),
    feed_port: int | None = typer.Option(
        None,
        "--feed-port",
        min=0,
        max=65535,
        help="Serve the public busy-hours feed of scalers with spec.feed.public on this port"
        " (/feeds/NS/NAME and /feeds/NS/NAME.json); off by default.",
    ),
    engine_name: str = typer.Option(
        "local",
        "--engine",
        help="Where model jobs (training, refits) run: local (--model-workers processes"
        " beside the controller) or dask (a Dask cluster).",
    ),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="With --engine dask: a running scheduler (tcp://host:8786); its workers need"
        " this package and the model store. Default: a local cluster, one worker per core.",
    ),
    refresh: str = typer.Option(
        "30m",
        "--refresh",
        help="How often each scaler's chosen model is refitted on its newest history.",
    ),
    model_workers: int = typer.Option(
        1, "--model-workers", min=1, help="With --engine local: model worker processes."
    ),
    log_level: str = typer.Option("INFO", "--log-level", help=f"One of {', '.join(LOG_LEVELS)}."),
) -> None:
    """Watch PredictiveScalers and reconcile each on its sync period; only the leader acts."""
    if log_level.upper() not in LOG_LEVELS:  # logging's own refusal is a page of traceback
        fail(f"--log-level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    configure_logging(log_level)
    try:
        retention = _retention(decision_retention)
    except ValueError as exc:
        fail(f"--decision-retention: {exc}")
    try:
        prometheus = client_factory(prometheus_token_file, prometheus_token_url)
    except ValueError:
        fail("--prometheus-token-file and --prometheus-token-url go together")
    try:
        refresh_every = parse_duration(refresh)
    except ValueError as exc:
        fail(f"--refresh: {exc}")
    if not refresh_every:  # every reconcile would refit every scaler's model
        fail(f"--refresh: {refresh!r} is no time at all; give a positive duration such as 30m")
    try:
        engine = open_engine(engine_name, scheduler)
    except ValueError as exc:
        fail(str(exc))
    try:
        client = api_client(kubeconfig=str(kubeconfig) if kubeconfig else None)
    except Exception as exc:  # the kubernetes client raises several unrelated types here
        fail(f"cannot configure the Kubernetes client: {exc}")
    kube = KubeClient(client)
    metrics = ControllerMetrics()
    try:
        decisions = _open_decision_log(decision_log)
    except Exception as exc:  # SQLAlchemy raises many kinds; all mean "cannot open"
        fail(f"cannot open the decision log {shown_url(decision_log)}: {exc}")
    with engine:
        executor = _model_executor(engine, model_workers)
        reconciler = Reconciler(
            kube,
            metrics,
            decisions=decisions,
            model_store=model_dir,
            prometheus=prometheus,
            retention=retention,
            refresh=refresh_every,
            executor=executor,
            max_jobs=JOBS_PER_WORKER * _workers(engine, model_workers),
        )
        elector = LeaderElector(kube, lease_namespace, lease_name, identity or _identity())
        controller = Controller(kube, reconciler, elector, namespace=namespace)
        try:
            controller.http = ControllerHTTPServer(
                metrics.registry, controller.healthy, controller.ready, port=port
            )
        except OSError as exc:  # in use, or a privileged port: one line, not a traceback
            fail(f"--port {port}: cannot listen: {exc.strerror or exc}")
        controller.http.routes["/ui"] = review_route(decisions, clock=controller.clock)
        # Its own port, so it can be exposed publicly without /metrics or /ui; every
        # replica serves it from the scalers' status, standbys included.
        try:
            feed = (
                FeedServer(controller.objects.get, port=feed_port, clock=controller.clock)
                if feed_port is not None
                else None
            )
        except OSError as exc:
            fail(f"--feed-port {feed_port}: cannot listen: {exc.strerror or exc}")
        controller.start()
        if feed is not None:
            feed.start()
        wait_for_termination()
        controller.stop(release=True)
        if feed is not None:
            feed.stop()
        executor.shutdown(wait=False)  # jobs still queued are dropped; the next leader reruns them


def _open_decision_log(url: str) -> DecisionLog:
    """The decision log at ``url``; one that is down is opened later, not refused.

    A database that cannot be reached (PostgreSQL down, a SQLite file on a volume not yet
    there or locked) is the outage the reconciler rides out mid-run: it scales all the
    same, says ``DecisionLogged=False/DecisionLogUnavailable`` and writes the decisions it
    held once the log is back. Refused at start, the same outage would crash-loop every
    replica and stop all scaling. A log that is up but wrong (another schema version, no
    rights to create its tables) or a URL that is no database still fails at once.
    """
    try:
        return DecisionLog(url)
    except sa.exc.OperationalError as exc:
        log.warning(
            "decision log %s unavailable at start (%s): scaling goes on without it, and the"
            " decisions made meanwhile are written when it is back",
            shown_url(url),
            exc.orig if exc.orig is not None else exc,
        )
        return DecisionLog(url, connect=False)


def _identity() -> str:
    """This instance's name in the Lease: the pod's, or else the host's with a random suffix.

    Two instances with one name both take the Lease for their own and both act: the host
    name alone is shared by every instance run outside the cluster on one machine (or in
    containers on the host's network). A pod's name is unique while it lives, and keeping
    it across a container restart lets the restarted process renew at once, as client-go's
    callers do with the pod name.
    """
    pod = os.environ.get("POD_NAME")
    return pod if pod else f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


MAX_RETENTION = timedelta(days=36_500)
"""A century: a few zeros more (1000000d) put the hourly prune's cut-off before year 1,
and the subtraction raised OverflowError in every reconcile, before its decision, so no
scaler scaled; 0 is the way to keep every decision."""


def _retention(text: str) -> timedelta | None:
    """``--decision-retention``: None (keep every decision) for any zero, ``0s`` and ``0d``
    as well as ``0``; kept as a zero duration, the hourly prune would delete the whole log."""
    if text.strip() == "0":
        return None
    retention = parse_duration(text)
    if retention > MAX_RETENTION:
        raise ValueError(
            f"{text} is longer than {MAX_RETENTION.days}d; give 0 to keep every decision"
        )
    return retention or None


def _workers(engine: Engine, local: int) -> int:
    return engine.workers if isinstance(engine, DaskEngine) else local


def _model_executor(engine: Engine, workers: int) -> Executor:
    """Where model jobs run: the Dask cluster of a started ``engine``, or local processes."""
    if isinstance(engine, DaskEngine):
        return engine.client.get_executor(pure=False)
    return WorkerPool(workers)
