"""``surgecast backtest``: every model or one, JSON scores, the chosen model, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from controller.cli import app
from forecaster.frames import write_frame
from forecaster.models import registry

runner = CliRunner()


def test_auto_scores_every_model_and_chooses_one_per_series(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ds = pd.date_range("2026-09-01", periods=24 * 21, freq="1h")
    mean = 50 + 40 * np.sin(2 * np.pi * ds.hour / 24)
    frames = [
        pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.poisson(mean * k).astype(float)})
        for uid, k in (("a", 1), ("b", 3))
    ]
    write_frame(pd.concat(frames), tmp_path / "s.csv")
    result = runner.invoke(
        app,
        [
            "backtest",
            "--series",
            str(tmp_path / "s.csv"),
            "--horizon",
            "24",
            "--folds",
            "3",
            "--json",
            "--plot",
            str(tmp_path / "b.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(r["unique_id"], r["model"]) for r in rows} == {
        (u, m) for u in "ab" for m in registry()
    }
    for uid in "ab":
        mine = [r for r in rows if r["unique_id"] == uid]
        (chosen,) = [r for r in mine if r["chosen"]]
        assert chosen["selection_score"] == min(r["selection_score"] for r in mine)
    assert (tmp_path / "b.png").stat().st_size > 10_000


def test_backtest_errors(tmp_path: Path) -> None:
    ds = pd.date_range("2026-09-01", periods=30, freq="1h")
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 1.0}), tmp_path / "s.csv")
    cases = [
        (["--model", "gpt"], "unknown --model"),
        (["--horizon", "soon"], "neither a number of intervals nor a duration"),
        (["--horizon", "24", "--folds", "5"], "need more history"),
        (["--horizon", "0"], "--horizon '0' is not a whole, positive number"),
        (["--quantile", "0"], "--quantile 0.0 is not strictly between 0 and 1"),
        (["--season", "1 fortnight"], "--season '1 fortnight' is not a positive duration"),
        (["--tz", "Foo/Bar"], "--tz 'Foo/Bar' is not a time zone"),
        (["--country", "XX"], "--country 'XX' has no holiday calendar"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["backtest", "--series", str(tmp_path / "s.csv"), *extra])
        assert result.exit_code == 2 and message in result.stderr, (extra, result.output)
        assert result.stderr.count("\n") == 1, (extra, result.stderr)


def test_series_of_different_intervals_are_refused(tmp_path: Path) -> None:
    five = pd.date_range("2026-09-01", periods=24 * 12, freq="5min")
    hourly = pd.date_range("2026-09-01", periods=24, freq="1h")
    frame = pd.concat(
        [
            pd.DataFrame({"unique_id": "api", "ds": five, "y": 1.0}),
            pd.DataFrame({"unique_id": "batch", "ds": hourly, "y": 1.0}),
        ]
    )
    write_frame(frame, tmp_path / "s.csv")
    result = runner.invoke(app, ["backtest", "--series", str(tmp_path / "s.csv")])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: series have different intervals: 0 days 00:05:00 (api), 0 days 01:00:00"
        " (batch); split them into one frame per interval\n"
    )


def test_plot_with_no_series_scored_says_so(tmp_path: Path) -> None:
    """An outage over every backtest window leaves no series scored and nothing to plot."""
    ds = pd.date_range("2026-09-01", periods=72, freq="1h")
    y = np.where(ds < ds[-6], 10.0, np.nan)
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": y}), tmp_path / "s.csv")
    args = ["--series", str(tmp_path / "s.csv"), "--model", "last_value", "--horizon", "2"]
    result = runner.invoke(app, ["backtest", *args, "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "error: nothing to plot: no series has an observed value in any backtest window\n"
    )
    assert "last_value" in result.stdout and not (tmp_path / "b.png").exists()


def test_the_median_as_the_upper_quantile_is_scored_and_plotted(tmp_path: Path) -> None:
    """``--quantile 0.5`` failed with numpy's "inhomogeneous shape": the median was
    backtested twice, as two q0.5 columns."""
    ds = pd.date_range("2026-09-01", periods=24 * 5, freq="1h")
    y = np.random.default_rng(0).poisson(20 + 10 * np.sin(2 * np.pi * ds.hour / 24))
    write_frame(
        pd.DataFrame({"unique_id": "a", "ds": ds, "y": y.astype(float)}), tmp_path / "s.csv"
    )
    args = ["--series", str(tmp_path / "s.csv"), "--model", "last_value", "--horizon", "6"]
    result = runner.invoke(
        app, ["backtest", *args, "--quantile", "0.5", "--json", "--plot", str(tmp_path / "b.png")]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert 0 <= row["coverage"] <= 1 and row["pinball_q0.5"] > 0
    assert (tmp_path / "b.png").exists()


def test_json_scores_are_strict_json_with_null_for_what_cannot_be_measured(
    tmp_path: Path,
) -> None:
    """The MASE of a constant series (no seasonal change to scale by) came out as NaN,
    which is not JSON: strict parsers refused the whole document."""
    ds = pd.date_range("2026-09-01", periods=24 * 4, freq="1h")
    write_frame(pd.DataFrame({"unique_id": "a", "ds": ds, "y": 3.0}), tmp_path / "s.csv")
    args = ["--series", str(tmp_path / "s.csv"), "--model", "last_value", "--horizon", "6"]
    result = runner.invoke(app, ["backtest", *args, "--json"])
    assert result.exit_code == 0, result.output

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    (row,) = json.loads(result.stdout, parse_constant=refuse)
    assert row["mase"] is None and row["mae"] == 0.0 and row["chosen"] is True
