"""The decision log over time: opened late (down at start), schema upgrades, two writers,
retention, and the commands that read it."""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller import decisions
from controller.cli import app
from controller.decisions import DecisionLog
from tests import pg_server
from tests.test_decisions import T0, run_sql, sample, url  # noqa: F401 (a fixture)

postgres = pg_server.postgres

# -- a log opened at its first use -------------------------------------------------------


def test_a_log_opened_later_creates_its_schema_at_the_first_use_that_succeeds(
    tmp_path: Path,
) -> None:
    # The volume of a SQLite log not mounted yet: every use fails with the database's error
    # (the reconciler's outage) and leaves the log to be opened by the next.
    volume = tmp_path / "volume"
    log = DecisionLog(f"sqlite:///{volume / 'decisions.db'}", connect=False)
    for use in (lambda: log.record(sample(0)), log.scalers, lambda: log.pending("prod/portal")):
        with pytest.raises(sa.exc.OperationalError):
            use()
    volume.mkdir()
    assert log.record(sample(0)) == 1
    assert log.pending("prod/portal") is not None
    assert [r.at for r in log.list()] == [T0]
    log.mark_not_applied(1, "ScaleFailed: the API said no")  # an added column, known now
    assert log.list()[0].not_applied == "ScaleFailed: the API said no"
    log.close()


def test_a_url_that_is_no_database_is_refused_even_when_opened_later() -> None:
    with pytest.raises(sa.exc.ArgumentError):
        DecisionLog("decisions.db", connect=False)


# -- the commands that read it -----------------------------------------------------------

runner = CliRunner()


def test_list_reads_a_log_opened_read_only_through_a_sqlite_uri(tmp_path: Path) -> None:
    # sqlite:///file:PATH?mode=ro&uri=true is how SQLite opens a file read-only; the check
    # that the file exists looked for a file named "file:PATH" and refused it.
    path = tmp_path / "decisions.db"
    with DecisionLog(f"sqlite:///{path}") as log:
        log.record(sample(0))
    since = ["--since", "2026-11-20 08:00"]
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    result = runner.invoke(app, ["decisions", "list", "prod/portal", *since, "--db", read_only])
    assert result.exit_code == 0, result.output
    assert "ScaleUp/ForecastPeak" in result.stdout
    typo = f"sqlite:///file:{tmp_path / 'decisons.db'}?mode=ro&uri=true"
    result = runner.invoke(app, ["decisions", "list", "prod/portal", *since, "--db", typo])
    assert result.exit_code == 2
    assert f"no decision log at '{tmp_path / 'decisons.db'}'" in result.output


# -- retention -----------------------------------------------------------------------------


def test_an_older_log_gains_the_time_index_when_a_writer_opens_it(url: str) -> None:  # noqa: F811
    # Without an index on the time alone, every hourly prune read the whole table.
    with DecisionLog(url) as log:
        log.record(sample(0))
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as the surgecast before the index left it
        conn.execute(sa.text("DROP INDEX ix_decisions_at"))

    def indexes() -> set[str]:
        with engine.connect() as conn:
            return {index["name"] for index in sa.inspect(conn).get_indexes("decisions")}

    with DecisionLog(url, create=False) as log:  # a reader builds nothing
        assert [r.current_replicas for r in log.list()] == [10]
        assert log.indexing is None
    assert "ix_decisions_at" not in indexes()
    with DecisionLog(url) as log:
        assert log.indexing is not None
        log.indexing.join()
        assert log.prune(T0 + timedelta(minutes=1)) == 1
    assert {"ix_decisions_at", "ix_decisions_scaler_at"} <= indexes()
    engine.dispose()


def test_the_index_an_older_log_lacks_is_built_after_the_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Built in the open, on a big log it kept the controller from serving its probes for
    # minutes, and the liveness probe killed the pod mid-build at every restart.
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record(sample(0))
    run_sql(db, "DROP INDEX ix_decisions_at")
    opened, building = threading.Event(), []
    build = decisions._build_indexes

    def slow_build(*args: Any) -> None:
        building.append(opened.wait(timeout=5))  # a big log's build, done once opened
        build(*args)

    monkeypatch.setattr(decisions, "_build_indexes", slow_build)
    with DecisionLog(db) as log:
        opened.set()
        assert log.record(sample(1)) == 2
        assert log.indexing is not None
        log.indexing.join()
    assert building == [True]


