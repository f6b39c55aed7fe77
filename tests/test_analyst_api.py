"""What an analyst in Jupyter meets: plots of many series with gaps, and the library's
public functions on frames as analysts build them."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from forecaster import plots
from tests.test_models_contract import hourly


@pytest.fixture
def drawn(monkeypatch) -> list[Figure]:
    """The figures :func:`plots.plot_series` draws, kept open to be looked at."""
    figures: list[Figure] = []
    close = plt.close
    monkeypatch.setattr(plots.plt, "close", figures.append)
    yield figures
    for figure in figures:
        close(figure)


def _bands(figure: Figure) -> list[tuple[float, float]]:
    """The x extents (matplotlib date numbers) of the shaded bands."""
    ax = figure.axes[0]
    return [(p.get_x(), p.get_x() + p.get_width()) for p in ax.patches]


def test_an_outage_of_absent_rows_is_shaded_and_breaks_the_line(tmp_path: Path, drawn) -> None:
    """Absent rows drew a straight line across the outage with no band (only NaN rows were
    shaded), so two days of lost logs looked like a quiet slope."""
    frame = hourly(days=5, uid="a")
    outage = (frame["ds"] >= "2026-09-02") & (frame["ds"] < "2026-09-03")
    plots.plot_series(frame[~outage], tmp_path / "a.png")
    (figure,) = drawn
    (line,) = figure.axes[0].get_lines()
    assert np.isnan(np.asarray(line.get_ydata(), dtype=float)).sum() == 24
    start, end = (
        plt.matplotlib.dates.date2num(pd.Timestamp(t)) for t in ("2026-09-02", "2026-09-03")
    )
    assert any(lo <= start and hi >= end - 1 / 24 for lo, hi in _bands(figure))


def test_a_gap_in_one_of_several_series_is_shaded(tmp_path: Path, drawn) -> None:
    """Only intervals where every series was missing were shaded: an outage of one service
    among several was invisible."""
    gappy = hourly(days=5, uid="gappy")
    gappy.loc[30:60, "y"] = np.nan
    plots.plot_series(pd.concat([gappy, hourly(days=5, uid="fine", seed=3)]), tmp_path / "b.png")
    (figure,) = drawn
    assert len(_bands(figure)) == 1


def test_the_title_says_how_many_series_were_left_out(tmp_path: Path, drawn) -> None:
    frame = pd.concat([hourly(days=2, seed=n, uid=f"svc{n}", scale=1 + n) for n in range(9)])
    plots.plot_series(frame, tmp_path / "c.png", "Fleet")
    (figure,) = drawn
    ax = figure.axes[0]
    assert ax.get_title() == "Fleet (the 6 busiest of 9 series)"
    assert [line.get_label() for line in ax.get_lines()][:2] == ["svc8", "svc7"]
