"""Shared test fixtures: where the real public traces live, and skipping when absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.prom_server import prom  # noqa: F401 (the real Prometheus, for every test module)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_file(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(
            f"real trace {relative} not found under {SHARED_DATA} (see shared/data/README.md)"
        )
    return path
