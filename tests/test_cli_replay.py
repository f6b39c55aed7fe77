"""``surgecast replay`` end to end on a small generated series."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.decisions import DecisionLog
from forecaster.frames import write_frame
from forecaster.generate import TrafficProfile, generate_traffic

runner = CliRunner()


def test_replay_writes_decisions_report_and_json(tmp_path: Path) -> None:
    traffic = generate_traffic(TrafficProfile(peak_rps=1.0), date(2026, 11, 2), 9, seed=2)
    write_frame(traffic.true_counts("1min"), tmp_path / "s.parquet")
    args = [
        "replay",
        "--series",
        str(tmp_path / "s.parquet"),
        "--capacity-per-replica",
        "10",
        "--startup-delay",
        "3m",
        "--start",
        "2026-11-08 16:00",
        "--tz",
        "Asia/Shanghai",
        "--country",
        "CN",
        "--decisions-out",
        str(tmp_path / "d.csv"),
        "--html",
        str(tmp_path / "r.html"),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = {row["policy"]: row for row in json.loads(result.stdout)}
    assert set(summary) == {"predictive", "hpa", "oracle"}
    assert summary["oracle"]["unserved_requests"] == 0
    assert summary["predictive"]["cost_vs_oracle"] >= 1.0
    decisions = pd.read_csv(tmp_path / "d.csv")
    assert {"ds", "replicas", "policy", "reason", "forecast_peak"} <= set(decisions.columns)
    assert len(decisions) == 3 * 2 * 24 * 60  # three policies, two days
    page = (tmp_path / "r.html").read_text()
    assert (
        page.count("data:image/png;base64,") == 3
        and "cost vs oracle" in page
        and "http" not in page.split("<body>")[1]
    )


def test_replay_errors(tmp_path: Path) -> None:
    write_frame(
        pd.DataFrame({"unique_id": ["a", "b"], "ds": ["2026-01-01", "2026-01-01"], "y": [1, 2]}),
        tmp_path / "two.csv",
    )
    cases = [
        (["--series", str(tmp_path / "none.csv")], "no such file"),
        (["--series", str(tmp_path / "two.csv")], "has 2 series; pick one with --id"),
        (["--series", str(tmp_path / "two.csv"), "--policy", "magic"], "unknown --policy"),
        (
            ["--series", str(tmp_path / "none.csv"), "--policy", "hpa", "--decision-log", "x"],
            "--decision-log records the predictive policy",
        ),
    ]
    for extra, message in cases:
        result = runner.invoke(
            app, ["replay", "--capacity-per-replica", "1", "--start", "2026-01-01", *extra]
        )
        assert result.exit_code == 2 and message in result.stderr, (extra, result.output)


def test_replay_refuses_bad_option_values_up_front(tmp_path: Path) -> None:
    """Each would have crashed the replay (a division by zero, an overflow) or run it in
    silence with nonsense (112 % unserved, more replicas than --max-replicas)."""
    cases = [
        (["--capacity-per-replica", "0"], "--capacity-per-replica 0 is not a number > 0"),
        (["--capacity-per-replica", "-5"], "--capacity-per-replica -5 is not a number > 0"),
        (["--capacity-per-replica", "nan"], "--capacity-per-replica nan is not a number > 0"),
        (["--hpa-target", "0"], "--hpa-target 0 is not a utilisation in (0, 1]"),
        (["--hpa-target", "1.5"], "--hpa-target 1.5 is not a utilisation in (0, 1]"),
        (["--quantile", "1"], "--quantile 1 is not a quantile in (0, 1)"),
        (["--min-replicas", "0"], "--min-replicas 0 is less than 1"),
        (
            ["--min-replicas", "20", "--max-replicas", "5"],
            "--min-replicas 20 is greater than --max-replicas 5",
        ),
        (["--startup-delay", "0s"], "--startup-delay 0s is not positive"),
        (
            ["--retrain-every", "soon"],
            "--retrain-every 'soon' is not a duration like 30s, 3m, 1h30m or 28d",
        ),
        (
            ["--startup-delay", "3000000000d"],
            "--startup-delay '3000000000d' is too long a duration (at most 999999999d)",
        ),
        (["--start", "dawn"], "--start 'dawn' is not a time like 2026-10-14 06:00"),
        (["--start", ""], "--start '' is not a time like 2026-10-14 06:00"),
    ]
    for extra, message in cases:
        args = ["replay", "--series", str(tmp_path / "none.csv"), "--start", "2026-01-02"]
        args += ["--capacity-per-replica", "1", *extra]  # a later option wins
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (extra, result.output)
        assert result.stderr == f"error: {message}\n", (extra, result.stderr)


@pytest.mark.parametrize("start", ["2026-01-02T06:00Z", "2026-01-02T07:00+01:00"])
def test_replay_reads_a_start_with_an_offset_as_that_utc_time(tmp_path: Path, start: str) -> None:
    ds = pd.date_range("2026-01-01", periods=2 * 24 * 60, freq="1min")
    write_frame(
        pd.DataFrame({"unique_id": "s", "ds": ds, "y": 10.0 * (ds.hour + 1)}), tmp_path / "s.csv"
    )

    def summary(start: str) -> list[dict]:
        args = ["replay", "--series", str(tmp_path / "s.csv"), "--capacity-per-replica", "10"]
        args += ["--policy", "oracle", "--json", "--start", start, "--end", "2026-01-02T12:00Z"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert summary(start) == summary("2026-01-02 06:00")
    # 06:00 to 12:00 UTC needs 7 to 12 pods, each rise ready 3 minutes (the delay) ahead
    assert summary(start)[0]["replica_minutes"] == sum(range(7, 13)) * 60 + 5 * 3


def hourly_ramp(path: Path) -> Path:
    """Two days a minute apart, the load rising each hour: a replay needs no model skill."""
    ds = pd.date_range("2026-01-01", periods=2 * 24 * 60, freq="1min")
    write_frame(pd.DataFrame({"unique_id": "s", "ds": ds, "y": 10.0 * (ds.hour + 1)}), path)
    return path


def test_replay_json_without_the_oracle_is_strict_json(tmp_path: Path) -> None:
    """Cost vs oracle does not apply without the oracle: null, not NaN (which is not JSON)."""
    args = ["replay", "--series", str(hourly_ramp(tmp_path / "s.csv")), "--policy", "hpa"]
    args += ["--capacity-per-replica", "10", "--start", "2026-01-02 06:00", "--json"]
    args += ["--end", "2026-01-02 07:00"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    (row,) = json.loads(result.stdout, parse_constant=refuse)
    assert row["policy"] == "hpa" and row["cost_vs_oracle"] is None


def test_replay_refuses_to_record_the_same_intervals_twice_under_one_name(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    args = ["replay", "--series", str(hourly_ramp(tmp_path / "s.csv")), "--policy", "predictive"]
    args += ["--capacity-per-replica", "10", "--start", "2026-01-02 06:00"]
    args += ["--end", "2026-01-02 07:00", "--decision-log", db]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert again.stderr == (
        "error: the decision log already has decisions of replay/s between 2026-01-02 06:00"
        " and 2026-01-02 06:59 UTC: record this run under another --scaler or in another log\n"
    )
    assert runner.invoke(app, [*args, "--scaler", "replay/s-again"]).exit_code == 0
    with DecisionLog(db) as log:
        assert log.counts() == {"replay/s": 60, "replay/s-again": 60}


@pytest.mark.parametrize(
    "db",
    [
        "postgresql+psycopg://oncall:s3cret@127.0.0.1:1/surgecast",
        "postgresql+psycopg://oncall@127.0.0.1:1/surgecast?password=s3cret",
        "postgresql+psycopg://oncall:s3cret@127.0.0.1:notaport/surgecast",
    ],
)
def test_replay_never_prints_the_decision_logs_password(tmp_path: Path, db: str) -> None:
    """A log that cannot be written was named with its URL as given: the password went to
    the terminal, and from there to tickets and CI logs."""
    ds = pd.date_range("2026-09-01", periods=24 * 3, freq="1h")
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 20.0}), tmp_path / "s.csv")
    args = ["replay", "--series", str(tmp_path / "s.csv"), "--capacity-per-replica", "10"]
    window = ["--start", "2026-09-03 12:00", "--policy", "predictive"]
    result = runner.invoke(app, [*args, *window, "--decision-log", db])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot write the decision log postgresql+psycopg://")
    assert "s3cret" not in result.output and "***" in result.stderr


@pytest.mark.parametrize(
    ("bounds", "said"),
    [
        (("999999999999", "1000000000000"), "--min-replicas 999999999999"),
        (("1", "2147483648"), "--max-replicas 2147483648"),
    ],
)
def test_replay_refuses_more_replicas_than_kubernetes_holds(
    tmp_path: Path, bounds: tuple[str, str], said: str
) -> None:
    """Replicas are an int32 in Kubernetes; a trillion was a MemoryError traceback."""
    ds = pd.date_range("2026-09-01", periods=24 * 3, freq="1h")
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 20.0}), tmp_path / "s.csv")
    args = ["replay", "--series", str(tmp_path / "s.csv"), "--capacity-per-replica", "10"]
    window = ["--start", "2026-09-03 12:00", "--policy", "hpa"]
    limits = ["--min-replicas", bounds[0], "--max-replicas", bounds[1]]
    result = runner.invoke(app, [*args, *window, *limits])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {said} is more than Kubernetes' 2,147,483,647 (an int32)\n"


@pytest.mark.parametrize("option", ["--startup-delay", "--retrain-every"])
def test_replay_refuses_a_duration_of_millions_of_days_in_one_line(
    tmp_path: Path, option: str
) -> None:
    """999999999d parses, but a retrain interval that long was an OverflowError traceback
    and a startup delay "Python int too large to convert to C long"."""
    ds = pd.date_range("2026-09-01", periods=24 * 3, freq="1h")
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 20.0}), tmp_path / "s.csv")
    args = ["replay", "--series", str(tmp_path / "s.csv"), "--capacity-per-replica", "10"]
    window = ["--start", "2026-09-03 12:00"]
    result = runner.invoke(app, [*args, *window, option, "999999999d"])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {option} 999999999d is longer than 400d\n"
    assert runner.invoke(app, [*args, *window, option, "400d"]).exit_code == 0
