"""Shared test fixtures: where the real public traces live, and skipping when absent."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

from tests.prom_server import prom  # noqa: F401 (the real Prometheus, for every test module)

os.environ.setdefault("OMP_NUM_THREADS", "1")  # for subprocesses: CLIs, notebook kernels


@pytest.fixture(autouse=True, scope="session")
def one_openmp_thread() -> Iterator[None]:
    """Gradient boosting on one OpenMP thread. Its default, a thread per core, spin-waits
    against the test servers and subprocesses sharing a two-core machine and then fits
    10-20x slower; one thread is about as fast on two cores, and steady."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(
            f"real trace {relative} not found under {SHARED_DATA} (see shared/data/README.md)"
        )
    return path
