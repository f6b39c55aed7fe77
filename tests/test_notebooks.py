"""The analyst notebooks: committed without outputs, and run top to bottom with papermill.

Each notebook imports the package and calls only its public API, so a notebook that stops
running means the API broke. They run on the built-in synthetic traffic with their default
(quick) parameters, and the exploration notebook also on the NASA trace when it is present.
"""

from __future__ import annotations

import ast
import os
import shutil
import sqlite3
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from nbclient import NotebookClient

from forecaster import store
from tests.conftest import shared_file

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
COMMON_PARAMETERS = {"data_path", "series_id", "output_dir", "quick"}


def execute(name: str, tmp_path: Path, **parameters) -> nbformat.NotebookNode:
    """Run a notebook with papermill in the repository root; any failing cell raises.

    The ``python3`` kernel starts with this interpreter: jupyter_client replaces a kernel
    spec's ``python`` with ``sys.executable``, so no ``ipykernel install`` is needed.
    """
    return papermill.execute_notebook(
        str(REPO / "notebooks" / name),
        str(tmp_path / name),
        parameters={"output_dir": str(tmp_path / "out"), **parameters},
        kernel_name="python3",
        cwd=str(REPO),
        progress_bar=False,
    )


def printed(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed or showed as text."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_there_are_three_notebooks() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "01-explore-traffic.ipynb",
        "02-retrain-and-compare.ipynb",
        "03-review-decisions.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_take_papermill_parameters_and_use_only_public_names(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assigned = {t.id for node in ast.parse(tagged[0].source).body for t in node.targets}
    assert COMMON_PARAMETERS <= assigned
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.ImportFrom) and node.module.split(".")[0] in (
                "forecaster",
                "controller",
            ):
                names = node.module.split(".") + [alias.name for alias in node.names]
                assert not [n for n in names if n.startswith("_")], ast.unparse(node)


def test_notebooks_readme_names_every_parameter() -> None:
    readme = (REPO / "notebooks" / "README.md").read_text()
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        for node in ast.parse(cell.source).body:
            for target in node.targets:
                assert f"`{target.id}`" in readme, f"{path.name}: {target.id}"


def test_retrain_notebook_fits_on_one_thread(tmp_path: Path) -> None:
    """After notebook 02's set-up cells, OpenMP and BLAS run one thread: a thread per core
    spin-waits next to busy neighbours, and its backtests took 12 minutes instead of 1."""
    notebook = nbformat.read(REPO / "notebooks" / "02-retrain-and-compare.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    probe = "from threadpoolctl import threadpool_info\n"
    probe += "print(sorted({i['num_threads'] for i in threadpool_info()}))"
    notebook.cells = [*code[:2], nbformat.v4.new_code_cell(probe)]
    notebook.cells[0].source += f"\noutput_dir = {str(tmp_path)!r}"
    client = NotebookClient(notebook, kernel_name="python3", resources={"metadata": {"path": REPO}})
    # the kernel a user starts, not the test session's one OpenMP thread (tests/conftest.py)
    client.execute(env={k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"})
    assert printed(notebook).strip() == "[1]"


@pytest.mark.slow
def test_explore_traffic(tmp_path: Path) -> None:
    notebook = execute("01-explore-traffic.ipynb", tmp_path)
    out = tmp_path / "out"
    for name in ("series.png", "profile.png", "calendar.png", "peaks.png", "peak-days.csv"):
        assert (out / name).stat().st_size > 0, name
    series = pd.read_parquet(out / "series.parquet")
    assert series["y"].isna().any()  # the maintenance windows are gaps, not zeros
    text = printed(notebook)
    assert "Mid-Autumn Festival" in text and "National Day" in text  # the calendar table


@pytest.mark.slow
def test_explore_traffic_on_nasa(tmp_path: Path) -> None:
    shared_file("nasa-http/per-minute/requestdata-20240626.csv")
    execute(
        "01-explore-traffic.ipynb",
        tmp_path,
        data_path="../shared/data",
        tz="America/New_York",
        country="US",
    )
    series = pd.read_parquet(tmp_path / "out" / "series.parquet")
    assert series["y"].sum() == 3_461_612  # the trace's official request count
    assert (tmp_path / "out" / "peaks.png").stat().st_size > 0


@pytest.mark.slow
def test_retrain_and_compare(tmp_path: Path) -> None:
    notebook = execute("02-retrain-and-compare.ipynb", tmp_path)
    out = tmp_path / "out"
    for name in ("forecast-vs-actual.png", "events.png", "events.csv", "forecast.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "models" / "LATEST").read_text().strip() in store.versions(str(out / "models"))
    stored = store.load(str(out / "models"))
    assert stored.manifest["training"]["chosen_by"] == "notebooks/02-retrain-and-compare.ipynb"
    assert stored.manifest["backtest"]
    forecast = pd.read_csv(out / "forecast.csv")
    assert len(forecast) == 288 and {"yhat", "q0.9"} <= set(forecast.columns)
    assert "prophet" in printed(notebook)


@pytest.mark.slow
def test_review_decisions(tmp_path: Path) -> None:
    notebook = execute("03-review-decisions.ipynb", tmp_path)
    out = tmp_path / "out"
    for name in ("decisions.db", "review.png", "review.html", "divergences.csv"):
        assert (out / name).stat().st_size > 0, name
    text = printed(notebook)
    assert "1,440 decisions of replay/pension" in text
    accounts = [line for line in text.splitlines() if line.startswith(("widest gap", "stretch"))]
    assert len(accounts) == 2  # explain() of two decisions from the log
    assert all("because" in a and "HPA alone would have asked for" in a for a in accounts)


@pytest.mark.slow
def test_review_decisions_explains_the_logs_own_decisions(tmp_path: Path) -> None:
    """Given a controller's log, the decisions explained are the log's, not the replay's."""
    execute("03-review-decisions.ipynb", tmp_path)  # fills out/decisions.db from its replay
    log = tmp_path / "controller.db"
    shutil.copy(tmp_path / "out" / "decisions.db", log)
    # a controller that, at 03:00 local, asked for 40 pods more than the HPA alone would
    with sqlite3.connect(log) as db:
        changed = db.execute(
            "UPDATE decisions SET replicas = hpa_replicas + 40 WHERE at LIKE '2026-11-09 19:00%'"
        ).rowcount
    assert changed == 1
    notebook = execute(
        "03-review-decisions.ipynb",
        tmp_path,
        output_dir=str(tmp_path / "again"),
        decision_log=f"sqlite:///{log}",
    )
    accounts = [line for line in printed(notebook).splitlines() if line.startswith("widest gap")]
    assert len(accounts) == 1 and accounts[0].startswith("widest gap, 03:00:"), accounts


@pytest.mark.slow
def test_review_decisions_of_a_scaler_the_log_lacks(tmp_path: Path) -> None:
    """A mistyped scaler (or a log path that is not the controller's) says so, instead of
    failing on a missing column of an empty table."""
    log = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        execute("03-review-decisions.ipynb", tmp_path, decision_log=log, scaler="gov/typo")
    assert f"{log} holds no decision of gov/typo on 2026-11-10" in str(failed.value)
