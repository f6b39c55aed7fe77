"""``surgecast outlook`` on a model store trained on the synthetic portal, whose event
calendar has a filing deadline five days after the end of the training data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.cli import app
from controller.forecasting import event_calendar
from forecaster import store
from forecaster.frames import write_frame
from forecaster.models import GradientBoostingForecaster
from tests.test_outlook import NOW, ZONE, deadline_windows, portal

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with gradient boosting fitted on the hourly portal and its event calendar
    (``events.csv`` beside it covers the week after the training data)."""
    root = tmp_path_factory.mktemp("outlook")
    history, _ = portal("1h")
    end = pd.Timestamp(NOW).tz_localize(None) + pd.Timedelta(days=8)
    events = event_calendar(deadline_windows(), history["ds"].min(), end, pd.Timedelta("1h"))
    assert events is not None
    write_frame(events, root / "events.csv")
    model = GradientBoostingForecaster(country="CN", tz=ZONE, max_horizon=7 * 24)
    metadata = {"step": "3600s", "training": {"tz": ZONE, "events": ["event_deadline"]}}
    model.fit(history, events=events)
    store.save(
        {"gradient_boosting": model},
        str(root / "models"),
        metadata,
        store.fingerprint(history),
        now=datetime(2026, 11, 15, tzinfo=UTC),
    )
    return root


def outlook(root: Path, *args: str) -> tuple[int, str]:
    base = ["outlook", "--model", str(root / "models"), "--capacity-per-replica", "1.25"]
    result = runner.invoke(app, [*base, *args])
    return result.exit_code, result.output


def test_the_deadline_days_peak_hours_are_listed_five_days_ahead(trained: Path) -> None:
    code, output = outlook(trained, "--max-replicas", "10", "--events", str(trained / "events.csv"))
    assert code == 0, output
    head, table = output.split("\n", 1)
    assert head.startswith("portal: ") and "hour(s) at risk in the 7 days from 2026-11-15 00:00"
    assert "(Asia/Shanghai); max 10 x 1.25 = 12.5" in head
    rows = [line.split() for line in table.strip().splitlines()[1:]]
    assert rows and all(row[:2] == ["Fri", "2026-11-20"] for row in rows)
    assert {"09:00", "10:00"} <= {row[2] for row in rows}
    assert rows[0][3].startswith("5d")  # the ahead column

    code, output = outlook(
        trained, "--max-replicas", "10", "--events", str(trained / "events.csv"), "--json"
    )
    (series,) = json.loads(output)
    hours = [pd.Timestamp(r["hour"]) for r in series["at_risk"]]
    assert len(hours) == len(rows) and {h.date().isoformat() for h in hours} == {"2026-11-20"}
    assert all(r["replicas_short"] >= 1 and r["peak"] > 12.5 for r in series["at_risk"])


def test_enough_replicas_or_no_calendar_means_no_hour_at_risk(trained: Path) -> None:
    code, output = outlook(trained, "--max-replicas", "20", "--events", str(trained / "events.csv"))
    assert code == 0 and "portal: 0 hour(s) at risk" in output
    code, output = outlook(trained, "--max-replicas", "10")  # the deadline is not foreseen
    assert code == 0 and "portal: 0 hour(s) at risk" in output
    assert "warning: the models learnt events (event_deadline)" in output


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_the_chart_shows_forecast_capacity_and_risky_hours(trained: Path, suffix: str) -> None:
    chart = trained / f"outlook{suffix}"
    code, output = outlook(
        trained, "--max-replicas", "10", "--events", str(trained / "events.csv"), "-o", str(chart)
    )
    assert code == 0 and f"chart written to {chart}" in output
    data = chart.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG") and len(data) > 20_000
    else:
        page = data.decode()
        assert "max \\u00d7 capacity" in page and "hour(s) at risk" in page
        assert '"fillcolor":"red"' in page  # the hours at risk
        assert "<script src=" not in page  # plotly.js is inlined: the file opens offline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-replicas", "10", "-o", "chart.pdf"], "the chart is written as .png or .html"),
        (["--max-replicas", "10", "--tz", "Mars/Olympus"], "is not a time zone"),
        (["--max-replicas", "10", "--tz", "Europe"], "--tz 'Europe' is not a time zone"),
        (["--max-replicas", "0"], "--max-replicas"),
        (["--max-replicas", "10", "--days", "30"], "--days"),
    ],
)
def test_bad_options_are_one_clear_line(trained: Path, args: list[str], message: str) -> None:
    code, output = outlook(trained, *args)
    assert code == 2 and message in output


def test_a_tampered_store_is_refused(trained: Path, tmp_path: Path) -> None:
    (version,) = [p for p in (trained / "models").iterdir() if p.is_dir()]
    copy = tmp_path / "models" / version.name
    copy.mkdir(parents=True)
    for part in version.iterdir():
        (copy / part.name).write_bytes(part.read_bytes())
    (tmp_path / "models" / "LATEST").write_text(version.name)
    (copy / "model.json").write_text((copy / "model.json").read_text().replace("1", "2", 1))
    result = runner.invoke(
        app,
        ["outlook", "--model", str(tmp_path / "models"), "--capacity-per-replica", "1"]
        + ["--max-replicas", "3"],
    )
    assert result.exit_code == 2 and "refusing the model store" in result.output
