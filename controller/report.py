"""A self-contained HTML report of a replay: plots embedded as PNG, no CDN, no scripts.

Written for someone who has never seen the project: what was replayed, what each policy
is, the summary table, and for each policy the load against the capacity it provided,
with the forecast band for the predictive policy.
"""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from controller.replay import ReplayResult, ReplaySettings  # noqa: E402

EXPLAIN = {
    "predictive": "surgecast: forecasts the load and asks for pods a startup delay ahead of peaks",
    "hpa": "the Kubernetes HPA: reacts to the load it measured, at the target utilisation shown",
    "oracle": "perfect foresight: the fewest pods that serve every request (the cost lower bound)",
}
COLUMNS = {
    "policy": "policy",
    "unserved_share": "unserved requests",
    "minutes_over_capacity_share": "minutes over capacity",
    "replica_minutes": "replica-minutes (cost)",
    "cost_vs_oracle": "cost vs oracle",
    "scaling_changes": "scaling changes",
}


def summary_table(summary: pd.DataFrame) -> str:
    """The summary as plain text, for the terminal."""
    shown = _formatted(summary)
    return shown.to_string(index=False)


def _formatted(summary: pd.DataFrame) -> pd.DataFrame:
    shown = summary[list(COLUMNS)].rename(columns=COLUMNS).copy()
    # No load known in the window: nothing to score, "-" rather than "nan%".
    shown["unserved requests"] = summary["unserved_share"].map(
        lambda share: f"{share:.3%}" if math.isfinite(share) else "-"
    )
    shown["minutes over capacity"] = summary["minutes_over_capacity_share"].map(
        lambda share: f"{share:.2%}" if math.isfinite(share) else "-"
    )
    shown["replica-minutes (cost)"] = summary["replica_minutes"].map("{:,.0f}".format)
    # Without the oracle in the run there is nothing to compare with: "-", not "nan×".
    shown["cost vs oracle"] = summary["cost_vs_oracle"].map(
        lambda ratio: f"{ratio:.2f}×" if math.isfinite(ratio) else "-"
    )
    return shown


def write_report(result: ReplayResult, path: str | Path, title: str) -> Path:
    """Write the HTML report; returns its path."""
    path = Path(path)
    s = result.settings
    decisions = result.decisions
    first, last = decisions["ds"].min(), decisions["ds"].max()
    policies = list(result.summary["policy"])
    sections = []
    for name in policies:
        run = decisions[decisions["policy"] == name]
        sections.append(
            f"<h2>{html.escape(name)}</h2><p>{html.escape(EXPLAIN.get(name, ''))}</p>"
            f'<img alt="load and capacity under {html.escape(name)}" '
            f'src="data:image/png;base64,{_plot(run, name)}">'
        )
    table = _formatted(result.summary).to_html(index=False, border=0, classes="summary")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table.summary {{ border-collapse: collapse; }}
table.summary td, table.summary th {{ padding: 4px 12px; border-bottom: 1px solid #ddd; }}
img {{ max-width: 100%; }}
.note {{ color: #555; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>The recorded traffic from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} (UTC) was
replayed through each scaling policy. Each pod serves {s.capacity_per_replica:g} requests per
{_interval(decisions)}; {_readiness(decisions, s)}; removing pods is immediate.
Requests above the capacity of the ready pods are
<em>unserved</em>: those users saw "server busy". Cost is replica-minutes, booting pods
included.{_settings_of(policies, s)}</p>
<h2>Summary</h2>
{table}
<p class="note">Fewer unserved requests at the same or lower cost is better;
the oracle is the floor of cost.</p>
{"".join(sections)}
</body></html>
"""
    path.write_text(page, encoding="utf-8")
    return path


def _step(decisions: pd.DataFrame) -> pd.Timedelta | None:
    """The series' step, from the replayed intervals (None for a one-interval replay)."""
    times = pd.Series(decisions["ds"].unique()).sort_values()
    return times.diff().min() if len(times) > 1 else None


def _interval(decisions: pd.DataFrame) -> str:
    """ "interval (1 min)": a capacity per interval means nothing without its length."""
    step = _step(decisions)
    return f"interval ({_duration(step)})" if step is not None else "interval"


def _readiness(decisions: pd.DataFrame, s: ReplaySettings) -> str:
    """When a pod asked for serves. The replay walks whole intervals, so it rounds a delay
    up to a multiple of the step: saying only "ready 1.5 min later" misstated what was
    simulated (2 min on a per-minute series)."""
    said = f"a pod asked for is ready {_duration(s.startup_delay)} later"
    step = _step(decisions)
    if step is None or s.startup_delay % step == pd.Timedelta(0):
        return said
    counted = math.ceil(s.startup_delay / step) * step
    return f"{said}, which the replay rounds up to whole intervals: {_duration(counted)}"


def _duration(delta: pd.Timedelta | timedelta) -> str:
    seconds = delta.total_seconds()
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _settings_of(policies: list[str], s: ReplaySettings) -> str:
    """What the replayed policies were set to, naming only those in the run."""
    said = []
    if "predictive" in policies:
        said.append(
            f"The predictive policy covers the forecast's {round(s.quantile * 100, 3):g}% "
            "quantile and never goes below what the load of the last interval needs"
        )
    if "hpa" in policies:
        said.append(f"the HPA targets {round(s.hpa_target * 100, 3):g}% utilisation")
    text = "; ".join(said)
    return f" {text[:1].upper()}{text[1:]}." if said else ""


def _plot(run: pd.DataFrame, name: str) -> str:
    fig, ax = plt.subplots(figsize=(12, 3.6), dpi=90)
    ax.plot(
        run["ds"], run["load"], color="#1f77b4", linewidth=0.6, label="load (requests per interval)"
    )
    ax.step(
        run["ds"],
        run["capacity"],
        where="post",
        color="#2ca02c",
        linewidth=0.8,
        label="capacity of ready pods",
    )
    if "forecast_peak" in run and run["forecast_peak"].notna().any():
        ax.plot(
            run["ds"],
            run["forecast_peak"],
            color="#ff7f0e",
            linewidth=0.6,
            alpha=0.8,
            label="forecast upper quantile (lead window peak)",
        )
    if "forecast_median" in run and run["forecast_median"].notna().any():
        ax.plot(
            run["ds"],
            run["forecast_median"],
            color="#9467bd",
            linewidth=0.6,
            alpha=0.7,
            label="forecast median",
        )
    unserved = run[run["unserved"] > 0]
    ax.scatter(
        unserved["ds"],
        unserved["load"],
        s=6,
        color="#d62728",
        zorder=3,
        label="minutes with unserved requests",
    )
    ax.set_title(name)
    ax.set_ylabel("requests per interval")
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.legend(loc="upper left", fontsize="x-small", ncols=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
