"""The model store: exact round trips, refusal of anything tampered, old versions still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecaster import store
from forecaster.models import ConformalCalibrator, SeasonalNaive, registry
from forecaster.training import forecast, train

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
FIXTURE = Path(__file__).parent / "fixtures" / "model-store-v1"

MODELS = dict(registry(country="CN", tz="Asia/Shanghai", include_slow=True))
MODELS["conformal_seasonal_naive"] = lambda: ConformalCalibrator(
    SeasonalNaive(), horizon=12, folds=3
)


def hourly(days: int = 21, uid: str = "a", seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2026-09-07", periods=24 * days, freq="1h")
    mean = 40 + 30 * np.sin(2 * np.pi * (ds.hour - 6) / 24) + 10 * (ds.day_of_week < 5)
    frame = pd.DataFrame({"unique_id": uid, "ds": ds, "y": rng.poisson(mean).astype(float)})
    frame.loc[100:130, "y"] = np.nan  # an outage
    return frame


def save_one(model, url: str, key: str | None = None) -> str:
    frame = hourly()
    return store.save({"m": model}, url, {"note": None}, store.fingerprint(frame), NOW, key=key)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip_forecasts_exactly_the_same(name: str, tmp_path: Path) -> None:
    model = MODELS[name]().fit(hourly())
    before = model.predict(30, quantiles=(0.5, 0.9, 0.99))
    version = save_one(model, str(tmp_path))
    loaded = store.load(str(tmp_path))
    assert loaded.version == version
    after = loaded.models["m"].predict(30, quantiles=(0.5, 0.9, 0.99))
    pd.testing.assert_frame_equal(after, before)


def test_any_fsspec_url_and_versions_kept(tmp_path: Path) -> None:
    first = save_one(SeasonalNaive().fit(hourly()), "memory://store-test")
    later = datetime(2026, 11, 23, tzinfo=UTC)
    second = store.save(
        {"m": SeasonalNaive(season="7D").fit(hourly())}, "memory://store-test", {}, "f" * 64, later
    )
    assert store.versions("memory://store-test") == [first, second]
    assert store.load("memory://store-test").models["m"].season == "7D"
    assert store.load("memory://store-test", version=first).models["m"].season == "1D"


def test_manifest_says_what_the_model_learned(tmp_path: Path) -> None:
    frame = hourly()
    save_one(SeasonalNaive().fit(frame), str(tmp_path))
    manifest = store.load(str(tmp_path)).manifest
    assert manifest["data_fingerprint"] == store.fingerprint(frame)
    assert manifest["models"]["m"] == {"class": "SeasonalNaive", "params": {"season": "1D"}}
    assert {"python", "numpy", "pandas", "scikit-learn"} <= set(manifest["libraries"])
    assert manifest["created_at"] == "2026-11-22T09:30:00+00:00"
    assert store.fingerprint(frame.assign(y=frame["y"] + 1)) != manifest["data_fingerprint"]


def folder(tmp_path: Path) -> Path:
    return tmp_path / (tmp_path / "LATEST").read_text().strip()


def rewrite_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def fix_checksum(version: Path, name: str) -> None:
    """What an attacker who can write the files would also do."""
    digest = store._sha256((version / name).read_bytes())
    rewrite_json(version / "manifest.json", lambda m: m["files"].__setitem__(name, digest))


def tamper_value(version: Path) -> None:
    rewrite_json(version / "model.json", lambda s: s["m"]["params"].__setitem__("season", "2D"))


def truncate_arrays(version: Path) -> None:
    data = (version / "arrays.npz").read_bytes()
    (version / "arrays.npz").write_bytes(data[: len(data) // 2])


def newer_format(version: Path) -> None:
    rewrite_json(version / "manifest.json", lambda m: m.__setitem__("format", 2))


def foreign_class(version: Path) -> None:
    rewrite_json(version / "model.json", lambda s: s["m"].__setitem__("$model", "Popen"))
    fix_checksum(version, "model.json")


def unknown_tag(version: Path) -> None:
    rewrite_json(
        version / "model.json", lambda s: s["m"]["state"].__setitem__("x_", {"$pickle": "gASV"})
    )
    fix_checksum(version, "model.json")


def broken_manifest(version: Path) -> None:
    (version / "manifest.json").write_text('{"format": 1, "files": ')


def missing_array(version: Path) -> None:
    np.savez(version / "arrays.npz")
    fix_checksum(version, "arrays.npz")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (tamper_value, "model.json does not match its checksum"),
        (truncate_arrays, "arrays.npz does not match its checksum"),
        (newer_format, "stored in format 2"),
        (foreign_class, "model class 'Popen' is not one"),
        (unknown_tag, "unknown tag '$pickle'"),
        (broken_manifest, "manifest.json is not valid JSON"),
        (missing_array, "which arrays.npz lacks"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_damaged_or_tampered_artefacts_are_refused(damage, message: str, tmp_path: Path) -> None:
    save_one(SeasonalNaive().fit(hourly()), str(tmp_path))
    damage(folder(tmp_path))
    with pytest.raises(store.StoreError, match=message.replace("$", r"\$")):
        store.load(str(tmp_path))


def test_a_signing_key_catches_an_attacker_who_fixes_checksums(tmp_path: Path) -> None:
    save_one(SeasonalNaive().fit(hourly()), str(tmp_path), key="s3cret")
    assert store.load(str(tmp_path), key="s3cret").models["m"].season == "1D"
    with pytest.raises(store.StoreError, match="signature"):
        store.load(str(tmp_path), key="other")
    tamper_value(folder(tmp_path))
    fix_checksum(folder(tmp_path), "model.json")
    with pytest.raises(store.StoreError, match="signature"):
        store.load(str(tmp_path), key="s3cret")


def test_no_store_and_unknown_version_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(store.StoreError, match="no model store here"):
        store.load(str(tmp_path / "nothing"))
    save_one(SeasonalNaive().fit(hourly()), str(tmp_path))
    with pytest.raises(store.StoreError, match="version 1999 not found"):
        store.load(str(tmp_path), version="1999")


def test_unstorable_state_fails_at_save_not_at_load(tmp_path: Path) -> None:
    model = SeasonalNaive().fit(hourly())
    model.extra_ = object()
    with pytest.raises(TypeError, match="cannot store a value of type object"):
        save_one(model, str(tmp_path))
    assert store.versions(str(tmp_path)) == []


def test_train_chooses_per_series_and_cold_start_is_said() -> None:
    long = hourly(uid="long")
    short = hourly(days=1, uid="short").iloc[:20]
    trained = train(
        pd.concat([long, short]), registry(None, None), model="gradient_boosting", horizon=12
    )
    assert trained.assignment == {"long": "gradient_boosting", "short": "gradient_boosting"}
    reasons = trained.models["gradient_boosting"].fallback_reason_
    assert reasons["long"] is None and reasons["short"].startswith("cold start")
    frame = forecast(trained.models, 6, (0.5, 0.9))
    assert frame.groupby("unique_id").size().to_dict() == {"long": 6, "short": 6}


def test_too_short_to_backtest_uses_the_default_and_says_so() -> None:
    trained = train(hourly(days=1).iloc[:30], registry(None, None), horizon=24, folds=3)
    assert trained.assignment == {"a": "seasonal_quantile"}
    assert trained.scores is None and "not backtested" in trained.note


def test_files_from_format_1_still_load_and_forecast_the_same() -> None:
    """A store written by an earlier release (tests/fixtures/model-store-v1, made by
    ``python tests/fixtures/make_model_store.py``) must keep loading unchanged."""
    loaded = store.load(str(FIXTURE))
    expected = pd.read_csv(FIXTURE / "expected-forecast.csv")
    expected["ds"] = pd.to_datetime(expected["ds"]).astype("datetime64[ns]")
    got = forecast(loaded.models, 24, (0.5, 0.9))
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)


def test_a_series_that_ended_before_the_backtest_gets_the_default_and_the_others_their_pick() -> (
    None
):
    long = hourly(days=14, uid="long")
    ended = hourly(days=14, uid="ended").iloc[: 24 * 9]  # stopped five days ago
    candidates = {name: make for name, make in registry(None, None).items() if name != "prophet"}
    trained = train(pd.concat([long, ended]), candidates, horizon=12, folds=3)
    assert trained.assignment["ended"] == "seasonal_quantile"
    assert "ended" in trained.note and "no backtest fold" in trained.note
    assert trained.assignment["long"] in candidates
    frame = forecast(trained.models, 6, (0.5, 0.9))
    assert frame.groupby("unique_id").size().to_dict() == {"ended": 6, "long": 6}
