"""The decision log over time: opened late (down at start), schema upgrades, two writers,
retention, and the commands that read it."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog
from tests.test_decisions import T0, sample

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
