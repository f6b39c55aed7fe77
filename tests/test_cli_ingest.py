"""The ``surgecast ingest`` command: output, summary and one-line errors with exit codes."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.cli import app
from forecaster._cli_ingest import describe_series
from tests.conftest import shared_file

runner = CliRunner()
LINE = '10.0.0.1 - - [20/Nov/2026:09:41:07 +0800] "GET /api/pension HTTP/1.1" 200 512\n'


def test_nasa_sample_to_stdout() -> None:
    sample = shared_file("nasa-http/raw-sample/NASA_Aug95_100.txt")
    result = runner.invoke(app, ["ingest", str(sample), "--freq", "1min"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(io.StringIO(result.stdout))
    assert rows.iloc[:2].values.tolist() == [
        ["all", "1995-08-01 04:00:00", 51.0],
        ["all", "1995-08-01 04:01:00", 42.0],
    ]
    assert "100 parsed + 0 malformed" in result.stderr


def test_output_file_split_and_report(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(LINE * 3 + "broken\n")
    out = tmp_path / "s.parquet"
    result = runner.invoke(
        app,
        [
            "ingest",
            str(log),
            "-o",
            str(out),
            "--by",
            "status",
            "--max-bad-fraction",
            "0.5",
            "--report",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    series = pd.read_parquet(out)
    assert series.values.tolist() == [["status=2xx", pd.Timestamp("2026-11-20 01:41"), 3.0]]
    assert "unknown_format: 1" in result.stderr and "a.log:4: 'broken'" in result.stderr
    assert '"malformed": 1' in (tmp_path / "r.json").read_text()


def test_too_many_bad_lines_fails_without_output(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(LINE * 9 + "broken\n")
    out = tmp_path / "s.csv"
    result = runner.invoke(app, ["ingest", str(log), "-o", str(out), "--max-bad-fraction", "0.05"])
    assert result.exit_code == 3
    assert "10.0% of lines are malformed" in result.stderr
    assert not out.exists()


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.log").write_text("")
    (tmp_path / "other.csv").write_text('"V1","V2"\n"H1","605"\n')
    cases = [
        ([str(tmp_path / "missing.log")], "no such file"),
        ([str(tmp_path / "empty.log")], "empty, nothing to ingest"),
        ([str(tmp_path / "other.csv")], "not a recognised access-log format"),
        ([str(tmp_path / "other.csv"), "--format", "xml"], "unknown --format"),
        ([str(tmp_path / "other.csv"), "--freq", "7s"], "divides a day"),
        ([str(tmp_path / "other.csv"), "-o", "out.txt"], "must end in .csv or .parquet"),
        ([str(tmp_path / "other.csv"), "--pattern", "(?P<x>a)"], "named group 'time'"),
        ([str(tmp_path / "other.csv"), "--tz", "Foo/Bar"], "not a time zone"),
        ([str(tmp_path / "other.csv"), "--format", "counts", "--tz", "-99:99"], "not an offset"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["ingest", *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr, (
            args,
            result.stderr,
        )


def test_counts_format_loads_nasa_per_minute(tmp_path: Path) -> None:
    csv = shared_file("nasa-http/per-minute/requestdata-20240626.csv")
    out = tmp_path / "nasa.parquet"
    result = runner.invoke(
        app, ["ingest", str(csv), "--format", "counts", "--tz=-04:00", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["y"].sum() == 3_461_612


def test_every_command_has_help() -> None:
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, name


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == "0.1.0"


def write_counts(path: Path, start: str, periods: int, freq: str, count: int = 100) -> Path:
    stamps = pd.date_range(start, periods=periods, freq=freq)
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%d %H:%M:%S"), "count": count}).to_csv(
        path, index=False
    )
    return path


def test_counts_format_keeps_the_files_own_interval(tmp_path: Path) -> None:
    five = write_counts(tmp_path / "five.csv", "2026-10-12", 48, "5min")
    hourly = write_counts(tmp_path / "hourly.csv", "2026-10-12", 12, "1h")
    for csv, rows, label in [(five, 48, "5min"), (hourly, 12, "1h")]:
        result = runner.invoke(app, ["ingest", str(csv), "--format", "counts"])
        assert result.exit_code == 0, result.output
        series = pd.read_csv(io.StringIO(result.stdout))
        assert len(series) == rows and (series["y"] == 100).all()
        assert f"{rows} intervals of {label}" in result.stderr
    coarser = runner.invoke(app, ["ingest", str(five), "--format", "counts", "--freq", "1h"])
    assert coarser.exit_code == 0, coarser.output
    assert pd.read_csv(io.StringIO(coarser.stdout))["y"].tolist() == [1200.0] * 4


def test_counts_format_checks_freq_and_mixed_intervals(tmp_path: Path) -> None:
    five = write_counts(tmp_path / "five.csv", "2026-10-12", 48, "5min")
    hourly = write_counts(tmp_path / "hourly.csv", "2026-10-12", 12, "1h")
    cases = [
        ([str(five), "--freq", "0s"], "divides a day"),
        ([str(five), "--freq", "7min"], "divides a day"),
        ([str(five), str(hourly)], "different intervals"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["ingest", *args, "--format", "counts"])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def test_all_zero_counts_file_is_summarised(tmp_path: Path) -> None:
    csv = write_counts(tmp_path / "quiet.csv", "2026-10-12", 180, "1min", count=0)
    result = runner.invoke(app, ["ingest", str(csv), "--format", "counts"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(io.StringIO(result.stdout))["y"].tolist() == [0.0] * 180
    assert "0 requests; no peak; 0 intervals missing" in result.stderr


def test_summary_of_an_all_missing_series() -> None:
    series = pd.DataFrame(
        {"unique_id": "a", "ds": pd.date_range("2026-10-12", periods=3, freq="1h"), "y": np.nan}
    )
    assert describe_series(series, "1h").endswith("0 requests; no peak; 3 intervals missing (gaps)")


def test_gap_without_a_unit_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(LINE)
    csv = write_counts(tmp_path / "c.csv", "2026-10-12", 3, "1min")
    for args in ([str(log)], [str(csv), "--format", "counts"]):
        result = runner.invoke(app, ["ingest", *args, "--gap", "10"])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.strip() == "error: --gap '10' has no unit; give one, e.g. 10min"
        assert runner.invoke(app, ["ingest", *args, "--gap", "0"]).exit_code == 0


def test_count_files_with_the_same_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "eu").mkdir()
    (tmp_path / "us").mkdir()
    eu = write_counts(tmp_path / "eu" / "api.csv", "2026-10-12", 3, "1min")
    us = write_counts(tmp_path / "us" / "api.csv", "2026-10-12", 3, "1min")
    out = tmp_path / "s.csv"
    result = runner.invoke(app, ["ingest", str(eu), str(us), "--format", "counts", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"error: {eu} and {us} would both be series 'api'; rename one of the files"
    )
    assert not out.exists()


def test_pattern_log_report_shows_unplaceable_local_times(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("2026-11-01 00:59:00 /a\n2026-11-01 01:30:00 /a\n2026-11-01 02:00:00 /a\n")
    args = ["ingest", str(log), "--pattern", r"^(?P<time>\S+ \S+) (?P<path>\S+)"]
    args += ["--time-format", "%Y-%m-%d %H:%M:%S", "--tz", "America/New_York"]
    result = runner.invoke(app, [*args, "--max-bad-fraction", "0.5"])
    assert result.exit_code == 0, result.output
    assert "2 parsed + 1 malformed" in result.stderr
    assert "ambiguous_time: 1" in result.stderr and "app.log:2: '2026-11-01 01:30:00 /a'" in (
        result.stderr
    )
    assert pd.read_csv(io.StringIO(result.stdout))["y"].sum() == 2


def test_a_window_of_one_row_keeps_the_files_interval(tmp_path: Path) -> None:
    """``--since`` at the last row left one row per file: the common interval was read from
    the rows left, and a one-row series has no step (an IndexError traceback)."""
    five = write_counts(tmp_path / "five.csv", "2026-10-12", 12, "5min")
    also = write_counts(tmp_path / "also.csv", "2026-10-12", 12, "5min")
    for files in ([five], [five, also]):
        result = runner.invoke(
            app, ["ingest", *map(str, files), "--format", "counts", "--since", "2026-10-12 00:55"]
        )
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(io.StringIO(result.stdout))
        assert len(frame) == len(files) and "per 5min" in result.stderr, result.stderr


@pytest.mark.slow
def test_an_unrecognised_format_on_dask_is_one_line_on_stderr(tmp_path: Path) -> None:
    """README: an unrecognised format is one line on stderr and exit code 2, and the Dask
    engine's results are the same as the local one's. Each worker of the local cluster
    also logged the failed task with its traceback, twice (the task is retried)."""
    table = tmp_path / "series.csv"
    table.write_text("unique_id,ds,y\nall,2026-10-12 00:00:00,3\n")
    surgecast = Path(sys.executable).with_name("surgecast")
    command = [str(surgecast), "ingest", str(table), "--engine", "dask"]
    command += ["-o", str(tmp_path / "out.parquet")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: not a recognised access-log format (first line: 'unique_id,ds,y');"
        " pass --format clf|combined|json or --pattern REGEX"
    ]