def test_prune_deletes_a_long_backlog_in_short_transactions(
    url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One DELETE of everything held SQLite's write lock throughout, and grew the WAL file
    # by the size of all that was deleted.
    monkeypatch.setattr(decisions, "PRUNE_BATCH", 4)
    with DecisionLog(url) as log:
        log.record_many([sample(n) for n in range(11)])
        deleted: list[int] = []
        sa.event.listen(
            log._engine,
            "after_cursor_execute",
            lambda conn, cursor, statement, *rest: (
                deleted.append(cursor.rowcount) if statement.startswith("DELETE") else None
            ),
        )
        assert log.prune(T0 + timedelta(minutes=10)) == 10
        assert deleted == [4, 4, 2]
        assert [r.current_replicas for r in log.list()] == [20]
        deleted.clear()
        assert log.prune(T0 + timedelta(minutes=10)) == 0
        assert deleted == [0]


# -- logs of other versions -----------------------------------------------------------------


def test_a_log_of_a_newer_version_is_refused_for_its_version_and_left_alone(
    url: str,  # noqa: F811
) -> None:
    # The column check ran first: a newer surgecast's table (a column renamed) was "not made
    # by surgecast"; and the indexes and columns this version knows were added (on SQLite,
    # committed) to a log it then refused.
    with DecisionLog(url) as log:
        log.record(sample(0))
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE schema_version SET version = 2"))
        conn.execute(sa.text("ALTER TABLE decisions RENAME COLUMN hpa_replicas TO hpa_alone"))
        conn.execute(sa.text("DROP INDEX ix_decisions_at"))
    for create in (True, False):
        with pytest.raises(RuntimeError) as refused:
            DecisionLog(url, create=create)
        assert str(refused.value) == (
            "the decision log has schema version 2, from a newer surgecast; this one reads "
            "version 1: upgrade it to use the log"
        )
    with engine.connect() as conn:
        assert [i["name"] for i in sa.inspect(conn).get_indexes("decisions")] == [
            "ix_decisions_scaler_at"
        ]
    engine.dispose()


def test_an_index_build_cut_short_on_postgresql_is_built_again(
    postgres: pg_server.PgServer,
) -> None:
    # CREATE INDEX CONCURRENTLY (so the build blocks no writer) leaves an invalid index,
    # which no query uses, when its process is killed mid-way.
    db = postgres.new_database()
    DecisionLog(db).close()
    engine = sa.create_engine(db)
    validity = sa.text(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_decisions_at'::regclass"
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_decisions_at'::regclass"
            )
        )
    DecisionLog(db, create=False).close()  # a reader builds nothing
    with engine.connect() as conn:
        assert conn.execute(validity).scalar() is False
    with DecisionLog(db) as log:
        assert log.indexing is not None
        log.indexing.join()
    with engine.connect() as conn:
        assert conn.execute(validity).scalar() is True
    engine.dispose()


def test_reading_another_programs_sqlite_file_leaves_its_journal_mode(tmp_path: Path) -> None:
    # The pragmas a writer sets ran for readers too: a wrong --db switched that file to WAL
    # (a lasting change) before saying it held no decision log.
    other = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{other}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE accounts (id INTEGER)"))
    engine.dispose()  # an open connection would keep the mode from changing
    args = ["--since", "24h", "--db", f"sqlite:///{other}"]
    result = runner.invoke(app, ["decisions", "list", "prod/portal", *args])
    assert result.exit_code == 2 and "no decision log in" in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "delete"
        assert sa.inspect(conn).get_table_names() == ["accounts"]
    engine.dispose()


def test_explain_at_a_second_shown_by_list_reaches_the_decision_listed(tmp_path: Path) -> None:
    # The controller stamps decisions to the microsecond and list shows them to the second:
    # explain --at 09:00:30, typed from the list, stopped at 09:00:30.000000 and explained
    # the decision before the one listed at that second.
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record_many(
            [sample(k, at=T0 + timedelta(seconds=30 * k, microseconds=412_345)) for k in range(3)]
        )
    listed = runner.invoke(
        app, ["decisions", "list", "prod/portal", "--since", "2026-11-20", "--db", db]
    )
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == [
        "09:00:00",
        "09:00:30",
        "09:01:00",
    ]
    for at, current in (("09:00:30", 11), ("09:00:30.4", 10), ("09:00:30.5", 11), ("09:00:29", 10)):
        result = runner.invoke(
            app, ["decisions", "explain", "prod/portal", "--at", f"2026-11-20 {at}", "--db", db]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"would have scaled {current} → "), (at, result.stdout)


# -- a fleet's log ---------------------------------------------------------------------------


def test_the_scalers_of_a_log_are_each_named_once_in_order(url: str) -> None:  # noqa: F811
    names = ["prod/b", "prod/a", "dev/z", "prod/a-b"]
    with DecisionLog(url) as log:
        assert log.scalers() == []
        log.record_many([sample(n, scaler=names[n % 4]) for n in range(12)])
        assert log.scalers() == sorted(names)


def test_the_scalers_of_a_big_log_are_found_without_reading_all_of_it(tmp_path: Path) -> None:
    # SELECT DISTINCT read the whole index (every decision) for each decisions command and
    # review page: 16 s on SQLite for 30 days of 1,000 scalers, before the query asked for.
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    names = ["prod/b", "prod/a", "dev/z", "prod/a-b"]
    with DecisionLog(db) as log:
        log.record_many([sample(n % 600, scaler=names[n % 4]) for n in range(8_000)])
        steps = [0]

        def count(dbapi_connection: Any, record: Any) -> None:
            def step() -> int:
                steps[0] += 1
                return 0

            dbapi_connection.set_progress_handler(step, 100)

        log._engine.dispose()
        sa.event.listen(log._engine, "connect", count)
        assert log.scalers() == sorted(names)
    assert steps[0] * 100 < 8_000  # SQLite virtual machine instructions: fewer than rows


