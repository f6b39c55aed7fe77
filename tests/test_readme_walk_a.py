"""README promises checked by running the commands as a user would (helper A's walk)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_an_unrecognised_format_on_dask_is_one_line_on_stderr(tmp_path: Path) -> None:
    """README: an unrecognised format is one line on stderr and exit code 2, and the Dask
    engine's results are the same as the local one's. Each worker of the local cluster
    also logged the failed task with its traceback, twice (the task is retried)."""
    table = tmp_path / "series.csv"
    table.write_text("unique_id,ds,y\nall,2026-10-12 00:00:00,3\n")
    surgecast = Path(sys.executable).with_name("surgecast")
    command = [str(surgecast), "ingest", str(table), "--engine", "dask"]
    command += ["-o", str(tmp_path / "out.parquet")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: not a recognised access-log format (first line: 'unique_id,ds,y');"
        " pass --format clf|combined|json or --pattern REGEX"
    ]
