"""``surgecast train`` then ``surgecast forecast``: many series, events, refusals, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.cli import app
from forecaster.frames import write_frame
from forecaster.models import registry
from forecaster.training import train

runner = CliRunner()


def write_series(path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    ds = pd.date_range("2026-09-01", periods=24 * 21, freq="1h")
    launch = (ds.hour == 12) & (ds.day % 2 == 0)
    frames = []
    for uid, k in (("pension", 1.0), ("tax", 4.0)):
        mean = k * (50 + 40 * np.sin(2 * np.pi * ds.hour / 24)) + 200 * launch
        frames.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.poisson(mean)}))
    frame = pd.concat(frames)
    write_frame(frame, path)
    events = pd.DataFrame({"ds": pd.date_range(ds[0], periods=len(ds) + 48, freq="1h")})
    events["launch"] = ((events["ds"].dt.hour == 12) & (events["ds"].dt.day % 2 == 0)) * 1.0
    write_frame(events, path.with_name("events.csv"))
    return frame


def trained_store(tmp_path: Path, *options: str) -> Path:
    """A store trained by ``surgecast train`` on :func:`write_series` data in ``tmp_path``."""
    write_series(tmp_path / "s.csv")
    store_dir = tmp_path / "models"
    args = ["train", "--series", str(tmp_path / "s.csv"), "-o", str(store_dir), *options]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return store_dir


def test_train_every_series_then_forecast(tmp_path: Path) -> None:
    frame = write_series(tmp_path / "s.csv")
    store_dir = tmp_path / "models"
    args = ["--series", str(tmp_path / "s.csv"), "-o", str(store_dir), "--horizon", "24"]
    trained = runner.invoke(app, ["train", *args, "--events", str(tmp_path / "events.csv")])
    assert trained.exit_code == 0, trained.output
    assert "stored version" in trained.output
    (manifest_path,) = store_dir.glob("*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    assert set(manifest["series"]) == {"pension", "tax"}
    assert manifest["training"]["events"] == ["launch"]
    assert {r["model"] for r in manifest["backtest"]} >= {"seasonal_naive", "gradient_boosting"}
    chosen = {uid: info["model"] for uid, info in manifest["series"].items()}
    for uid, name in chosen.items():
        mine = [r for r in manifest["backtest"] if r["unique_id"] == uid]
        best = min(mine, key=lambda r: r["selection_score"])
        assert best["model"] == name

    out = tmp_path / "f.parquet"
    result = runner.invoke(
        app,
        ["forecast", "--model", str(store_dir), "--horizon", "48h", "-o", str(out)]
        + ["--quantiles", "0.5,0.9,0.99", "--events", str(tmp_path / "events.csv")],
    )
    assert result.exit_code == 0, result.output
    forecast = pd.read_parquet(out)
    assert list(forecast.columns) == ["unique_id", "ds", "yhat", "q0.5", "q0.9", "q0.99"]
    assert forecast.groupby("unique_id").size().to_dict() == {"pension": 48, "tax": 48}
    assert (forecast["ds"].min() - frame["ds"].max()) == pd.Timedelta("1h")
    assert (forecast["q0.99"] >= forecast["q0.9"]).all()
    level = forecast.groupby("unique_id")["yhat"].mean()
    assert level["tax"] > 2 * level["pension"]


def test_forecast_refuses_a_tampered_store(tmp_path: Path) -> None:
    store_dir = trained_store(tmp_path, "--model", "seasonal_naive", "--horizon", "24")
    (model_json,) = store_dir.glob("*/model.json")
    model_json.write_text(model_json.read_text().replace('"1D"', '"2D"'))
    result = runner.invoke(
        app,
        ["forecast", "--model", str(store_dir), "--horizon", "6", "-o", str(tmp_path / "f.csv")],
    )
    assert result.exit_code == 2
    assert "refusing the model store" in result.output and "checksum" in result.output
    assert not (tmp_path / "f.csv").exists()


def test_train_and_forecast_errors(tmp_path: Path) -> None:
    write_series(tmp_path / "s.csv")
    cases = [
        (
            ["train", "--series", str(tmp_path / "none.csv"), "-o", str(tmp_path / "m")],
            "no such file",
        ),
        (
            [
                "train",
                "--series",
                str(tmp_path / "s.csv"),
                "-o",
                str(tmp_path / "m"),
                "--model",
                "gpt",
            ],
            "unknown model",
        ),
        (
            [
                "forecast",
                "--model",
                str(tmp_path / "m"),
                "--horizon",
                "6",
                "-o",
                str(tmp_path / "f.csv"),
            ],
            "no model store here",
        ),
        (
            [
                "forecast",
                "--model",
                str(tmp_path / "m"),
                "--horizon",
                "6",
                "-o",
                str(tmp_path / "f.csv"),
                "--quantiles",
                "0.5,1.5",
            ],
            "strictly between 0 and 1",
        ),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)


def test_bad_option_values_are_refused_before_any_work(tmp_path: Path) -> None:
    """A bad value was a traceback (--tz, --country, forecast --horizon 0) or, in train, a
    quiet "not backtested" note and a stored model with --quantile 1.5 (exit 0)."""
    write_series(tmp_path / "s.csv")
    store_dir = tmp_path / "models"
    train_args = ["train", "--series", str(tmp_path / "s.csv"), "-o", str(store_dir)]
    cases = [
        (["--quantile", "1.5"], "--quantile 1.5 is not strictly between 0 and 1"),
        (["--season", "foo"], "--season 'foo' is not a positive duration like 1D"),
        (["--season", "0s"], "--season '0s' is not a positive duration like 1D"),
        (["--horizon", "0"], "--horizon '0' is not a whole, positive number of"),
        (["--horizon", "90min"], "--horizon '90min' is not a whole, positive number of 1h"),
        (["--tz", "Foo/Bar"], "--tz 'Foo/Bar' is not a time zone like Europe/Berlin"),
        (["--country", "XX"], "--country 'XX' has no holiday calendar"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, [*train_args, "--model", "last_value", *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert result.stderr.startswith(f"error: {message}"), (extra, result.stderr)
        assert result.stderr.count("\n") == 1, (extra, result.stderr)
        assert not store_dir.exists(), extra
    runner.invoke(app, [*train_args, "--model", "last_value", "--horizon", "24"])
    result = runner.invoke(
        app,
        ["forecast", "--model", str(store_dir), "--horizon", "0", "-o", str(tmp_path / "f.csv")],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --horizon '0' is not a whole, positive number of")


def test_training_falls_back_only_when_the_history_is_too_short(tmp_path: Path) -> None:
    """A bad argument is an error, not a reason to skip the backtest and store a model."""
    frame = write_series(tmp_path / "s.csv")
    models = registry(None, None)
    with pytest.raises(ValueError, match="(?i)quantiles? must be"):
        train(frame, models, model="last_value", horizon=24, upper=1.5)
    with pytest.raises(ValueError, match="horizon must be a positive (whole )?number"):
        train(frame, models, model="last_value", horizon=0)
    short = train(frame, models, model="last_value", horizon=24, folds=30)
    assert short.scores is None and short.note.startswith("not backtested (30 folds")


def test_a_store_that_cannot_be_written_is_one_line_of_error(tmp_path: Path) -> None:
    """An unknown protocol or a file given as the store was a traceback, and only after the
    whole training; a folder under a file still costs the training, but is one line too."""
    write_series(tmp_path / "s.csv")
    (tmp_path / "afile").write_text("")
    train_args = ["train", "--series", str(tmp_path / "s.csv"), "--model", "last_value"]
    cases = [
        ("foo://models", "-o foo://models: Protocol not known: foo"),
        (str(tmp_path / "afile"), "is a file; a model store is a directory"),
        ("", "-o is empty"),
        (str(tmp_path / "afile" / "models"), "cannot write the model store"),
    ]
    for out, message in cases:
        result = runner.invoke(app, [*train_args, "--horizon", "24", "-o", out])
        assert result.exit_code == 2, (out, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr


def test_forecast_into_a_missing_folder_is_one_line_of_error(tmp_path: Path) -> None:
    store_dir = trained_store(tmp_path, "--model", "last_value", "--horizon", "24")
    out = tmp_path / "missing" / "f.csv"
    result = runner.invoke(
        app, ["forecast", "--model", str(store_dir), "--horizon", "6", "-o", str(out)]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "missing" in result.stderr, result.stderr


def test_forecast_from_a_store_saved_from_python(tmp_path: Path) -> None:
    """``store.save`` records no step unless told (tests/fixtures/model-store-v1 does not):
    ``forecast`` was a KeyError traceback; the fitted models know their interval."""
    fixture = Path(__file__).parent / "fixtures" / "model-store-v1"
    out = tmp_path / "f.csv"
    result = runner.invoke(
        app, ["forecast", "--model", str(fixture), "--horizon", "6h", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    expected = pd.read_csv(fixture / "expected-forecast.csv")
    got = pd.read_csv(out)
    assert got.groupby("unique_id").size().to_dict() == {"a": 6, "b": 6}
    first = expected.groupby("unique_id").head(6).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, first[got.columns], check_exact=False, rtol=1e-9)


def test_forecast_with_a_calendar_lacking_a_learnt_event_is_one_line_of_error(
    tmp_path: Path,
) -> None:
    """It was a ValueError traceback out of the model."""
    events = tmp_path / "events.csv"  # written by write_series
    store_dir = trained_store(
        tmp_path, "--events", str(events), "--model", "gradient_boosting", "--horizon", "24"
    )
    other = tmp_path / "other.csv"
    pd.read_csv(events).rename(columns={"launch": "other"}).to_csv(other, index=False)
    out = tmp_path / "f.csv"
    result = runner.invoke(
        app,
        ["forecast", "--model", str(store_dir), "--horizon", "6", "-o", str(out)]
        + ["--events", str(other)],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "launch" in result.stderr, result.stderr
    assert not out.exists()


def test_training_part_of_a_fleet_warns_of_the_series_no_longer_in_force(tmp_path: Path) -> None:
    """A fleet trained in batches into one store: each training replaced the version in
    force, and ``forecast`` silently lost every batch but the last."""
    frame = write_series(tmp_path / "both.csv")
    write_frame(frame[frame["unique_id"] == "tax"], tmp_path / "tax.csv")
    store_dir = tmp_path / "models"
    options = ["-o", str(store_dir), "--model", "seasonal_naive", "--horizon", "6"]
    first = runner.invoke(app, ["train", "--series", str(tmp_path / "both.csv"), *options])
    assert first.exit_code == 0, first.output
    assert "warning" not in first.output
    again = runner.invoke(app, ["train", "--series", str(tmp_path / "both.csv"), *options])
    assert "warning" not in again.output  # the same series: nothing lost
    old = (store_dir / "LATEST").read_text().strip()
    second = runner.invoke(app, ["train", "--series", str(tmp_path / "tax.csv"), *options])
    assert second.exit_code == 0, second.output
    assert (
        f"warning: version {old}, in force until now, also had models of 1 series this file"
        f" lacks (pension); forecasts now come from this version only (train them together,"
        f" or read the old one with --version {old})"
    ) in second.output


def test_forecast_refuses_a_horizon_beyond_400_days_in_one_line(tmp_path: Path) -> None:
    """``--horizon 9999999`` (a few digits too many) ran for minutes and past 1.3 GB before
    writing anything; now the furthest a forecast reaches is 400 days, as generate's."""
    store_dir = trained_store(tmp_path, "--model", "last_value", "--horizon", "24")
    out = tmp_path / "f.csv"
    args = ["forecast", "--model", str(store_dir), "-o", str(out)]
    for horizon, span in [("9601", "400 days 01:00:00"), ("401d", "401 days 00:00:00")]:
        result = runner.invoke(app, [*args, "--horizon", horizon])
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            f"error: --horizon {horizon!r} is {int(pd.Timedelta(span) / pd.Timedelta('1h')):,}"
            f" intervals ({span}); forecast reaches at most 400 days and 576,000 intervals\n"
        )
        assert not out.exists()
    result = runner.invoke(app, [*args, "--horizon", "400d"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out).groupby("unique_id").size().to_dict() == {"pension": 9600, "tax": 9600}


@pytest.mark.parametrize(
    ("levels", "columns"), [("0.99999999999", "q1"), ("0.1,0.100000000001", "q0.1, q0.1")]
)
def test_forecast_refuses_levels_its_columns_cannot_tell_apart(
    tmp_path: Path, levels: str, columns: str
) -> None:
    """Columns are named to 10 significant digits: 0.99999999999 was written as q1 (read as
    the 100 % quantile) and two close levels as one q0.1 column, a forecast lost unsaid."""
    store_dir = trained_store(tmp_path, "--model", "last_value", "--horizon", "24")
    out = tmp_path / "f.csv"
    args = ["forecast", "--model", str(store_dir), "--horizon", "6", "-o", str(out)]
    result = runner.invoke(app, [*args, "--quantiles", levels])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --quantiles {levels!r} would be columns {columns}:")
    assert not out.exists()
