"""The README's demo runs end to end and leaves its artefacts."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_info, threadpool_limits
from typer.testing import CliRunner

from controller.cli import app
from forecaster.models import GradientBoostingForecaster


@pytest.mark.slow
def test_demo_runs_and_reports_every_line(tmp_path: Path, monkeypatch) -> None:
    threads = []  # OpenMP threads at each gradient-boosting fit
    fit = GradientBoostingForecaster.fit

    def counted_fit(self, *args, **kwargs):
        threads.append(
            max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp")
        )
        assert threads[-1] == 1, "a gradient-boosting fit on several OpenMP threads"
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(GradientBoostingForecaster, "fit", counted_fit)
    # A user's process starts with a thread per core (the test session runs on one); the demo
    # computes on one, as the controller's model workers: a thread per core spin-waits next
    # to busy neighbours, and the fits ran ten times slower
    with threadpool_limits(limits=max(2, os.cpu_count() or 2), user_api="openmp"):
        result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert threads and set(threads) == {1}, result.output
    assert result.exit_code == 0, result.output
    assert "+ 3 malformed" in result.output
    # the replay starts at the portal's local midnight, named as such and in UTC
    assert "replaying from 2026-11-02 00:00 Asia/Shanghai (2026-11-01 16:00 UTC)" in result.output
    series = pd.read_parquet(tmp_path / "series.parquet")
    assert series["y"].isna().sum() >= 3 * 120  # the maintenance windows are missing, not zero
    assert (tmp_path / "series.png").stat().st_size > 10_000
    assert (tmp_path / "models" / "LATEST").exists()
    forecast = CliRunner().invoke(
        app,
        ["forecast", "--model", str(tmp_path / "models"), "--horizon", "24h"]
        + ["-o", str(tmp_path / "forecast.csv")],
    )
    assert forecast.exit_code == 0, forecast.output
    assert len(pd.read_csv(tmp_path / "forecast.csv")) == 1440
    outlook = CliRunner().invoke(
        app,
        ["outlook", "--model", str(tmp_path / "models")]
        + ["--capacity-per-replica", "20", "--max-replicas", "40"],
    )
    assert outlook.exit_code == 0, outlook.output
    assert "(Asia/Shanghai)" in outlook.output  # the portal's hours, not UTC's
