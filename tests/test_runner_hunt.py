"""What an operator of the controller process meets: an election that cannot reach its
Lease, a decision log down at start, metric series left behind, model workers' logs."""

from __future__ import annotations

import json
import logging
import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from controller.decisions import DecisionLog
from controller.kube import KubeClient, KubeError, RetryPolicy
from controller.leader import LeaderElector
from tests import pg_server
from tests.kubefake import FakeKubeServer, Fault, hpa
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import api, scaler  # noqa: F401 (fixture)
from tests.test_controller_runner import fleet, listed  # noqa: F401 (fixture)
from tests.test_decisions import run_sql

T0 = datetime(2026, 3, 5, 1, 0, 17, tzinfo=UTC)


@pytest.fixture
def server():
    with FakeKubeServer() as made:
        yield made


def kube_client(server: FakeKubeServer) -> KubeClient:
    return KubeClient(
        server.api_client(), RetryPolicy(attempts=1), sleep=lambda _: None, rng=random.Random(0)
    )


def test_an_election_that_cannot_read_its_lease_says_why_once(server, caplog) -> None:
    # A Role missing from the Lease's namespace: every replica stays standby for ever.
    server.state.faults.append(Fault("GET", "/leases/", 403, times=10_000))
    elector = LeaderElector(kube_client(server), "platform", "surgecast-controller", "pod-a")
    with caplog.at_level(logging.INFO, logger="surgecast.leader"):
        for _ in range(5):
            assert not elector.tick(T0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one line per kind of error, not one per tick"
    assert "403" in warnings[0].getMessage()
    assert "platform/surgecast-controller" in warnings[0].getMessage()
    assert elector.error is not None and elector.error.status == 403

    server.state.faults.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="surgecast.leader"):
        assert elector.tick(T0)
    assert elector.error is None
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # reachable again


def test_an_unreachable_api_is_logged_once_although_each_error_names_a_new_connection(
    caplog,
) -> None:
    from controller.kube import api_client

    kube = KubeClient(
        api_client(host="http://127.0.0.1:9"), RetryPolicy(attempts=1), sleep=lambda _: None
    )
    elector = LeaderElector(kube, "surgecast-system", "surgecast-controller", "pod-a")
    with caplog.at_level(logging.WARNING, logger="surgecast.leader"):
        for _ in range(3):
            assert not elector.tick(T0)
    assert len(caplog.records) == 1


def test_a_lost_race_for_the_lease_is_no_error(server, caplog) -> None:
    server.state.faults.append(Fault("POST", "/leases", 409))
    elector = LeaderElector(kube_client(server), "ns", "lease", "pod-a")
    with caplog.at_level(logging.WARNING, logger="surgecast.leader"):
        assert not elector.tick(T0)
    assert elector.error is None and not caplog.records


def test_readiness_says_why_the_election_fails_and_stays_ready(server, tmp_path) -> None:
    from controller.metrics import ControllerMetrics
    from controller.reconciler import Reconciler
    from controller.runner import Controller

    server.state.faults.append(Fault("GET", "/leases/", 403, times=10_000))
    kube = kube_client(server)
    elector = LeaderElector(kube, "platform", "surgecast-controller", "pod-a")
    made = Controller(kube, Reconciler(kube, ControllerMetrics()), elector)
    made.synced.set()
    made._elect()
    ready, message = made.ready()
    assert ready
    assert "standby" in message and "403" in message and "Lease platform/" in message


def test_a_refused_connection_is_reported_as_unreachable_not_as_a_timeout() -> None:
    from controller.kube import KubeError, api_client

    kube = KubeClient(
        api_client(host="http://127.0.0.1:9"), RetryPolicy(attempts=1), sleep=lambda _: None
    )
    with pytest.raises(KubeError) as raised:
        kube.get_lease("ns", "lease")
    assert raised.value.reason == "Unreachable"
    assert "Connection refused" in str(raised.value)
    assert "no answer" not in str(raised.value) and "object at 0x" not in str(raised.value)


# -- metric series of a replica that stops leading, and of a dropped cycle ---------------------


