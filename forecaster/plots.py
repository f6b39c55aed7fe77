"""Static plots (matplotlib, PNG) of series frames, for the demo, reports and notebooks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MAX_SERIES_DRAWN = 6


def plot_series(
    series: pd.DataFrame, path: str | Path, title: str = "Requests per interval"
) -> Path:
    """Draw each series (up to six, the busiest first) and shade the missing intervals.

    Missing data is drawn as a grey band rather than a drop to zero, so an outage is not
    mistaken for a quiet night.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    busiest = (
        series.groupby("unique_id")["y"].sum().sort_values(ascending=False).index[:MAX_SERIES_DRAWN]
    )
    for uid in busiest:
        one = series[series["unique_id"] == uid]
        ax.plot(one["ds"], one["y"], linewidth=0.7, label=str(uid))
    total = series.groupby("ds")["y"].sum(min_count=1)
    _shade_missing(ax, total)
    ax.set_title(title)
    ax.set_ylabel("requests per interval")
    ax.set_xlabel("time (UTC)")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    if len(busiest) > 1:
        ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _shade_missing(ax: plt.Axes, total: pd.Series) -> None:
    missing = total.isna().to_numpy()
    if not missing.any():
        return
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    index = total.index
    for n, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        end = index[min(stop, len(index) - 1)]
        ax.axvspan(
            index[start], end, color="grey", alpha=0.25, label="missing data" if n == 0 else None
        )
