"""The model store at its edges: saves that collide, crash, or race a reader; hand-edited
files; and the ``surgecast train``/``forecast`` commands' errors around the store."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from fsspec.implementations.local import LocalFileSystem

from forecaster import store
from forecaster.models import LastValue, SeasonalNaive, registry
from forecaster.training import forecast, train
from tests.test_store import fix_checksum, folder, hourly, rewrite_json, save_one


def test_two_saves_of_the_same_data_in_one_second_keep_both_versions(tmp_path: Path) -> None:
    """They were given one name, and the second rewrote the first's files in place."""
    first = save_one(SeasonalNaive().fit(hourly()), str(tmp_path))
    second = save_one(LastValue().fit(hourly()), str(tmp_path))
    assert first != second
    assert isinstance(store.load(str(tmp_path), version=first).models["m"], SeasonalNaive)
    assert isinstance(store.load(str(tmp_path)).models["m"], LastValue)
    assert store.versions(str(tmp_path)) == [first, second]


@pytest.mark.parametrize("url", ["memory://edges-order", "local"])
def test_versions_are_listed_in_the_order_saved_past_ten(url: str, tmp_path: Path) -> None:
    url = str(tmp_path) if url == "local" else url
    saved = [save_one(SeasonalNaive().fit(hourly()), url) for _ in range(12)]
    assert len(set(saved)) == 12
    assert store.versions(url) == saved
    assert store.load(url).version == saved[-1]


def _save_many(url: str, season: str, times: int) -> None:
    for _ in range(times):
        save_one(SeasonalNaive(season=season).fit(hourly()), url)


def test_two_processes_saving_at_once_lose_no_version(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_save_many, args=(str(tmp_path), season, 5))
        for season in ("1D", "7D")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    names = store.versions(str(tmp_path))
    assert len(names) == 10
    seasons = [store.load(str(tmp_path), version=v).models["m"].season for v in names]
    assert sorted(seasons) == ["1D"] * 5 + ["7D"] * 5


def test_a_crash_while_writing_latest_leaves_the_previous_version_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LATEST`` was rewritten in place: a full disk half-way left it cut short, and no
    version in force at all."""
    first = save_one(SeasonalNaive().fit(hourly()), str(tmp_path))
    pipe_file = LocalFileSystem.pipe_file

    def disk_full_at_latest(self: LocalFileSystem, path: str, value: bytes, **kw: object) -> None:
        if Path(path).name.startswith("LATEST"):
            with open(path, "wb") as file:
                file.write(value[: len(value) // 2])
            raise OSError(28, "No space left on device")
        pipe_file(self, path, value, **kw)

    monkeypatch.setattr(LocalFileSystem, "pipe_file", disk_full_at_latest)
    with pytest.raises(OSError, match="No space left"):
        save_one(LastValue().fit(hourly()), str(tmp_path))
    monkeypatch.undo()
    assert store.load(str(tmp_path)).version == first


def test_a_reader_never_meets_a_version_half_written(tmp_path: Path) -> None:
    """A controller loads ``LATEST`` while a training saves: it met an empty ``LATEST`` or
    a version whose files were being rewritten, and retrained for nothing."""
    save_one(SeasonalNaive().fit(hourly()), str(tmp_path))
    model = SeasonalNaive().fit(hourly())
    done = threading.Event()
    errors: list[str] = []

    def read() -> None:
        while not done.is_set():
            try:
                store.load(str(tmp_path))
            except store.StoreError as exc:
                errors.append(str(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(30):
            save_one(model, str(tmp_path))
    finally:
        done.set()
        reader.join()
    assert errors == []


def _edit(change: Callable[[dict], object], name: str = "model.json") -> Callable[[Path], None]:
    """A hand edit of one file, with the checksum fixed up as an editor would."""

    def apply(version: Path) -> None:
        rewrite_json(version / name, change)
        if name != "manifest.json":
            fix_checksum(version, name)

    return apply


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_edit(lambda s: s["m"].__setitem__("state", [1])), "lacks its parameters or its fitted"),
        (_edit(lambda s: s["m"].__setitem__("params", None)), "lacks its parameters or its"),
        (_edit(lambda s: s.__setitem__("m", 3)), "holds something that is not a model"),
        (_edit(lambda s: s.clear() or s.__setitem__("$model", [])), "not a model"),
        (_edit(lambda s: s["m"]["state"].__setitem__("x_", {"$dict": 3})), "unreadable model"),
        (_edit(lambda s: s["m"]["state"].__setitem__("x_", {"$array": []})), "unreadable model"),
        (_edit(lambda s: s["m"]["state"].__setitem__("predict", 1)), "sets 'predict', which"),
        (_edit(lambda s: s["m"]["state"].__setitem__("__dict__", {})), "sets '__dict__'"),
        (_edit(lambda m: m.pop("version"), "manifest.json"), "manifest.json lacks its version"),
    ],
    ids=["state-list", "params-null", "model-number", "class-list", "dict-body", "array-key"]
    + ["method", "dunder", "no-version"],
)
def test_hand_edited_files_with_fixed_checksums_are_refused_not_a_crash(
    damage: Callable[[Path], None], message: str, tmp_path: Path
) -> None:
    """Each was an AttributeError, TypeError or KeyError out of load() (which the controller
    does not catch), or a model whose ``predict`` was a number."""
    save_one(SeasonalNaive().fit(hourly()), str(tmp_path))
    damage(folder(tmp_path))
    with pytest.raises(store.StoreError, match=message):
        store.load(str(tmp_path))


def test_a_signature_edited_into_a_number_or_other_text_is_refused(tmp_path: Path) -> None:
    for signature in (7, "ünsigned"):
        save_one(SeasonalNaive().fit(hourly()), str(tmp_path), key="s3cret")
        _edit(lambda m, s=signature: m.__setitem__("signature", s), "manifest.json")(
            folder(tmp_path)
        )
        with pytest.raises(store.StoreError, match="signature does not match"):
            store.load(str(tmp_path), key="s3cret")


def test_a_service_seen_once_does_not_fail_the_fleets_training() -> None:
    """With ``auto`` it fell back to the default model, fitted alone on one row: "cannot
    infer the interval", and no other service got a model."""
    fleet = pd.concat([hourly(days=14, uid="old"), hourly(days=14, uid="new").iloc[-1:]])
    candidates = {n: registry(None, None)[n] for n in ("seasonal_quantile", "linear")}
    trained = train(fleet, candidates, horizon=12, folds=3)
    # "old" gets whichever backtests better (the two are within 1 % of each other here);
    # "new", one row, cannot be backtested and gets the default.
    assert set(trained.assignment) == {"old", "new"}
    assert trained.assignment["old"] in candidates
    assert trained.assignment["new"] == "seasonal_quantile"
    frame = forecast(trained.models, 6, (0.5, 0.9))
    assert frame.groupby("unique_id").size().to_dict() == {"new": 6, "old": 6}
    first = frame.groupby("unique_id")["ds"].min()
    assert first["new"] == fleet[fleet["unique_id"] == "new"]["ds"].max() + pd.Timedelta("1h")