def lose_the_lease(one, clock, server: FakeKubeServer) -> None:
    """Another instance takes the Lease from ``one``, whose renew deadline has passed."""
    from tests.test_controller_runner import FAST
    from tests.test_leader import Monotonic

    other_clock = Monotonic()
    other = LeaderElector(kube_client(server), "gov", "lease", "b", FAST, monotonic=other_clock)
    assert not other.tick(T0)
    other_clock.seconds += 2
    clock.seconds += 2
    assert other.tick(T0)


def series(registry, name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name
    ]


def test_a_reconcile_running_when_the_lease_is_lost_leaves_no_series_behind(fleet) -> None:  # noqa: F811
    def lease_lost_meanwhile(key: str) -> None:
        if key == "gov/s1":
            lose_the_lease(one, clock, fleet)
            # The election job, in its own thread, while this reconcile holds the lock: it
            # must neither wait for the batch nor leave the batch's series behind.
            elect = threading.Thread(target=one._elect)
            elect.start()
            elect.join(timeout=5)
            assert not elect.is_alive(), "the election waited for the reconcile"

    one, clock = listed(fleet, lease_lost_meanwhile)
    one._elect()
    one._reconcile_many(set(one.objects), "10s")
    registry = one.reconciler.metrics.registry
    assert registry.get_sample_value("surgecast_leader") == 0
    assert series(registry, "surgecast_desired_replicas") == []
    assert series(registry, "surgecast_cycle_scalers") == []


def test_losing_the_lease_drops_the_cycle_series(fleet) -> None:  # noqa: F811
    one, clock = listed(fleet, lambda key: None)
    one._elect()
    one._reconcile_many(set(one.objects), "30s")
    registry = one.reconciler.metrics.registry
    assert registry.get_sample_value("surgecast_cycle_scalers", {"period": "30s"}) == 6
    lose_the_lease(one, clock, fleet)
    one._elect()
    for name in ("surgecast_cycle_scalers", "surgecast_cycle_duration_seconds_count"):
        assert series(registry, name) == [], name


def test_a_dropped_cycle_takes_its_series_along(fleet) -> None:  # noqa: F811
    one, clock = listed(fleet, lambda key: None)
    one.scheduler.start(paused=True)
    try:
        assert one.scheduler.get_job("cycle:60s") is not None
        one._elect()
        one.cycle(60.0)
        registry = one.reconciler.metrics.registry
        assert registry.get_sample_value("surgecast_cycle_scalers", {"period": "60s"}) == 6
        for obj in list(one.objects.values()):
            one._handle("DELETED", obj)
        assert one.scheduler.get_job("cycle:60s") is None
        for name in ("surgecast_cycle_scalers", "surgecast_cycle_duration_seconds_count"):
            assert series(registry, name) == [], name
    finally:
        one.scheduler.shutdown(wait=False)


def test_series_left_while_the_lock_was_busy_are_dropped_at_the_next_tick(fleet) -> None:  # noqa: F811
    one, clock = listed(fleet, lambda key: None)
    one._elect()
    one._reconcile_many(set(one.objects), "60s")
    lose_the_lease(one, clock, fleet)
    registry = one.reconciler.metrics.registry
    with one._reconciling:  # a deletion forgetting its scaler, say (the watch thread)
        one._elect()
    assert series(registry, "surgecast_desired_replicas") != []
    one._elect()  # the next tick
    assert series(registry, "surgecast_desired_replicas") == []
    assert series(registry, "surgecast_cycle_scalers") == []


# -- the model workers' logs ----------------------------------------------------------------


CMDSTANPY_AND_OURS = """
import json
import logging
from cmdstanpy.utils.logging import get_logger
get_logger().info("Chain [1] start processing")
get_logger().warning("a warning from cmdstanpy")
logging.getLogger("surgecast.modelling").info("a line of ours")
"""


def test_a_model_worker_logs_json_at_the_controllers_level_with_cmdstanpy_quiet(
    capfd,
) -> None:
    from controller.modelling import WorkerPool, configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        capfd.readouterr()
        with WorkerPool(1) as pool:
            pool.submit(exec, CMDSTANPY_AND_OURS).result(timeout=60)
        lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    entries = [json.loads(line) for line in lines]  # every line JSON, as the parent's
    assert [(e["logger"], e["level"], e["message"]) for e in entries] == [
        ("cmdstanpy", "warning", "a warning from cmdstanpy"),
        ("surgecast.modelling", "info", "a line of ours"),
    ]


