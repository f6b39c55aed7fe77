"""The model store at its edges: saves that collide, crash, or race a reader; hand-edited
files; and the ``surgecast train``/``forecast`` commands' errors around the store."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from forecaster import store
from forecaster.models import LastValue, SeasonalNaive
from tests.test_store import hourly, save_one


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
