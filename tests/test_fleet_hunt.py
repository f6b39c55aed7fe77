"""Fleet engine, model store and fleet training at their edges: what a user training hundreds
of services, and a controller loading the artefacts, ran into."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import dask
import pytest
from distributed import Client
from distributed.core import Status

from forecaster import store
from forecaster.engine import DaskEngine, open_engine
from forecaster.models import LinearForecaster, SeasonalNaive
from tests.test_store import fix_checksum, folder, hourly, save_one

NAIVE = datetime(2026, 11, 22, 9, 30)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1x", "nosuch://127.0.0.1:8786"])
def test_a_scheduler_address_that_fails_leaves_no_client_running(address: str) -> None:
    """A malformed port or an unknown protocol left a half-started Client "connecting" (its
    ``__del__`` at interpreter exit waited 60 s for a stopped event loop: the hang seen after
    the engine tests) and Dask's global scheduler set to ``dask.distributed``, so any later
    Dask computation in the process started a hidden LocalCluster."""
    before = dask.config.get("scheduler", None)
    gc.disable()  # as at exit: the collector, not the test, would have closed the client
    try:
        with pytest.raises(ValueError, match="--scheduler"):
            open_engine("dask", scheduler=address).__enter__()
        assert dask.config.get("scheduler", None) == before
        left = [
            c
            for c in gc.get_objects()
            if isinstance(c, Client) and c._start_arg == address and c.status != "closed"
        ]
    finally:
        gc.enable()
    assert left == []


def test_a_naive_save_time_is_utc_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every time in surgecast is UTC when it names no zone; ``save`` took a naive ``now``
    for the machine's local time, so on a Shanghai laptop 09:30 was stored as 01:30Z."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        model = SeasonalNaive().fit(hourly())
        version = store.save({"m": model}, "memory://hunt-naive-now", {}, "f" * 64, NAIVE)
        manifest = store.load("memory://hunt-naive-now").manifest
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert version == "20261122T093000Z-ffffffff"
    assert manifest["created_at"] == "2026-11-22T09:30:00+00:00"


def test_a_version_outside_the_store_is_refused(tmp_path: Path) -> None:
    """``--version ../team-b/…`` (or a ``LATEST`` edited to it) loaded another store's
    models and reported them as a version of this one."""
    model = SeasonalNaive().fit(hourly())
    store.save({"m": model}, str(tmp_path / "team-a"), {}, "a" * 64, NAIVE)
    theirs = store.save({"m": model}, str(tmp_path / "team-b"), {}, "b" * 64, NAIVE)
    for version in (f"../team-b/{theirs}", "..", "", f"..\\team-b\\{theirs}"):
        with pytest.raises(store.StoreError, match="is not the name of a version in this store"):
            store.load(str(tmp_path / "team-a"), version=version)
    (tmp_path / "team-a" / "LATEST").write_text(f"../team-b/{theirs}\n")
    with pytest.raises(store.StoreError, match="is not the name of a version"):
        store.load(str(tmp_path / "team-a"))


def _cut_short(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_a_byte(data: bytes) -> bytes:
    return data[:60] + bytes([data[60] ^ 0xFF]) + data[61:]


@pytest.mark.parametrize("damage", [_cut_short, _flip_a_byte], ids=["cut-short", "flipped"])
def test_a_damaged_array_archive_with_a_fixed_checksum_is_refused(
    damage: Callable[[bytes], bytes], tmp_path: Path
) -> None:
    """zipfile's BadZipFile (and zlib's, NumPy's header parser's errors) escaped load(): the
    controller's start job, which trains anew on a StoreError, failed instead."""
    save_one(LinearForecaster().fit(hourly()), str(tmp_path))
    version = folder(tmp_path)
    archive = version / "arrays.npz"
    archive.write_bytes(damage(archive.read_bytes()))
    fix_checksum(version, "arrays.npz")
    with pytest.raises(store.StoreError, match="arrays.npz is unreadable"):
        store.load(str(tmp_path))


@pytest.mark.parametrize(
    ("metadata", "error"),
    [({"version": "v2"}, ValueError), ({"format": 2}, ValueError), ({"at": object()}, TypeError)],
    ids=["version", "format", "not-json"],
)
def test_metadata_the_store_cannot_keep_is_refused_before_anything_is_written(
    metadata: dict[str, object], error: type[Exception], tmp_path: Path
) -> None:
    """``{"version": "v2"}`` replaced the version in the manifest (``--version v2`` then found
    nothing), ``{"format": 2}`` wrote a store load() refused, and metadata JSON cannot hold
    failed only after the version folder was made, leaving it behind empty."""
    model = SeasonalNaive().fit(hourly())
    with pytest.raises(error):
        store.save({"m": model}, str(tmp_path), metadata, "f" * 64, NAIVE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_client_that_fails_to_close_still_stops_the_local_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() stopped at the client's error (a scheduler too busy to answer in time), and
    the LocalCluster's worker processes ran on until the interpreter exited."""
    engine = DaskEngine(n_workers=1).__enter__()
    client, cluster = engine.client, engine._cluster

    def times_out(*args: object, **kwargs: object) -> None:
        raise TimeoutError("timed out after 60 s.")

    monkeypatch.setattr(client, "close", times_out)
    with pytest.raises(TimeoutError):
        engine.close()
    assert cluster.status == Status.closed
    monkeypatch.undo()
    client.close()
    with pytest.raises(RuntimeError, match="not started"):
        engine.map(abs, [1])
