"""Command-line contracts found broken in a bug hunt: each test is one user's mistake or
edge input, answered by one clear line on stderr and the exit code the README promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

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