# -- a decision log down when the controller starts -----------------------------------------

postgres = pg_server.postgres
"""The session's PostgreSQL server (see tests/pg_server.py)."""


@pytest.mark.slow
def test_a_decision_log_down_at_start_is_opened_when_it_is_back(
    api,  # noqa: F811
    prom,  # noqa: F811
    postgres,
    tmp_path,
) -> None:
    import psycopg

    from controller._cli_controller import _open_decision_log
    from tests.test_reconciler_decision_log import (
        KEY,
        PEAK,
        events,
        logged,
        reconcile,
        replicas,
        with_log,
    )

    # A database that does not exist yet: the server answers, and refuses the connection.
    name = f"later_{uuid.uuid4().hex[:12]}"
    decisions = _open_decision_log(postgres.url(name))  # used to raise: the pod crash-looped
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, decisions)
    for minute in (0, 1):
        reconcile(api, rec, minute)
        assert replicas(api) > 1  # scaled although nothing could be recorded
        condition = logged(api)
        assert (condition["status"], condition["reason"]) == ("False", "DecisionLogUnavailable")
    assert len(events(api, "DecisionLogUnavailable")) == 1

    dsn = f"host={postgres.host} port={postgres.port} user={postgres.user} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    reconcile(api, rec, 2)
    assert logged(api)["status"] == "True"
    records = decisions.list(KEY, since=PEAK - timedelta(hours=1))
    assert [r.at for r in records] == [PEAK + timedelta(minutes=m) for m in range(3)]
    assert all(r.applied for r in records)
    decisions.close()


