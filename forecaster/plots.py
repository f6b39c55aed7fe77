"""Static plots (matplotlib, PNG) of series frames, for the demo, reports and notebooks."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: plots are files, never windows
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from forecaster.frames import series_freq, validate_series  # noqa: E402
from forecaster.models.base import regular  # noqa: E402

MAX_SERIES_DRAWN = 6


def plot_series(
    series: pd.DataFrame, path: str | Path, title: str = "Requests per interval"
) -> Path:
    """Draw each series (up to six, the busiest first) and shade the missing intervals.

    Missing data, a NaN or an absent row between a series' first and last, breaks its line
    and is drawn as a grey band rather than a drop to zero or a straight line across the
    outage, so an outage is not mistaken for a quiet night. The title says how many series
    were left out.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(12, 4), dpi=100)
    frame = validate_series(series)
    everyone = frame["unique_id"].nunique()
    busiest = (
        frame.groupby("unique_id")["y"].sum().sort_values(ascending=False).index[:MAX_SERIES_DRAWN]
    )
    missing = []
    for uid in busiest:
        one = frame[frame["unique_id"] == uid]
        y = regular(one, series_freq(one)) if len(one) > 1 else one.set_index("ds")["y"]
        ax.plot(y.index, y.to_numpy(), linewidth=0.7, label=str(uid))
        missing.append(y.isna())
    if missing:
        _shade_missing(ax, pd.concat(missing, axis=1).any(axis=1).sort_index())
    if everyone > len(busiest):
        title = f"{title} (the {len(busiest)} busiest of {everyone} series)"
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


def _shade_missing(ax: plt.Axes, missing: pd.Series) -> None:
    """Grey bands over the runs of ``missing`` (by time stamp), each up to the next
    stamp drawn, or one interval past the last: a run at the end (the last hour of logs
    lost) ended at its own first stamp, and one missing interval there had no band."""
    flags = missing.to_numpy(dtype=bool)
    if not flags.any():
        return
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    index = missing.index
    after = index[-1] + (index[-1] - index[-2] if len(index) > 1 else pd.Timedelta(0))
    for n, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        end = index[stop] if stop < len(index) else after
        ax.axvspan(
            index[start], end, color="grey", alpha=0.25, label="missing data" if n == 0 else None
        )
