"""The static checks, run by ``make test`` so CI fails when either finds a problem.

Both run from the repository root with this interpreter, so they use the pinned ruff and
mypy and the settings in pyproject.toml (mypy's ``files`` are forecaster and controller).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(result.args[2:])
    return f"`{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}"


def test_ruff_check_passes() -> None:
    result = _run("ruff", "check", "forecaster", "controller", "tests", "benchmarks")
    assert result.returncode == 0, _report(result)


@pytest.mark.slow
def test_mypy_passes() -> None:
    """About 20 s from a cold cache (CI), under a second once .mypy_cache is warm."""
    result = _run("mypy")
    assert result.returncode == 0, _report(result)
