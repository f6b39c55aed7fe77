"""``surgecast decisions`` on a log filled by replaying synthetic portal traffic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog
from forecaster.frames import write_frame
from forecaster.generate import TrafficProfile, generate_traffic
from tests.test_decisions import sample

runner = CliRunner()
SCALER = "replay/pension"
"""The default name: ``replay/`` and the generated series' id."""


@dataclass(frozen=True)
class Replayed:
    db: str
    runs: pd.DataFrame
    """The replay's own per-interval decisions (``--decisions-out``), every policy."""


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """Four hours of the morning rise (Shanghai) replayed into a SQLite decision log."""
    root = tmp_path_factory.mktemp("replay")
    traffic = generate_traffic(TrafficProfile(peak_rps=1.0), date(2026, 11, 2), 9, seed=2)
    write_frame(traffic.true_counts("1min"), root / "s.parquet")
    db = f"sqlite:///{root / 'decisions.db'}"
    args = [
        *("replay", "--series", str(root / "s.parquet"), "--capacity-per-replica", "10"),
        *("--start", "2026-11-09 22:00", "--end", "2026-11-10 02:00"),
        *("--tz", "Asia/Shanghai", "--country", "CN"),
        *("--decisions-out", str(root / "runs.csv"), "--decision-log", db),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return Replayed(db, pd.read_csv(root / "runs.csv", parse_dates=["ds"]))


def decisions(db: str, *args: str) -> list[dict]:
    result = runner.invoke(app, ["decisions", "list", SCALER, "--db", db, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_replay_fills_the_log_one_row_per_interval(replayed: Replayed) -> None:
    rows = decisions(replayed.db, "--since", "2026-11-09")
    predictive = replayed.runs[replayed.runs["policy"] == "predictive"]
    hpa = replayed.runs[replayed.runs["policy"] == "hpa"]
    assert len(rows) == len(predictive) == 4 * 60
    assert [row["at"] for row in rows] == [
        f"{ds.tz_localize('UTC').isoformat()}" for ds in predictive["ds"]
    ]
    assert [row["replicas"] for row in rows] == predictive["replicas"].tolist()
    assert [row["reason"] for row in rows] == predictive["reason"].tolist()
    assert [row["hpa_replicas"] for row in rows] == hpa["replicas"].tolist()
    assert [row["current_replicas"] for row in rows[1:]] == [row["replicas"] for row in rows[:-1]]
    assert {(row["mode"], row["applied"], row["load_unit"]) for row in rows} == {
        ("ForecastOnly", False, "req/min")
    }
    assert all(row["message"] for row in rows)  # the policy's own words, kept by the replay
    assert any("Hold/Stabilizing" in row["clamps"] for row in rows)  # clamps are kept too
    assert decisions(replayed.db, "--since", "2026-11-10 01:00", "--reason", "Hold") == [
        row for row in rows if row["at"] >= "2026-11-10T01:00" and row["reason"].startswith("Hold/")
    ]


def test_explain_the_largest_scale_up(replayed: Replayed) -> None:
    rows = decisions(replayed.db, "--since", "2026-11-09")
    row = max(rows, key=lambda r: r["replicas"] - r["current_replicas"])
    assert row["replicas"] - row["current_replicas"] >= 2 and row["reason"].startswith("ScaleUp/")
    local = pd.Timestamp(row["at"]).tz_convert("Asia/Shanghai")
    result = runner.invoke(
        app,
        [
            *("decisions", "explain", SCALER, "--db", replayed.db),
            *("--at", f"{local:%Y-%m-%d %H:%M}", "--tz", "Asia/Shanghai"),
        ],
    )
    assert result.exit_code == 0, result.output
    peak = f"{row['forecast_peak']:,.1f}".removesuffix(".0")
    window = f"{local:%H:%M}–{local + pd.Timedelta(minutes=4):%H:%M}"
    account = result.stdout
    assert account.startswith(
        f"would have scaled {row['current_replicas']} → {row['replicas']} at {local:%H:%M} because "
    )
    assert f"p90 forecast for {window}" in account and f"{peak} req/min" in account
    assert f"HPA alone would have asked for {row['hpa_replicas']}." in account
    assert "Recorded only: the scaler is in ForecastOnly mode." in account
    assert f"decision {row['id']}, {local:%Y-%m-%d %H:%M} Asia/Shanghai: {row['reason']}" in account


def test_list_table(replayed: Replayed) -> None:
    args = ["--db", replayed.db, "--since", "2026-11-09", "--reason", "ScaleUp"]
    result = runner.invoke(app, ["decisions", "list", SCALER, *args])
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split() == "time (UTC) replicas reason load forecast peak HPA applied".split()
    assert lines and all("→" in line and "ScaleUp/" in line for line in lines)
    result = runner.invoke(
        app,
        ["decisions", "list", SCALER, "--since", "2026-11-09"],
        env={"SURGECAST_DECISION_DB": replayed.db},
    )
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 4 * 60 + 1


def test_list_table_keeps_the_loads_of_a_small_unit(tmp_path: Path) -> None:
    """At 0.1 rps a pod, loads under 1 decide a scale-up; rounded to whole numbers they read
    as 0. The table shows them as the review page does."""
    db = f"sqlite:///{tmp_path / 'small.db'}"
    small = dict(capacity_per_replica=0.1, current_replicas=2, replicas=4, hpa_replicas=None)
    with DecisionLog(db) as log:
        log.record(sample(0, observed_load=0.31, forecast_peak=0.38, **small))  # type: ignore[arg-type]
        log.record(sample(1))
    result = runner.invoke(
        app, ["decisions", "list", "prod/portal", "--db", db, "--since", "2026-11-20 08:00"]
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[2:] for row in rows] == [
        ["2", "→", "4", "ScaleUp/ForecastPeak", "0.31", "0.38", "-", "no"],
        ["11", "→", "31", "ScaleUp/ForecastPeak", "1,234.9", "2,951.1", "14", "no"],
    ]


def test_errors(replayed: Replayed, tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    DecisionLog(empty).close()
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    db = ["--db", replayed.db]
    cases = [
        (
            ["list", "prod/nope", *db],
            f"no decisions of prod/nope in {replayed.db}; it has {SCALER}",
        ),
        (["list", SCALER, "--db", empty], "is empty"),
        (["list", SCALER, "--db", missing], "no decision log at"),
        (["list", SCALER, "--db", "nonsense"], "is not a database URL"),
        (["list", "portal", *db], "'portal' is not NAMESPACE/NAME"),
        (["list", SCALER, "--since", "yesterday", *db], "--since 'yesterday' is not a time"),
        (["list", SCALER, "--limit", "0", *db], "--limit 0 is less than 1"),
        (
            ["list", SCALER, "--since", "3000000000d", *db],
            "--since '3000000000d' is not a time like '2026-11-20 09:41', "
            "and '3000000000d' is too long a duration (at most 999999999d)",
        ),
        (
            ["list", SCALER, "--until", "999999d", *db],
            "--until 999999d reaches back before the year 1",
        ),
        (["explain", SCALER, "--at", "20/11 9h41", *db], "--at '20/11 9h41' is not a time"),
        (
            ["explain", SCALER, "--at", "2026-11-09 10:00", "--tz", "Mars/Base", *db],
            "not a time zone",
        ),
        (  # a region alone is a folder of the zone database: an IsADirectoryError traceback
            ["list", SCALER, "--tz", "Europe", *db],
            "--tz 'Europe' is not a time zone",
        ),
        (
            ["explain", SCALER, "--at", "2026-11-01 00:00", *db],
            "no decision of replay/pension at or before 2026-11-01 00:00 UTC",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["decisions", *args])
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
