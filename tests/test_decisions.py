"""The decision log on SQLite and on a real PostgreSQL: round trips, queries, retention, the
record-then-apply protocol, and a writer killed with SIGKILL that loses nothing."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from controller import decisions
from controller.decisions import DecisionLog, DecisionRecord, record_from_decision
from controller.policy import Forecast, PolicySpec, decide
from tests import pg_server

postgres = pg_server.postgres
"""The session's PostgreSQL server (see tests/pg_server.py)."""

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SCALER = "prod/portal"


def run_sql(url: str, *statements: str) -> None:
    """Run ``statements`` on the log at ``url`` in one transaction, as another program (an
    older or newer surgecast, an operator) would change it."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def sample(n: int, scaler: str = SCALER, mode: str = "Scale", **changes: object) -> DecisionRecord:
    """The ``n``-th of a deterministic series of decisions, one a minute from T0."""
    at = T0 + timedelta(minutes=n)
    record = DecisionRecord(
        at=at,
        scaler=scaler,
        target="Deployment/portal",
        mode=mode,
        current_replicas=10 + n,
        ready_replicas=9 + n,
        observed_load=1234.5678 + n / 3,
        load_unit="rps",
        window_start=at,
        window_end=at + timedelta(minutes=3, seconds=30),
        quantile=0.9,
        forecast_peak=2950.123456789 + n,
        predictive=30 + n,
        capacity_per_replica=100.0,
        startup_delay=timedelta(minutes=3),
        reactive_floor=13,
        min_replicas=2,
        max_replicas=200,
        recommendation=30 + n,
        replicas=30 + n,
        hpa_replicas=14,
        reason="ScaleUp/ForecastPeak",
        message=f"{10 + n} → {30 + n}; the p90 forecast peaks at 2,950.1",
        clamps=("ScalingLimited/ScaleUpLimit", "ScheduledOverride/black-friday, launch"),
        override="black-friday, launch",
        model_version="SeasonalQuantile-3",
        backtest_score=0.875,
    )
    return replace(record, **changes)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty log's URL: a file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.db'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def log(url: str) -> Iterator[DecisionLog]:
    with DecisionLog(url) as opened:
        yield opened


def test_round_trip_keeps_every_field(log: DecisionLog) -> None:
    full = sample(0, applied=True, applied_at=T0 + timedelta(seconds=2))
    sparse = sample(
        1,
        ready_replicas=None,
        observed_load=None,
        forecast_peak=None,
        predictive=None,
        hpa_replicas=None,
        clamps=(),
        override=None,
        fallback="ForecastMissing",
        reason="FallbackReactive/ForecastMissing",
        model_version=None,
        backtest_score=None,
    )
    shanghai = timezone(timedelta(hours=8))
    elsewhere = sample(2, at=(T0 + timedelta(minutes=2)).astimezone(shanghai))
    ids = [log.record(record) for record in (full, sparse, elsewhere)]
    got = log.list()
    assert got == [replace(r, id=i) for r, i in zip((full, sparse, elsewhere), ids, strict=True)]
    assert all(r.at.tzinfo is UTC and r.window_end.tzinfo is UTC for r in got)
    assert log.record_many([sample(3), sample(4)]) == [ids[-1] + 1, ids[-1] + 2]


def test_record_from_a_policy_decision(log: DecisionLog) -> None:
    now = datetime(2026, 11, 20, 9, 41)  # naive UTC, as the replay passes it
    spec = PolicySpec(
        min_replicas=2,
        max_replicas=200,
        capacity_per_replica=100.0,
        startup_delay=timedelta(minutes=3),
    )
    times = np.arange(np.datetime64(now), np.datetime64(now) + np.timedelta64(30, "m"), 60_000_000)
    forecast = Forecast(
        made_at=now,
        times=times.astype("datetime64[ns]"),
        upper=np.full(30, 2950.0),
        quantile=0.9,
        model_version="SeasonalQuantile-3",
        backtest_score=0.93,
    )
    decision = decide(spec, now, 12, 1180.0, forecast)
    record = record_from_decision(
        decision,
        scaler=SCALER,
        target="Deployment/portal",
        mode="Scale",
        ready_replicas=11,
        spec=spec,
        forecast=forecast,
        hpa_replicas=17,
        at=now,
    )
    assert (record.replicas, record.reason, record.current_replicas) == (
        30,
        "ScaleUp/ForecastPeak",
        12,
    )
    assert record.at == now.replace(tzinfo=UTC) and record.window_start.tzinfo is UTC
    assert (record.quantile, record.forecast_peak, record.predictive) == (0.9, 2950.0, 30)
    assert (record.model_version, record.backtest_score, record.hpa_replicas) == (
        "SeasonalQuantile-3",
        0.93,
        17,
    )
    assert record.message == decision.message and not record.applied
    record_id = log.record(record)
    assert log.at(SCALER, record.at) == replace(record, id=record_id)


def minutes(records: Sequence[DecisionRecord]) -> list[int]:
    """Which samples these are (their minutes after T0)."""
    return [int((r.at - T0) / timedelta(minutes=1)) for r in records]


def test_list_filters(log: DecisionLog) -> None:
    log.record_many(
        [
            sample(0),
            sample(1, reason="Hold/ForecastPeak"),
            sample(2, scaler="prod/api"),
            sample(3, reason="FallbackReactive/ForecastStale"),
            sample(4),
        ]
    )
    assert minutes(log.list()) == [0, 1, 2, 3, 4]
    assert minutes(log.list(SCALER)) == [0, 1, 3, 4]
    since, until = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    assert minutes(log.list(SCALER, since=since, until=until)) == [1, 3]
    assert minutes(log.list(reason="ScaleUp")) == [0, 2, 4]
    assert minutes(log.list(reason="FallbackReactive/ForecastStale")) == [3]
    assert minutes(log.list(reason="Fallback")) == []  # a family is a whole word
    assert minutes(log.list(SCALER, limit=2)) == [3, 4]  # the newest, oldest first
    assert log.scalers() == ["prod/api", SCALER]


def test_at_is_the_decision_in_force(log: DecisionLog) -> None:
    log.record_many([sample(0), sample(5), sample(6, scaler="prod/api")])
    assert log.at(SCALER, T0 - timedelta(seconds=1)) is None
    assert log.at(SCALER, T0).at == T0
    assert log.at(SCALER, T0 + timedelta(minutes=4, seconds=59)).at == T0
    assert log.at(SCALER, T0 + timedelta(minutes=5)).at == T0 + timedelta(minutes=5)
    assert log.at(SCALER, T0 + timedelta(hours=1)).at == T0 + timedelta(minutes=5)
    assert log.at("prod/other", T0 + timedelta(hours=1)) is None


def test_prune_keeps_the_retention_window(log: DecisionLog) -> None:
    log.record_many([sample(n) for n in range(10)])
    assert log.prune(T0 + timedelta(minutes=7)) == 7
    assert [r.at for r in log.list()] == [T0 + timedelta(minutes=n) for n in (7, 8, 9)]
    assert log.prune(T0) == 0


def test_pending_and_mark_applied(log: DecisionLog) -> None:
    first = log.record(sample(0))
    assert log.pending(SCALER).id == first
    log.mark_applied(first, T0 + timedelta(seconds=1))
    assert log.pending(SCALER) is None
    log.mark_applied(first, T0 + timedelta(hours=1))  # again: the first time counts
    assert log.list()[0].applied_at == T0 + timedelta(seconds=1)

    stale = log.record(sample(1))  # recorded, then the controller died
    assert log.pending(SCALER).id == stale
    assert log.pending("prod/api") is None
    log.record(sample(2, mode="ForecastOnly"))  # decided afresh: supersedes the stale one
    assert log.pending(SCALER) is None
    assert [r.applied for r in log.list()] == [True, False, False]
    with pytest.raises(KeyError, match="no decision 999"):
        log.mark_applied(999, T0)


def test_naive_times_are_refused(log: DecisionLog) -> None:
    naive = datetime(2026, 11, 20, 9, 41)
    with pytest.raises(ValueError, match="timezone-aware"):
        sample(0, at=naive)
    for call in (
        lambda: log.at(SCALER, naive),
        lambda: log.list(since=naive),
        lambda: log.prune(naive),
        lambda: log.mark_applied(1, naive),
    ):
        with pytest.raises(ValueError, match="timezone-aware"):
            call()
    with pytest.raises(ValueError, match="cannot be recorded again"):
        log.record(sample(0, id=3))


def test_schema_is_created_once_and_versioned(url: str) -> None:
    DecisionLog(url).close()
    with DecisionLog(url) as log:
        log.record(sample(0))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT version FROM schema_version")).scalars().all() == [1]
        if engine.dialect.name == "sqlite":
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        conn.execute(sa.text("UPDATE schema_version SET version = 2"))
    engine.dispose()
    with pytest.raises(RuntimeError, match="schema version 2"):
        DecisionLog(url)


# -- a writer killed with SIGKILL -------------------------------------------------------------

WRITER = "import sys; from tests.test_decisions import write_until_killed as w; w(*sys.argv[1:])"


def write_until_killed(url: str, stall_at: str) -> None:
    """The controller's loop in miniature: record, report, apply, mark applied, report.

    At decision ``stall_at`` the apply hangs, so a kill lands between record and mark.
    """
    with DecisionLog(url) as log:
        for n in itertools.count():
            record_id = log.record(sample(n))
            print(f"recorded {n} {record_id}", flush=True)
            if n == int(stall_at):
                time.sleep(600)
            log.mark_applied(record_id, sample(n).at + timedelta(seconds=1))
            print(f"applied {n} {record_id}", flush=True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "stall_at", [5, -1], ids=["killed between record and apply", "killed while writing"]
)
def test_sigkill_loses_nothing_and_leaves_one_pending(url: str, stall_at: int) -> None:
    DecisionLog(url).close()  # the schema exists before the writer starts
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(stall_at)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        wanted = f"recorded {stall_at} " if stall_at >= 0 else "recorded 40 "
        while not lines or not lines[-1].startswith(wanted):
            line = writer.stdout.readline()
            assert line, f"the writer exited early:\n{writer.stderr.read()}"
            lines.append(line)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        lines += writer.stdout.read().splitlines()  # reported before it died
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    reported = [line.split() for line in lines]
    recorded = {int(n): int(i) for verb, n, i in reported if verb == "recorded"}
    applied = {int(i) for verb, n, i in reported if verb == "applied"}

    with DecisionLog(url) as log:
        stored = log.list()
        by_id = {r.id: r for r in stored}
        for n, record_id in recorded.items():  # every reported commit is there, intact
            assert replace(by_id[record_id], id=None, applied=False, applied_at=None) == sample(n)
        assert applied <= {r.id for r in stored if r.applied}
        # nothing half-written or doubled: exactly decisions 0..k, in order
        assert [replace(r, id=None, applied=False, applied_at=None) for r in stored] == [
            sample(n) for n in range(len(stored))
        ]
        assert all(r.applied for r in stored[:-1])  # only the newest can be unapplied
        pending = log.pending(SCALER)
        assert pending == (None if stored[-1].applied else stored[-1])
        if stall_at >= 0:
            assert pending is not None and pending.id == recorded[stall_at]
            # restart protocol: the target already has the recorded count, so finish it
            log.mark_applied(pending.id, T0 + timedelta(hours=1))
            assert log.pending(SCALER) is None


@pytest.mark.timeout(60)
def test_a_postgresql_that_never_answers_is_an_error_not_a_hang(monkeypatch) -> None:
    # A host that takes the connection and says nothing (a dead proxy, a hung server):
    # without a connect timeout, every reconcile would wait on it, and scaling with it.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held: list[tuple[socket.socket, object]] = []

    def hold() -> None:  # accept, never answer; ends when the socket closes
        with contextlib.suppress(OSError):
            while True:
                held.append(silent.accept())

    threading.Thread(target=hold, daemon=True).start()
    monkeypatch.setattr(decisions, "CONNECT_TIMEOUT", 1)
    port = silent.getsockname()[1]
    with pytest.raises(sa.exc.OperationalError, match="timeout"):
        DecisionLog(f"postgresql+psycopg://surgecast@127.0.0.1:{port}/surgecast")
    silent.close()
