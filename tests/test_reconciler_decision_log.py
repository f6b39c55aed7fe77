"""The reconciler and its decision log: recorded before applying, marked applied after, and a
restarted controller settling what its predecessor left half done, never applying twice.

The scaler, Prometheus history and fake API are those of the end-to-end tests; each test
reconciles a few virtual minutes around the Thursday morning peak.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog, DecisionRecord
from controller.reconciler import Reconciler
from tests.kubefake import FakeKubeServer, Fault
from tests.prom_server import prom  # noqa: F401 (the session fixture)
from tests.test_controller_e2e import DEPLOYMENT, START, api, reconciler, scaler  # noqa: F401
from tests.test_decisions import run_sql

PEAK = START + timedelta(hours=3)  # Thursday 09:00 in Shanghai
KEY = "gov/portal"


@pytest.fixture
def log(tmp_path) -> DecisionLog:
    return DecisionLog(f"sqlite:///{tmp_path / 'decisions.db'}")


def with_log(server: FakeKubeServer, tmp_path, log: DecisionLog) -> Reconciler:
    """A fresh controller process: new reconciler state, the same log and API."""
    rec = reconciler(server, tmp_path)
    rec.decisions = log
    return rec


def reconcile(server: FakeKubeServer, rec: Reconciler, minute: int) -> None:
    obj = copy.deepcopy(server.state.get("predictivescalers", "gov", "portal"))
    rec.reconcile(obj, PEAK + timedelta(minutes=minute))


def replicas(server: FakeKubeServer) -> int:
    return server.state.get("deployments", "gov", "portal")["spec"]["replicas"]


def set_replicas(server: FakeKubeServer, count: int) -> None:
    server.state.update("deployments", "gov", "portal", {"spec": {"replicas": count}})


def left_half_done(log: DecisionLog, like: DecisionRecord, replicas: int) -> DecisionRecord:
    """What a controller killed after recording a decision leaves: a pending Scale record."""
    record = dataclasses.replace(
        like, id=None, at=like.at + timedelta(seconds=30), replicas=replicas, applied=False
    )
    record = dataclasses.replace(record, applied_at=None)
    log.record(record)
    pending = log.pending(KEY)
    assert pending is not None and pending.replicas == replicas
    return pending


def test_each_decision_is_recorded_and_marked_applied(api, prom, tmp_path, log) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, log)
    for minute in range(3):
        reconcile(api, rec, minute)
    records = log.list(KEY, since=PEAK - timedelta(hours=1))
    assert len(records) == 3
    assert all(r.applied and r.mode == "Scale" for r in records)
    assert records[-1].replicas == replicas(api)
    assert log.pending(KEY) is None


def test_a_restart_marks_a_change_that_went_through_and_does_not_repeat_it(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
    log,
) -> None:
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    reconcile(api, with_log(api, tmp_path, log), 0)
    first = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    # The killed controller recorded "one more replica" and patched the scale, then died.
    pending = left_half_done(log, first, first.replicas + 1)
    set_replicas(api, first.replicas + 1)
    patches_before = len(api.state.calls("PATCH", "/scale"))

    reconcile(api, with_log(api, tmp_path, log), 1)

    settled = log.at(KEY, pending.at)
    assert settled is not None and settled.id == pending.id
    assert settled.applied and settled.applied_at == PEAK + timedelta(minutes=1)
    newest = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    assert newest.id != pending.id and newest.applied
    repeated = [
        c
        for c in api.state.calls("PATCH", "/scale")[patches_before:]
        if c.body["spec"]["replicas"] == pending.replicas
    ]
    assert repeated == []  # the change already made is not made again


def test_a_restart_leaves_a_change_that_never_happened_unapplied(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
    log,
) -> None:
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    reconcile(api, with_log(api, tmp_path, log), 0)
    first = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    pending = left_half_done(log, first, first.replicas + 5)  # died before patching

    reconcile(api, with_log(api, tmp_path, log), 1)

    stale = log.at(KEY, pending.at)
    assert stale is not None and stale.id == pending.id and not stale.applied
    newest = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    assert newest.at == PEAK + timedelta(minutes=1) and newest.applied
    assert log.pending(KEY) is None


def test_a_failed_apply_is_never_marked_applied(api, prom, tmp_path, log) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, log)
    api.state.faults.append(Fault("PATCH", "/scale", 500, times=3))  # every retry fails
    reconcile(api, rec, 0)
    failed = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    assert not failed.applied and failed.not_applied and "ScaleFailed" in failed.not_applied
    assert log.pending(KEY) is None  # known not applied: nothing to settle after a restart
    # Somebody else sets the same count by hand; the failed decision still did not apply,
    # whether this process goes on or a new one (which has only the log) takes over.
    set_replicas(api, failed.replicas)
    reconcile(api, with_log(api, tmp_path, log), 1)
    assert log.at(KEY, failed.at).applied is False
    reconcile(api, rec, 2)
    assert log.at(KEY, failed.at).applied is False


def test_decisions_older_than_the_retention_are_pruned(api, prom, tmp_path, log) -> None:  # noqa: F811
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, log)
    reconcile(api, rec, 0)
    old = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    log.record(dataclasses.replace(old, id=None, at=PEAK - timedelta(days=40)))
    assert len(log.list(KEY, since=PEAK - timedelta(days=41))) == 2

    rec.retention = timedelta(days=30)
    reconcile(api, rec, 61)  # an hour after the last prune (or the first one)

    kept = log.list(KEY, since=PEAK - timedelta(days=41))
    assert [r.at for r in kept] == [PEAK, PEAK + timedelta(minutes=61)]


def test_controller_run_refuses_a_retention_that_is_not_a_duration() -> None:
    result = CliRunner().invoke(app, ["controller", "run", "--decision-retention", "a month"])
    assert result.exit_code == 2
    assert "--decision-retention" in result.output and "not a duration" in result.output


def events(server: FakeKubeServer, reason: str) -> list[dict]:
    return [c.body for c in server.state.calls("POST", "/events") if c.body["reason"] == reason]


def logging_to_a_directory(
    server: FakeKubeServer, prometheus_url: str, tmp_path: Path
) -> tuple[Path, DecisionLog, Reconciler]:
    """A scaler on the test Prometheus whose reconciler logs to SQLite in a directory of its
    own: renaming the directory takes the log away, as a lost volume would."""
    home = tmp_path / "log"
    home.mkdir()
    log = DecisionLog(f"sqlite:///{home / 'decisions.db'}")
    server.state.put("predictivescalers", "gov", scaler(prometheus_url, "Scale"))
    return home, log, with_log(server, tmp_path, log)


def logged(server: FakeKubeServer) -> dict:
    status = server.state.get("predictivescalers", "gov", "portal")["status"]
    return next(c for c in status["conditions"] if c["type"] == "DecisionLogged")


def test_scaling_goes_on_while_the_decision_log_is_down_and_nothing_is_lost(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    home, log, rec = logging_to_a_directory(api, prom.url, tmp_path)
    reconcile(api, rec, 0)
    needed = replicas(api)
    assert logged(api)["status"] == "True"

    home.rename(tmp_path / "gone")  # the volume is gone: every statement fails at once
    log.close()
    set_replicas(api, 1)  # somebody scaled it down by hand: the next decision scales up
    for minute in (1, 2, 3):
        reconcile(api, rec, minute)
        assert replicas(api) >= needed  # applied although it could not be recorded first
        condition = logged(api)
        assert (condition["status"], condition["reason"]) == ("False", "DecisionLogUnavailable")
    assert len(events(api, "DecisionLogUnavailable")) == 1  # one per outage, not per minute
    errors = rec.metrics.registry.get_sample_value(
        "surgecast_reconcile_errors_total",
        {"namespace": "gov", "name": "portal", "kind": "DecisionLogUnavailable"},
    )
    assert errors == 3
    assert rec.metrics.registry.get_sample_value("surgecast_decision_log_backlog") == 3

    (tmp_path / "gone").rename(home)  # back
    log.close()
    reconcile(api, rec, 4)
    assert logged(api)["status"] == "True"
    records = log.list(KEY, since=PEAK - timedelta(hours=1))
    assert [r.at for r in records] == [PEAK + timedelta(minutes=m) for m in range(5)]
    assert all(r.applied for r in records)  # the outage's decisions were applied, and say so
    assert log.pending(KEY) is None
    assert rec.metrics.registry.get_sample_value("surgecast_decision_log_backlog") == 0

    home.rename(tmp_path / "gone")  # a second outage is news again
    log.close()
    reconcile(api, rec, 5)
    assert len(events(api, "DecisionLogUnavailable")) == 2


def test_a_long_decision_log_outage_keeps_only_the_newest_decisions(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    home, log, rec = logging_to_a_directory(api, prom.url, tmp_path)
    rec.unlogged = collections.deque(maxlen=2)
    home.rename(tmp_path / "gone")
    log.close()
    for minute in range(4):
        reconcile(api, rec, minute)
    dropped = rec.metrics.registry.get_sample_value("surgecast_decision_log_dropped_total")
    assert dropped == 2

    (tmp_path / "gone").rename(home)
    log.close()
    reconcile(api, rec, 4)
    records = log.list(KEY, since=PEAK - timedelta(hours=1))
    assert [r.at for r in records] == [PEAK + timedelta(minutes=m) for m in (2, 3, 4)]


def test_a_failed_apply_during_a_log_outage_is_never_marked_applied(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    home, log, rec = logging_to_a_directory(api, prom.url, tmp_path)
    reconcile(api, rec, 0)
    set_replicas(api, 1)
    home.rename(tmp_path / "gone")
    log.close()
    api.state.faults.append(Fault("PATCH", "/scale", 500, times=3))  # every retry fails
    reconcile(api, rec, 1)
    (tmp_path / "gone").rename(home)
    log.close()
    failed = rec.unlogged[-1]
    set_replicas(api, failed.replicas)  # by hand: the failed decision still did not apply
    reconcile(api, rec, 2)
    assert log.at(KEY, failed.at).applied is False


def test_a_cycle_tries_a_down_log_once_not_once_per_scaler(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    # A PostgreSQL that never answers costs its connect timeout per try: a cycle of many
    # scalers must not pay it once for each.
    tries: list[str] = []

    class Counted(DecisionLog):
        def pending(self, scaler: str) -> DecisionRecord | None:
            tries.append("pending")
            return super().pending(scaler)

        def record(self, record: DecisionRecord) -> int:
            tries.append("record")
            return super().record(record)

    home = tmp_path / "log"
    home.mkdir()
    log = Counted(f"sqlite:///{home / 'decisions.db'}")
    api.state.put("deployments", "gov", {**DEPLOYMENT, "metadata": {"name": "other"}})
    first = scaler(prom.url, "Scale")
    second = copy.deepcopy(first)
    second["metadata"]["name"] = "other"
    second["spec"]["scaleTargetRef"]["name"] = "other"
    for obj in (first, second):
        api.state.put("predictivescalers", "gov", obj)
    rec = with_log(api, tmp_path, log)
    scalers = [("gov", "portal"), ("gov", "other")]

    def cycle(minute: int) -> None:
        for namespace, name in scalers:
            obj = copy.deepcopy(api.state.get("predictivescalers", namespace, name))
            rec.reconcile(obj, PEAK + timedelta(minutes=minute))

    cycle(0)
    home.rename(tmp_path / "gone")
    log.close()
    tries.clear()
    cycle(1)
    assert tries == ["pending"]  # the first scaler found it down; the second did not ask
    assert len(rec.unlogged) == 2
    for _, name in scalers:
        status = api.state.get("predictivescalers", "gov", name)["status"]
        (logged_condition,) = [c for c in status["conditions"] if c["type"] == "DecisionLogged"]
        assert logged_condition["reason"] == "DecisionLogUnavailable"
    (tmp_path / "gone").rename(home)
    cycle(2)
    assert not rec.unlogged and len(log.list(KEY, since=PEAK)) == 3


def test_a_held_mark_of_a_decision_gone_from_the_log_does_not_stop_scaling(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
    log,
) -> None:
    """An "applied" mark held through an outage, for a decision the other replica pruned
    meanwhile (or a restore from an older backup lost): marking it raised KeyError at the
    head of the queue, at every reconcile, and no scaler scaled again."""
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, log)
    reconcile(api, rec, 0)
    needed = replicas(api)
    gone = log.list(KEY, since=PEAK - timedelta(hours=1))[-1]
    rec.unlogged.append(dataclasses.replace(gone, id=10_000, applied=True, applied_at=PEAK))
    set_replicas(api, 1)
    reconcile(api, rec, 1)
    assert replicas(api) >= needed
    assert not rec.unlogged
    assert logged(api)["status"] == "True"


def test_a_log_met_late_with_another_schema_is_down_not_a_crash(
    api,  # noqa: F811
    prom,  # noqa: F811
    tmp_path,
) -> None:
    """A log down at start is opened at first use; a schema this surgecast cannot use,
    found then, raised out of every reconcile (only database errors were taken for a log
    that is down), and nothing scaled. Now scaling goes on, and the condition says why."""
    home = tmp_path / "log"
    log = DecisionLog(f"sqlite:///{home / 'decisions.db'}", connect=False)
    api.state.put("predictivescalers", "gov", scaler(prom.url, "Scale"))
    rec = with_log(api, tmp_path, log)
    reconcile(api, rec, 0)  # no such directory: down
    assert logged(api)["reason"] == "DecisionLogUnavailable"

    home.mkdir()  # back, written meanwhile by a newer surgecast
    DecisionLog(f"sqlite:///{home / 'decisions.db'}").close()
    run_sql(f"sqlite:///{home / 'decisions.db'}", "UPDATE schema_version SET version = 99")
    set_replicas(api, 1)
    reconcile(api, rec, 1)
    assert replicas(api) > 1
    condition = logged(api)
    assert (condition["status"], condition["reason"]) == ("False", "DecisionLogUnavailable")
    assert "schema version 99, from a newer surgecast" in condition["message"]