def test_a_decision_log_that_is_up_but_wrong_still_fails_at_start(tmp_path) -> None:
    from controller._cli_controller import _open_decision_log

    path = tmp_path / "decisions.db"
    DecisionLog(f"sqlite:///{path}").close()
    run_sql(f"sqlite:///{path}", "UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        _open_decision_log(f"sqlite:///{path}")
    with pytest.raises(sa.exc.ArgumentError):
        _open_decision_log("decisions.db")  # a path, not a URL


def kubeconfig_for(server: FakeKubeServer, directory: Path) -> Path:
    """A kubeconfig file for ``surgecast controller run`` to reach the fake API server."""
    import yaml

    host = f"http://127.0.0.1:{server.server.server_address[1]}"
    path = directory / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": host}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_controller_run_with_its_decision_log_unreachable_starts_and_reconciles(tmp_path) -> None:
    """The process itself, as the Deployment runs it, against the fake API server, with a
    PostgreSQL on a port nothing listens on: it used to exit at once (and crash-loop)."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.prom_server import free_port
    from tests.test_controller_e2e import DEPLOYMENT

    with FakeKubeServer() as server:
        server.state.put("deployments", "gov", DEPLOYMENT)
        server.state.put("predictivescalers", "gov", scaler("http://127.0.0.1:9", "Scale"))
        kubeconfig = kubeconfig_for(server, tmp_path)
        port = free_port()
        down = f"postgresql+psycopg://surgecast:hunter2@127.0.0.1:{free_port()}/surgecast"
        run = [str(Path(sys.executable).with_name("surgecast")), "controller", "run"]
        args = [f"--kubeconfig={kubeconfig}", f"--port={port}", f"--decision-log={down}"]
        args += [f"--model-dir={tmp_path / 'models'}", "--lease-namespace=gov"]
        with (tmp_path / "out").open("w") as out:
            process = subprocess.Popen([*run, *args], stdout=out, stderr=subprocess.STDOUT)
        try:

            def reconciled() -> bool:
                return bool(server.state.calls("PATCH", "/predictivescalers/portal/status"))

            deadline = time.monotonic() + 60
            while not reconciled() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert process.poll() is None, (tmp_path / "out").read_text()
            assert reconciled(), (tmp_path / "out").read_text()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as ready:
                assert ready.status == 200
        finally:
            process.terminate()
            process.wait(30)
    status = server.state.get("predictivescalers", "gov", "portal")["status"]
    (logged,) = [c for c in status["conditions"] if c["type"] == "DecisionLogged"]
    assert (logged["status"], logged["reason"]) == ("False", "DecisionLogUnavailable")
    output = (tmp_path / "out").read_text()
    assert "unavailable at start" in output and "hunter2" not in output


def test_two_instances_on_one_host_get_lease_identities_of_their_own(server, monkeypatch) -> None:
    import socket

    from controller._cli_controller import _identity

    monkeypatch.delenv("POD_NAME", raising=False)
    first, second = _identity(), _identity()
    assert first != second  # with the host name alone, both took the Lease as their own
    assert first.startswith(socket.gethostname())
    electors = [LeaderElector(kube_client(server), "ns", "lease", name) for name in (first, second)]
    assert [e.tick(T0) for e in electors] == [True, False]
    assert [e.tick(T0) for e in electors] == [True, False]

    monkeypatch.setenv("POD_NAME", "surgecast-controller-7d9f-x2")
    assert _identity() == "surgecast-controller-7d9f-x2"


STOP_DURING_A_JOB = """
import time
from controller.modelling import WorkerPool
pool = WorkerPool(1)
running = pool.submit(time.sleep, 60)  # a long training
while not running.running():
    time.sleep(0.05)
time.sleep(1)
pool.shutdown(wait=False)  # what a stopping controller does
"""


@pytest.mark.slow
def test_a_stopping_controller_does_not_wait_for_a_running_model_job() -> None:
    import subprocess
    import sys
    import time

    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", STOP_DURING_A_JOB], capture_output=True, text=True, timeout=40
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30  # a pod's grace period; it waited for the job


def test_controller_run_refuses_an_unknown_log_level_in_one_line() -> None:
    from typer.testing import CliRunner

    from controller.cli import app

    result = CliRunner().invoke(app, ["controller", "run", "--log-level", "verbose"])
    assert result.exit_code == 2
    assert "--log-level: 'verbose' is not one of DEBUG, INFO" in result.output
    assert isinstance(result.exception, SystemExit)  # not logging's ValueError


def test_a_target_of_another_api_group_is_not_taken_for_the_apps_kind_of_its_name(
    server,
) -> None:
    # OpenKruise's Advanced StatefulSet is kind StatefulSet in apps.kruise.io: scaling the
    # native StatefulSet of the same name (kept during a migration) scales the wrong pods.
    server.state.put(
        "statefulsets",
        "prod",
        {
            "apiVersion": "apps.kruise.io/v1beta1",
            "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2},
            "status": {"replicas": 2},
        },
    )
    kube = kube_client(server)
    target = {"apiVersion": "apps.kruise.io/v1beta1", "kind": "StatefulSet", "name": "web"}
    assert kube.get_scale("prod", target).spec_replicas == 2
    kube.set_scale("prod", target, 3)
    deployment = {"kind": "Deployment", "name": "web"}  # no apiVersion: apps/v1, the default
    with pytest.raises(KubeError):
        kube.get_scale("prod", deployment)
    paths = [c.path for c in server.state.journal]
    assert paths == [
        "/apis/apps.kruise.io/v1beta1",  # discovery: the kind's plural
        "/apis/apps.kruise.io/v1beta1/namespaces/prod/statefulsets/web/scale",
        "/apis/apps.kruise.io/v1beta1/namespaces/prod/statefulsets/web/scale",
        "/apis/apps/v1/namespaces/prod/deployments/web/scale",
    ]


def test_an_hpa_on_a_kind_of_the_same_name_in_another_group_is_not_the_targets(server) -> None:
    server.state.put("horizontalpodautoscalers", "prod", hpa("web", "StatefulSet"))
    kube = kube_client(server)
    kruise = {"apiVersion": "apps.kruise.io/v1beta1", "kind": "StatefulSet", "name": "web"}
    assert kube.find_hpa("prod", kruise) is None
    native = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web"}
    assert kube.find_hpa("prod", native)["metadata"]["name"] == "web"
    assert kube.find_hpa("prod", {"kind": "StatefulSet", "name": "web"}) is not None


def test_taking_and_losing_the_lease_are_logged(fleet, caplog) -> None:  # noqa: F811
    one, clock = listed(fleet, lambda key: None)
    with caplog.at_level(logging.INFO, logger="surgecast.controller"):
        one._elect()
        one._elect()  # still leading: nothing new to say
        lose_the_lease(one, clock, fleet)
        one._elect()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "leading" in r.getMessage()]
    assert len(lines) == 2, lines
    assert (
        lines[0][0] == "INFO" and "leading: this instance (a) holds Lease gov/lease" in lines[0][1]
    )
    assert lines[1][0] == "WARNING" and "no longer leading (Lease gov/lease)" in lines[1][1]


def test_urgent_scalers_left_when_the_lease_is_lost_stay_urgent(fleet) -> None:  # noqa: F811
    def lease_lost_meanwhile(key: str) -> None:
        if key == "gov/s1":
            lose_the_lease(one, clock, fleet)

    one, clock = listed(fleet, lease_lost_meanwhile)
    one._elect()
    one.reconcile_urgent()  # every scaler is urgent after the first list
    assert one.urgent == {f"gov/s{i}" for i in range(2, 6)}  # s0 and s1 were reconciled


@pytest.mark.parametrize("option", ["--port", "--feed-port"])
def test_controller_run_on_a_port_in_use_says_so_in_one_line(option, tmp_path) -> None:
    import socket

    from typer.testing import CliRunner

    from controller.cli import app

    with FakeKubeServer() as server, socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kubeconfig = kubeconfig_for(server, tmp_path)
        args = ["controller", "run", f"--kubeconfig={kubeconfig}", f"{option}={port}"]
        args += [f"--decision-log=sqlite:///{tmp_path / 'd.db'}", f"--model-dir={tmp_path}"]
        if option == "--feed-port":
            args.append("--port=0")
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"{option} {port}: cannot listen: Address already in use" in result.output


@pytest.mark.parametrize(("option", "port"), [("--port", "-1"), ("--feed-port", "70000")])
def test_controller_run_refuses_a_port_no_socket_can_bind(option, port) -> None:
    """A port outside 0-65535 reached ``bind()`` and was an ``OverflowError`` traceback."""
    from typer.testing import CliRunner

    from controller.cli import app

    result = CliRunner().invoke(app, ["controller", "run", f"{option}={port}"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"Invalid value for '{option}'" in result.output


@pytest.mark.parametrize(
    "db",
    [
        "postgresql+psycopg://oncall:s3cret@127.0.0.1:notaport/surgecast",  # a ValueError
        "postgresql+psycopg//oncall:s3cret@127.0.0.1/surgecast",  # no URL to SQLAlchemy
        "sqlite+nodriver://oncall@127.0.0.1/surgecast?sslmode=disable&password=s3cret",
    ],
)
def test_controller_run_never_prints_the_decision_logs_password(db, tmp_path) -> None:
    """A port that is no number made the masking itself raise, a traceback that carried the
    URL; a URL SQLAlchemy cannot parse, or a ``?password=``, was printed as given."""
    from typer.testing import CliRunner

    from controller.cli import app

    with FakeKubeServer() as server:
        kubeconfig = kubeconfig_for(server, tmp_path)
        args = ["controller", "run", f"--kubeconfig={kubeconfig}", f"--decision-log={db}"]
        result = CliRunner().invoke(app, [*args, f"--model-dir={tmp_path}", "--port=0"])
    assert result.exit_code == 2, result.output
    assert "cannot open the decision log" in result.output
    assert "s3cret" not in result.output and "***" in result.output


def test_a_decision_retention_beyond_a_century_is_refused_at_start() -> None:
    """1000000d parsed, and the hourly prune's cut-off (now - retention) fell before year 1:
    an OverflowError in every reconcile, before its decision, so no scaler ever scaled."""
    from typer.testing import CliRunner

    from controller._cli_controller import _retention
    from controller.cli import app

    assert _retention("36500d") == timedelta(days=36_500)
    result = CliRunner().invoke(app, ["controller", "run", "--decision-retention", "1000000d"])
    assert result.exit_code == 2, result.output
    assert "--decision-retention: 1000000d is longer than 36500d" in result.output
