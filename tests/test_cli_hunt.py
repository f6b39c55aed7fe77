"""Command-line contracts found broken in a bug hunt: each test is one user's mistake or
edge input, answered by one clear line on stderr and the exit code the README promises."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from controller._cli_replay import _duration
from controller.cli import app
from forecaster.frames import write_frame

runner = CliRunner()


def hourly_series(path: Path, days: int = 3) -> Path:
    ds = pd.date_range("2026-09-01", periods=24 * days, freq="1h")
    y = np.random.default_rng(0).poisson(20, len(ds)).astype(float)
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": y}), path)
    return path


@pytest.mark.parametrize("horizon", ["nan", "NaT"])
def test_a_horizon_that_is_no_duration_is_one_line_not_a_traceback(
    tmp_path: Path, horizon: str
) -> None:
    """pandas reads "nan" and "NaT" as a missing duration; its NaN count of intervals was a
    ``cannot convert float NaN to integer`` traceback."""
    series = hourly_series(tmp_path / "s.csv")
    result = runner.invoke(
        app, ["backtest", "--series", str(series), "--model", "last_value", "--horizon", horizon]
    )
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"--horizon {horizon!r}" in result.stderr


def test_the_pattern_example_in_ingest_help_is_a_regex_that_works(tmp_path: Path) -> None:
    """``--help`` reads help as Rich markup, which turned the example's ``\\[`` into ``[``:
    pasted from the help, the regex opened a character class and matched no log line."""
    shown = runner.invoke(app, ["ingest", "--help"], env={"COLUMNS": "1000"}).output
    flat = re.sub(r"\s*│\s*", " ", shown)  # the help box's borders, where a line wraps
    example = re.search(r"Example: '(.+?)'\s", flat)
    assert example is not None, shown
    log = tmp_path / "vhost.log"
    log.write_text(
        'portal.gov 10.0.0.1 - - [12/Oct/2026:08:00:00 +0800] "GET / HTTP/1.1" 200 5\n'
        'portal.gov 10.0.0.2 - - [12/Oct/2026:08:00:30 +0800] "GET /a HTTP/1.1" 503 5\n'
    )
    result = runner.invoke(app, ["ingest", str(log), "--pattern", example.group(1)])
    assert result.exit_code == 0, result.output
    assert "2 parsed + 0 malformed" in result.stderr
    series = pd.read_csv(io.StringIO(result.stdout), parse_dates=["ds"])
    assert series.to_dict("records") == [
        {"unique_id": "all", "ds": pd.Timestamp("2026-10-12 00:00"), "y": 2.0}
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-09-02 12:00", "2026-09-02 06:00"),
        ("2026-09-02 12:00", "2026-09-02 12:00"),
        ("2026-09-02 12:00", "2026-09-02T19:00+08:00"),  # 11:00 UTC
    ],
)
def test_replay_names_an_end_not_after_the_start(tmp_path: Path, start: str, end: str) -> None:
    """The replay said "--start ... must fall after the first interval and before the end
    (the series runs from ... to ...)", a --start well inside the series: the fault is --end."""
    series = hourly_series(tmp_path / "s.csv")
    args = ["replay", "--series", str(series), "--capacity-per-replica", "10"]
    result = runner.invoke(app, [*args, "--start", start, "--end", end, "--policy", "oracle"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --end {end!r} is not after --start {start!r}")


def test_replay_takes_an_end_with_an_offset_after_a_start_without(tmp_path: Path) -> None:
    series = hourly_series(tmp_path / "s.csv")
    args = ["replay", "--series", str(series), "--capacity-per-replica", "10", "--json"]
    window = ["--start", "2026-09-02 12:00", "--end", "2026-09-02T21:00+08:00"]  # 13:00 UTC
    result = runner.invoke(app, [*args, *window, "--policy", "oracle"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["policy"] == "oracle"


@pytest.mark.parametrize(
    ("plot", "said"),
    [("nodir/band.png", "no such directory 'nodir'"), ("band.txt", "no '.txt' files")],
)
def test_backtest_refuses_a_plot_it_could_not_write_before_the_backtest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plot: str, said: str
) -> None:
    """Found at the save, these were a FileNotFoundError or matplotlib's "Format 'txt' is not
    supported" traceback after the whole backtest had run."""
    monkeypatch.chdir(tmp_path)
    series = hourly_series(tmp_path / "s.csv")
    args = ["backtest", "--series", str(series), "--model", "last_value", "--horizon", "6"]
    result = runner.invoke(app, [*args, "--json", "--plot", plot])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # refused before any score was printed
    assert said in result.stderr and "Traceback" not in result.output


def test_replay_help_shows_the_duration_forms_its_options_accept() -> None:
    """The replay reads Kubernetes-style durations (3m), where ingest and backtest read
    pandas ones (3min): its help said only "From asking for a pod to it serving", so a
    user wrote 3min and met an error. Every form the help shows must be accepted."""
    shown = re.sub(
        r"\s*│\s*", " ", runner.invoke(app, ["replay", "--help"], env={"COLUMNS": "1000"}).output
    )
    for option in ("--startup-delay", "--retrain-every"):
        forms = re.search(rf"{option} .*?a duration like (\S+), (\S+) or (\S+?)\.", shown)
        assert forms is not None, shown
        for form in forms.groups():
            assert _duration(option, form) > timedelta(0)


@pytest.mark.parametrize("peak", ["2000", "1e9"])
def test_generate_refuses_a_peak_rate_it_has_no_memory_for(tmp_path: Path, peak: str) -> None:
    """2,000 requests/s grew past 7 GB within a minute of an ordinary day, and 1e9 was a
    "Unable to allocate 6.63 TiB" traceback: both are now refused before any work."""
    out = tmp_path / "a.log"
    result = runner.invoke(app, ["generate", "-o", str(out), "--days", "1", "--peak-rps", peak])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --peak-rps {float(peak):g} is more than 200")
    assert not out.exists()


@pytest.mark.parametrize("deadline", ["2025-10-20", "2026-10-11", "2026-10-23"])
def test_generate_refuses_a_deadline_outside_its_days(tmp_path: Path, deadline: str) -> None:
    """A deadline outside the span (a typo in the year) was left out without a word: the
    log had no surge and the user was not told."""
    out = tmp_path / "a.log"
    args = ["generate", "-o", str(out), "--start", "2026-10-12", "--days", "10"]
    result = runner.invoke(app, [*args, "--deadline", deadline])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"error: --deadline {deadline} is outside the 10 days from 2026-10-12 to 2026-10-21"
    )
    assert not out.exists()


def test_generate_takes_a_deadline_the_day_after_its_span_for_the_eve(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    args = [
        "generate",
        "-o",
        str(out),
        "--start",
        "2026-10-12",
        "--days",
        "1",
        "--peak-rps",
        "0.01",
    ]
    result = runner.invoke(app, [*args, "--deadline", "2026-10-13"])
    assert result.exit_code == 0, result.output
    assert out.exists()


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command under ``group``, nested groups included (typer builds
    them with its own copy of click, so a group is told by its ``commands``)."""
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from commands(command, (*path, name))
    else:
        yield path


OWNED = ("backtest", "generate", "ingest", "replay")
"""The commands whose options were found without a word of help, or with no unit."""


@pytest.mark.parametrize("path", [p for p in commands(get_command(app)) if p[0] in OWNED])
def test_every_option_says_what_it_takes(path: tuple[str, ...]) -> None:
    """``replay --min-replicas``/``--max-replicas`` and ``backtest --folds`` showed no help
    at all, and ``backtest --every``/``--season`` and ``generate --freq`` no unit or form."""
    command: Any = get_command(app)
    for name in path:
        command = command.commands[name]
    bare = [p.opts[0] for p in command.params if p.name != "help" and not getattr(p, "help", "")]
    assert bare == []
    shown = re.sub(
        r"\s*│\s*", " ", runner.invoke(app, [*path, "--help"], env={"COLUMNS": "1000"}).output
    )
    for option, form in {
        ("backtest", "--every"): "6h",
        ("backtest", "--season"): "1D",
        ("generate", "--freq"): "5min",
    }.items():
        if option[0] == path[0]:
            assert re.search(rf"{option[1]} .*?{form}", shown), shown


def test_ingest_summary_keeps_the_fractions_of_a_count_file(tmp_path: Path) -> None:
    """Fractional counts are kept (README), but the summary printed them through ``int``:
    a file of averaged rates read "0 requests; peak 0 per 1min"."""
    counts = tmp_path / "rates.csv"
    counts.write_text(
        "timestamp,count\n2026-10-12 08:00:00,0.4\n2026-10-12 08:01:00,0.3\n"
        "2026-10-12 08:02:00,1250.25\n"
    )
    result = runner.invoke(app, ["ingest", str(counts), "--format", "counts"])
    assert result.exit_code == 0, result.output
    assert "1,250.95 requests; peak 1,250.25 per 1min at 2026-10-12 08:02 UTC" in result.stderr


def test_replay_of_a_path_series_records_decisions_the_log_readers_can_name(
    tmp_path: Path,
) -> None:
    """A series split by path is named "path=/api": recorded as scaler "replay/path=/api",
    its decisions were refused by `decisions list`, `explain` and `review` as not
    NAMESPACE/NAME, so a replay filled a log nobody could read."""
    ds = pd.date_range("2026-09-01", periods=24 * 3, freq="1h")
    y = np.random.default_rng(0).poisson(20, len(ds)).astype(float)
    series = tmp_path / "s.csv"
    write_frame(pd.DataFrame({"unique_id": "path=/api", "ds": ds, "y": y}), series)
    db = f"sqlite:///{tmp_path / 'log.db'}"
    args = ["replay", "--series", str(series), "--capacity-per-replica", "10"]
    window = ["--start", "2026-09-03 12:00", "--policy", "predictive"]
    result = runner.invoke(app, [*args, *window, "--decision-log", db])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(
        app, ["decisions", "list", "replay/path=_api", "--since", "2026-09-03", "--db", db]
    )
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.startswith("time (UTC)") or " time (UTC) " in listed.stdout


@pytest.mark.parametrize("scaler", ["portal", "gov/", "/portal", "gov/api/v1"])
def test_replay_refuses_a_scaler_name_the_log_readers_refuse(tmp_path: Path, scaler: str) -> None:
    series = hourly_series(tmp_path / "s.csv")
    db = f"sqlite:///{tmp_path / 'log.db'}"
    args = [
        "replay",
        "--series",
        str(series),
        "--capacity-per-replica",
        "10",
        "--start",
        "2026-09-03",
    ]
    result = runner.invoke(app, [*args, "--decision-log", db, "--scaler", scaler])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --scaler {scaler!r} is not NAMESPACE/NAME")
    assert not (tmp_path / "log.db").exists()
