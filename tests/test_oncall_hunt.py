"""The on-call path under a demanding reader: times as typed, numbers as configured, the
same answers from every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog
from tests.test_decisions import sample

MINUTE = datetime(2026, 11, 20, 9, 41, tzinfo=UTC)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def around_the_minute(tmp_path: Path) -> str:
    """A log with a decision half a minute before 09:41 (10 running) and one half a minute
    into it (50 running)."""
    db = f"sqlite:///{tmp_path / 'decisions.db'}"
    with DecisionLog(db) as log:
        log.record_many(
            [
                replace(sample(0), at=MINUTE - timedelta(seconds=30), current_replicas=10),
                replace(sample(0), at=MINUTE + timedelta(seconds=30), current_replicas=50),
            ]
        )
    return db


@pytest.mark.parametrize(
    ("at", "current"),
    [
        ("2026-11-20 09:41:00", 10),
        ("2026-11-20T09:41:00Z", 10),
        ("2026-11-20 09:41:00.000", 10),
        ("20261120T094100", 10),
        ("2026-11-20 09:41", 50),
        ("2026-11-20T09:41+00:00", 50),
    ],
)
def test_explain_at_a_time_typed_with_zero_seconds_is_that_instant(
    around_the_minute: str, at: str, current: int
) -> None:
    # An alert's "09:41:00" was read to the end of the minute, because only a non-zero
    # second told a time with seconds: the decision made at 09:41:30, after the moment
    # asked about, was explained as the one in force.
    code, out = cli("decisions", "explain", "prod/portal", "--at", at, "--db", around_the_minute)
    assert code == 0, out
    assert out.startswith(f"would have scaled {current} → 30"), out
