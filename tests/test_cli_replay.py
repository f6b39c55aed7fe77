"""``surgecast replay`` end to end on a small generated series."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from controller.cli import app
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