def test_a_log_in_a_directory_that_cannot_be_written_is_read(tmp_path: Path) -> None:
    # SQLite reads a WAL log through a -shm file it creates beside it: a log on a volume
    # mounted read-only (or a snapshot) failed with "unable to open database file".
    shelf = tmp_path / "snapshot"
    shelf.mkdir()
    db = f"sqlite:///{shelf / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record(sample(0))
    shelf.chmod(0o555)
    try:
        if os.access(shelf, os.W_OK):
            pytest.skip("this user writes a directory whatever its mode (root)")
        args = ["--since", "2026-11-20", "--db", db]
        result = runner.invoke(app, ["decisions", "list", "prod/portal", *args])
        assert result.exit_code == 0, result.output
        assert "ScaleUp/ForecastPeak" in result.stdout
        assert sorted(path.name for path in shelf.iterdir()) == ["decisions.db"]
    finally:
        shelf.chmod(0o755)


# -- outages --------------------------------------------------------------------------------


def test_a_write_after_postgresql_dropped_the_connections_succeeds(
    postgres: pg_server.PgServer,
) -> None:
    # A restart or failover, long over: the next write failed on its dead pooled connection,
    # and the reconciler reported an outage (DecisionLogged=False, a Warning Event).
    db = postgres.new_database()
    with DecisionLog(db) as log:
        log.record(sample(0))
        admin = sa.create_engine(postgres.url())
        with admin.begin() as conn:
            dropped = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"
                ),
                {"name": db.rsplit("/", 1)[1]},
            )
            assert dropped.scalars().all() == [True]
        admin.dispose()
        assert log.record(sample(1)) == 2
        assert [r.current_replicas for r in log.list()] == [10, 11]


def test_the_wal_file_is_cut_back_after_a_big_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite kept the WAL file at the largest size one transaction grew it to (the
    # decisions written at once after an outage, an index built on an older log), for as
    # long as the controller ran.
    monkeypatch.setattr(decisions, "WAL_SIZE_LIMIT", 2**18)
    path = tmp_path / "decisions.db"
    with DecisionLog(f"sqlite:///{path}") as log:
        log.record_many([sample(n % 600, scaler=f"prod/s{n % 7}") for n in range(10_000)])
        grown = Path(f"{path}-wal").stat().st_size
        for n in range(3):
            log.record(sample(n))
        assert grown > 2**20 and Path(f"{path}-wal").stat().st_size <= 2**18


def test_a_new_log_has_room_for_more_than_two_billion_decisions(url: str) -> None:  # noqa: F811
    # The id was a 32-bit SERIAL on PostgreSQL: 1,000 scalers at a 30 s sync use it up in
    # two years (pruning frees no ids), and every decision then failed to be recorded.
    with DecisionLog(url) as log:
        log.record(sample(0))
        if log._engine.dialect.name == "postgresql":
            with log._engine.begin() as conn:
                conn.execute(
                    sa.text("SELECT setval(pg_get_serial_sequence('decisions', 'id'), 2147483647)")
                )
        else:
            log.record(sample(1, id=None))
            with log._engine.begin() as conn:
                conn.execute(sa.text("UPDATE decisions SET id = 2147483647 WHERE id = 2"))
        assert log.record(sample(2)) == 2**31
        assert log.list()[-1].id == 2**31


def test_a_log_with_a_32_bit_id_on_postgresql_says_how_to_widen_it(
    postgres: pg_server.PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A log made before ids were 64-bit keeps its SERIAL id (widening it rewrites the
    table): the controller now says so when it opens it, with the statement to run."""
    db = postgres.new_database()
    DecisionLog(db).close()
    run_sql(db, "ALTER TABLE decisions ALTER COLUMN id TYPE integer")
    with caplog.at_level(logging.WARNING, logger="surgecast.decisions"):
        with DecisionLog(db) as log:
            log.record(sample(0))
        assert "ALTER TABLE decisions ALTER COLUMN id TYPE bigint" in caplog.text
        caplog.clear()
        with DecisionLog(db, create=False) as reader:  # a reader cannot change it: no word
            assert len(reader.list()) == 1
        assert "32-bit" not in caplog.text

    run_sql(db, "ALTER TABLE decisions ALTER COLUMN id TYPE bigint")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="surgecast.decisions"):
        DecisionLog(db).close()
    assert "32-bit" not in caplog.text


def test_postgresql_connections_end_when_the_server_vanishes_mid_statement(
    postgres: pg_server.PgServer,
) -> None:
    """Only the opening had a timeout: a server lost mid-statement held the reconcile for
    the kernel's retransmission timeout (about 15 minutes). The log's connections now carry
    TCP keepalives and a user timeout, as libpq reports them."""
    with DecisionLog(postgres.new_database()) as log:
        log.record(sample(0))
        with log._engine.connect() as conn:
            settings = conn.connection.driver_connection.info.get_parameters()
    assert settings["connect_timeout"] == "5"
    assert settings["keepalives_idle"] == "10" and settings["keepalives_count"] == "3"
    assert settings["tcp_user_timeout"] == "15000"
